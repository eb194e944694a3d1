//! Typed errors of the auth module.
//!
//! Where PVE has a message for the same failure (acl:`AccessControl.pm` verify_token,
//! check_user_enabled, check_token_exist, split_tokenid) the text follows it. On the wire
//! every authentication failure becomes `401 Authentication failed!` (spec §5.5, §6.2), so
//! these texts only reach logs and the CLI.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("no API token specified")]
    NoToken,
    #[error("no tokenid specified")]
    NoTokenId,
    #[error("'{0}' is not a valid token ID")]
    InvalidTokenId(String),
    #[error("value '{0}' does not look like a valid user or token ID")]
    InvalidAuthId(String),
    #[error("no such user ('{0}')")]
    NoSuchUser(String),
    #[error("user '{0}' is disabled")]
    UserDisabled(String),
    #[error("user '{0}' access expired")]
    UserExpired(String),
    #[error("no such token '{token}' for user '{user}'")]
    NoSuchToken { user: String, token: String },
    #[error("token '{0}' access expired")]
    TokenExpired(String),
    #[error("invalid token value!")]
    InvalidTokenValue,
    #[error("token '{0}' already exists")]
    TokenExists(String),
    #[error("role '{0}' does not exist")]
    UnknownRole(String),
    #[error("invalid ACL path '{0}'")]
    InvalidAclPath(String),
    #[error("error reading '{path}': {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("error writing '{path}': {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ticket(#[from] super::ticket::TicketError),
    #[error(transparent)]
    Csrf(#[from] super::csrf::CsrfError),
    /// Boxed: a key error may carry an AuthError of its own (writing a key file).
    #[error(transparent)]
    Keys(Box<super::keys::KeyError>),
}

impl From<super::keys::KeyError> for AuthError {
    fn from(e: super::keys::KeyError) -> Self {
        AuthError::Keys(Box::new(e))
    }
}
