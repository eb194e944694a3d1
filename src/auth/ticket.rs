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
mod tests;
