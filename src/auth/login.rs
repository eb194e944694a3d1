//! Tickets end to end: checking a password and issuing a ticket with its CSRF token
//! (`POST /access/ticket`), and checking both on later requests. In node mode every key and
//! password file is PVE's own, read and never written; otherwise the keys are the daemon's.

use std::path::PathBuf;
use std::sync::Arc;

use openssl::pkey::{PKey, Private};

use super::authid::AuthId;
use super::config::AccessConfig;
use super::csrf::{self, CsrfSecret};
use super::error::AuthError;
use super::keys::{self, KeyError, KeyPaths};
use super::pam;
use super::shadow::{ShadowConfig, ShadowError};
use super::tfa::SecondFactors;
use super::ticket::{self, VerifyKeys};
use crate::file_cache::FileCache;

/// Where a login can fail. All of it is `401 authentication failure` on the wire (PVE keeps
/// the reason to its log, so a caller cannot tell an unknown user from a wrong password).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid user name '{0}'")]
    BadUser(String),
    #[error("{0}")]
    Disabled(String),
    #[error("user '{0}' has a second factor configured; log in through PVE")]
    SecondFactor(String),
    #[error("realm '{0}' is not supported, only pve and pam")]
    Realm(String),
    #[error("ticket given as password does not authorize '{0}'")]
    Ticket(String),
    #[error(transparent)]
    Shadow(#[from] ShadowError),
    #[error(transparent)]
    Pam(#[from] pam::PamError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("PVE's ticket key is due for rotation, which only PVE does: log in through PVE once")]
    KeyDue,
    #[error("unable to issue a ticket: {0}")]
    Issue(String),
}

/// A fresh ticket and the CSRF token that goes with it.
pub struct Issued {
    pub username: String,
    pub ticket: String,
    pub csrf_token: String,
}

pub struct LoginSettings {
    pub keys: KeyPaths,
    /// The keys are the daemon's own: create them, rotate them as PVE would.
    pub own_keys: bool,
    pub shadow_cfg: PathBuf,
    /// PVE's second-factor files (`priv/tfa.cfg`, `domains.cfg`), node mode only.
    pub second_factors: Option<(PathBuf, PathBuf)>,
    pub pam_service: String,
    pub pam_confdir: Option<PathBuf>,
}

pub struct Tickets {
    settings: LoginSettings,
    verify_keys: FileCache<VerifyKeys, KeyError>,
    csrf_secret: FileCache<CsrfSecret, KeyError>,
    private_key: FileCache<PKey<Private>, KeyError>,
    shadow: FileCache<ShadowConfig, ShadowError>,
    factors: Option<FileCache<SecondFactors, std::convert::Infallible>>,
}

impl Tickets {
    /// Creates the daemon's own keys when they are missing (never PVE's).
    pub fn new(settings: LoginSettings) -> Result<Tickets, KeyError> {
        if settings.own_keys {
            keys::ensure_keys(&settings.keys)?;
            keys::rotate_if_due(&settings.keys, now())?;
        }
        let k = settings.keys.clone();
        let verify_keys = FileCache::new(vec![k.public.clone(), k.public_old.clone()], {
            let k = k.clone();
            move |_| keys::load_verify_keys(&k)
        });
        let csrf_secret = FileCache::new(vec![k.www.clone()], |p| keys::load_csrf_secret(&p[0]));
        let private_key =
            FileCache::new(vec![k.private.clone()], |p| keys::load_private_key(&p[0]));
        let shadow = FileCache::new(vec![settings.shadow_cfg.clone()], |p| {
            ShadowConfig::read(&p[0])
        });
        let factors = settings.second_factors.clone().map(|(tfa, domains)| {
            FileCache::new(vec![tfa, domains], |p| {
                Ok(SecondFactors::load(&p[0], &p[1]))
            })
        });
        Ok(Tickets {
            settings,
            verify_keys,
            csrf_secret,
            private_key,
            shadow,
            factors,
        })
    }

    /// The user a ticket was issued to, if it is valid now.
    /// The user a valid ticket names.
    pub fn verify(&self, ticket: &str) -> Result<AuthId, AuthError> {
        let keys = self.verify_keys.get()?;
        let userid = ticket::verify(&keys, ticket, now())?.userid;
        userid.parse()
    }

    /// The headers of this node's own requests to its peers: a `root@pam` ticket cookie and
    /// its CSRF token. Every member of the cluster holds the keys that make them, so they are
    /// only ever sent to one of them (over pinned TLS).
    pub fn node_credentials(&self) -> Result<Vec<(String, String)>, AuthError> {
        let key = self.private_key.get()?;
        let ticket = ticket::assemble(&key, "root@pam", now())?;
        let secret = self.csrf_secret.get()?;
        let token = csrf::assemble(&secret, "root@pam", now())?;
        Ok(vec![
            (
                "Cookie".to_owned(),
                format!(
                    "PVEAuthCookie={}",
                    percent_encoding::utf8_percent_encode(
                        &ticket,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                ),
            ),
            ("CSRFPreventionToken".to_owned(), token),
        ])
    }

    pub fn verify_csrf(&self, token: &str, user: &AuthId) -> Result<(), AuthError> {
        let secret = self.csrf_secret.get()?;
        Ok(csrf::verify(&secret, token, &user.to_string(), now())?)
    }

    /// Checks `password` (or a ticket in its place, which is how clients renew) for
    /// `username` and issues a ticket. PAM blocks, so it runs off the async workers.
    pub async fn login(
        self: Arc<Self>,
        access: &AccessConfig,
        username: &str,
        password: String,
        rhost: Option<String>,
    ) -> Result<Issued, LoginError> {
        let (user, realm) = username
            .rsplit_once('@')
            .filter(|_| super::authid::verify_username(username))
            .ok_or_else(|| LoginError::BadUser(username.to_string()))?;
        // As PVE's create_ticket: the user must exist and be enabled, however it proves itself.
        access
            .check_user_enabled(username, now())
            .map_err(|e| LoginError::Disabled(e.to_string()))?;
        if password.starts_with("PVE:") {
            let owner = self
                .verify(&password)
                .map_err(|_| LoginError::Ticket(username.into()))?;
            if !ticket::ticket_authorizes_login(&owner.to_string(), username) {
                return Err(LoginError::Ticket(username.into()));
            }
        } else {
            if let Some(factors) = &self.factors {
                let factors = factors.get().unwrap_or_else(|never| match never {});
                if factors.required(username, access) {
                    return Err(LoginError::SecondFactor(username.into()));
                }
            }
            match realm {
                "pve" => self.shadow.get()?.authenticate(user, &password)?,
                "pam" => {
                    let me = self.clone();
                    let user = user.to_string();
                    tokio::task::spawn_blocking(move || {
                        pam::authenticate(
                            &me.settings.pam_service,
                            &user,
                            &password,
                            rhost.as_deref(),
                            me.settings.pam_confdir.as_deref(),
                        )
                    })
                    .await
                    .map_err(|e| LoginError::Issue(e.to_string()))??
                }
                other => return Err(LoginError::Realm(other.into())),
            }
        }
        self.issue(username)
    }

    fn issue(&self, username: &str) -> Result<Issued, LoginError> {
        let now = now();
        if self.settings.own_keys {
            keys::rotate_if_due(&self.settings.keys, now)?;
        } else {
            let stat = |p: &PathBuf| keys::load_public_key(p).map(|k| k.map(|k| k.mtime));
            let current = stat(&self.settings.keys.public)?;
            let old = stat(&self.settings.keys.public_old)?;
            if keys::rotation_due(current, old, now) {
                return Err(LoginError::KeyDue);
            }
        }
        let key = self.private_key.get()?;
        let ticket =
            ticket::assemble(&key, username, now).map_err(|e| LoginError::Issue(e.to_string()))?;
        let secret = self.csrf_secret.get()?;
        let csrf_token =
            csrf::assemble(&secret, username, now).map_err(|e| LoginError::Issue(e.to_string()))?;
        Ok(Issued {
            username: username.to_string(),
            ticket,
            csrf_token,
        })
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
