//! Ticket authentication as PVE does it (spec/pve-api.md §5.5, §6): `POST /access/ticket` with a
//! password (realms pve and pam) or a ticket in its place, tickets in the cookie or the
//! `Authorization` header, CSRF tokens on everything but GET, and in node mode tickets and
//! tokens that PVE itself would have made, checked against PVE's key files made here with the
//! openssl command line exactly as a PVE node makes them.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util;
use crate::util::{Daemon, NODE, Response, default_dir, files_under, origin, sha256_hex};

const ALICE_PW: &str = "Wonder land+&=%1";
const AUTH_FAILURE: &str = "HTTP/1.1 401 authentication failure";
const TICKET_FAILED: &str = "HTTP/1.1 401 Authentication failed!";
const BAD_CSRF: &str = "HTTP/1.1 401 Permission denied - invalid csrf token";
const OK: &str = "HTTP/1.1 200 OK";

fn isolib() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isolib"))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).expect("form")
}

/// `isolib user add` with the password on stdin (not a terminal), as a script would run it.
fn user_add(args: &[&str], password: &str) -> std::process::Output {
    let mut child = isolib()
        .args(["user", "add"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("isolib user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("password");
    child.wait_with_output().expect("wait")
}

/// Adds `userid` to the config files of a `default_dir` (user.cfg there, shadow.cfg under the
/// state dir the daemon uses).
fn add_user(root: &Path, userid: &str, role: Option<&str>, password: &str) {
    let user_cfg = root.join("user.cfg").display().to_string();
    let state = root.join("state").display().to_string();
    let mut args = vec![userid, "--user-cfg", &user_cfg, "--state-dir", &state];
    if let Some(role) = role {
        args.extend(["--role", role]);
    }
    let out = user_add(&args, password);
    assert!(
        out.status.success(),
        "user add {userid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn login(d: &Daemon, pairs: &[(&str, &str)]) -> Response {
    let body = form(pairs);
    d.raw(
        format!(
            "POST /api2/json/access/ticket HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

struct Issued {
    username: String,
    ticket: String,
    csrf: String,
    cap: serde_json::Value,
}

fn issued(r: &Response) -> Issued {
    assert_eq!(r.status_line, OK, "{}", String::from_utf8_lossy(&r.body));
    let data = &r.json()["data"];
    let text = |k: &str| {
        data[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k}"))
            .to_string()
    };
    Issued {
        username: text("username"),
        ticket: text("ticket"),
        csrf: text("CSRFPreventionToken"),
        cap: data["cap"].clone(),
    }
}

fn assert_auth_failure(r: &Response) {
    assert_eq!(
        r.status_line,
        AUTH_FAILURE,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.json(),
        serde_json::json!({"data": null, "message": "authentication failure\n"})
    );
}

fn assert_ticket_refused(r: &Response) {
    assert_eq!(r.status_line, TICKET_FAILED);
    assert!(r.body.is_empty(), "{}", String::from_utf8_lossy(&r.body));
}

/// GET with `header` (a whole header line) as the only credential.
fn get_with(d: &Daemon, path: &str, header: &str) -> Response {
    d.raw(format!("GET /api2/json{path} HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n").as_bytes())
}

fn get_with_cookie(d: &Daemon, path: &str, ticket: &str) -> Response {
    get_with(d, path, &format!("Cookie: PVEAuthCookie={ticket}"))
}

/// download-url on `storage` with the ticket in the cookie and, if given, the CSRF token.
fn download_with_ticket(
    d: &Daemon,
    storage: &str,
    ticket: &str,
    csrf: Option<&str>,
    body: &str,
) -> Response {
    let csrf = csrf
        .map(|c| format!("CSRFPreventionToken: {c}\r\n"))
        .unwrap_or_default();
    d.raw(
        format!(
            "POST /api2/json/nodes/{NODE}/storage/{storage}/download-url HTTP/1.1\r\nHost: x\r\n\
             Cookie: PVEAuthCookie={ticket}\r\n{csrf}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn upid_user(upid: &str) -> &str {
    let parts: Vec<&str> = upid.split(':').collect();
    assert_eq!(parts.len(), 9, "{upid}");
    parts[7]
}

/// A `default_dir` daemon with `alice@pve` (Administrator) made by `isolib user add`.
fn standalone() -> Daemon {
    let dir = default_dir();
    add_user(dir.path(), "alice@pve", Some("Administrator"), ALICE_PW);
    Daemon::start_in(dir)
}

fn alice_login(d: &Daemon) -> Issued {
    issued(&login(
        d,
        &[
            ("username", "alice"),
            ("realm", "pve"),
            ("password", ALICE_PW),
        ],
    ))
}

// ------------------------------------------------------------------------------------------------
// standalone mode: the daemon's own keys and shadow.cfg
// ------------------------------------------------------------------------------------------------

#[test]
fn user_add_then_login_gives_a_ticket_for_cookie_and_header() {
    let d = standalone();
    let user_cfg = std::fs::read_to_string(d.dir.path().join("user.cfg")).expect("user.cfg");
    assert!(
        user_cfg.contains("token:root@pam!packer:"),
        "user add kept the token: {user_cfg}"
    );
    let shadow = std::fs::read_to_string(d.dir.path().join("state/shadow.cfg")).expect("shadow");
    assert!(shadow.starts_with("alice:$5$"), "{shadow}");
    assert!(!shadow.contains(ALICE_PW));

    let before = now();
    let t = alice_login(&d);
    let after = now();
    assert_eq!(t.username, "alice@pve");
    let plain = t.ticket.split("::").next().expect("plain");
    assert!(plain.starts_with("PVE:alice@pve:"), "{}", t.ticket);
    assert_eq!(plain.len(), "PVE:alice@pve:".len() + 8);
    assert_eq!(t.csrf.len(), 8 + 1 + 43, "{}", t.csrf);
    assert_eq!(&t.csrf[..8], &plain[plain.len() - 8..]);
    let issued_at = i64::from_str_radix(&t.csrf[..8], 16).expect("hex stamp");
    assert!((before..=after).contains(&issued_at), "{}", t.csrf);
    assert_eq!(
        t.cap["storage"]["Datastore.AllocateTemplate"], 1,
        "{}",
        t.cap
    );
    assert_eq!(t.cap["nodes"]["Sys.Modify"], 1, "{}", t.cap);

    let r = get_with_cookie(&d, "/version", &t.ticket);
    assert_eq!(r.status_line, OK);
    assert!(r.json()["data"]["version"].is_string());
    let r = get_with(
        &d,
        "/version",
        &format!("Authorization: PVEAuthCookie={}", t.ticket),
    );
    assert_eq!(r.status_line, OK);
    // A browser stores the cookie percent-encoded; PVE decodes it.
    let encoded = t
        .ticket
        .replace(':', "%3A")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let r = get_with(
        &d,
        "/version",
        &format!("Cookie: lang=en; PVEAuthCookie={encoded}"),
    );
    assert_eq!(r.status_line, OK);
    // No credentials at all.
    let r = get_with(&d, "/version", "X-Nothing: 1");
    assert_eq!(r.status_line, "HTTP/1.1 401 No ticket");
}

#[test]
fn ticket_post_needs_its_csrf_token() {
    let d = standalone();
    let t = alice_login(&d);
    let data = b"iso bytes for a ticket download".to_vec();
    let sum = sha256_hex(&data);
    let port = origin(data.clone());
    let body = form(&[
        ("url", &format!("http://127.0.0.1:{port}/t.iso")),
        ("content", "iso"),
        ("filename", "ticket.iso"),
        ("checksum", &sum),
        ("checksum-algorithm", "sha256"),
    ]);

    let r = download_with_ticket(&d, "local", &t.ticket, None, &body);
    assert_eq!(r.status_line, BAD_CSRF);
    // A token of the right shape but for another user.
    let bob_csrf = {
        add_user(d.dir.path(), "bob@pve", None, "bobs password");
        issued(&login(
            &d,
            &[("username", "bob@pve"), ("password", "bobs password")],
        ))
        .csrf
    };
    let r = download_with_ticket(&d, "local", &t.ticket, Some(&bob_csrf), &body);
    assert_eq!(r.status_line, BAD_CSRF);
    // The Authorization form of the ticket needs the token as much.
    let r = d.post_download_raw(&format!("PVEAuthCookie={}", t.ticket), &body);
    assert_eq!(r.status_line, BAD_CSRF);
    assert!(files_under(&d.storage_path()).is_empty());

    let r = download_with_ticket(&d, "local", &t.ticket, Some(&t.csrf), &body);
    assert_eq!(r.status_line, OK, "{}", String::from_utf8_lossy(&r.body));
    let upid = r.json()["data"].as_str().expect("upid").to_string();
    assert_eq!(upid_user(&upid), "alice@pve");
    assert_eq!(d.wait(&upid), "OK");
    let file = d.storage_path().join("template/iso/ticket.iso");
    assert_eq!(std::fs::read(file).expect("downloaded"), data);
}

#[test]
fn wrong_password_and_unknown_user_fail_alike() {
    let d = standalone();
    let wrong = login(
        &d,
        &[("username", "alice@pve"), ("password", "not her password")],
    );
    assert_auth_failure(&wrong);
    let unknown = login(&d, &[("username", "nobody@pve"), ("password", ALICE_PW)]);
    assert_auth_failure(&unknown);
    assert_eq!(unknown.body, wrong.body);
    // With a realm parameter as well.
    let r = login(
        &d,
        &[
            ("username", "alice@pve"),
            ("realm", "pam"),
            ("password", "nope"),
        ],
    );
    assert_auth_failure(&r);
    // A second factor is never half-done: otp with the right password is refused.
    let r = login(
        &d,
        &[
            ("username", "alice@pve"),
            ("password", ALICE_PW),
            ("otp", "123456"),
        ],
    );
    assert_auth_failure(&r);
}

#[test]
fn a_ticket_renews_for_its_own_user_only() {
    let d = standalone();
    add_user(d.dir.path(), "bob@pve", None, "bobs password");
    let t = alice_login(&d);
    let renewed = issued(&login(
        &d,
        &[("username", "alice@pve"), ("password", &t.ticket)],
    ));
    assert_eq!(renewed.username, "alice@pve");
    assert!(renewed.ticket.starts_with("PVE:alice@pve:"));
    assert_eq!(
        get_with_cookie(&d, "/version", &renewed.ticket).status_line,
        OK
    );
    let r = login(&d, &[("username", "bob@pve"), ("password", &t.ticket)]);
    assert_auth_failure(&r);
    // Bob's password itself works, so it is the ticket that was refused for him.
    issued(&login(
        &d,
        &[("username", "bob@pve"), ("password", "bobs password")],
    ));
}

#[test]
fn a_tampered_ticket_is_refused() {
    let d = standalone();
    let t = alice_login(&d);
    let (plain, sig) = t.ticket.split_once("::").expect("signature");
    let mut sig: Vec<char> = sig.chars().collect();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{plain}::{}", sig.iter().collect::<String>());
    assert_ticket_refused(&get_with_cookie(&d, "/version", &tampered));
    // The signed text changed instead (another user), signature kept.
    let forged = t.ticket.replacen("alice@pve", "root@pam", 1);
    assert_ticket_refused(&get_with_cookie(&d, "/version", &forged));
    // Neither renews either.
    let r = login(&d, &[("username", "alice@pve"), ("password", &tampered)]);
    assert_auth_failure(&r);
    assert_eq!(get_with_cookie(&d, "/version", &t.ticket).status_line, OK);
}

#[test]
fn a_disabled_users_ticket_stops_working_without_restart() {
    let d = standalone();
    let t = alice_login(&d);
    assert_eq!(get_with_cookie(&d, "/version", &t.ticket).status_line, OK);
    let path = d.dir.path().join("user.cfg");
    let text = std::fs::read_to_string(&path).expect("user.cfg");
    let disabled = text.replacen("user:alice@pve:1:", "user:alice@pve:0:", 1);
    assert_ne!(disabled, text, "{text}");
    std::fs::write(&path, disabled).expect("write");
    assert_ticket_refused(&get_with_cookie(&d, "/version", &t.ticket));
    assert_auth_failure(&login(
        &d,
        &[("username", "alice@pve"), ("password", ALICE_PW)],
    ));
    assert_auth_failure(&login(
        &d,
        &[("username", "alice@pve"), ("password", &t.ticket)],
    ));
}

#[test]
fn get_access_ticket_needs_no_credentials() {
    let d = standalone();
    let r = d.raw(b"GET /api2/json/access/ticket HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status_line, OK);
    assert_eq!(r.json(), serde_json::json!({"data": null}));
}

#[test]
fn only_the_pve_and_pam_realms_log_in() {
    let dir = default_dir();
    add_user(dir.path(), "dave@pve", None, "daves password");
    // dave@ldap has the same name, so shadow.cfg holds a matching entry for "dave": only the
    // realm can refuse him.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("user.cfg"))
        .expect("user.cfg");
    f.write_all(b"user:dave@ldap:1:0::::::\n").expect("append");
    drop(f);
    let d = Daemon::start_in(dir);
    let t = issued(&login(
        &d,
        &[("username", "dave@pve"), ("password", "daves password")],
    ));
    assert_eq!(t.username, "dave@pve");
    assert_auth_failure(&login(
        &d,
        &[("username", "dave@ldap"), ("password", "daves password")],
    ));
    assert_auth_failure(&login(
        &d,
        &[
            ("username", "dave"),
            ("realm", "ldap"),
            ("password", "daves password"),
        ],
    ));
}

// ------------------------------------------------------------------------------------------------
// node mode: a stand-in /etc/pve made with the openssl CLI, as PVE makes it
// ------------------------------------------------------------------------------------------------

/// Runs `openssl` with `stdin` and returns its stdout.
fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("openssl stdin");
    drop(input);
    let out = child.wait_with_output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn base64(data: &[u8]) -> String {
    String::from_utf8(openssl(&["base64", "-A"], data)).expect("ascii")
}

fn genrsa(path: &Path) {
    openssl(
        &["genrsa", "-out", &path.display().to_string(), "2048"],
        b"",
    );
}

fn pubout(private: &Path, public: &Path) {
    openssl(
        &[
            "rsa",
            "-in",
            &private.display().to_string(),
            "-pubout",
            "-out",
            &public.display().to_string(),
        ],
        b"",
    );
}

/// A ticket as PVE's assemble_rsa_ticket makes it, signed by `key` (PEM file) at `time`.
fn mint_ticket(key: &Path, user: &str, time: i64) -> String {
    let plain = format!("PVE:{user}:{time:08X}");
    let signature = openssl(
        &["dgst", "-sha1", "-sign", &key.display().to_string()],
        plain.as_bytes(),
    );
    format!("{plain}::{}", base64(&signature))
}

fn hmac_sha256_base64_nopad(key_option: &str, data: &[u8]) -> String {
    let mac = openssl(
        &[
            "dgst", "-sha256", "-mac", "HMAC", "-macopt", key_option, "-binary",
        ],
        data,
    );
    base64(&mac).trim_end_matches('=').to_string()
}

/// A CSRF token as PVE makes it: the secret is the unpadded base64 HMAC-SHA256 of "" keyed with
/// the whole pve-www.key file; that text keys the HMAC of "<stamp>:<user>".
fn mint_csrf(www_key: &Path, user: &str, time: i64) -> String {
    let file = std::fs::read(www_key).expect("pve-www.key");
    let hex: String = file.iter().map(|b| format!("{b:02x}")).collect();
    let secret = hmac_sha256_base64_nopad(&format!("hexkey:{hex}"), b"");
    let stamp = format!("{time:08X}");
    let digest = hmac_sha256_base64_nopad(
        &format!("key:{secret}"),
        format!("{stamp}:{user}").as_bytes(),
    );
    format!("{stamp}:{digest}")
}

fn shadow_hash(password: &str, salt: &str) -> String {
    let out = openssl(&["passwd", "-5", "-salt", salt, password], b"");
    String::from_utf8(out).expect("ascii").trim().to_string()
}

/// The stand-in PVE dir and every byte the test put there.
struct PveDir {
    root: tempfile::TempDir,
    pve: PathBuf,
    wrote: BTreeMap<String, Vec<u8>>,
}

const BOB_PW: &str = "bobs secret";

impl PveDir {
    fn new() -> PveDir {
        let root = tempfile::tempdir().expect("tempdir");
        let pve = root.path().join("pve");
        std::fs::create_dir_all(pve.join("priv")).expect("mkdir");
        std::fs::create_dir_all(root.path().join("isos")).expect("mkdir");
        let mut p = PveDir {
            root,
            pve,
            wrote: BTreeMap::new(),
        };
        // cluster:`Cluster/Setup.pm`: genrsa for authkey.key and pve-www.key, -pubout for the
        // public half.
        genrsa(&p.path("priv/authkey.key"));
        pubout(&p.path("priv/authkey.key"), &p.path("authkey.pub"));
        genrsa(&p.path("pve-www.key"));
        for f in ["priv/authkey.key", "authkey.pub", "pve-www.key"] {
            p.record(f);
        }
        let shadow = format!(
            "alice:{}:\nbob:{}:\n",
            shadow_hash(ALICE_PW, "aBcD1234"),
            shadow_hash(BOB_PW, "xYz9XXab")
        );
        p.write("priv/shadow.cfg", &shadow);
        p.write(
            "user.cfg",
            "user:root@pam:1:0:::root@localhost:::\ntoken:root@pam!packer:0:0::\n\
             user:alice@pve:1:0:Alice::::\nuser:bob@pve:1:0:Bob::::\n\n\
             acl:1:/:alice@pve,bob@pve:Administrator:\n",
        );
        p.write(
            "priv/token.cfg",
            &format!("{} {}\n", util::TOKEN_ID, util::TOKEN_SECRET),
        );
        p.write(
            "priv/tfa.cfg",
            r#"{"users":{"bob@pve":{"totp":[{"id":"totp-0a1b2c","description":"phone","created":1700000000,"enable":true,"totp":"v2-0x1234"}]}}}"#,
        );
        p.write("domains.cfg", DOMAINS);
        let storage = format!(
            "dir: isos\n\tpath {}\n\tcontent iso,vztmpl\n",
            p.root.path().join("isos").display()
        );
        p.write("storage.cfg", &storage);
        p
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.pve.join(rel)
    }

    fn record(&mut self, rel: &str) {
        let bytes = std::fs::read(self.path(rel)).expect("read back");
        self.wrote.insert(rel.to_string(), bytes);
    }

    fn write(&mut self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).expect("write");
        self.record(rel);
    }

    fn start(&self) -> Daemon {
        // The daemon gets its own temp dir for state; the PVE dir stays with the test.
        let state = tempfile::tempdir().expect("tempdir");
        Daemon::start_bare(state, &["--pve-dir", &self.pve.display().to_string()])
    }

    /// (e): what is in the PVE dir now is exactly what the test put there.
    fn assert_untouched(&self) {
        let now: BTreeMap<String, Vec<u8>> = files_under(&self.pve)
            .into_iter()
            .map(|name| {
                let bytes = std::fs::read(self.pve.join(&name)).expect("read");
                (name, bytes)
            })
            .collect();
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            self.wrote.keys().collect::<Vec<_>>()
        );
        for (name, bytes) in &self.wrote {
            assert!(now[name] == *bytes, "{name} changed");
        }
    }
}

const DOMAINS: &str = "pam: pam\n\tcomment Linux PAM standard authentication\n\n\
                       pve: pve\n\tcomment Proxmox VE authentication server\n";

#[test]
fn node_mode_accepts_tickets_and_csrf_tokens_minted_like_pve() {
    let pve = PveDir::new();
    let d = pve.start();
    let t = now();
    let ticket = mint_ticket(&pve.path("priv/authkey.key"), "alice@pve", t);
    let csrf = mint_csrf(&pve.path("pve-www.key"), "alice@pve", t);

    let r = get_with_cookie(&d, "/version", &ticket);
    assert_eq!(r.status_line, OK);
    let r = get_with(
        &d,
        &format!("/nodes/{NODE}/storage"),
        &format!("Authorization: PVEAuthCookie={ticket}"),
    );
    assert_eq!(r.status_line, OK);

    let data = b"bytes fetched with a PVE ticket".to_vec();
    let port = origin(data.clone());
    let body = form(&[
        ("url", &format!("http://127.0.0.1:{port}/pve.iso")),
        ("content", "iso"),
        ("filename", "pve-ticket.iso"),
        ("checksum", &sha256_hex(&data)),
        ("checksum-algorithm", "sha256"),
    ]);
    assert_eq!(
        download_with_ticket(&d, "isos", &ticket, None, &body).status_line,
        BAD_CSRF
    );
    let bobs = mint_csrf(&pve.path("pve-www.key"), "bob@pve", t);
    assert_eq!(
        download_with_ticket(&d, "isos", &ticket, Some(&bobs), &body).status_line,
        BAD_CSRF
    );
    let r = download_with_ticket(&d, "isos", &ticket, Some(&csrf), &body);
    assert_eq!(r.status_line, OK, "{}", String::from_utf8_lossy(&r.body));
    let upid = r.json()["data"].as_str().expect("upid").to_string();
    assert_eq!(upid_user(&upid), "alice@pve");
    assert_eq!(d.wait(&upid), "OK");
    let file = pve.root.path().join("isos/template/iso/pve-ticket.iso");
    assert_eq!(std::fs::read(file).expect("downloaded"), data);

    // (b) A key PVE does not have.
    let stranger = pve.root.path().join("stranger.key");
    genrsa(&stranger);
    assert_ticket_refused(&get_with_cookie(
        &d,
        "/version",
        &mint_ticket(&stranger, "alice@pve", t),
    ));
    // PVE's key, but expired, or too far in the future.
    let key = pve.path("priv/authkey.key");
    assert_ticket_refused(&get_with_cookie(
        &d,
        "/version",
        &mint_ticket(&key, "alice@pve", t - 7300),
    ));
    assert_ticket_refused(&get_with_cookie(
        &d,
        "/version",
        &mint_ticket(&key, "alice@pve", t + 400),
    ));
    // A user who is not in user.cfg.
    assert_ticket_refused(&get_with_cookie(
        &d,
        "/version",
        &mint_ticket(&key, "mallory@pve", t),
    ));

    // A PVE ticket renews on the daemon, and the renewal is PVE's ticket again.
    let renewed = issued(&login(
        &d,
        &[("username", "alice@pve"), ("password", &ticket)],
    ));
    assert_eq!(renewed.username, "alice@pve");
    drop(d);
    pve.assert_untouched();
}

#[test]
fn node_mode_honours_the_rotated_keys_window() {
    let mut pve = PveDir::new();
    let d = pve.start();
    // Rotate as PVE does: the public key moves to authkey.pub.old, a new pair takes its place.
    // The old private key goes outside the PVE dir so the test can go on signing with it.
    let old_key = pve.root.path().join("old-authkey.key");
    std::fs::rename(pve.path("priv/authkey.key"), &old_key).expect("move key");
    std::fs::rename(pve.path("authkey.pub"), pve.path("authkey.pub.old")).expect("move pub");
    genrsa(&pve.path("priv/authkey.key"));
    pubout(&pve.path("priv/authkey.key"), &pve.path("authkey.pub"));
    for f in ["priv/authkey.key", "authkey.pub", "authkey.pub.old"] {
        pve.record(f);
    }
    // The old key's mtime is the rotation time; put it 1000 s back. Per ticket::age_window a
    // ticket it signed passes while issued before rotation + 300 s of grace.
    let t = now();
    let rotated = t - 1000;
    let status = Command::new("touch")
        .args(["-d", &format!("@{rotated}")])
        .arg(pve.path("authkey.pub.old"))
        .status()
        .expect("touch");
    assert!(status.success());

    let inside = mint_ticket(&old_key, "alice@pve", rotated + 200);
    let r = get_with_cookie(&d, "/version", &inside);
    assert_eq!(r.status_line, OK, "old key, issued before the rotation");
    let outside = mint_ticket(&old_key, "alice@pve", rotated + 400);
    assert_ticket_refused(&get_with_cookie(&d, "/version", &outside));

    // The new key signs from now on; a ticket it claims to have signed long before it existed
    // is refused (the key is younger than the ticket by more than the grace period).
    let new_key = pve.path("priv/authkey.key");
    let fresh = mint_ticket(&new_key, "alice@pve", t);
    assert_eq!(get_with_cookie(&d, "/version", &fresh).status_line, OK);
    assert_ticket_refused(&get_with_cookie(
        &d,
        "/version",
        &mint_ticket(&new_key, "alice@pve", t - 800),
    ));
    // Logging in signs with the new key.
    let issued = alice_login(&d);
    assert_eq!(
        get_with_cookie(&d, "/version", &issued.ticket).status_line,
        OK
    );
    drop(d);
    pve.assert_untouched();
}

#[test]
fn node_mode_login_signs_like_pve_and_respects_second_factors() {
    let mut pve = PveDir::new();
    let d = pve.start();

    // (d) No second factor: a ticket and token the test can reproduce bit for bit.
    let t = alice_login(&d);
    assert_eq!(t.username, "alice@pve");
    let stamp = &t.csrf[..8];
    let time = i64::from_str_radix(stamp, 16).expect("hex stamp");
    assert_eq!(
        t.ticket,
        mint_ticket(&pve.path("priv/authkey.key"), "alice@pve", time)
    );
    assert_eq!(
        t.csrf,
        mint_csrf(&pve.path("pve-www.key"), "alice@pve", time)
    );

    // bob has a TOTP entry in tfa.cfg: PVE would ask for it, so no ticket here.
    let bob = [("username", "bob@pve"), ("password", BOB_PW)];
    assert_auth_failure(&login(&d, &bob));
    // Without the entry the same password works (and the file is followed without a restart).
    pve.write("priv/tfa.cfg", r#"{"users":{}}"#);
    assert_eq!(issued(&login(&d, &bob)).username, "bob@pve");
    assert_auth_failure(&login(
        &d,
        &[("username", "bob@pve"), ("password", ALICE_PW)],
    ));

    // A realm that requires a second factor refuses everyone in it.
    pve.write(
        "domains.cfg",
        &DOMAINS.replace("server\n", "server\n\ttfa type=oath\n"),
    );
    assert!(pve.wrote["domains.cfg"].ends_with(b"\ttfa type=oath\n"));
    assert_auth_failure(&login(
        &d,
        &[("username", "alice@pve"), ("password", ALICE_PW)],
    ));
    assert_auth_failure(&login(&d, &bob));
    pve.write("domains.cfg", DOMAINS);
    alice_login(&d);
    drop(d);
    pve.assert_untouched();
}

// ------------------------------------------------------------------------------------------------
// realm pam through a PAM service of the test's own
// ------------------------------------------------------------------------------------------------

const CAROL_PW: &str = "carols pam password";

#[test]
fn pam_realm_logs_in_through_the_configured_service() {
    let dir = default_dir();
    let root = dir.path().to_path_buf();
    let pam_dir = root.join("pam.d");
    std::fs::create_dir_all(&pam_dir).expect("mkdir");
    let seen = root.join("pam-users.log");
    let script = root.join("check.sh");
    // pam_exec hands the password on stdin (NUL-terminated); PAM_USER is the name PAM got.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$PAM_USER\" >> '{}'\npw=$(tr -d '\\000')\n[ \"$pw\" = '{CAROL_PW}' ]\n",
            seen.display()
        ),
    )
    .expect("check.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        pam_dir.join("isolib-test"),
        format!(
            "auth required pam_exec.so expose_authtok quiet {}\naccount required pam_permit.so\n",
            script.display()
        ),
    )
    .expect("service");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("user.cfg"))
        .expect("user.cfg");
    f.write_all(b"user:carol@pam:1:0::::::\n").expect("append");
    drop(f);
    let d = Daemon::spawn_wrapped(
        dir,
        &[],
        &[
            "--pam-confdir",
            &pam_dir.display().to_string(),
            "--pam-service",
            "isolib-test",
        ],
    );

    let t = issued(&login(
        &d,
        &[("username", "carol@pam"), ("password", CAROL_PW)],
    ));
    assert_eq!(t.username, "carol@pam");
    assert!(t.ticket.starts_with("PVE:carol@pam:"));
    assert_eq!(get_with_cookie(&d, "/version", &t.ticket).status_line, OK);
    let users = std::fs::read_to_string(&seen).expect("the PAM service ran");
    assert_eq!(users, "carol\n", "PAM gets the name without the realm");

    assert_auth_failure(&login(
        &d,
        &[("username", "carol@pam"), ("password", "not carols")],
    ));
    // The script would accept dave's password; user.cfg does not know him.
    assert_auth_failure(&login(
        &d,
        &[
            ("username", "dave"),
            ("realm", "pam"),
            ("password", CAROL_PW),
        ],
    ));
}
