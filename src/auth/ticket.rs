//! PVE authentication tickets, the `PVEAuthCookie` value (spec §6.3).
//!
//! Format (common:`Ticket.pm` assemble_rsa_ticket): `PVE:<data>:<%08X issue time>::<base64
//! signature>`, where `<data>` is the user id with every `:` written as `%3A` (URI::Escape) and
//! the signature is RSASSA-PKCS1-v1_5 over SHA-1 of everything before the `::`. SHA-1 because
//! that is what Crypt::OpenSSL::RSA's sign() uses unless told otherwise (its objects start with
//! hash mode SHA-1 in 0.33 and 0.35 alike, and PKCS#1 v1.5 since the OAEP padding it stores
//! cannot apply to signing). Tickets therefore verify across PVE nodes and this daemon in both
//! directions, with the same key files.
//!
//! Acceptance (acl:`AccessControl.pm` verify_ticket, get_ticket_age_range): the current public
//! key first, then `authkey.pub.old`; with each key the ticket's age must lie strictly inside a
//! window that depends on the key file's mtime, see [`age_window`].
//!
//! Two-factor half tickets carry `!tfa!<challenge>` and are signed over `<plain>:<userid>`
//! ("secret data"); they never verify here, and a ticket whose data has one of PVE's TFA
//! prefixes is refused with [`TicketError::TfaPending`].

use crate::pve::perl;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::sign::{Signer, Verifier};

use super::authid::verify_username;

/// acl:`AccessControl.pm` `$ticket_lifetime`.
pub const TICKET_LIFETIME: i64 = 7200;
/// acl:`AccessControl.pm` `$auth_graceperiod`: tolerated clock skew between nodes.
pub const AUTH_GRACE_PERIOD: i64 = 300;
/// acl:`AccessControl.pm` `$authkey_lifetime`: PVE rotates the key pair after this long.
pub const AUTHKEY_LIFETIME: i64 = 86400;

const PREFIX: &str = "PVE";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// PVE's text (common:`Ticket.pm` verify_rsa_ticket) for every rejected ticket.
    #[error("permission denied - invalid PVE ticket")]
    Invalid,
    /// A genuine ticket of a login that still waits for its second factor.
    #[error("incomplete ticket")]
    TfaPending,
    #[error("time {0} does not fit the 8 hex digits of a ticket")]
    Time(i64),
    #[error("unable to sign ticket: {0}")]
    Sign(#[from] openssl::error::ErrorStack),
}

/// A public key and the mtime (Unix seconds) of the file it was read from.
#[derive(Debug, Clone)]
pub struct VerifyKey {
    pub key: PKey<Public>,
    pub mtime: i64,
}

/// What [`verify`] checks a ticket against: `authkey.pub`, `authkey.pub.old`, and whether the
/// cluster is quorate. A standalone node counts as quorate; without quorum PVE cannot rotate
/// keys, so it stops clamping tickets signed by an overdue key.
#[derive(Debug, Clone)]
pub struct VerifyKeys {
    pub current: Option<VerifyKey>,
    pub old: Option<VerifyKey>,
    pub quorate: bool,
}

impl VerifyKeys {
    pub fn new(current: Option<VerifyKey>, old: Option<VerifyKey>) -> Self {
        VerifyKeys {
            current,
            old,
            quorate: true,
        }
    }
}

/// A ticket that passed [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTicket {
    /// A valid `user@realm` (acl:`Auth/Plugin.pm` verify_username), never a token id.
    pub userid: String,
    /// Seconds since the ticket was issued; negative within the grace period.
    pub age: i64,
}

/// Issues a ticket for `userid` at `now` (Unix seconds).
///
/// The caller has already authenticated `userid`; it is not validated again here.
pub fn assemble(key: &PKey<Private>, userid: &str, now: i64) -> Result<String, TicketError> {
    let time = u32::try_from(now).map_err(|_| TicketError::Time(now))?;
    let plain = format!("{PREFIX}:{}:{time:08X}", escape_colons(userid));
    let signature = sign(key, &plain, None)?;
    Ok(format!(
        "{plain}::{}",
        openssl::base64::encode_block(&signature)
    ))
}

/// Checks a ticket the way PVE's verify_ticket does.
pub fn verify(keys: &VerifyKeys, ticket: &str, now: i64) -> Result<VerifiedTicket, TicketError> {
    let parsed = parse(ticket).ok_or(TicketError::Invalid)?;
    let candidates = [(keys.current.as_ref(), false), (keys.old.as_ref(), true)];
    let age = candidates
        .into_iter()
        .find_map(|(key, rotated)| {
            let key = key?;
            let (min, max) = age_window(now, key.mtime, rotated, keys.quorate)?;
            if !signature_valid(&key.key, parsed.plain.as_bytes(), &parsed.signature) {
                return None;
            }
            let age = now.saturating_sub(parsed.time);
            (age > min && age < max).then_some(age)
        })
        .ok_or(TicketError::Invalid)?;

    // Without data PVE's verify_rsa_ticket yields "1", which no user id can be.
    let data = parsed.data.ok_or(TicketError::Invalid)?;
    if is_tfa_data(&data) {
        return Err(TicketError::TfaPending);
    }
    if !verify_username(&data) {
        return Err(TicketError::Invalid);
    }
    Ok(VerifiedTicket { userid: data, age })
}

/// The renewal rule of `POST /access/ticket` (acl:`API2/AccessControl.pm` create_ticket_do): a
/// valid ticket is accepted as the password when it belongs to the requested user, or to
/// `root@pam`, who may create tickets for anyone. (Verify mode with `path`/`privs` allows only
/// the same user.)
pub fn ticket_authorizes_login(ticket_user: &str, username: &str) -> bool {
    ticket_user == "root@pam" || ticket_user == username
}

/// The `(min, max)` open interval a ticket's age must fall into when checked with a key whose
/// file has `mtime`; `None` if the key accepts no ticket at all.
///
/// * Default: from `-AUTH_GRACE_PERIOD` to `TICKET_LIFETIME`.
/// * Current key younger than `TICKET_LIFETIME`: at most `key age + AUTH_GRACE_PERIOD`, since
///   no ticket can be much older than the key that signed it.
/// * Current key overdue for rotation (older than `AUTHKEY_LIFETIME`) in a quorate cluster:
///   at least `key age - AUTHKEY_LIFETIME`, so only tickets from its lifetime pass.
/// * Old (rotated) key, whose mtime is the rotation time: at least `key age -
///   AUTH_GRACE_PERIOD`, so only tickets issued before the rotation (plus grace) pass.
pub fn age_window(now: i64, mtime: i64, rotated: bool, quorate: bool) -> Option<(i64, i64)> {
    let key_age = now.saturating_sub(mtime).max(0);
    let mut min = -AUTH_GRACE_PERIOD;
    let mut max = TICKET_LIFETIME;
    if rotated {
        min = key_age.saturating_sub(AUTH_GRACE_PERIOD);
    } else {
        if key_age > AUTHKEY_LIFETIME && quorate {
            min = key_age - AUTHKEY_LIFETIME;
        }
        if key_age < TICKET_LIFETIME {
            max = key_age + AUTH_GRACE_PERIOD;
        }
    }
    (min <= TICKET_LIFETIME).then_some((min, max))
}

struct ParsedTicket {
    /// Everything before `::`, the signed text.
    plain: String,
    /// The unescaped data field, if the ticket has one.
    data: Option<String>,
    time: i64,
    signature: Vec<u8>,
}

/// `^(PVE:\S+)::([^:\s]+)$`, then `^PVE:(?:(\S+):)?([A-Z0-9]{8})$` on the first group.
fn parse(ticket: &str) -> Option<ParsedTicket> {
    let (plain, signature) = ticket.rsplit_once("::")?;
    if signature.is_empty() || signature.contains(':') || signature.contains(perl::is_space) {
        return None;
    }
    let rest = plain.strip_prefix(PREFIX)?.strip_prefix(':')?;
    if rest.is_empty() || rest.contains(perl::is_space) {
        return None;
    }
    let split = rest.len().checked_sub(8)?;
    let hex = rest.get(split..)?;
    let data = match &rest[..split] {
        "" => None,
        head => Some(head.strip_suffix(':').filter(|d| !d.is_empty())?),
    };
    // PVE writes %08X; other [A-Z0-9] characters would only ever appear in forged tickets.
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return None;
    }
    let time = i64::from_str_radix(hex, 16).ok()?;
    let data = match data {
        Some(d) => Some(unescape(d)?),
        None => None,
    };
    Some(ParsedTicket {
        plain: plain.to_string(),
        data,
        time,
        signature: openssl::base64::decode_block(signature).ok()?,
    })
}

/// PVE's TFA ticket data: `!tfa!<challenge>` (current), `tfa!<user>` and `u2f!<user>!<challenge>`
/// (PVE 6 era). None of them is a completed login.
fn is_tfa_data(data: &str) -> bool {
    ["!tfa!", "tfa!", "u2f!"]
        .iter()
        .any(|prefix| data.starts_with(prefix))
}

/// `uri_escape($data, ':')`.
fn escape_colons(data: &str) -> String {
    data.replace(':', "%3A")
}

/// `uri_unescape`: every `%XX` becomes its byte; the result must be UTF-8.
fn unescape(data: &str) -> Option<String> {
    let bytes = data.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Signs `plain`, or `plain:secret_data` when given (the TFA half-ticket variant).
fn sign(
    key: &PKey<Private>,
    plain: &str,
    secret_data: Option<&str>,
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let signed = match secret_data {
        Some(secret) => format!("{plain}:{secret}"),
        None => plain.to_string(),
    };
    let mut signer = Signer::new(MessageDigest::sha1(), key)?;
    signer.sign_oneshot_to_vec(signed.as_bytes())
}

fn signature_valid(key: &PKey<Public>, signed: &[u8], signature: &[u8]) -> bool {
    Verifier::new(MessageDigest::sha1(), key)
        .and_then(|mut verifier| verifier.verify_oneshot(signature, signed))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::{Padding, Rsa};

    /// Made by fixtures/gen.pl in the scratch crate with Crypt::OpenSSL::RSA 0.33 (Debian
    /// bookworm, what PVE 8 runs): `generate_key(2048)`, `get_public_key_x509_string()`, and
    /// tickets assembled like common:`Ticket.pm` at time 0x6745D3E2.
    const PERL_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnIoUl796ZD5fObOvsD9N
2gljypdcr/k0JG0HgWY8rbEO9XdOMx67C+buUz5mdkjB3SnT+H8NZBSzjZrVxNAS
OWU/tZ8z1a99dUoUn2iCJaKXUawZdSR/9Tt80O1XX1kpO/vkfGaVsV/7xv/OedXy
6uo+Lh+lpouRzPzIdt12t+nLaWq46YQDOpdJIDMJwbAsieFsyL5e4sdETWuQCuym
zIfMIQ651ofPTTsnjaIOOQdHDbH+2w1BzmnvoT4ZpITQK69dsMN+6LSn5nDYyOG9
Vitss/5rQII8WLqA97Q7FawYGEW1HyGcWQV5eVBOhCLmYm8y7I3zzhXbJeebSwI+
sQIDAQAB
-----END PUBLIC KEY-----
";
    const PERL_TIME: i64 = 0x6745D3E2;
    const PERL_USER_TICKET: &str = "PVE:root@pam:6745D3E2::EGOLs6reeNhdDSuHumprRNHUotMlhQp0/xxkL3wuYhVoDzYA8wOwj+GB+7RxQep/bZEFyCGmd0hWBinHdxpKcY84qGn8+gVf+HxAGiMBWNqAS7g7uo6LLAljJR4AkRX+cmsiJFesNMy8G0zgqRljxHnTD4jZjeTMR1143571ouh0mUpxh4Zk0rgif+xmdq/KJyi4TJbYzK6fYjVELq5swjnJ0+zuwS4zyuCplx2IPfDvcxA1ixjGEiS/CNMConz/sC58f7ALTLUse8t9JCkulgTwWycA7bw+wQGij12WAio/dwugw2XwSvMUL4MXsG8u3n9lBrUByz8pC+mu65hpsA==";
    /// `!tfa!{"ticket":"x:y"}` signed with the secret data `root@pam`, as create_ticket_do does.
    const PERL_TFA_TICKET: &str = "PVE:!tfa!{\"ticket\"%3A\"x%3Ay\"}:6745D3E2::KjYRPjcQFo/vJyMnmLf6n7YHRVhKHrjQZB+qiFKHZGzk1u15WJYqv1RVxxkIhKg3vkch4Ud2WtYNZLmT98zukj+Sw8Bc/MOkwPyxRK2WgJVHiXSFDWrQFnnvTrJ3uVrWW4yn+iqKoke7uzmhEcurbGGVi62q/OQLnQUtB47shoAYT8/4jEeDxtb/KPOe51zHg9MslW4vTclgGNCR+DlesM1uQ0aEGSyg+OMMOAHZjDglBaW5h4fZ8yGhVk/bAjtzabkJDL9Um41dEzYpQ+TO0at14YWCBa0X1Q+/RH3c0CRNkn+4xt6Elz4flRIFfzcKi9quP0eDdJ33/8VLGTk9Mg==";

    /// Issue time of the tickets made in these tests.
    const T: i64 = 1_700_000_000;

    /// Key pair number `n` (0..3), generated once for all tests: RSA generation is slow.
    fn key_pair(n: usize) -> (PKey<Private>, PKey<Public>) {
        static PAIRS: std::sync::OnceLock<Vec<(PKey<Private>, PKey<Public>)>> =
            std::sync::OnceLock::new();
        let pairs = PAIRS.get_or_init(|| {
            (0..3)
                .map(|_| {
                    let rsa = Rsa::generate(2048).unwrap_or_else(|e| panic!("{e}"));
                    let private = PKey::from_rsa(rsa).unwrap_or_else(|e| panic!("{e}"));
                    let der = private
                        .public_key_to_der()
                        .unwrap_or_else(|e| panic!("{e}"));
                    let public = PKey::public_key_from_der(&der).unwrap_or_else(|e| panic!("{e}"));
                    (private, public)
                })
                .collect()
        });
        pairs[n].clone()
    }

    fn perl_key() -> PKey<Public> {
        PKey::public_key_from_pem(PERL_PUBLIC_KEY.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Only a current key, old enough (> 2 h, < 24 h) that only the ticket window applies.
    fn settled(key: &PKey<Public>) -> VerifyKeys {
        VerifyKeys::new(
            Some(VerifyKey {
                key: key.clone(),
                mtime: T - 20_000,
            }),
            None,
        )
    }

    fn ticket_at(key: &PKey<Private>, user: &str, time: i64) -> String {
        assemble(key, user, time).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A ticket with arbitrary data, optionally signed with secret data like a TFA half ticket.
    fn raw_ticket(key: &PKey<Private>, data: &str, time: i64, secret: Option<&str>) -> String {
        let plain = format!("PVE:{}:{time:08X}", escape_colons(data));
        let sig = sign(key, &plain, secret).unwrap_or_else(|e| panic!("{e}"));
        format!("{plain}::{}", openssl::base64::encode_block(&sig))
    }

    fn accepted(keys: &VerifyKeys, ticket: &str, now: i64) -> bool {
        verify(keys, ticket, now).is_ok()
    }

    #[test]
    fn round_trip_returns_user_and_age() {
        let (private, public) = key_pair(0);
        let ticket = ticket_at(&private, "root@pam", T);
        assert!(ticket.starts_with("PVE:root@pam:6553F100::"));
        let verified = verify(&settled(&public), &ticket, T + 42).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            verified,
            VerifiedTicket {
                userid: "root@pam".to_string(),
                age: 42
            }
        );
    }

    #[test]
    fn window_edges_are_exclusive() {
        let (private, public) = key_pair(0);
        let keys = settled(&public);
        let ticket = ticket_at(&private, "alice@pve", T);
        assert!(accepted(&keys, &ticket, T + TICKET_LIFETIME - 1));
        assert!(!accepted(&keys, &ticket, T + TICKET_LIFETIME));
        assert!(accepted(&keys, &ticket, T - AUTH_GRACE_PERIOD + 1));
        assert!(!accepted(&keys, &ticket, T - AUTH_GRACE_PERIOD));
    }

    #[test]
    fn tampering_and_wrong_keys_are_rejected() {
        let (private, public) = key_pair(0);
        let (_, other_public) = key_pair(1);
        let keys = settled(&public);
        let ticket = ticket_at(&private, "alice@pve", T);
        assert!(accepted(&keys, &ticket, T));

        let other_user = ticket.replacen("alice@pve", "admin@pve", 1);
        assert!(matches!(
            verify(&keys, &other_user, T),
            Err(TicketError::Invalid)
        ));
        let later = ticket.replacen(&format!("{T:08X}"), &format!("{:08X}", T + 1000), 1);
        assert!(!accepted(&keys, &later, T + 1000));

        let (plain, sig) = ticket.rsplit_once("::").unwrap_or_else(|| panic!("no sig"));
        let mut raw = openssl::base64::decode_block(sig).unwrap_or_else(|e| panic!("{e}"));
        raw[10] ^= 1;
        let flipped = format!("{plain}::{}", openssl::base64::encode_block(&raw));
        assert!(!accepted(&keys, &flipped, T));
        let truncated = format!("{plain}::{}", openssl::base64::encode_block(&raw[..100]));
        assert!(!accepted(&keys, &truncated, T));

        assert!(!accepted(&settled(&other_public), &ticket, T));
        assert!(!accepted(&VerifyKeys::new(None, None), &ticket, T));
    }

    #[test]
    fn malformed_tickets_are_rejected() {
        let (private, public) = key_pair(0);
        let keys = settled(&public);
        let ticket = ticket_at(&private, "alice@pve", T);
        for bad in [
            String::new(),
            "PVE".to_string(),
            ticket.replacen("PVE:", "PMG:", 1),
            format!("{ticket} "),
            format!(" {ticket}"),
            ticket.replacen("::", ":", 1),
            format!("{ticket}:"),
            ticket.replacen("alice@pve:", "", 1),
            ticket.to_lowercase(),
        ] {
            assert!(!accepted(&keys, &bad, T), "accepted {bad:?}");
        }
        // Signed but not a user id: no data, a bad realm, a token id.
        for data in ["", "alice", "alice@p", "alice@pve!tok"] {
            let t = if data.is_empty() {
                let plain = format!("PVE:{T:08X}");
                let sig = sign(&private, &plain, None).unwrap_or_else(|e| panic!("{e}"));
                format!("{plain}::{}", openssl::base64::encode_block(&sig))
            } else {
                raw_ticket(&private, data, T, None)
            };
            assert!(
                matches!(verify(&keys, &t, T), Err(TicketError::Invalid)),
                "accepted {data:?}"
            );
        }
    }

    #[test]
    fn data_is_uri_unescaped_like_pve() {
        let (private, public) = key_pair(0);
        let keys = settled(&public);
        // uri_unescape decodes every %XX, so this ticket names alice@pve (a PVE quirk).
        let ticket = raw_ticket(&private, "%61lice@pve", T, None);
        let verified = verify(&keys, &ticket, T).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verified.userid, "alice@pve");
        assert_eq!(escape_colons("a:b:c"), "a%3Ab%3Ac");
        assert_eq!(unescape("a%3Ab%3ac%zz%4").as_deref(), Some("a:b:c%zz%4"));
    }

    #[test]
    fn tfa_tickets_are_refused() {
        let (private, public) = key_pair(0);
        let keys = settled(&public);
        // The real form is signed with the user as secret data, so it does not even verify.
        let half = raw_ticket(&private, "!tfa!{\"x\":1}", T, Some("alice@pve"));
        assert!(half.starts_with("PVE:!tfa!{\"x\"%3A1}:"));
        assert!(matches!(verify(&keys, &half, T), Err(TicketError::Invalid)));
        for data in ["!tfa!{\"x\":1}", "tfa!alice@pve", "u2f!alice@pve!verified"] {
            let t = raw_ticket(&private, data, T, None);
            assert!(
                matches!(verify(&keys, &t, T), Err(TicketError::TfaPending)),
                "{data}"
            );
        }
    }

    #[test]
    fn perl_made_tickets_verify() {
        let keys = VerifyKeys::new(
            Some(VerifyKey {
                key: perl_key(),
                mtime: PERL_TIME - 20_000,
            }),
            None,
        );
        let verified =
            verify(&keys, PERL_USER_TICKET, PERL_TIME + 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verified.userid, "root@pam");
        assert_eq!(verified.age, 10);
        assert!(matches!(
            verify(&keys, PERL_TFA_TICKET, PERL_TIME),
            Err(TicketError::Invalid)
        ));
        // With the secret data it is a genuine signature over the escaped plain text.
        let parsed = parse(PERL_TFA_TICKET).unwrap_or_else(|| panic!("unparsable"));
        assert_eq!(parsed.data.as_deref(), Some("!tfa!{\"ticket\":\"x:y\"}"));
        let signed = format!("{}:root@pam", parsed.plain);
        assert!(signature_valid(
            &perl_key(),
            signed.as_bytes(),
            &parsed.signature
        ));
    }

    #[test]
    fn signature_is_pkcs1_v15_over_sha1_of_the_plain_text() {
        // Recover the signed block with raw RSA instead of the EVP verifier used above.
        let (private, public) = key_pair(0);
        let rsa = public.rsa().unwrap_or_else(|e| panic!("{e}"));
        let ticket = ticket_at(&private, "root@pam", T);
        let (plain, sig) = ticket.rsplit_once("::").unwrap_or_else(|| panic!("no sig"));
        let sig = openssl::base64::decode_block(sig).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sig.len(), 256);
        let mut block = vec![0u8; 256];
        let n = rsa
            .public_decrypt(&sig, &mut block, Padding::PKCS1)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut expected = vec![
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ];
        expected.extend_from_slice(&openssl::sha::sha1(plain.as_bytes()));
        assert_eq!(&block[..n], &expected[..]);
    }

    #[test]
    fn young_current_key_rejects_tickets_older_than_itself() {
        let (private, public) = key_pair(0);
        let mtime = T;
        let keys = VerifyKeys::new(Some(VerifyKey { key: public, mtime }), None);
        let now = T + 1000;
        // Window at key age 1000: (-300, 1300).
        let before = ticket_at(&private, "alice@pve", mtime - AUTH_GRACE_PERIOD + 1);
        assert!(accepted(&keys, &before, now));
        let too_old = ticket_at(&private, "alice@pve", mtime - AUTH_GRACE_PERIOD);
        assert!(!accepted(&keys, &too_old, now));
    }

    #[test]
    fn old_key_accepts_tickets_issued_until_rotation_plus_grace() {
        let (old_private, old_public) = key_pair(1);
        let (_, new_public) = key_pair(2);
        let rotation = T;
        let keys = VerifyKeys::new(
            Some(VerifyKey {
                key: new_public,
                mtime: rotation,
            }),
            Some(VerifyKey {
                key: old_public,
                mtime: rotation,
            }),
        );
        let now = rotation + 3600;
        let last = ticket_at(&old_private, "alice@pve", rotation + AUTH_GRACE_PERIOD - 1);
        assert!(accepted(&keys, &last, now));
        let late = ticket_at(&old_private, "alice@pve", rotation + AUTH_GRACE_PERIOD);
        assert!(!accepted(&keys, &late, now));
        let early = ticket_at(&old_private, "alice@pve", rotation - 3000);
        assert!(accepted(&keys, &early, now));
        // Still bounded by the ticket lifetime.
        assert!(!accepted(&keys, &early, rotation - 3000 + TICKET_LIFETIME));
        assert!(accepted(
            &keys,
            &early,
            rotation - 3000 + TICKET_LIFETIME - 1
        ));
    }

    #[test]
    fn overdue_key_is_clamped_only_when_quorate() {
        let (private, public) = key_pair(0);
        let now = T;
        let mut keys = VerifyKeys::new(
            Some(VerifyKey {
                key: public,
                mtime: now - AUTHKEY_LIFETIME - 100,
            }),
            None,
        );
        // Window: (100, 7200).
        let fresh = ticket_at(&private, "alice@pve", now - 100);
        let older = ticket_at(&private, "alice@pve", now - 101);
        assert!(!accepted(&keys, &fresh, now));
        assert!(accepted(&keys, &older, now));
        keys.quorate = false;
        assert!(accepted(&keys, &fresh, now));
    }

    #[test]
    fn age_window_matches_pve() {
        assert_eq!(age_window(T, T - 20_000, false, true), Some((-300, 7200)));
        assert_eq!(age_window(T, T - 1000, false, true), Some((-300, 1300)));
        // Keys from the future count as brand new.
        assert_eq!(age_window(T, T + 500, false, true), Some((-300, 300)));
        assert_eq!(age_window(T, T - 1000, true, true), Some((700, 7200)));
        assert_eq!(age_window(T, T - 7500, true, true), Some((7200, 7200)));
        assert_eq!(age_window(T, T - 7501, true, true), None);
        assert_eq!(
            age_window(T, T - AUTHKEY_LIFETIME - 7200, false, true),
            Some((7200, 7200))
        );
        assert_eq!(
            age_window(T, T - AUTHKEY_LIFETIME - 7201, false, true),
            None
        );
        assert_eq!(
            age_window(T, T - AUTHKEY_LIFETIME - 7201, false, false),
            Some((-300, 7200))
        );
        assert_eq!(age_window(T, i64::MIN, false, true), None);
    }

    #[test]
    fn assemble_rejects_times_outside_the_format() {
        let (private, _) = key_pair(0);
        assert!(matches!(
            assemble(&private, "root@pam", -1),
            Err(TicketError::Time(-1))
        ));
        assert!(matches!(
            assemble(&private, "root@pam", 1 << 32),
            Err(TicketError::Time(_))
        ));
    }

    #[test]
    fn renewal_accepts_own_and_root_tickets() {
        assert!(ticket_authorizes_login("alice@pve", "alice@pve"));
        assert!(ticket_authorizes_login("root@pam", "alice@pve"));
        assert!(!ticket_authorizes_login("alice@pve", "bob@pve"));
        assert!(!ticket_authorizes_login("alice@pve", "root@pam"));
    }
}
