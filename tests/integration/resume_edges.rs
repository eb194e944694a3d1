//! The edges of resuming: an origin that accepts and never answers, one that gives no
//! validator (so a resume could splice two versions), one that answers 416 because the bytes
//! already in are the whole file, and a request that must not take bytes fetched with less
//! checking than it asked for. Each origin here is a few lines of raw HTTP scripted per
//! connection, so the test sees every request head.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::util;
use crate::util::{Daemon, Step};

fn data() -> Vec<u8> {
    (0..800_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect()
}

const ISO: &str = "template/iso/e.iso";

fn request(origin: u16, extra: &str) -> String {
    format!("content=iso&filename=e.iso&url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fe.iso{extra}")
}

/// The request heads the origin saw, lower-cased, one per connection.
type Heads = Arc<Mutex<Vec<String>>>;

fn seen(heads: &Heads) -> Vec<String> {
    heads.lock().expect("lock").clone()
}

/// Serves connection `i` with `answer(i, stream)` after reading its head, each connection in a
/// thread of its own so a silent one holds up no other. Runs until the test process ends; each
/// answer closes its connection.
fn scripted_origin(answer: impl Fn(usize, &mut TcpStream) + Send + Sync + 'static) -> (u16, Heads) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let heads: Heads = Arc::default();
    let seen = heads.clone();
    let answer = Arc::new(answer);
    thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let (seen, answer) = (seen.clone(), answer.clone());
            thread::spawn(move || {
                seen.lock()
                    .expect("lock")
                    .push(util::read_head(&mut conn).to_ascii_lowercase());
                answer(i, &mut conn);
            });
        }
    });
    (port, heads)
}

fn head(status: &str, headers: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n").into_bytes()
}

/// Writes one whole answer; a client that hung up is no concern of the origin's.
fn answer(conn: &mut TcpStream, status: &str, headers: &str, body: &[u8]) {
    let mut out = head(status, headers);
    out.extend_from_slice(body);
    let _ = conn.write_all(&out);
}

fn length(n: usize) -> String {
    format!("Content-Length: {n}\r\n")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

fn stored(d: &Daemon) -> Vec<String> {
    util::files_under(&d.storage_path())
}

/// The request parameters that make the daemon check `body`'s sha256.
fn checksum_of(body: &[u8]) -> String {
    format!(
        "&checksum-algorithm=sha256&checksum={}",
        util::sha256_hex(body)
    )
}

fn assert_logged(d: &Daemon, upid: &str, line: &str) {
    let log = d.log_lines(upid);
    assert!(log.iter().any(|l| l == line), "no {line:?} in {log:?}");
}

/// The task ended OK, and the storage holds exactly `body` under its name.
fn assert_done(d: &Daemon, upid: &str, body: &[u8]) {
    assert_eq!(d.wait(upid), "OK", "{:?}", d.log_lines(upid));
    assert_eq!(
        std::fs::read(d.storage_path().join(ISO)).expect("file"),
        body
    );
    assert_eq!(stored(d), [ISO]);
}

#[test]
fn an_origin_that_never_answers_counts_as_a_stall() {
    let d = Daemon::start_with(&["--stall-timeout", "1"]);
    let body = data();
    let served = body.clone();
    let (origin, heads) = scripted_origin(move |i, conn| {
        if i == 0 {
            // Accepted and read, then silence far beyond the stall timeout.
            thread::sleep(Duration::from_secs(20));
            return;
        }
        answer(conn, "200 OK", &length(served.len()), &served);
    });
    let upid = d.post_download(&request(origin, &checksum_of(&body)));
    assert_done(&d, &upid, &body);
    assert_logged(
        &d,
        &upid,
        "transfer failed after 0 bytes: no response received for 1s; retry 1 of 5 in 1s",
    );
    assert_eq!(seen(&heads).len(), 2);
}

#[test]
fn without_validator_or_checksum_a_retry_starts_from_zero() {
    let d = Daemon::start();
    let body = data();
    let served = body.clone();
    // Neither ETag nor Last-Modified; the first answer breaks off.
    let (origin, heads) = scripted_origin(move |i, conn| {
        let sent = if i == 0 { &served[..300_000] } else { &served };
        answer(conn, "200 OK", &length(served.len()), sent);
    });
    let upid = d.post_download(&request(origin, ""));
    assert_done(&d, &upid, &body);
    assert_logged(
        &d,
        &upid,
        "the origin sent neither ETag nor Last-Modified and no checksum was given; restarting from zero",
    );
    let heads = seen(&heads);
    assert_eq!(heads.len(), 2);
    assert_eq!(header(&heads[1], "range"), None, "{heads:?}");
}

#[test]
fn with_a_checksum_a_resume_without_validator_sends_a_plain_range() {
    let d = Daemon::start();
    let body = data();
    let served = body.clone();
    let cut = 300_000;
    let (origin, heads) = scripted_origin(move |i, conn| {
        let len = served.len();
        if i == 0 {
            answer(conn, "200 OK", &length(len), &served[..cut]);
        } else {
            let range = format!("Content-Range: bytes {cut}-{}/{len}\r\n", len - 1);
            answer(
                conn,
                "206 Partial Content",
                &(length(len - cut) + &range),
                &served[cut..],
            );
        }
    });
    let upid = d.post_download(&request(origin, &checksum_of(&body)));
    assert_done(&d, &upid, &body);
    let heads = seen(&heads);
    assert_eq!(heads.len(), 2);
    assert_eq!(header(&heads[1], "range"), Some("bytes=300000-"));
    assert_eq!(header(&heads[1], "if-range"), None);
}

/// A chunked body (no length) that breaks off just before its last chunk: every byte is in,
/// the retry asks from the end, and the origin's 416 `bytes */N` says that is the end.
#[test]
fn a_416_at_the_end_of_an_unannounced_length_completes_the_file() {
    let d = Daemon::start();
    let body = data();
    let served = body.clone();
    let (origin, heads) = scripted_origin(move |i, conn| {
        if i == 0 {
            let mut chunked = Vec::new();
            for chunk in served.chunks(100_000) {
                chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                chunked.extend_from_slice(chunk);
                chunked.extend_from_slice(b"\r\n");
            }
            // No "0\r\n\r\n": the connection closes before the body is known to be whole.
            let headers = "Transfer-Encoding: chunked\r\nETag: \"e1\"\r\n";
            answer(conn, "200 OK", headers, &chunked);
        } else {
            let headers = format!("Content-Range: bytes */{}\r\n{}", served.len(), length(0));
            answer(conn, "416 Range Not Satisfiable", &headers, b"");
        }
    });
    let upid = d.post_download(&request(origin, &checksum_of(&body)));
    assert_done(&d, &upid, &body);
    assert_logged(
        &d,
        &upid,
        &format!(
            "the origin reports the file complete at {} bytes",
            body.len()
        ),
    );
    let heads = seen(&heads);
    assert_eq!(heads.len(), 2);
    let asked = format!("bytes={}-", body.len());
    assert_eq!(header(&heads[1], "range"), Some(asked.as_str()));
    assert_eq!(header(&heads[1], "if-range"), Some("\"e1\""));
}

/// The first answer breaks off at 300 000 bytes; the resume request gets a 206 with
/// `content_range` and `etag`, any later request the whole file. Returns the task's log and
/// the request heads, after checking the file.
fn resume_answered_with(
    content_range: &'static str,
    etag: &'static str,
) -> (Vec<String>, Vec<String>) {
    let d = Daemon::start();
    let body = data();
    let served = body.clone();
    let (origin, heads) = scripted_origin(move |i, conn| {
        let len = served.len();
        let tag = "ETag: \"w\"\r\n";
        match i {
            0 => answer(conn, "200 OK", &(length(len) + tag), &served[..300_000]),
            1 => {
                let start: usize = content_range
                    .split(['-', ' '])
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .expect("start");
                let headers = format!(
                    "{}Content-Range: {content_range}\r\nETag: {etag}\r\n",
                    length(len - start)
                );
                answer(conn, "206 Partial Content", &headers, &served[start..]);
            }
            _ => answer(conn, "200 OK", &(length(len) + tag), &served),
        }
    });
    let upid = d.post_download(&request(origin, &checksum_of(&body)));
    assert_done(&d, &upid, &body);
    let heads = seen(&heads);
    assert_eq!(header(&heads[1], "range"), Some("bytes=300000-"));
    assert_eq!(header(&heads[1], "if-range"), Some("\"w\""));
    (d.log_lines(&upid), heads)
}

/// A 206 that starts elsewhere than asked cannot continue the bytes in: the next attempt
/// starts from zero without a range.
#[test]
fn a_range_from_the_wrong_offset_restarts_from_zero() {
    let (log, heads) = resume_answered_with("bytes 100-799999/800000", "\"w\"");
    // The restart has dropped the bytes by the time the retry is counted.
    let line = "transfer failed after 0 bytes: origin answered with a range from byte 100 instead of byte 300000; restarting from zero; retry 2 of 5 in 2s";
    assert!(log.iter().any(|l| l == line), "{log:?}");
    assert_eq!(heads.len(), 3);
    assert_eq!(header(&heads[2], "range"), None);
}

/// An origin that honours `Range` but not `If-Range` sends the range of its new version: never
/// spliced onto the old bytes.
#[test]
fn a_range_of_another_version_restarts_from_zero() {
    let (log, heads) = resume_answered_with("bytes 300000-799999/800000", "\"v2\"");
    let line = "transfer failed after 0 bytes: the origin sent a range of another version (validator \"v2\" instead of \"w\"); restarting from zero; retry 2 of 5 in 2s";
    assert!(log.iter().any(|l| l == line), "{log:?}");
    assert_eq!(heads.len(), 3);
    assert_eq!(header(&heads[2], "range"), None);
}

/// A 206 for the whole file is the whole file: taken as it is, without another request.
#[test]
fn a_range_covering_the_whole_file_replaces_the_bytes_in() {
    let (log, heads) = resume_answered_with("bytes 0-799999/800000", "\"w\"");
    let line =
        "origin ignored the range request (HTTP 206 for the whole file); restarting from zero";
    assert!(log.iter().any(|l| l == line), "{log:?}");
    assert_eq!(heads.len(), 2);
}

/// Bytes fetched with `verify-certificates=0` are not handed to a request that wants the
/// certificate checked and has no checksum: it waits, then meets PVE's existing-file rule.
#[test]
fn a_verifying_request_does_not_join_an_unverified_transfer() {
    let d = Daemon::start();
    let body = data();
    let (origin, gets) = util::fault_origin(
        body.clone(),
        vec![Step::Trickle {
            etag: "\"t\"",
            chunk: 100_000,
            pause: Duration::from_millis(200),
        }],
    );
    let first = d.post_download(&request(origin, "&verify-certificates=0"));
    util::wait_until("the first GET", || gets.lock().expect("lock").len() == 1);
    let second = d.post_download(&request(origin, ""));
    assert_done(&d, &first, &body);
    let dest = d.storage_path().join(ISO);
    assert_eq!(
        d.wait(&second),
        format!("refusing to override existing file '{}'", dest.display())
    );
    assert_logged(
        &d,
        &second,
        &format!("waiting for task {first}, which is downloading to the same file"),
    );
    assert_eq!(gets.lock().expect("lock").len(), 1, "one transfer only");
    assert_eq!(stored(&d), [ISO]);
}
