//! The Go client Packer pins (Telmate/proxmox-api-go b149708f) cannot be installed here, so its
//! requests are replayed byte for byte and the bytes it depends on are asserted, one test per
//! quirk of clients-and-plugin.md §B.2.

use std::time::{Duration, Instant};

use crate::util;
use crate::util::{Daemon, NODE, Response, TOKEN_ID, TOKEN_SECRET};

/// `url.Values.Encode()` sorts keys; `ParamsToBody` drops empty values; `storage` is sent in
/// the body as well as the path (§B.1).
fn download_request(port: u16, storage: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /api2/json/nodes/{NODE}/storage/{storage}/download-url HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         User-Agent: Go-http-client/1.1\r\n\
         Content-Length: {}\r\n\
         Accept: application/json\r\n\
         Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         \r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn status_request(port: u16, node: &str, upid: &str) -> Vec<u8> {
    format!(
        "GET /api2/json/nodes/{node}/tasks/{upid}/status HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         User-Agent: Go-http-client/1.1\r\n\
         Accept: application/json\r\n\
         Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n\
         \r\n"
    )
    .into_bytes()
}

fn form_body(origin: u16, checksum: &str, filename: &str) -> String {
    format!(
        "checksum={checksum}&checksum-algorithm=sha256&content=iso&filename={filename}&storage=local\
         &url=http%3A%2F%2F127.0.0.1%3A{origin}%2F{filename}"
    )
}

/// The Go client's node extraction: the first capture of `UPID:(.*?):`.
fn node_of(upid: &str) -> &str {
    upid.strip_prefix("UPID:")
        .and_then(|r| r.split(':').next())
        .unwrap_or("")
}

/// Polls like `WaitForCompletion`; returns every status object seen.
fn poll(d: &Daemon, upid: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let r = d.raw(&status_request(d.port, node_of(upid), upid));
        assert!(
            r.status_line.starts_with("HTTP/1.1 200"),
            "{}",
            r.status_line
        );
        let data = r.json()["data"].clone();
        let done = data.get("exitstatus").is_some();
        seen.push(data);
        if done {
            return seen;
        }
        assert!(Instant::now() < deadline, "task did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_download(d: &Daemon, body: &str) -> (Response, String) {
    let r = d.raw(&download_request(d.port, "local", body));
    let upid = r.json()["data"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_default();
    (r, upid)
}

/// §B.2 item 1: download-url answers `{"data":"UPID:..."}`, a string (a non-string panics
/// the client); item 5: the redundant `storage` body parameter is accepted.
#[test]
fn b2_1_and_5_download_url_returns_a_upid_string() {
    let d = Daemon::start();
    let data = vec![7u8; 300_000];
    let origin = util::origin(data.clone());
    let (r, upid) = start_download(&d, &form_body(origin, &util::sha256_hex(&data), "go.iso"));
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    assert!(r.json()["data"].is_string());
    assert!(upid.starts_with("UPID:") && upid.ends_with(':'), "{upid}");
    assert_eq!(upid.split(':').count(), 9);
    poll(&d, &upid);
}

/// §B.2 items 2 and 3: status is always an object, has no `exitstatus` key while running
/// (never null, never ""), and ends with exactly "OK".
#[test]
fn b2_2_and_3_status_omits_exitstatus_until_done() {
    let d = Daemon::start();
    // Big enough that the first poll usually sees the task running; the assertions hold
    // either way.
    let data = vec![1u8; 64 << 20];
    let origin = util::origin(data.clone());
    let (_, upid) = start_download(&d, &form_body(origin, &util::sha256_hex(&data), "big.iso"));
    let seen = poll(&d, &upid);
    for s in &seen[..seen.len() - 1] {
        assert!(s.is_object());
        assert_eq!(s["status"], "running");
        assert!(
            s.get("exitstatus").is_none(),
            "exitstatus present while running: {s}"
        );
    }
    let last = seen.last().expect("one status");
    assert_eq!(last["status"], "stopped");
    assert_eq!(last["exitstatus"], "OK");
    assert_eq!(last["user"], "root@pam");
    assert_eq!(last["tokenid"], "packer");
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/big.iso"))
            .expect("file")
            .len(),
        data.len()
    );
}

/// §B.2 item 3: a failure ends with the error text, which does not match `^(OK|WARNINGS)`.
#[test]
fn b2_3_failure_exitstatus_is_the_error_text() {
    let d = Daemon::start();
    let origin = util::origin(b"not what you expected".to_vec());
    let wrong = "0".repeat(64);
    let (_, upid) = start_download(&d, &form_body(origin, &wrong, "bad.iso"));
    let last = poll(&d, &upid).pop().expect("status");
    let exit = last["exitstatus"].as_str().expect("string");
    assert_eq!(
        exit,
        format!(
            "checksum mismatch: got '{}' != expect '{wrong}'",
            util::sha256_hex(b"not what you expected")
        )
    );
    assert!(!exit.starts_with("OK") && !exit.starts_with("WARNINGS"));
    assert_eq!(
        util::files_under(&d.storage_path().join("template/iso")),
        Vec::<String>::new()
    );
}

/// §B.2 item 4: the UPID's node field is one the server routes `/nodes/<node>/tasks/...` for,
/// and the raw (unescaped) UPID in the path works.
#[test]
fn b2_4_node_from_upid_routes() {
    let d = Daemon::start();
    let data = b"tiny".to_vec();
    let origin = util::origin(data.clone());
    let (_, upid) = start_download(&d, &form_body(origin, &util::sha256_hex(&data), "tiny.iso"));
    assert_eq!(node_of(&upid), NODE);
    let last = poll(&d, &upid).pop().expect("status");
    assert_eq!(last["upid"], upid);
}

/// §B.1: the pinned client reports only `resp.Status`, so the reason phrase carries the
/// error text.
#[test]
fn b1_errors_travel_in_the_reason_phrase() {
    let d = Daemon::start();
    let r = d.raw(&download_request(
        d.port,
        "nope",
        "content=iso&filename=x.iso&url=http%3A%2F%2Fx%2Fx.iso",
    ));
    assert_eq!(r.status_line, "HTTP/1.1 500 storage 'nope' does not exist");
    assert_eq!(r.json()["message"], "storage 'nope' does not exist\n");
    assert_eq!(r.header("connection"), Some("close"));

    let r = d.raw(&download_request(
        d.port,
        "local",
        "content=iso&filename=x.txt&url=http%3A%2F%2Fx%2Fx.txt",
    ));
    assert_eq!(r.status_line, "HTTP/1.1 400 Parameter verification failed.");
    assert_eq!(r.json()["errors"]["filename"], "wrong file extension");
}

/// §B.2 item 6 / §A.2: a re-sent request for a file that is already there with the same
/// checksum is cheap and succeeds (Packer's rerun path).
#[test]
fn b2_6_repeated_request_with_checksum_succeeds_without_download() {
    let d = Daemon::start();
    let data = vec![3u8; 10_000];
    let origin = util::origin(data.clone());
    let body = form_body(origin, &util::sha256_hex(&data), "again.iso");
    let (_, first) = start_download(&d, &body);
    assert_eq!(poll(&d, &first).pop().expect("status")["exitstatus"], "OK");
    let (_, second) = start_download(&d, &body);
    assert_ne!(first, second);
    assert_eq!(poll(&d, &second).pop().expect("status")["exitstatus"], "OK");
    let log = d.raw(
        format!(
            "GET /api2/json/nodes/{NODE}/tasks/{second}/log?limit=0 HTTP/1.1\r\nHost: x\r\n\
             Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n\r\n"
        )
        .as_bytes(),
    );
    let lines: Vec<String> = log.json()["data"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["t"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        lines.contains(
            &"calculating checksum of existing file...OK, got correct file already, no need to download".to_string()
        ),
        "{lines:?}"
    );
}
