//! Operator limits end with clear errors and leave nothing behind: max-size (from the length,
//! and mid-stream for a body without one), a full disk known up front from the length, a disk
//! filling up mid-transfer (ENOSPC, on a 2 MiB tmpfs in a private mount namespace, decompressed
//! or plain without a length), max-transfers queueing (and stopping a queued task), and the
//! API's request header limits.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::util;
use crate::util::{Daemon, TOKEN_ID, TOKEN_SECRET};

fn body(origin: u16, name: &str, extra: &str) -> String {
    format!("content=iso&filename={name}&url=http%3A%2F%2F127.0.0.1%3A{origin}%2F{name}{extra}")
}

#[test]
fn max_size_refuses_larger_files() {
    let d = Daemon::start_with(&["--max-size", "1000"]);
    let origin = util::origin(vec![0u8; 5000]);
    let upid = d.post_download(&body(origin, "big.iso", ""));
    assert_eq!(
        d.wait(&upid),
        "download failed: the file is larger than the limit of 1000 bytes (max-size)"
    );
    assert_eq!(util::files_under(&d.storage_path()), Vec::<String>::new());
}

/// Without a length up front only the bytes can trip max-size: the transfer stops there,
/// with no retry (a limit does not heal), and the partial file goes.
#[test]
fn max_size_stops_a_body_without_length_mid_stream() {
    let d = Daemon::start_with(&["--max-size", "100000"]);
    let origin = util::fault_origin_traced(
        vec![7u8; 500_000],
        vec![util::Step::Chunked { chunk: 16 * 1024 }],
    );
    let upid = d.post_download(&body(origin.port, "big.iso", ""));
    assert_eq!(
        d.wait(&upid),
        "download failed: the file is larger than the limit of 100000 bytes (max-size)"
    );
    let log = d.log_lines(&upid);
    assert!(log.contains(&"length: unspecified".to_string()), "{log:?}");
    assert!(log.iter().all(|l| !l.contains("retry")), "{log:?}");
    assert_eq!(events(&origin), ["get 0"]);
    assert_eq!(util::files_under(&d.storage_path()), Vec::<String>::new());
    assert_eq!(staged(&d.storage_path()), Vec::<String>::new());
}

fn version_with_headers(d: &Daemon, extra: &str) -> util::Response {
    d.raw(
        format!(
            "GET /api2/json/version HTTP/1.1\r\nHost: x\r\n\
             Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n{extra}\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn request_headers_over_the_limits_get_431() {
    let big = format!("X-Big: {}\r\n", "a".repeat(9000));
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();

    let d = Daemon::start();
    let r = version_with_headers(&d, &big);
    let text = "http header too large (> 8192 bytes, max-header-size)";
    assert_eq!(r.status_line, format!("HTTP/1.1 431 {text}"));
    assert_eq!(r.body, text.as_bytes());
    assert_eq!(
        version_with_headers(&d, &many).status_line,
        "HTTP/1.1 431 too many http header lines (> 64, max-header-count)"
    );
    assert_eq!(version_with_headers(&d, "").status_line, "HTTP/1.1 200 OK");
    drop(d);

    let d = Daemon::start_with(&["--max-header-size", "16384", "--max-header-count", "80"]);
    assert_eq!(
        version_with_headers(&d, &big).status_line,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        version_with_headers(&d, &many).status_line,
        "HTTP/1.1 200 OK"
    );
    // Past actix's own ceiling of 96 fields the request never reaches isolib.
    let too_many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = version_with_headers(&d, &too_many);
    assert!(
        r.status_line.starts_with("HTTP/1.1 431 "),
        "{}",
        r.status_line
    );
}

const WAIT_LINE: &str = "waiting for a free transfer slot (1 transfers running, max-transfers)";

/// A daemon with one transfer slot and an origin whose first answer stops after 100 000 bytes
/// until the test opens `gate`; `one.iso` holds the slot when this returns.
fn one_slot_held() -> (Daemon, util::FaultOrigin, util::Gate, String, Vec<u8>) {
    let d = Daemon::start_with(&["--max-transfers", "1"]);
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let gate = util::Gate::default();
    let origin = util::fault_origin_traced(
        data.clone(),
        vec![
            util::Step::Gated {
                etag: "\"q\"",
                n: 100_000,
                gate: gate.clone(),
            },
            util::Step::Serve {
                etag: "\"q\"",
                limit: None,
            },
        ],
    );
    let first = d.post_download(&body(origin.port, "one.iso", ""));
    util::wait_until("the first GET", || {
        origin.seen.lock().expect("lock").len() == 1
    });
    (d, origin, gate, first, data)
}

/// What the staging dir of a storage holds (partial files and their resume state).
fn staged(store: &std::path::Path) -> Vec<String> {
    util::entries_under(&store.join(".isolib-partial"))
}

fn events(o: &util::FaultOrigin) -> Vec<String> {
    o.events.lock().expect("lock").clone()
}

/// POSTs a download-url JSON body padded with trailing blanks (valid JSON) to exactly `len`
/// bytes. The body goes out from another thread: a daemon that refuses it unread must not
/// leave the test stuck in a write.
fn post_json_of_len(d: &Daemon, origin: u16, len: usize) -> util::Response {
    let json = format!(
        "{{\"content\":\"iso\",\"filename\":\"pad.iso\",\"url\":\"http://127.0.0.1:{origin}/pad.iso\"}}"
    );
    let body = format!("{json}{}", " ".repeat(len - json.len()));
    let mut req = format!(
        "POST /api2/json/nodes/{}/storage/local/download-url HTTP/1.1\r\nHost: x\r\n\
         Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        util::NODE
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&req);
    });
    let r = util::Response::read(&mut s);
    let _ = writer.join();
    r
}

fn assert_too_large(r: &util::Response) {
    assert_eq!(r.status_line, "HTTP/1.1 501 for data too large");
    assert_eq!(r.body, b"for data too large");
}

/// As PVE: a body up to the limit is taken, one byte more gets 501 "for data too large", and
/// the daemon goes on serving.
#[test]
fn request_bodies_over_max_body_size_get_501() {
    let origin = util::origin(vec![4u8; 1000]);
    let d = Daemon::start();
    let r = post_json_of_len(&d, origin, 512 * 1024);
    assert_eq!(r.status_line, "HTTP/1.1 200 OK", "{r:?}");
    assert_too_large(&post_json_of_len(&d, origin, 512 * 1024 + 1));
    // Refused before authentication, as PVE refuses it while reading the request head: no
    // credentials, and not a byte of the body sent.
    let unauthenticated = d.raw(
        format!(
            "POST /api2/json/nodes/{}/storage/local/download-url HTTP/1.1\r\nHost: x\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            util::NODE,
            512 * 1024 + 1
        )
        .as_bytes(),
    );
    assert_too_large(&unauthenticated);
    assert_eq!(version_with_headers(&d, "").status_line, "HTTP/1.1 200 OK");
    // The upload method streams its multipart body past the limit (PVE's `isUpload`): a body
    // that never comes is a failed upload, not one that is too big. It still needs credentials.
    let upload = |auth: &str| {
        d.raw(
            format!(
                "POST /api2/json/nodes/{}/storage/local/upload HTTP/1.1\r\nHost: x\r\n{auth}\
                 Content-Type: multipart/form-data; boundary=x\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                util::NODE,
                64 * 1024 * 1024
            )
            .as_bytes(),
        )
    };
    let r = upload(&format!(
        "Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n"
    ));
    assert!(
        r.status_line.starts_with("HTTP/1.1 501 upload failed"),
        "{r:?}"
    );
    assert_eq!(upload("").status_line, "HTTP/1.1 401 No ticket");
    drop(d);

    let d = Daemon::start_with(&["--max-body-size", "4096"]);
    assert_too_large(&post_json_of_len(&d, origin, 4097));
    assert_eq!(version_with_headers(&d, "").status_line, "HTTP/1.1 200 OK");
    let r = post_json_of_len(&d, origin, 4096);
    assert_eq!(r.status_line, "HTTP/1.1 200 OK", "{r:?}");
    let upid = serde_json::from_slice::<serde_json::Value>(&r.body).expect("json")["data"]
        .as_str()
        .expect("upid")
        .to_string();
    assert_eq!(d.wait(&upid), "OK");
    assert_eq!(
        util::files_under(&d.storage_path()),
        ["template/iso/pad.iso"]
    );
}

#[test]
fn max_transfers_queues_and_says_so() {
    let (d, origin, gate, first, data) = one_slot_held();
    let second = d.post_download(&body(origin.port, "two.iso", ""));
    util::wait_until("the second task to queue", || {
        d.log_lines(&second).contains(&WAIT_LINE.to_string())
    });
    gate.open();
    assert_eq!(d.wait(&first), "OK", "{:?}", d.log_lines(&first));
    assert_eq!(d.wait(&second), "OK", "{:?}", d.log_lines(&second));
    // The second GET came after the first transfer's last bytes left the origin: it waited
    // for the slot rather than running alongside.
    assert_eq!(events(&origin), ["get 0", "rest 0", "get 1"]);
    assert_eq!(
        *origin.served.lock().expect("lock"),
        [data.len(), data.len()]
    );
    let first_log = d.log_lines(&first);
    assert!(
        first_log.iter().all(|l| !l.starts_with("waiting")),
        "{first_log:?}"
    );
    assert_eq!(
        d.log_lines(&second)
            .iter()
            .filter(|l| l.starts_with("waiting"))
            .collect::<Vec<_>>(),
        [WAIT_LINE]
    );
    let iso = d.storage_path().join("template/iso");
    assert_eq!(std::fs::read(iso.join("one.iso")).expect("one"), data);
    assert_eq!(std::fs::read(iso.join("two.iso")).expect("two"), data);
    assert_eq!(
        util::files_under(&d.storage_path()),
        ["template/iso/one.iso", "template/iso/two.iso"]
    );
}

/// A queued task stops like a running one, and since it never got a slot it never asked the
/// origin for anything.
#[test]
fn stopping_a_queued_task_ends_it_without_a_request() {
    let (d, origin, gate, first, data) = one_slot_held();
    let second = d.post_download(&body(origin.port, "two.iso", ""));
    util::wait_until("the second task to queue", || {
        d.log_lines(&second).contains(&WAIT_LINE.to_string())
    });
    assert_eq!(d.stop_task(&second).status_line, "HTTP/1.1 200 OK");
    assert_eq!(d.wait(&second), "download failed: received interrupt");
    let log = d.log_lines(&second);
    assert_eq!(
        log.last().map(String::as_str),
        Some("TASK ERROR: download failed: received interrupt"),
        "{log:?}"
    );
    assert!(log.iter().all(|l| !l.starts_with("length")), "{log:?}");
    gate.open();
    assert_eq!(d.wait(&first), "OK", "{:?}", d.log_lines(&first));
    assert_eq!(events(&origin), ["get 0", "rest 0"]);
    assert_eq!(*origin.served.lock().expect("lock"), [data.len()]);
    assert_eq!(
        util::files_under(&d.storage_path()),
        ["template/iso/one.iso"]
    );
    assert_eq!(staged(&d.storage_path()), Vec::<String>::new());
}

/// The daemon on a storage whose directory is a 2 MiB tmpfs, mounted in its own user and
/// mount namespace (no root needed); the test reads its files through /proc/<pid>/root.
fn daemon_on_small_disk() -> (Daemon, PathBuf) {
    let dir = util::default_dir();
    let store = dir.path().join("local");
    let d = Daemon::spawn_on_tmpfs(dir, &store, "2m");
    let seen = d.in_namespace(&store);
    (d, seen)
}

#[test]
fn announced_length_larger_than_free_space_fails_up_front() {
    let (d, store) = daemon_on_small_disk();
    let (origin, gets) = util::fault_origin(
        vec![0u8; 5_000_000],
        vec![util::Step::Serve {
            etag: "\"x\"",
            limit: None,
        }],
    );
    let upid = d.post_download(&body(origin, "huge.iso", ""));
    let exit = d.wait(&upid);
    let prefix = format!(
        "download failed: not enough free space in '{}': 5000000 bytes needed, ",
        d.staging_path().display()
    );
    assert!(exit.starts_with(&prefix), "{exit}");
    assert_eq!(gets.lock().expect("lock").len(), 1, "no retry");
    assert_eq!(util::files_under(&store), Vec::<String>::new());
}

#[test]
fn disk_full_mid_transfer_ends_with_enospc_and_nothing_left() {
    let (d, store) = daemon_on_small_disk();
    // 8 MiB of zeros gzip to a few KiB: the length fits, the decompressed output does not.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 8 << 20]).expect("gzip");
    let origin = util::origin(gz.finish().expect("gzip"));
    let upid = d.post_download(&body(origin, "zeros.iso", "&compression=gz"));
    let exit = d.wait(&upid);
    assert!(
        exit.starts_with("download failed: unable to write '")
            && exit.ends_with("No space left on device (os error 28)"),
        "{exit}"
    );
    assert_eq!(util::files_under(&store), Vec::<String>::new());
}

/// A plain body without a length: the free-space check up front has nothing to go on, so
/// the disk fills up mid-transfer and the write error ends the task.
#[test]
fn disk_full_mid_transfer_without_length_ends_with_enospc_and_nothing_left() {
    let (d, store) = daemon_on_small_disk();
    let origin = util::fault_origin_traced(
        vec![3u8; 5_000_000],
        vec![util::Step::Chunked { chunk: 64 * 1024 }],
    );
    let upid = d.post_download(&body(origin.port, "full.iso", ""));
    let exit = d.wait(&upid);
    // The partial file's name carries a random tag: `<name>.<node>-<32 hex>.part`.
    let prefix = format!(
        "download failed: unable to write '{}/full.iso.{}-",
        d.staging_path().display(),
        util::NODE
    );
    let suffix = ".part': No space left on device (os error 28)";
    let tag = exit
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .unwrap_or_else(|| panic!("{exit}"));
    assert!(
        tag.len() == 32 && tag.bytes().all(|b| b.is_ascii_hexdigit()),
        "{exit}"
    );
    let log = d.log_lines(&upid);
    assert!(log.contains(&"length: unspecified".to_string()), "{log:?}");
    assert!(log.iter().all(|l| !l.contains("retry")), "{log:?}");
    assert_eq!(events(&origin), ["get 0"]);
    assert_eq!(util::files_under(&store), Vec::<String>::new());
    assert_eq!(staged(&store), Vec::<String>::new());
}

/// Lower bounds only: pacing can make a transfer slower than the limit, never faster.
#[test]
fn bandwidth_limits_per_transfer_and_overall() {
    let d = Daemon::start_with(&["--bwlimit", "100"]);
    let origin = util::origin(vec![1u8; 300 * 1024]);
    let started = std::time::Instant::now();
    let upid = d.post_download(&body(origin, "slow.iso", ""));
    assert_eq!(d.wait(&upid), "OK");
    // 300 KiB at 100 KiB/s, less the 250 ms burst allowance.
    assert!(
        started.elapsed() >= Duration::from_millis(2750),
        "{:?}",
        started.elapsed()
    );
    drop(d);

    let d = Daemon::start_with(&["--bwlimit-total", "100"]);
    let origin = util::origin(vec![2u8; 150 * 1024]);
    let started = std::time::Instant::now();
    let a = d.post_download(&body(origin, "a.iso", ""));
    let b = d.post_download(&body(origin, "b.iso", ""));
    assert_eq!(d.wait(&a), "OK");
    assert_eq!(d.wait(&b), "OK");
    assert!(
        started.elapsed() >= Duration::from_millis(2750),
        "{:?}",
        started.elapsed()
    );
}

/// `GET /version` with the superuser token, by curl from source address `from`.
fn version_from(d: &Daemon, from: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "60", "--interface", from, "-H"])
        .arg(format!(
            "Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}"
        ))
        .arg(format!("http://127.0.0.1:{}/api2/json/version", d.port))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A client that opens many connections and sends half a body on each (on the unauthenticated
/// login, as an attacker would) holds at most max-connections-per-address of them, each only
/// until client-timeout, and a client at another address is answered all the while.
#[test]
fn slow_clients_cannot_stop_the_daemon() {
    let d = Daemon::start_with(&[
        "--client-timeout",
        "3",
        "--max-connections-per-address",
        "20",
    ]);
    let partial = "POST /api2/json/access/ticket HTTP/1.1\r\nHost: x\r\n\
                   Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n\
                   username=root%40pam&password=";
    let mut held: Vec<std::net::TcpStream> = (0..60)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
            // A connection closed on accept may refuse the write; that is its answer too.
            let _ = s.write_all(partial.as_bytes());
            s
        })
        .collect();

    let answer = version_from(&d, "127.0.0.2");
    assert!(
        answer.contains("\"repoid\""),
        "another address is answered: {answer:?}"
    );

    // Each connection ends: the 20 admitted with a 408 once they have been silent for
    // client-timeout, the 40 over the cap with nothing at all.
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(s, &mut buf);
        let first = String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("(closed)")
            .to_string();
        *answers.entry(first).or_default() += 1;
    }
    assert_eq!(
        answers,
        [
            ("(closed)".to_string(), 40),
            ("HTTP/1.1 408 timeout reading request body".to_string(), 20)
        ]
        .into()
    );
    // With them gone, the address is served again.
    let answer = version_from(&d, "127.0.0.1");
    assert!(answer.contains("\"repoid\""), "{answer:?}");
}
