//! `isolib token add USER@REALM!NAME [--role ROLE] [--path PATH] [--privsep 0|1]`.
//!
//! Does what `pveum user add` + `pveum user token add` + `pveum acl modify` would do, by
//! editing user.cfg and token.cfg in place: the `user:` line is added when the user does not
//! exist (enabled, no expiry), then the `token:` line, then optionally an `acl:` line with
//! propagation, and `<tokenid> <secret>` goes to token.cfg. The secret is a lowercase v4
//! UUID, as acl:`TokenConfig.pm` generate_token makes it. Lines are written in PVE's field
//! layout (acl:`AccessControl.pm` write_user_config) and every other line of user.cfg is
//! left exactly as it was.
//!
//! Placement matters because PVE reads user.cfg top to bottom (see `user_cfg.rs`): the
//! token line goes right after its user's line and existing tokens, a new user after the last
//! user or token line, and the ACL line at the end, after every role definition.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::atomic_write::write_atomically;
use super::authid::AuthId;
use super::config::AccessConfig;
use super::error::AuthError;
use super::fields::split_fields;
use super::path::{check_path, normalize_path};

/// PVE's modes: user.cfg is readable by the API group, token.cfg by root only.
const USER_CFG_MODE: u32 = 0o640;
const TOKEN_CFG_MODE: u32 = 0o600;

/// Adds the API token `tokenid` and returns its secret. With `role`, grants it on `path`
/// (propagating) to the token when `privsep`, else to the user.
///
/// Note that with `privsep` the token can never exceed its owner: a freshly created user
/// holds nothing, so its token holds nothing either until the user is granted the role too.
pub fn add_token(
    user_cfg: &Path,
    token_cfg: &Path,
    tokenid: &AuthId,
    role: Option<&str>,
    path: &str,
    privsep: bool,
) -> Result<String, AuthError> {
    let Some(name) = tokenid.token_name() else {
        return Err(AuthError::InvalidTokenId(tokenid.to_string()));
    };
    let acl_path = normalize_path(path)
        .filter(|p| check_path(p))
        .ok_or_else(|| AuthError::InvalidAclPath(path.to_string()))?;
    let user_text = read_existing(user_cfg)?;
    let token_text = read_existing(token_cfg)?;

    let current = AccessConfig::parse(&user_text, "")?;
    let user = tokenid.user();
    if current.has_token(user, name) {
        return Err(AuthError::TokenExists(tokenid.to_string()));
    }
    if let Some(role) = role.filter(|r| !current.has_role(r)) {
        return Err(AuthError::UnknownRole(role.to_string()));
    }

    let secret = uuid::Uuid::new_v4().hyphenated().to_string();
    let token_line = format!("token:{tokenid}:0:{}::\n", u8::from(privsep));
    let member = if privsep {
        tokenid.to_string()
    } else {
        user.to_string()
    };
    let grant = role.map(|role| (role, acl_path.as_str(), member.as_str()));
    let new_user_text = edit_user_cfg(&user_text, &current, user, Some(&token_line), grant);
    let new_token_text = replace_secret(&token_text, &tokenid.to_string(), &secret);

    // token.cfg first: if user.cfg then fails, a stray secret without a token line is
    // harmless and a retry replaces it; the other order would leave a token that cannot log in.
    write_atomically(token_cfg, &new_token_text, TOKEN_CFG_MODE)?;
    write_user_cfg(user_cfg, &new_user_text)?;
    Ok(secret)
}

/// `isolib user add USER@REALM [--role ROLE] [--path PATH]`: the `user:` line when missing,
/// and optionally an ACL line granting `role` on `path` (propagating). Returns whether the
/// user was new. The password, for realm `pve`, is the caller's business (shadow.cfg).
pub fn add_user(
    user_cfg: &Path,
    user: &AuthId,
    role: Option<&str>,
    path: &str,
) -> Result<bool, AuthError> {
    if user.is_token() {
        return Err(AuthError::InvalidAuthId(user.to_string()));
    }
    let acl_path = normalize_path(path)
        .filter(|p| check_path(p))
        .ok_or_else(|| AuthError::InvalidAclPath(path.to_string()))?;
    let user_text = read_existing(user_cfg)?;
    let current = AccessConfig::parse(&user_text, "")?;
    if let Some(role) = role.filter(|r| !current.has_role(r)) {
        return Err(AuthError::UnknownRole(role.to_string()));
    }
    let id = user.user();
    let created = !current.has_user(id);
    let grant = role.map(|role| (role, acl_path.as_str(), id));
    if created || grant.is_some() {
        let new_text = edit_user_cfg(&user_text, &current, id, None, grant);
        write_user_cfg(user_cfg, &new_text)?;
    }
    Ok(created)
}

/// user.cfg with `user`'s line added when missing, `token_line` after it, and an ACL line
/// `(role, path, member)` at the end, after every role definition.
fn edit_user_cfg(
    text: &str,
    current: &AccessConfig,
    user: &str,
    token_line: Option<&str>,
    grant: Option<(&str, &str, &str)>,
) -> String {
    let user_line = (!current.has_user(user)).then(|| format!("user:{user}:1:0::::::\n"));
    let mut new_text = insert_user_lines(text, user, user_line, token_line);
    if let Some((role, path, member)) = grant {
        ensure_newline(&mut new_text);
        new_text.push_str(&format!("acl:1:{path}:{member}:{role}:\n"));
    }
    new_text
}

fn write_user_cfg(path: &Path, text: &str) -> Result<(), AuthError> {
    write_atomically(path, text, existing_mode(path).unwrap_or(USER_CFG_MODE))
}

/// The file's text, or empty when it does not exist. Unlike the daemon's reader this refuses
/// non-UTF-8 content: rewriting it lossily would change lines we promise to keep.
fn read_existing(path: &Path) -> Result<String, AuthError> {
    let read_err = |source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    };
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map_err(|e| read_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(read_err(e)),
    }
}

fn existing_mode(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

fn ensure_newline(text: &mut String) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
}

/// The entry type and first field of a user.cfg line, e.g. (`user`, `a@pve`).
fn entry_of(line: &str) -> Option<(&str, &str)> {
    let fields = split_fields(line.trim());
    let kind = *fields.first()?;
    Some((kind, fields.get(1).copied().unwrap_or("")))
}

/// Inserts a new user's line after the last user or token line, and a token line after its
/// user's line and existing tokens.
fn insert_user_lines(
    text: &str,
    user: &str,
    user_line: Option<String>,
    token_line: Option<&str>,
) -> String {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let is_user_or_token = |l: &str| matches!(entry_of(l), Some(("user" | "token", _)));
    // The last `user:` line of this user is the one PVE keeps.
    let own = lines
        .iter()
        .rposition(|l| entry_of(l) == Some(("user", user)));
    let at = match own {
        Some(i) => {
            let mut at = i + 1;
            while lines
                .get(at)
                .is_some_and(|l| matches!(entry_of(l), Some(("token", _))))
            {
                at += 1;
            }
            at
        }
        None => lines
            .iter()
            .rposition(|l| is_user_or_token(l))
            .map_or(0, |i| i + 1),
    };
    if let Some(prev) = at.checked_sub(1).and_then(|i| lines.get_mut(i)) {
        ensure_newline(prev);
    }
    let new: Vec<String> = user_line
        .into_iter()
        .chain(token_line.map(str::to_string))
        .collect();
    lines.splice(at..at, new);
    lines.concat()
}

/// token.cfg with any old secret of `tokenid` dropped and the new one appended.
fn replace_secret(text: &str, tokenid: &str, secret: &str) -> String {
    let mut out: String = text
        .split_inclusive('\n')
        .filter(|l| l.split_once(' ').map(|(id, _)| id) != Some(tokenid))
        .collect();
    ensure_newline(&mut out);
    out.push_str(&format!("{tokenid} {secret}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;

    const EXISTING: &str = "\
user:root@pam:1:0:::root@example.com:::
user:alice@pve:1:0:Alice::::
token:alice@pve!old:0:1::
user:bob@pve:1:0:

group:devs:alice@pve,bob@pve::
# hand-written comment
role:Downloader:Datastore.AllocateTemplate,Sys.AccessNetwork:

acl:1:/:@devs:PVEAuditor:";

    struct Files {
        _dir: tempfile::TempDir,
        user: std::path::PathBuf,
        token: std::path::PathBuf,
    }

    fn files(user_text: Option<&str>) -> Files {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let user = dir.path().join("user.cfg");
        let token = dir.path().join("priv").join("token.cfg");
        if let Some(text) = user_text {
            fs::write(&user, text).unwrap_or_else(|e| panic!("{e}"));
        }
        Files {
            _dir: dir,
            user,
            token,
        }
    }

    fn id(s: &str) -> AuthId {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn is_lowercase_v4_uuid(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 36
            && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
            && b[14] == b'4'
            && matches!(b[19], b'8' | b'9' | b'a' | b'b')
            && b.iter().enumerate().all(|(i, c)| {
                [8, 13, 18, 23].contains(&i) || matches!(c, b'0'..=b'9' | b'a'..=b'f')
            })
    }

    #[test]
    fn round_trip_for_a_new_user() {
        let f = files(Some(EXISTING));
        let tokenid = id("packer@pve!build");
        let secret = add_token(
            &f.user,
            &f.token,
            &tokenid,
            Some("Downloader"),
            "/nodes/pve1/",
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(is_lowercase_v4_uuid(&secret), "{secret}");

        let text = read(&f.user);
        assert_eq!(
            text,
            "\
user:root@pam:1:0:::root@example.com:::
user:alice@pve:1:0:Alice::::
token:alice@pve!old:0:1::
user:bob@pve:1:0:
user:packer@pve:1:0::::::
token:packer@pve!build:0:0::

group:devs:alice@pve,bob@pve::
# hand-written comment
role:Downloader:Datastore.AllocateTemplate,Sys.AccessNetwork:

acl:1:/:@devs:PVEAuditor:
acl:1:/nodes/pve1:packer@pve:Downloader:
"
        );
        assert_eq!(read(&f.token), format!("packer@pve!build {secret}\n"));

        let cfg =
            AccessConfig::load(Some(&f.user), Some(&f.token)).unwrap_or_else(|e| panic!("{e}"));
        let who = cfg
            .verify_api_token(&format!("packer@pve!build={secret}"), NOW)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(who, tokenid);
        // Without privsep the token acts as the user, who got the role.
        assert!(cfg.check(&who, "/nodes/pve1", &["Sys.AccessNetwork"], false));
        // The other entries still parse as before.
        assert!(cfg.check(&id("bob@pve"), "/", &["Sys.Audit"], false));
    }

    #[test]
    fn privsep_grants_to_the_token_and_existing_user_keeps_its_line() {
        let f = files(Some(EXISTING));
        let tokenid = id("alice@pve!ci");
        let secret = add_token(
            &f.user,
            &f.token,
            &tokenid,
            Some("PVEDatastoreUser"),
            "/storage",
            true,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let text = read(&f.user);
        assert!(text.contains("token:alice@pve!old:0:1::\ntoken:alice@pve!ci:0:1::\nuser:bob@pve"));
        assert_eq!(text.matches("user:alice@pve").count(), 1);
        assert!(text.ends_with("acl:1:/storage:alice@pve!ci:PVEDatastoreUser:\n"));

        let cfg =
            AccessConfig::load(Some(&f.user), Some(&f.token)).unwrap_or_else(|e| panic!("{e}"));
        let who = cfg
            .verify_api_token(&format!("alice@pve!ci={secret}"), NOW)
            .unwrap_or_else(|e| panic!("{e}"));
        // Token holds PVEDatastoreUser on /storage, but alice only PVEAuditor on /:
        // the intersection is Datastore.Audit.
        let privs: Vec<String> = cfg.privileges(&who, "/storage/local").into_iter().collect();
        assert_eq!(privs, ["Datastore.Audit"]);
    }

    #[test]
    fn creates_missing_files_with_pve_modes() {
        let f = files(None);
        let secret = add_token(&f.user, &f.token, &id("ci@pve!t1"), None, "/", true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read(&f.user),
            "user:ci@pve:1:0::::::\ntoken:ci@pve!t1:0:1::\n"
        );
        assert_eq!(read(&f.token), format!("ci@pve!t1 {secret}\n"));
        assert_eq!(existing_mode(&f.token), Some(0o600));
        assert_eq!(existing_mode(&f.user), Some(0o640));
    }

    #[test]
    fn implicit_root_gets_no_user_line_and_stale_secret_is_replaced() {
        let f = files(Some("user:alice@pve:1:0:\n"));
        fs::create_dir_all(f.token.parent().unwrap_or(Path::new("/")))
            .unwrap_or_else(|e| panic!("{e}"));
        fs::write(&f.token, "root@pam!auto stale\nalice@pve!x1 keep")
            .unwrap_or_else(|e| panic!("{e}"));
        let secret = add_token(&f.user, &f.token, &id("root@pam!auto"), None, "/", false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read(&f.user),
            "user:alice@pve:1:0:\ntoken:root@pam!auto:0:0::\n"
        );
        assert_eq!(
            read(&f.token),
            format!("alice@pve!x1 keep\nroot@pam!auto {secret}\n")
        );
    }

    #[test]
    fn refusals_leave_the_files_alone() {
        let f = files(Some(EXISTING));
        let cases: [(&str, Option<&str>, &str, &str); 4] = [
            (
                "alice@pve!old",
                None,
                "/",
                "token 'alice@pve!old' already exists",
            ),
            (
                "alice@pve!new",
                Some("NoSuchRole"),
                "/",
                "role 'NoSuchRole' does not exist",
            ),
            (
                "alice@pve!new",
                Some("PVEAuditor"),
                "/bogus/path",
                "invalid ACL path '/bogus/path'",
            ),
            (
                "alice@pve",
                None,
                "/",
                "'alice@pve' is not a valid token ID",
            ),
        ];
        for (tokenid, role, path, message) in cases {
            let err = add_token(&f.user, &f.token, &id(tokenid), role, path, true)
                .err()
                .map(|e| e.to_string());
            assert_eq!(err.as_deref(), Some(message));
        }
        assert_eq!(read(&f.user), EXISTING);
        assert!(!f.token.exists());
    }

    #[test]
    fn two_tokens_get_different_secrets() {
        let f = files(None);
        let a = add_token(&f.user, &f.token, &id("ci@pve!t1"), None, "/", true);
        let b = add_token(&f.user, &f.token, &id("ci@pve!t2"), None, "/", true);
        assert!(matches!((&a, &b), (Ok(x), Ok(y)) if x != y));
        let cfg =
            AccessConfig::load(Some(&f.user), Some(&f.token)).unwrap_or_else(|e| panic!("{e}"));
        for (name, secret) in [("t1", a), ("t2", b)] {
            let value = format!("ci@pve!{name}={}", secret.unwrap_or_default());
            assert!(cfg.verify_api_token(&value, NOW).is_ok(), "{value}");
        }
    }
}
