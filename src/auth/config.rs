//! `AccessConfig`: user.cfg and token.cfg together, and the questions the rest of isolib
//! asks them: is this API token valid (acl:`AccessControl.pm` verify_token), is this user
//! usable (check_user_enabled), what may this auth id do where (acl:`RPCEnvironment.pm`
//! permissions(), check(), check_any()).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::authid::{AuthId, split_tokenid, verify_username};
use super::error::AuthError;
use super::fields::expired;
use super::permissions::effective_privileges;
use super::token_cfg::{self, secrets_match};
use super::user_cfg::UserConfig;

pub struct AccessConfig {
    users: UserConfig,
    /// tokenid → secret, from token.cfg
    secrets: BTreeMap<String, String>,
}

impl AccessConfig {
    /// Parses both files. Like PVE, a line that does not fit is logged and skipped; nothing
    /// in the text itself is fatal.
    pub fn parse(user_cfg: &str, token_cfg: &str) -> Result<Self, AuthError> {
        Ok(AccessConfig {
            users: UserConfig::parse(user_cfg),
            secrets: token_cfg::parse(token_cfg),
        })
    }

    /// Reads and parses the files; a missing file (or `None`) reads as empty.
    pub fn load(user_cfg: Option<&Path>, token_cfg: Option<&Path>) -> Result<Self, AuthError> {
        Self::parse(&read_optional(user_cfg)?, &read_optional(token_cfg)?)
    }

    /// Checks an API token credential, `user@realm!name=secret`, split at the last `=`.
    /// Returns the token's id, which is who the request then runs as.
    pub fn verify_api_token(&self, value: &str, now: i64) -> Result<AuthId, AuthError> {
        if value.is_empty() {
            return Err(AuthError::NoToken);
        }
        let (tokenid, secret) = value.rsplit_once('=').ok_or(AuthError::NoTokenId)?;
        let Some((userid, name)) = split_tokenid(tokenid) else {
            return Err(AuthError::InvalidTokenId(tokenid.to_string()));
        };
        self.check_user_enabled(userid, now)?;
        let token = self
            .users
            .token(userid, name)
            .ok_or_else(|| AuthError::NoSuchToken {
                user: userid.to_string(),
                token: name.to_string(),
            })?;
        if expired(token.expire, now) {
            return Err(AuthError::TokenExpired(name.to_string()));
        }
        // A token listed in user.cfg without a secret in token.cfg cannot log in.
        let valid = self
            .secrets
            .get(tokenid)
            .is_some_and(|stored| secrets_match(stored, secret));
        if !valid {
            return Err(AuthError::InvalidTokenValue);
        }
        tokenid.parse()
    }

    /// The user exists, is enabled and has not expired.
    pub fn user_exists_and_enabled(&self, user: &str, now: i64) -> bool {
        self.check_user_enabled(user, now).is_ok()
    }

    /// Whether user.cfg gives the user second-factor keys of PVE's older kind.
    pub fn has_tfa_keys(&self, user: &str) -> bool {
        self.users.users.get(user).is_some_and(|u| u.tfa_keys)
    }

    /// Effective privileges of `who` on the ACL path `path`.
    pub fn privileges(&self, who: &AuthId, path: &str) -> BTreeSet<String> {
        effective_privileges(&self.users, who, path)
    }

    /// PVE's `['perm', path, privs]` (all of them) or `['perm', path, privs, any => 1]`.
    /// `root@pam` passes every check, as in check_api2_permissions. An unknown privilege
    /// name is simply not held (PVE would fail the request with an internal error).
    pub fn check(&self, who: &AuthId, path: &str, privs: &[&str], any: bool) -> bool {
        if who.is_root() {
            return true;
        }
        let have = self.privileges(who, path);
        if any {
            privs.iter().any(|p| have.contains(*p))
        } else {
            privs.iter().all(|p| have.contains(*p))
        }
    }

    /// Every role user.cfg defines, built-in ones included.
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.users.roles.keys().map(String::as_str)
    }

    pub(crate) fn has_role(&self, role: &str) -> bool {
        self.users.roles.contains_key(role)
    }

    pub(crate) fn has_user(&self, user: &str) -> bool {
        self.users.users.contains_key(user)
    }

    pub(crate) fn has_token(&self, user: &str, name: &str) -> bool {
        self.users.token(user, name).is_some()
    }

    /// acl:`AccessControl.pm` check_user_enabled: exists, then enabled, then not expired.
    pub fn check_user_enabled(&self, user: &str, now: i64) -> Result<(), AuthError> {
        let data = verify_username(user)
            .then(|| self.users.users.get(user))
            .flatten()
            .ok_or_else(|| AuthError::NoSuchUser(user.to_string()))?;
        if !data.enable {
            return Err(AuthError::UserDisabled(user.to_string()));
        }
        if expired(data.expire, now) {
            return Err(AuthError::UserExpired(user.to_string()));
        }
        Ok(())
    }
}

// Written by hand so that a `{:?}` in a log line never prints token secrets.
impl std::fmt::Debug for AccessConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessConfig")
            .field("users", &self.users)
            .field(
                "secrets",
                &format_args!("<{} redacted>", self.secrets.len()),
            )
            .finish()
    }
}

fn read_optional(path: Option<&Path>) -> Result<String, AuthError> {
    let Some(path) = path else {
        return Ok(String::new());
    };
    match std::fs::read(path) {
        // PVE reads the raw bytes; stray non-UTF-8 bytes only ever sit in free-text fields.
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(AuthError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;
    const SECRET: &str = "0b5c1d0e-9a8b-4c7d-8e6f-5a4b3c2d1e0f";

    const USERS: &str = "\
user:ci@pve:1:0:
token:ci@pve!build:0:1:
token:ci@pve!stale:1700000000:1:
token:ci@pve!nosecret:0:1:
user:off@pve:0:0:
token:off@pve!t1:0:0:
user:gone@pve:1:1700000000:
token:gone@pve!t1:0:0:
token:root@pam!auto:0:1:
role:Downloader:Datastore.AllocateTemplate,Sys.AccessNetwork:
acl:1:/storage/iso:ci@pve:PVEDatastoreAdmin:
acl:1:/nodes/pve1:ci@pve:Downloader:
acl:1:/:ci@pve!build:Downloader,PVEDatastoreUser:
acl:1:/:root@pam!auto:PVEAuditor:
";

    fn tokens() -> String {
        format!(
            "ci@pve!build {SECRET}\nci@pve!stale {SECRET}\noff@pve!t1 {SECRET}\n\
             gone@pve!t1 {SECRET}\nroot@pam!auto {SECRET}\n"
        )
    }

    fn cfg() -> AccessConfig {
        AccessConfig::parse(USERS, &tokens()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn id(s: &str) -> AuthId {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn verify(value: &str) -> Result<AuthId, String> {
        cfg()
            .verify_api_token(value, NOW)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn valid_token_returns_its_id() {
        assert_eq!(
            verify(&format!("ci@pve!build={SECRET}")),
            Ok(id("ci@pve!build"))
        );
    }

    #[test]
    fn splits_at_the_last_equals_sign() {
        // Everything before the last '=' is the token id; here that id is invalid.
        assert_eq!(
            verify(&format!("ci@pve!build={SECRET}=")),
            Err(format!("'ci@pve!build={SECRET}' is not a valid token ID"))
        );
        assert_eq!(
            verify("ci@pve!build="),
            Err("invalid token value!".to_string())
        );
    }

    #[test]
    fn rejections_with_pve_messages() {
        let cases = [
            (String::new(), "no API token specified"),
            (format!("ci@pve!build:{SECRET}"), "no tokenid specified"),
            (
                format!("ci@pve={SECRET}"),
                "'ci@pve' is not a valid token ID",
            ),
            (
                format!("nobody@pve!t1={SECRET}"),
                "no such user ('nobody@pve')",
            ),
            (format!("off@pve!t1={SECRET}"), "user 'off@pve' is disabled"),
            (
                format!("gone@pve!t1={SECRET}"),
                "user 'gone@pve' access expired",
            ),
            (
                format!("ci@pve!other={SECRET}"),
                "no such token 'other' for user 'ci@pve'",
            ),
            (
                format!("ci@pve!stale={SECRET}"),
                "token 'stale' access expired",
            ),
            (format!("ci@pve!nosecret={SECRET}"), "invalid token value!"),
            (
                "ci@pve!build=0b5c1d0e-9a8b-4c7d-8e6f-5a4b3c2d1e0e".to_string(),
                "invalid token value!",
            ),
        ];
        for (value, message) in cases {
            assert_eq!(verify(&value), Err(message.to_string()), "{value}");
        }
    }

    #[test]
    fn expiry_second_itself_is_still_valid() {
        let cfg = cfg();
        let value = format!("ci@pve!stale={SECRET}");
        assert!(cfg.verify_api_token(&value, 1_700_000_000).is_ok());
        assert!(cfg.verify_api_token(&value, 1_700_000_001).is_err());
    }

    #[test]
    fn user_enabled_checks() {
        let cfg = cfg();
        assert!(cfg.user_exists_and_enabled("ci@pve", NOW));
        assert!(cfg.user_exists_and_enabled("root@pam", NOW));
        assert!(!cfg.user_exists_and_enabled("off@pve", NOW));
        assert!(!cfg.user_exists_and_enabled("gone@pve", NOW));
        assert!(cfg.user_exists_and_enabled("gone@pve", 1_600_000_000));
        assert!(!cfg.user_exists_and_enabled("nobody@pve", NOW));
        assert!(!cfg.user_exists_and_enabled("ci@pve!build", NOW));
    }

    /// The download-url check of spec §1.2:
    /// `and(perm(/storage/{s}, [Datastore.AllocateTemplate]),
    ///      or(perm(/, [Sys.Audit, Sys.Modify]), perm(/nodes/{n}, [Sys.AccessNetwork])))`.
    fn may_download(cfg: &AccessConfig, who: &AuthId, storage: &str, node: &str) -> bool {
        cfg.check(
            who,
            &format!("/storage/{storage}"),
            &["Datastore.AllocateTemplate"],
            false,
        ) && (cfg.check(who, "/", &["Sys.Audit", "Sys.Modify"], false)
            || cfg.check(
                who,
                &format!("/nodes/{node}"),
                &["Sys.AccessNetwork"],
                false,
            ))
    }

    #[test]
    fn download_url_permission_shape() {
        let text = "\
user:net@pve:1:0:
user:sys@pve:1:0:
user:half@pve:1:0:
user:store@pve:1:0:
role:Net:Sys.AccessNetwork:
role:SysBoth:Sys.Audit,Sys.Modify:
role:SysAuditOnly:Sys.Audit:
acl:1:/storage:net@pve,sys@pve,half@pve,store@pve:PVEDatastoreAdmin:
acl:1:/nodes/pve1:net@pve:Net:
acl:0:/:sys@pve:SysBoth:
acl:1:/:half@pve:SysAuditOnly:
";
        let cfg = AccessConfig::parse(text, "").unwrap_or_else(|e| panic!("{e}"));
        assert!(may_download(&cfg, &id("net@pve"), "local", "pve1"));
        assert!(!may_download(&cfg, &id("net@pve"), "local", "pve2"));
        assert!(may_download(&cfg, &id("sys@pve"), "local", "pve2"));
        // Sys.Audit alone on / is not enough: both privileges are needed.
        assert!(!may_download(&cfg, &id("half@pve"), "local", "pve1"));
        // Datastore.AllocateTemplate without any of the Sys.* branches is not enough.
        assert!(!may_download(&cfg, &id("store@pve"), "local", "pve1"));
        assert!(may_download(&cfg, &id("root@pam"), "local", "pve1"));
        // `any` turns the half case around.
        assert!(cfg.check(&id("half@pve"), "/", &["Sys.Audit", "Sys.Modify"], true));
    }

    #[test]
    fn privsep_token_is_limited_by_its_owner() {
        let cfg = cfg();
        let token = id("ci@pve!build");
        // Token: Downloader + PVEDatastoreUser on /. Owner: PVEDatastoreAdmin on
        // /storage/iso and Downloader on /nodes/pve1.
        assert!(may_download(&cfg, &token, "iso", "pve1"));
        assert!(!may_download(&cfg, &token, "iso", "pve2"));
        assert!(!may_download(&cfg, &token, "local", "pve1"));
        let on_iso: Vec<String> = cfg.privileges(&token, "/storage/iso").into_iter().collect();
        assert_eq!(
            on_iso,
            [
                "Datastore.AllocateSpace",
                "Datastore.AllocateTemplate",
                "Datastore.Audit"
            ]
        );
    }

    #[test]
    fn root_and_root_tokens() {
        let cfg = cfg();
        assert!(cfg.check(
            &id("root@pam"),
            "/anything",
            &["Sys.AccessNetwork", "Bogus"],
            false
        ));
        // root's privsep token: its own grants (PVEAuditor), intersected with everything.
        let token = id("root@pam!auto");
        assert!(cfg.check(&token, "/", &["Sys.Audit"], false));
        assert!(!cfg.check(&token, "/", &["Sys.Modify"], false));
    }

    #[test]
    fn check_all_any_and_empty_lists() {
        let cfg = cfg();
        let ci = id("ci@pve");
        assert!(cfg.check(&ci, "/storage/iso", &[], false));
        assert!(!cfg.check(&ci, "/storage/iso", &[], true));
        assert!(!cfg.check(
            &ci,
            "/storage/iso",
            &["Datastore.Audit", "Sys.Modify"],
            false
        ));
        assert!(cfg.check(
            &ci,
            "/storage/iso",
            &["Datastore.Audit", "Sys.Modify"],
            true
        ));
        assert!(!cfg.check(&ci, "/storage/iso", &["Not.A.Privilege"], true));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let shown = format!("{:?}", cfg());
        assert!(!shown.contains(SECRET));
        assert!(shown.contains("<5 redacted>"));
    }

    #[test]
    fn load_treats_missing_files_as_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cfg = AccessConfig::load(Some(&dir.path().join("user.cfg")), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.user_exists_and_enabled("root@pam", NOW));
        assert!(cfg.role_names().any(|r| r == "PVEAuditor"));
        // A directory is not a readable file.
        let err = AccessConfig::load(Some(dir.path()), None).err();
        assert!(matches!(err, Some(AuthError::Read { .. })));
    }
}
