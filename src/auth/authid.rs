//! `AuthId`: who a request runs as, `user@realm` or the API token `user@realm!name`.
//!
//! Grammar (spec §6.2, acl:`Auth/Plugin.pm` user_regex / realm_regex / verify_username,
//! acl:`AccessControl.pm` token_full_regex): user `[^\s:/]+`, realm
//! `[A-Za-z][A-Za-z0-9\.\-_]+`, and a token name uses the realm grammar. A plain user id is
//! also limited to 3..=64 bytes. The realm and the token name can contain neither `@` nor `!`,
//! so the anchored upstream regexes have exactly one way to match: the realm starts after the
//! last `@`, the token name after the last `!`. That lets us check them without a regex.

use std::fmt;
use std::str::FromStr;

use super::error::AuthError;

/// The one user that skips every permission check (acl:`RPCEnvironment.pm` permissions()).
pub(crate) const ROOT_USER: &str = "root@pam";

/// A user id or an API token id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthId {
    /// Always `user@realm`, also for tokens.
    user: String,
    token: Option<String>,
}

impl AuthId {
    /// `root@pam`, the identity of a trusted local-socket peer.
    pub fn root() -> AuthId {
        AuthId {
            user: ROOT_USER.to_string(),
            token: None,
        }
    }

    /// `root@pam!isolib`, the token the embedded default creates on its first start.
    pub fn embedded_admin_token() -> AuthId {
        AuthId {
            user: ROOT_USER.to_string(),
            token: Some("isolib".to_string()),
        }
    }

    /// The `user@realm` part (the token's owner for a token).
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn token_name(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn is_token(&self) -> bool {
        self.token.is_some()
    }

    /// Exactly `root@pam`; its tokens are ordinary principals.
    pub fn is_root(&self) -> bool {
        self.token.is_none() && self.user == ROOT_USER
    }
}

impl FromStr for AuthId {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((user, token)) = split_tokenid(s) {
            return Ok(AuthId {
                user: user.to_string(),
                token: Some(token.to_string()),
            });
        }
        if verify_username(s) {
            return Ok(AuthId {
                user: s.to_string(),
                token: None,
            });
        }
        Err(AuthError::InvalidAuthId(s.to_string()))
    }
}

impl fmt::Display for AuthId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.token {
            Some(token) => write!(f, "{}!{}", self.user, token),
            None => f.write_str(&self.user),
        }
    }
}

/// `[A-Za-z][A-Za-z0-9\.\-_]+`: realms and token names.
pub(crate) fn is_realm(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && s.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// `[^\s:/]+`: the name part of a user id (it may itself contain `@` or `!`).
fn is_user_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == ':' || c == '/')
}

/// `user@realm` by the grammar alone, without PVE's length limit.
fn is_userid(s: &str) -> bool {
    s.rsplit_once('@')
        .is_some_and(|(name, realm)| is_user_name(name) && is_realm(realm))
}

/// PVE's verify_username: the grammar plus 3..=64 bytes (Perl counts bytes here).
pub(crate) fn verify_username(s: &str) -> bool {
    (3..=64).contains(&s.len()) && is_userid(s)
}

/// PVE's split_tokenid: `user@realm!name` into (`user@realm`, `name`). Like upstream it
/// checks only the grammar, not the length of the user part.
pub(crate) fn split_tokenid(s: &str) -> Option<(&str, &str)> {
    let (user, name) = s.rsplit_once('!')?;
    (is_userid(user) && is_realm(name)).then_some((user, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> AuthId {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_user_and_token_and_displays_them_back() {
        let user = id("root@pam");
        assert_eq!(user.user(), "root@pam");
        assert_eq!(user.token_name(), None);
        assert!(!user.is_token());
        assert_eq!(user.to_string(), "root@pam");

        let token = id("packer@pve!build-01");
        assert_eq!(token.user(), "packer@pve");
        assert_eq!(token.token_name(), Some("build-01"));
        assert!(token.is_token());
        assert_eq!(token.to_string(), "packer@pve!build-01");
    }

    #[test]
    fn is_root_only_for_plain_root_at_pam() {
        assert!(id("root@pam").is_root());
        assert!(!id("root@pam!tok").is_root());
        assert!(!id("root@pve").is_root());
        assert!(!id("admin@pam").is_root());
    }

    #[test]
    fn last_at_and_last_bang_decide_the_split() {
        // The user part may contain '@' and '!', as upstream's greedy regex allows.
        let user = id("a!b@pve");
        assert!(!user.is_token());
        assert_eq!(user.user(), "a!b@pve");
        let token = id("mail@example.com@ldap!ci");
        assert_eq!(token.user(), "mail@example.com@ldap");
        assert_eq!(token.token_name(), Some("ci"));
    }

    #[test]
    fn rejects_what_the_grammar_rejects() {
        for bad in [
            "",
            "root",
            "@pam",
            "root@",
            "root@p",        // realm needs two characters
            "root@1pam",     // realm starts with a letter
            "ro ot@pam",     // no whitespace in the user
            "ro:ot@pam",     // ':' separates user.cfg fields
            "a/b@pam",       // '/' separates API paths
            "root@pam!",     // empty token name
            "root@pam!t",    // token name needs two characters
            "root@pam!1tok", // token name starts with a letter
            "root@pam!to/k",
            "root@pam:secret", // PBS's separator is not part of an id
        ] {
            assert!(bad.parse::<AuthId>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn user_ids_are_limited_to_64_bytes() {
        let ok = format!("{}@pve", "u".repeat(60));
        assert_eq!(ok.len(), 64);
        assert!(ok.parse::<AuthId>().is_ok());
        let long = format!("{}@pve", "u".repeat(61));
        assert!(long.parse::<AuthId>().is_err());
    }

    #[test]
    fn error_names_the_value() {
        let err = "nope".parse::<AuthId>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("value 'nope' does not look like a valid user or token ID")
        );
    }
}
