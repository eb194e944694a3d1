//! The key files behind tickets and CSRF tokens, in PVE's locations and formats, so a node's
//! files and ours are interchangeable.
//!
//! * `authkey.key`: RSA 2048 private key, PEM. PVE's rotation writes PKCS#1 (`BEGIN RSA
//!   PRIVATE KEY`, Crypt::OpenSSL::RSA get_private_key_string); the very first key comes from
//!   `openssl genrsa` (PKCS#8 on OpenSSL 3). Both load.
//! * `authkey.pub` / `authkey.pub.old`: the public key as SubjectPublicKeyInfo PEM (`BEGIN
//!   PUBLIC KEY`, get_public_key_x509_string); PKCS#1 `BEGIN RSA PUBLIC KEY` also loads, as in
//!   Crypt::OpenSSL::RSA new_public_key. Their mtimes matter: see `ticket::age_window`.
//! * `pve-www.key`: an RSA 2048 private key whose bytes only feed the CSRF secret.
//!
//! Node paths (acl:`AccessControl.pm` `$pve_auth_key_files`, `$pve_www_key_fn`;
//! cluster:`Cluster/Setup.pm` gen_auth_key, gen_pve_www_key): `/etc/pve/priv/authkey.key`,
//! `/etc/pve/authkey.pub`, `/etc/pve/authkey.pub.old`, `/etc/pve/pve-www.key` (not under
//! `priv/`).
//!
//! Rotation follows acl:`AccessControl.pm` check_authkey / rotate_authkey. PVE does it under
//! the cluster-wide `authkey` lock of pmxcfs; [`rotate_if_due`] takes no lock and is meant for
//! standalone mode, where this process is the only writer.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;

use super::atomic_write::write_atomically;
use super::csrf::{CsrfError, CsrfSecret};
use super::error::AuthError;
use super::ticket::{AUTH_GRACE_PERIOD, AUTHKEY_LIFETIME, TICKET_LIFETIME, VerifyKey, VerifyKeys};

/// PVE's key size for both files (`generate_key(2048)`, `openssl genrsa ... 2048`).
pub const RSA_BITS: u32 = 2048;

const PRIVATE_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("unable to read '{path}': {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unable to parse key '{path}': {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: openssl::error::ErrorStack,
    },
    #[error("'{0}' holds no PEM key")]
    NotPem(PathBuf),
    #[error("unable to generate key: {0}")]
    Generate(#[source] openssl::error::ErrorStack),
    #[error(transparent)]
    Write(#[from] AuthError),
    #[error(transparent)]
    Csrf(#[from] CsrfError),
}

/// Where the four files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPaths {
    pub private: PathBuf,
    pub public: PathBuf,
    pub public_old: PathBuf,
    pub www: PathBuf,
}

impl KeyPaths {
    /// A PVE node's files under its configuration directory (`/etc/pve`).
    pub fn in_pve_dir(pve: &Path) -> Self {
        KeyPaths {
            private: pve.join("priv/authkey.key"),
            public: pve.join("authkey.pub"),
            public_old: pve.join("authkey.pub.old"),
            www: pve.join("pve-www.key"),
        }
    }

    /// All four files directly in `dir` (standalone mode).
    pub fn standalone(dir: &Path) -> Self {
        KeyPaths {
            private: dir.join("authkey.key"),
            public: dir.join("authkey.pub"),
            public_old: dir.join("authkey.pub.old"),
            www: dir.join("pve-www.key"),
        }
    }
}

/// Creates whatever is missing: `pve-www.key`, and a fresh key pair when `authkey.key` or
/// `authkey.pub` is absent (a lone half of a pair is useless). Returns whether it wrote
/// anything.
pub fn ensure_keys(paths: &KeyPaths) -> Result<bool, KeyError> {
    let mut wrote = false;
    if !exists(&paths.www)? {
        let pem = PKey::from_rsa(generate_rsa()?)
            .and_then(|key| key.private_key_to_pem_pkcs8())
            .map_err(KeyError::Generate)?;
        write_atomically(&paths.www, &pem_text(pem), PRIVATE_MODE)?;
        tracing::info!(path = %paths.www.display(), "created CSRF key");
        wrote = true;
    }
    if !exists(&paths.private)? || !exists(&paths.public)? {
        write_new_pair(paths)?;
        tracing::info!(path = %paths.private.display(), "created ticket key pair");
        wrote = true;
    }
    Ok(wrote)
}

/// check_authkey: whether the pair must be replaced at `now`, given the mtimes of
/// `authkey.pub` and `authkey.pub.old`. Due when the public key is missing, 24 h old, or dated
/// more than the grace period into the future, unless (in that last case) an old key exists
/// that is at most `TICKET_LIFETIME` older, which means another node's clock is ahead and a
/// rotation would only throw away valid tickets.
pub fn rotation_due(current_mtime: Option<i64>, old_mtime: Option<i64>, now: i64) -> bool {
    let Some(mtime) = current_mtime else {
        return true;
    };
    if now.saturating_sub(mtime) >= AUTHKEY_LIFETIME {
        return true;
    }
    if mtime > now.saturating_add(AUTH_GRACE_PERIOD) {
        let recent_old = old_mtime
            .filter(|&old| old != 0)
            .is_some_and(|old| mtime >= old && mtime - old < TICKET_LIFETIME);
        return !recent_old;
    }
    false
}

/// rotate_authkey: if [`rotation_due`], moves the current public key to `authkey.pub.old` and
/// writes a new pair (old, public, private, in PVE's order). Returns whether it rotated.
pub fn rotate_if_due(paths: &KeyPaths, now: i64) -> Result<bool, KeyError> {
    let current = match load_public_key(&paths.public) {
        Ok(current) => current,
        // PVE treats an unreadable key as a missing one and replaces it.
        Err(e @ (KeyError::Parse { .. } | KeyError::NotPem(_))) => {
            tracing::warn!("{e}, replacing the key pair");
            None
        }
        Err(e) => return Err(e),
    };
    let old_mtime = file_mtime(&paths.public_old)?;
    if !rotation_due(current.as_ref().map(|k| k.mtime), old_mtime, now) {
        return Ok(false);
    }
    if let Some(current) = current {
        let pem = current
            .key
            .public_key_to_pem()
            .map_err(KeyError::Generate)?;
        // The mtime of this write is the rotation time the old key's age window counts from.
        write_atomically(&paths.public_old, &pem_text(pem), PUBLIC_MODE)?;
    }
    write_new_pair(paths)?;
    tracing::info!(path = %paths.public.display(), "rotated ticket key pair");
    Ok(true)
}

/// Loads `authkey.key`.
pub fn load_private_key(path: &Path) -> Result<PKey<Private>, KeyError> {
    let pem = read(path)?.ok_or_else(|| KeyError::Read {
        path: path.to_path_buf(),
        source: io::Error::from(io::ErrorKind::NotFound),
    })?;
    PKey::private_key_from_pem(&pem).map_err(|source| KeyError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads a public key and its file's mtime; `None` if the file does not exist.
pub fn load_public_key(path: &Path) -> Result<Option<VerifyKey>, KeyError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let read_err = |source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    // The mtime of the file we read, as PVE stats the open handle.
    let mtime = file.metadata().map_err(read_err)?.mtime();
    let mut pem = Vec::new();
    (&file).read_to_end(&mut pem).map_err(read_err)?;
    let parse_err = |source| KeyError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let key = if pem.starts_with(b"-----BEGIN RSA PUBLIC KEY-----") {
        Rsa::public_key_from_pem_pkcs1(&pem)
            .and_then(PKey::from_rsa)
            .map_err(parse_err)?
    } else if pem.starts_with(b"-----BEGIN PUBLIC KEY-----") {
        PKey::public_key_from_pem(&pem).map_err(parse_err)?
    } else {
        return Err(KeyError::NotPem(path.to_path_buf()));
    };
    Ok(Some(VerifyKey { key, mtime }))
}

/// `authkey.pub` and `authkey.pub.old` as [`VerifyKeys`] (quorate).
pub fn load_verify_keys(paths: &KeyPaths) -> Result<VerifyKeys, KeyError> {
    Ok(VerifyKeys::new(
        load_public_key(&paths.public)?,
        load_public_key(&paths.public_old)?,
    ))
}

/// Reads `pve-www.key` and derives the CSRF secret from it.
pub fn load_csrf_secret(path: &Path) -> Result<CsrfSecret, KeyError> {
    let contents = read(path)?.ok_or_else(|| KeyError::Read {
        path: path.to_path_buf(),
        source: io::Error::from(io::ErrorKind::NotFound),
    })?;
    Ok(CsrfSecret::from_key_file(&contents)?)
}

fn generate_rsa() -> Result<Rsa<Private>, KeyError> {
    Rsa::generate(RSA_BITS).map_err(KeyError::Generate)
}

/// Public key first, then private, as rotate_authkey does: a reader that sees the new public
/// key with the old private key only fails to verify tickets signed in that instant.
fn write_new_pair(paths: &KeyPaths) -> Result<(), KeyError> {
    let rsa = generate_rsa()?;
    let private_pem = rsa.private_key_to_pem().map_err(KeyError::Generate)?;
    let public_pem = PKey::from_rsa(rsa)
        .and_then(|key| key.public_key_to_pem())
        .map_err(KeyError::Generate)?;
    write_atomically(&paths.public, &pem_text(public_pem), PUBLIC_MODE)?;
    write_atomically(&paths.private, &pem_text(private_pem), PRIVATE_MODE)?;
    Ok(())
}

/// PEM output of OpenSSL is ASCII.
fn pem_text(pem: Vec<u8>) -> String {
    String::from_utf8_lossy(&pem).into_owned()
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    match std::fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn exists(path: &Path) -> Result<bool, KeyError> {
    Ok(file_mtime(path)?.is_some())
}

fn file_mtime(path: &Path) -> Result<Option<i64>, KeyError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.mtime())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{csrf, ticket};
    use std::os::unix::fs::PermissionsExt;

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn content(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn node_paths_are_pves() {
        let p = KeyPaths::in_pve_dir(Path::new("/etc/pve"));
        assert_eq!(p.private, Path::new("/etc/pve/priv/authkey.key"));
        assert_eq!(p.public, Path::new("/etc/pve/authkey.pub"));
        assert_eq!(p.public_old, Path::new("/etc/pve/authkey.pub.old"));
        assert_eq!(p.www, Path::new("/etc/pve/pve-www.key"));
    }

    #[test]
    fn ensure_creates_pve_formats_once_and_they_work_together() {
        let dir = tempdir();
        let paths = KeyPaths::standalone(&dir.path().join("keys"));
        assert!(ensure_keys(&paths).unwrap_or_else(|e| panic!("{e}")));
        assert!(content(&paths.private).starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(content(&paths.public).starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(content(&paths.www).starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(mode(&paths.private), 0o600);
        assert_eq!(mode(&paths.www), 0o600);
        assert_eq!(mode(&paths.public), 0o644);
        assert!(!paths.public_old.exists());

        let before = (content(&paths.private), content(&paths.www));
        assert!(!ensure_keys(&paths).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!((content(&paths.private), content(&paths.www)), before);

        let private = load_private_key(&paths.private).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(private.bits(), RSA_BITS);
        let keys = load_verify_keys(&paths).unwrap_or_else(|e| panic!("{e}"));
        assert!(keys.old.is_none());
        let t = now();
        let issued = ticket::assemble(&private, "root@pam", t).unwrap_or_else(|e| panic!("{e}"));
        let verified = ticket::verify(&keys, &issued, t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verified.userid, "root@pam");

        let secret = load_csrf_secret(&paths.www).unwrap_or_else(|e| panic!("{e}"));
        let token = csrf::assemble(&secret, "root@pam", t).unwrap_or_else(|e| panic!("{e}"));
        assert!(csrf::verify(&secret, &token, "root@pam", t).is_ok());
    }

    #[test]
    fn ensure_replaces_a_lone_half_of_the_pair() {
        let dir = tempdir();
        let paths = KeyPaths::standalone(dir.path());
        assert!(ensure_keys(&paths).unwrap_or_else(|e| panic!("{e}")));
        let www = content(&paths.www);
        let public = content(&paths.public);
        std::fs::remove_file(&paths.private).unwrap_or_else(|e| panic!("{e}"));
        assert!(ensure_keys(&paths).unwrap_or_else(|e| panic!("{e}")));
        assert_ne!(content(&paths.public), public);
        assert_eq!(content(&paths.www), www);
        assert!(paths.private.exists());
    }

    #[test]
    fn loads_both_public_key_encodings_and_reports_missing_or_bad_files() {
        let dir = tempdir();
        let rsa = Rsa::generate(1024).unwrap_or_else(|e| panic!("{e}"));
        let pkcs1 = dir.path().join("pkcs1.pub");
        std::fs::write(
            &pkcs1,
            rsa.public_key_to_pem_pkcs1()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let spki = dir.path().join("spki.pub");
        std::fs::write(
            &spki,
            rsa.public_key_to_pem().unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        for path in [&pkcs1, &spki] {
            let key = load_public_key(path)
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("missing"));
            assert_eq!(key.key.bits(), 1024);
            assert_eq!(
                Some(key.mtime),
                file_mtime(path).unwrap_or_else(|e| panic!("{e}"))
            );
        }
        assert!(
            load_public_key(&dir.path().join("none"))
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        let junk = dir.path().join("junk.pub");
        std::fs::write(&junk, "junk").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(load_public_key(&junk), Err(KeyError::NotPem(_))));
        let broken = dir.path().join("broken.pub");
        std::fs::write(
            &broken,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            load_public_key(&broken),
            Err(KeyError::Parse { .. })
        ));
        let err = load_private_key(&dir.path().join("none")).err();
        assert!(err.is_some_and(|e| e.to_string().contains("none")));
    }

    #[test]
    fn loads_a_pkcs8_private_key_like_openssl_genrsa_writes() {
        let dir = tempdir();
        let path = dir.path().join("authkey.key");
        let key = PKey::from_rsa(Rsa::generate(1024).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            &path,
            key.private_key_to_pem_pkcs8()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let loaded = load_private_key(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.public_eq(&key));
    }

    #[test]
    fn rotation_due_follows_check_authkey() {
        let now = 1_700_000_000;
        assert!(rotation_due(None, None, now));
        assert!(!rotation_due(Some(now - AUTHKEY_LIFETIME + 1), None, now));
        assert!(rotation_due(Some(now - AUTHKEY_LIFETIME), None, now));
        assert!(!rotation_due(Some(now + AUTH_GRACE_PERIOD), None, now));
        assert!(rotation_due(Some(now + AUTH_GRACE_PERIOD + 1), None, now));
        let future = now + 1000;
        assert!(!rotation_due(
            Some(future),
            Some(future - TICKET_LIFETIME + 1),
            now
        ));
        assert!(rotation_due(
            Some(future),
            Some(future - TICKET_LIFETIME),
            now
        ));
        assert!(rotation_due(Some(future), Some(future + 1), now));
    }

    #[test]
    fn rotation_keeps_the_old_public_key_and_old_tickets_stay_valid() {
        let dir = tempdir();
        let paths = KeyPaths::standalone(dir.path());
        ensure_keys(&paths).unwrap_or_else(|e| panic!("{e}"));
        let t = now();
        assert!(!rotate_if_due(&paths, t).unwrap_or_else(|e| panic!("{e}")));

        let old_private = load_private_key(&paths.private).unwrap_or_else(|e| panic!("{e}"));
        let old_public = content(&paths.public);
        let issued =
            ticket::assemble(&old_private, "alice@pve", t).unwrap_or_else(|e| panic!("{e}"));

        // Pretend a day has passed: due, and the old key moves aside.
        let later = t + AUTHKEY_LIFETIME;
        assert!(rotate_if_due(&paths, later).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(content(&paths.public_old), old_public);
        assert_ne!(content(&paths.public), old_public);
        let new_private = load_private_key(&paths.private).unwrap_or_else(|e| panic!("{e}"));
        assert!(!new_private.public_eq(&old_private));

        let keys = load_verify_keys(&paths).unwrap_or_else(|e| panic!("{e}"));
        let verified = ticket::verify(&keys, &issued, t + 60).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verified.userid, "alice@pve");
        let fresh =
            ticket::assemble(&new_private, "bob@pve", t + 60).unwrap_or_else(|e| panic!("{e}"));
        assert!(ticket::verify(&keys, &fresh, t + 60).is_ok());
    }

    #[test]
    fn rotation_replaces_an_unparsable_public_key() {
        let dir = tempdir();
        let paths = KeyPaths::standalone(dir.path());
        ensure_keys(&paths).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&paths.public, "garbage").unwrap_or_else(|e| panic!("{e}"));
        assert!(rotate_if_due(&paths, now()).unwrap_or_else(|e| panic!("{e}")));
        assert!(!paths.public_old.exists());
        let private = load_private_key(&paths.private).unwrap_or_else(|e| panic!("{e}"));
        let public = load_public_key(&paths.public)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("missing"));
        assert!(private.public_eq(&public.key));
    }
}
