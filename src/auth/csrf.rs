//! `CSRFPreventionToken` values (spec §6.4): `<%08X time>:<HMAC-SHA256>`, where the HMAC is keyed
//! with a secret derived from `pve-www.key` and covers `<%08X time>:<username>`, written in
//! base64 without padding (Digest::SHA's `*_base64`).
//!
//! Upstream: common:`Ticket.pm` assemble/verify_csrf_prevention_token and acl:`AccessControl.pm`
//! `$get_csrfr_secret`. The secret is `hmac_sha256_base64($file_contents)`; Digest::SHA takes the
//! *last* argument as the key, so it is HMAC-SHA256 with the whole file as key over the empty
//! message, base64 without padding (43 characters). That string, not its decoded bytes, keys
//! the token HMAC. A token is valid while `-300 < now - time < 7200`, the ticket window.
//! AccessControl.pm still picks a SHA-1 "legacy" secret for 27-character signatures, but
//! current Ticket.pm checks every token with HMAC-SHA256, so such tokens never pass; they are
//! not supported here either.

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

use super::ticket::{AUTH_GRACE_PERIOD, TICKET_LIFETIME};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrfError {
    /// PVE's exact text (HTTP 401).
    #[error("Permission denied - invalid csrf token")]
    Invalid,
    #[error("time {0} does not fit the 8 hex digits of a CSRF token")]
    Time(i64),
    #[error("CSRF secret: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// The node's CSRF secret, as PVE derives it from `pve-www.key`.
#[derive(Clone)]
pub struct CsrfSecret(String);

impl std::fmt::Debug for CsrfSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfSecret(..)")
    }
}

impl CsrfSecret {
    /// Derives the secret from the raw bytes of `pve-www.key` (whatever they are; PVE makes
    /// the file with `openssl genrsa 2048`).
    pub fn from_key_file(contents: &[u8]) -> Result<Self, CsrfError> {
        Ok(CsrfSecret(hmac_sha256_base64(contents, b"")?))
    }
}

/// A token for `username` issued at `now` (Unix seconds).
pub fn assemble(secret: &CsrfSecret, username: &str, now: i64) -> Result<String, CsrfError> {
    let time = u32::try_from(now).map_err(|_| CsrfError::Time(now))?;
    let stamp = format!("{time:08X}");
    let digest = token_digest(secret, &stamp, username)?;
    Ok(format!("{stamp}:{digest}"))
}

/// Checks `token` (the `CSRFPreventionToken` header) for the ticket's `username` at `now`.
pub fn verify(secret: &CsrfSecret, token: &str, username: &str, now: i64) -> Result<(), CsrfError> {
    // ^([A-Z0-9]{8}):(\S+)$
    let (stamp, signature) = token.split_once(':').ok_or(CsrfError::Invalid)?;
    let stamp_ok = stamp.len() == 8
        && stamp
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    let signature_ok = !signature.is_empty()
        && !signature
            .chars()
            .any(|c| matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r'));
    if !stamp_ok || !signature_ok {
        return Err(CsrfError::Invalid);
    }
    // PVE writes %08X; a non-hex [A-Z] stamp can only come from someone who has the secret.
    let time = i64::from_str_radix(stamp, 16).map_err(|_| CsrfError::Invalid)?;
    let expected = token_digest(secret, stamp, username)?;
    let matches = expected.len() == signature.len()
        && openssl::memcmp::eq(expected.as_bytes(), signature.as_bytes());
    let age = now.saturating_sub(time);
    if matches && age > -AUTH_GRACE_PERIOD && age < TICKET_LIFETIME {
        Ok(())
    } else {
        Err(CsrfError::Invalid)
    }
}

fn token_digest(secret: &CsrfSecret, stamp: &str, username: &str) -> Result<String, CsrfError> {
    hmac_sha256_base64(
        secret.0.as_bytes(),
        format!("{stamp}:{username}").as_bytes(),
    )
}

/// Digest::SHA's hmac_sha256_base64: base64 without `=` padding.
fn hmac_sha256_base64(key: &[u8], data: &[u8]) -> Result<String, CsrfError> {
    let key = PKey::hmac(key)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &key)?;
    let mac = signer.sign_oneshot_to_vec(data)?;
    let mut text = openssl::base64::encode_block(&mac);
    text.truncate(text.trim_end_matches('=').len());
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From fixtures/gen.pl (Digest::SHA, as acl:`AccessControl.pm` and common:`Ticket.pm` use
    /// it) for this key file content, user `root@pam` and time 0x6745D3E2.
    const WWW_KEY: &str =
        "-----BEGIN PRIVATE KEY-----\nisolib csrf fixture\n-----END PRIVATE KEY-----\n";
    const PERL_SECRET: &str = "HBjLOqCj2C2X0z3S2Md4NBdBbc1QOpz78zCpXL3BBZo";
    const PERL_TOKEN: &str = "6745D3E2:+yOq6t6sR8Vy3ikW6Dcy/p7dgr1VKX//Vtvm+EZ3wcA";
    const PERL_TIME: i64 = 0x6745D3E2;

    fn secret() -> CsrfSecret {
        CsrfSecret::from_key_file(WWW_KEY.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn secret_and_token_match_pve() {
        assert_eq!(secret().0, PERL_SECRET);
        let token = assemble(&secret(), "root@pam", PERL_TIME).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(token, PERL_TOKEN);
        assert!(verify(&secret(), PERL_TOKEN, "root@pam", PERL_TIME + 5).is_ok());
    }

    #[test]
    fn window_edges_are_exclusive() {
        let s = secret();
        let t = 1_700_000_000;
        let token = assemble(&s, "alice@pve", t).unwrap_or_else(|e| panic!("{e}"));
        assert!(verify(&s, &token, "alice@pve", t + TICKET_LIFETIME - 1).is_ok());
        assert!(verify(&s, &token, "alice@pve", t + TICKET_LIFETIME).is_err());
        assert!(verify(&s, &token, "alice@pve", t - AUTH_GRACE_PERIOD + 1).is_ok());
        assert!(verify(&s, &token, "alice@pve", t - AUTH_GRACE_PERIOD).is_err());
    }

    #[test]
    fn wrong_user_secret_or_shape_is_rejected() {
        let s = secret();
        let other = CsrfSecret::from_key_file(b"another key").unwrap_or_else(|e| panic!("{e}"));
        let t = PERL_TIME;
        let token = PERL_TOKEN;
        assert!(matches!(
            verify(&s, token, "root@pve", t),
            Err(CsrfError::Invalid)
        ));
        assert!(verify(&other, token, "root@pam", t).is_err());
        let (stamp, sig) = token.split_once(':').unwrap_or_else(|| panic!("no colon"));
        for bad in [
            String::new(),
            stamp.to_string(),
            format!("{stamp}:"),
            format!("{}:{sig}", stamp.to_lowercase()),
            format!("0{stamp}:{sig}"),
            format!("{stamp}:{sig}="),
            format!("{stamp}:{sig} "),
            format!("{stamp}:{}", &sig[..sig.len() - 1]),
            format!("{:08X}:{sig}", t + 1),
        ] {
            assert!(verify(&s, &bad, "root@pam", t).is_err(), "accepted {bad:?}");
        }
        assert_eq!(
            CsrfError::Invalid.to_string(),
            "Permission denied - invalid csrf token"
        );
    }

    #[test]
    fn digest_is_unpadded_base64_of_hmac_sha256() {
        let token = assemble(&secret(), "a@pve", 0).unwrap_or_else(|e| panic!("{e}"));
        let (stamp, sig) = token.split_once(':').unwrap_or_else(|| panic!("no colon"));
        assert_eq!(stamp, "00000000");
        assert_eq!(sig.len(), 43);
        assert!(!sig.ends_with('='));
    }
}
