//! `priv/shadow.cfg`: the password hashes of realm `pve` (acl:`Auth/PVE.pm`).
//!
//! Format (parse_shadow_passwd / write_shadow_config): one `<user>:<crypt hash>:` per line,
//! keyed by the user name *without* `@pve` (PVE passes the realm-less `ruid` to the realm
//! plugin). Every line is trimmed; a line must match `^\S+:\S+:$`, otherwise it is ignored
//! with a warning; the first two `:`-separated fields are user and hash; a later line for the
//! same user wins.
//!
//! Checking (authenticate_user) is `crypt(utf8(password), stored) eq stored`: SHA-256-crypt
//! (`$5$`, what PVE writes), SHA-512-crypt (`$6$`) and MD5-crypt (`$1$`) are supported here.
//! New hashes are written like common:`Tools.pm` encrypt_pw: `$5$<8 salt chars>$<hash>` with
//! the default 5000 rounds, the salt being base64 characters with `+` replaced by `X`.

use crate::pve::perl;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use base64ct::{Base64ShaCrypt, Encoding};
use md5::{Digest, Md5};
use sha_crypt::{CustomizedPasswordHasher, Params, PasswordVerifier, ShaCrypt};

use super::atomic_write::write_atomically;
use super::error::AuthError;

const FILE_MODE: u32 = 0o600;
const SALT_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShadowError {
    /// acl:`Auth/PVE.pm` authenticate_user's texts; on the wire all of them become
    /// `401 authentication failure`.
    #[error("no password")]
    NoPassword,
    #[error("no password set")]
    NoPasswordSet,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("unsupported password hash for user '{0}'")]
    UnsupportedHash(String),
    #[error("'{0}' cannot be stored in shadow.cfg")]
    InvalidUser(String),
    #[error("unable to read '{path}': {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Write(#[from] AuthError),
    #[error("unable to hash password: {0}")]
    Hash(String),
}

/// The parsed file: user name (without realm) to crypt hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShadowConfig {
    users: HashMap<String, String>,
}

impl ShadowConfig {
    pub fn parse(raw: &str) -> Self {
        let mut users = HashMap::new();
        for (index, line) in raw.lines().enumerate() {
            let line = line.trim_matches(perl::is_space);
            if line.is_empty() {
                continue;
            }
            match entry(line) {
                Some((user, hash)) => {
                    users.insert(user.to_string(), hash.to_string());
                }
                None => tracing::warn!(line = index + 1, "shadow.cfg: ignoring invalid line"),
            }
        }
        ShadowConfig { users }
    }

    /// Reads `path`; a missing file is an empty configuration, as for PVE.
    pub fn read(path: &Path) -> Result<Self, ShadowError> {
        match std::fs::read_to_string(path) {
            Ok(raw) => Ok(Self::parse(&raw)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ShadowError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The stored hash of `user` (a name without `@pve`).
    pub fn hash(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    /// acl:`Auth/PVE.pm` authenticate_user for `user` (without `@pve`).
    pub fn authenticate(&self, user: &str, password: &str) -> Result<(), ShadowError> {
        // Perl's `!$password`: "0" is false too.
        if password.is_empty() || password == "0" {
            return Err(ShadowError::NoPassword);
        }
        let hash = self.hash(user).ok_or(ShadowError::NoPasswordSet)?;
        match verify_hash(password, hash) {
            Some(true) => Ok(()),
            Some(false) => Err(ShadowError::InvalidCredentials),
            None => Err(ShadowError::UnsupportedHash(user.to_string())),
        }
    }
}

/// Whether `password` matches the crypt `hash`; `None` for a scheme other than `$1$`, `$5$`,
/// `$6$`. A malformed hash of a known scheme never matches, as with crypt(3).
pub fn verify_hash(password: &str, hash: &str) -> Option<bool> {
    if hash.starts_with("$5$") || hash.starts_with("$6$") {
        Some(
            ShaCrypt::default()
                .verify_password(password.as_bytes(), hash)
                .is_ok(),
        )
    } else if let Some(rest) = hash.strip_prefix("$1$") {
        let salt = rest.split('$').next().unwrap_or_default();
        // glibc uses at most 8 salt characters and echoes them; comparing the whole string
        // rejects longer stored salts just like `crypt(...) eq $stored` does.
        let salt = &salt.as_bytes()[..salt.len().min(8)];
        let computed = md5_crypt(password.as_bytes(), salt);
        Some(
            computed.len() == hash.len()
                && openssl::memcmp::eq(computed.as_bytes(), hash.as_bytes()),
        )
    } else {
        None
    }
}

/// A fresh hash the way PVE's encrypt_pw makes one (`$5$`, 8 random salt characters).
pub fn hash_password(password: &str) -> Result<String, ShadowError> {
    let mut raw = [0u8; 6];
    openssl::rand::rand_bytes(&mut raw).map_err(|e| ShadowError::Hash(e.to_string()))?;
    // 6 bytes are exactly 8 base64 characters; crypt(3) does not take `+` in a salt.
    let salt = openssl::base64::encode_block(&raw).replace('+', "X");
    sha256_crypt(password, &salt)
}

/// Sets (or adds) `user`'s hash in the file at `path`, keeping every other line as it is,
/// and replaces the file atomically (mode 0600). Two writers at once lose one update, as the
/// file has no lock of its own: PVE serialises through pmxcfs, callers here must serialise too.
pub fn set_password(path: &Path, user: &str, password: &str) -> Result<(), ShadowError> {
    if user.is_empty() || user.contains(':') || user.contains(perl::is_space) {
        return Err(ShadowError::InvalidUser(user.to_string()));
    }
    let raw = match std::fs::read_to_string(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ShadowError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let new_line = format!("{user}:{}:", hash_password(password)?);
    let mut out = String::with_capacity(raw.len() + new_line.len() + 1);
    let mut replaced = false;
    for line in raw.lines() {
        let is_user = entry(line.trim_matches(perl::is_space)).is_some_and(|(u, _)| u == user);
        if !is_user {
            out.push_str(line);
            out.push('\n');
        } else if !replaced {
            out.push_str(&new_line);
            out.push('\n');
            replaced = true;
        }
        // Later lines for the same user would override the new hash: drop them.
    }
    if !replaced {
        out.push_str(&new_line);
        out.push('\n');
    }
    write_atomically(path, &out, FILE_MODE)?;
    Ok(())
}

/// `^\S+:\S+:$` on a trimmed line, then the first two fields of `split(/:/)`.
fn entry(line: &str) -> Option<(&str, &str)> {
    let body = line.strip_suffix(':')?;
    if body.contains(perl::is_space) {
        return None;
    }
    // Some ':' must have non-empty text on both sides.
    let splittable = body
        .char_indices()
        .any(|(i, c)| c == ':' && i > 0 && i + 1 < body.len());
    if !splittable {
        return None;
    }
    let mut fields = line.split(':');
    let user = fields.next()?;
    let hash = fields.next().unwrap_or_default();
    (!user.is_empty()).then_some((user, hash))
}

/// SHA-256-crypt with default rounds and no `rounds=` field, like glibc for `$5$<salt>$`.
/// `salt` must be 8 characters of the crypt alphabet.
fn sha256_crypt(password: &str, salt: &str) -> Result<String, ShadowError> {
    let hash_err = |what: &str| ShadowError::Hash(what.to_string());
    if salt.len() != SALT_LEN {
        return Err(hash_err("bad salt length"));
    }
    // sha-crypt takes raw salt bytes and uses their crypt-base64 text as the salt string; 8
    // characters are exactly 6 bytes, so decoding ours gives back the very same text.
    let raw = Base64ShaCrypt::decode_vec(salt).map_err(|_| hash_err("bad salt"))?;
    let full = ShaCrypt::SHA256
        .hash_password_customized(password.as_bytes(), &raw, None, None, Params::RECOMMENDED)
        .map_err(|e| ShadowError::Hash(e.to_string()))?;
    // "$5$rounds=5000$<salt>$<hash>": the same hash as "$5$<salt>$<hash>".
    let mut fields = full.as_str().rsplit('$');
    let hash = fields.next().ok_or_else(|| hash_err("no hash"))?;
    if fields.next() != Some(salt) {
        return Err(hash_err("salt not preserved"));
    }
    Ok(format!("$5${salt}${hash}"))
}

/// MD5-crypt (`$1$`, the FreeBSD algorithm glibc implements).
fn md5_crypt(password: &[u8], salt: &[u8]) -> String {
    let mut alternate = Md5::new();
    alternate.update(password);
    alternate.update(salt);
    alternate.update(password);
    let alternate = alternate.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(b"$1$");
    ctx.update(salt);
    for chunk in password.chunks(16) {
        ctx.update(&alternate[..chunk.len()]);
    }
    let mut bits = password.len();
    while bits != 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut digest: [u8; 16] = ctx.finalize().into();

    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round & 1 == 1 {
            ctx.update(password);
        } else {
            ctx.update(digest);
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round & 1 == 1 {
            ctx.update(digest);
        } else {
            ctx.update(password);
        }
        digest = ctx.finalize().into();
    }

    let mut out = String::with_capacity(3 + salt.len() + 1 + 22);
    out.push_str("$1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        let value =
            (u32::from(digest[a]) << 16) | (u32::from(digest[b]) << 8) | u32::from(digest[c]);
        push_crypt64(&mut out, value, 4);
    }
    push_crypt64(&mut out, u32::from(digest[11]), 2);
    out
}

/// crypt's base64: `./0-9A-Za-z`, least significant 6 bits first.
fn push_crypt64(out: &mut String, mut value: u32, count: usize) {
    const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for _ in 0..count {
        out.push(char::from(ALPHABET[(value & 0x3f) as usize]));
        value >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference hashes made with OpenSSL 3.0 (`openssl passwd`), and checked against glibc's
    // crypt() through Perl for the `$5$` ones.
    /// openssl passwd -5 -salt abc secret
    const SHA256_ABC: &str = "$5$abc$qsg6EHbUzHQzF1POlD7zUwBINSELQxypPaeDcZe6vH0";
    /// openssl passwd -5 -salt abcdefgh secret
    const SHA256_ABCDEFGH: &str = "$5$abcdefgh$gruCpC7VkOTspMQTTSAR8mtlO9Upms.fwqE5y16JVM.";
    /// openssl passwd -5 -salt Xa/b9Zq1 pässwörd
    const SHA256_UTF8: &str = "$5$Xa/b9Zq1$Ff9QsrKoGmsNexytfgkfEjqsWVaWvN3G7wbQYIi0EAB";
    /// Perl: crypt("secret", '$5$rounds=1000$abc$')
    const SHA256_ROUNDS: &str = "$5$rounds=1000$abc$Mz4DiYKTnNKbZLo/mIp3d8Y4aQBhv3uhSwxLDy55/Y8";
    /// openssl passwd -6 -salt abc secret
    const SHA512_ABC: &str = "$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr/TsVArtr91iR1";
    /// openssl passwd -1 -salt abc secret
    const MD5_ABC: &str = "$1$abc$iCQ2D3nhptRYi27fDYv2s1";
    /// openssl passwd -1 -salt abcdefgh averyveryverylongpasswordthatexceedssixteen
    const MD5_LONG: &str = "$1$abcdefgh$fSsfL3uM6AJhCEexogYJV/";

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn verifies_reference_hashes() {
        for (password, hash) in [
            ("secret", SHA256_ABC),
            ("secret", SHA256_ABCDEFGH),
            ("pässwörd", SHA256_UTF8),
            ("secret", SHA256_ROUNDS),
            ("secret", SHA512_ABC),
            ("secret", MD5_ABC),
            ("averyveryverylongpasswordthatexceedssixteen", MD5_LONG),
        ] {
            assert_eq!(verify_hash(password, hash), Some(true), "{hash}");
            assert_eq!(verify_hash("Secret", hash), Some(false), "{hash}");
            assert_eq!(verify_hash("", hash), Some(false), "{hash}");
        }
        assert_eq!(verify_hash("secret", "$5$abc$"), Some(false));
        assert_eq!(
            verify_hash("secret", "$1$abc$iCQ2D3nhptRYi27fDYv2s"),
            Some(false)
        );
        assert_eq!(verify_hash("secret", "$y$j9T$abc$def"), None);
        assert_eq!(verify_hash("secret", "abJnggxhB/yWI"), None);
    }

    #[test]
    fn sha256_crypt_matches_openssl_for_pve_style_salts() {
        let crypt = |pw, salt| sha256_crypt(pw, salt).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(crypt("secret", "abcdefgh"), SHA256_ABCDEFGH);
        assert_eq!(crypt("pässwörd", "Xa/b9Zq1"), SHA256_UTF8);
        assert!(sha256_crypt("secret", "abc").is_err());
    }

    #[test]
    fn new_hashes_have_pves_shape_and_verify() {
        let a = hash_password("correct horse").unwrap_or_else(|e| panic!("{e}"));
        let b = hash_password("correct horse").unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a, b);
        for hash in [&a, &b] {
            let fields: Vec<&str> = hash.split('$').collect();
            assert_eq!(fields.len(), 4, "{hash}");
            assert_eq!(fields[1], "5");
            assert_eq!(fields[2].len(), 8);
            assert!(
                fields[2]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'/'),
                "{hash}"
            );
            assert_eq!(fields[3].len(), 43);
            assert_eq!(verify_hash("correct horse", hash), Some(true));
            assert_eq!(verify_hash("correct horsE", hash), Some(false));
        }
    }

    #[test]
    fn parses_like_parse_shadow_passwd() {
        let raw = "\
root:$5$abc$qsg6EHbUzHQzF1POlD7zUwBINSELQxypPaeDcZe6vH0:
  alice:$1$abc$iCQ2D3nhptRYi27fDYv2s1:  \r

bob:first:
bob:second:extra:
#comment:is:special:
ü:x:
no-trailing-colon:hash
space user:hash:
:hash:
x::
carol::hash:
";
        let cfg = ShadowConfig::parse(raw);
        assert_eq!(cfg.hash("root"), Some(SHA256_ABC));
        assert_eq!(cfg.hash("alice"), Some(MD5_ABC));
        assert_eq!(cfg.hash("bob"), Some("second"));
        assert_eq!(cfg.hash("#comment"), Some("is"));
        assert_eq!(cfg.hash("ü"), Some("x"));
        assert_eq!(cfg.hash("carol"), Some(""));
        for missing in ["no-trailing-colon", "space", "space user", "", "x"] {
            assert_eq!(cfg.hash(missing), None, "{missing}");
        }
        assert_eq!(cfg.users.len(), 6);
    }

    #[test]
    fn authenticate_gives_pves_errors() {
        let cfg = ShadowConfig::parse(&format!("alice:{SHA256_ABC}:\nbob:$y$j9T$a$b:\n"));
        assert!(cfg.authenticate("alice", "secret").is_ok());
        let err = |user, pw| {
            cfg.authenticate(user, pw)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(err("alice", "wrong"), "invalid credentials");
        assert_eq!(err("alice", ""), "no password");
        assert_eq!(err("alice", "0"), "no password");
        assert_eq!(err("carol", "secret"), "no password set");
        assert_eq!(err("alice@pve", "secret"), "no password set");
        assert!(matches!(
            cfg.authenticate("bob", "x"),
            Err(ShadowError::UnsupportedHash(_))
        ));
    }

    #[test]
    fn set_password_replaces_only_that_user() {
        let dir = tempdir();
        let path = dir.path().join("priv").join("shadow.cfg");
        let original =
            format!("root:{SHA256_ABC}:\nalice:old:\n  junk line\nalice:older:\nbob:{MD5_ABC}:");
        std::fs::create_dir_all(dir.path().join("priv")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&path, &original).unwrap_or_else(|e| panic!("{e}"));

        set_password(&path, "alice", "n3w-pass").unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], format!("root:{SHA256_ABC}:"));
        assert!(lines[1].starts_with("alice:$5$") && lines[1].ends_with(':'));
        assert_eq!(lines[2], "  junk line");
        assert_eq!(lines[3], format!("bob:{MD5_ABC}:"));
        assert!(text.ends_with('\n'));

        let cfg = ShadowConfig::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.authenticate("alice", "n3w-pass").is_ok());
        assert!(cfg.authenticate("root", "secret").is_ok());
        assert!(cfg.authenticate("bob", "secret").is_ok());

        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn set_password_appends_new_users_and_creates_the_file() {
        let dir = tempdir();
        let path = dir.path().join("shadow.cfg");
        assert_eq!(
            ShadowConfig::read(&path).unwrap_or_else(|e| panic!("{e}")),
            ShadowConfig::default()
        );
        set_password(&path, "alice", "first-pass").unwrap_or_else(|e| panic!("{e}"));
        set_password(&path, "bob", "second-pass").unwrap_or_else(|e| panic!("{e}"));
        let cfg = ShadowConfig::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.authenticate("alice", "first-pass").is_ok());
        assert!(cfg.authenticate("bob", "second-pass").is_ok());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text.lines().count(), 2);
        for bad in ["", "a:b", "a b"] {
            assert!(matches!(
                set_password(&path, bad, "x"),
                Err(ShadowError::InvalidUser(_))
            ));
        }
    }
}
