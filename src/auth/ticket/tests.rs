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
        0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
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
