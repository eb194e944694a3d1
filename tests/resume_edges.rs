//! The edges of resuming: an origin that accepts and never answers, one that gives no
//! validator (so a resume could splice two versions), one that answers 416 because the bytes
//! already in are the whole file, and a request that must not take bytes fetched with less
//! checking than it asked for. Each origin here is a few lines of raw HTTP scripted per
//! connection, so the test sees every request head.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use util::{Daemon, Step};

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
                let mut head = String::new();
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                seen.lock().expect("lock").push(head);
                answer(i, &mut conn);
            });
        }
    });
    (port, heads)
}

fn head(status: &str, headers: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n").into_bytes()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

fn stored(d: &Daemon) -> Vec<String> {
    util::files_under(&d.storage_path())
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
        let mut out = head("200 OK", &format!("Content-Length: {}\r\n", served.len()));
        out.extend_from_slice(&served);
        let _ = conn.write_all(&out);
    });
    let upid = d.post_download(&request(
        origin,
        &format!(
            "&checksum-algorithm=sha256&checksum={}",
            util::sha256_hex(&body)
        ),
    ));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert!(
        d.log_lines(&upid).contains(
            &"transfer failed after 0 bytes: no response received for 1s; retry 1 of 5 in 1s"
                .to_string()
        ),
        "{:?}",
        d.log_lines(&upid)
    );
    assert_eq!(heads.lock().expect("lock").len(), 2);
    assert_eq!(
        std::fs::read(d.storage_path().join(ISO)).expect("file"),
        body
    );
    assert_eq!(stored(&d), [ISO]);
}

#[test]
fn without_validator_or_checksum_a_retry_starts_from_zero() {
    let d = Daemon::start();
    let body = data();
    let served = body.clone();
    let cut = 300_000;
    // Neither ETag nor Last-Modified; the first answer breaks off.
    let (origin, heads) = scripted_origin(move |i, conn| {
        let mut out = head("200 OK", &format!("Content-Length: {}\r\n", served.len()));
        out.extend_from_slice(if i == 0 { &served[..cut] } else { &served });
        let _ = conn.write_all(&out);
    });
    let upid = d.post_download(&request(origin, ""));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    let log = d.log_lines(&upid);
    assert!(
        log.contains(
            &"the origin sent neither ETag nor Last-Modified and no checksum was given; restarting from zero"
                .to_string()
        ),
        "{log:?}"
    );
    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 2);
    assert_eq!(header(&heads[1], "range"), None, "{heads:?}");
    assert_eq!(
        std::fs::read(d.storage_path().join(ISO)).expect("file"),
        body
    );
    assert_eq!(stored(&d), [ISO]);
}

#[test]
fn with_a_checksum_a_resume_without_validator_sends_a_plain_range() {
    let d = Daemon::start();
    let body = data();
    let served = body.clone();
    let cut = 300_000;
    let (origin, heads) = scripted_origin(move |i, conn| {
        if i == 0 {
            let mut out = head("200 OK", &format!("Content-Length: {}\r\n", served.len()));
            out.extend_from_slice(&served[..cut]);
            let _ = conn.write_all(&out);
            return;
        }
        let mut out = head(
            "206 Partial Content",
            &format!(
                "Content-Length: {}\r\nContent-Range: bytes {cut}-{}/{}\r\n",
                served.len() - cut,
                served.len() - 1,
                served.len()
            ),
        );
        out.extend_from_slice(&served[cut..]);
        let _ = conn.write_all(&out);
    });
    let sum = util::sha256_hex(&body);
    let upid = d.post_download(&request(
        origin,
        &format!("&checksum-algorithm=sha256&checksum={sum}"),
    ));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    let heads = heads.lock().expect("lock").clone();
    assert_eq!(header(&heads[1], "range"), Some("bytes=300000-"));
    assert_eq!(header(&heads[1], "if-range"), None);
    assert_eq!(
        std::fs::read(d.storage_path().join(ISO)).expect("file"),
        body
    );
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
            let mut out = head("200 OK", "Transfer-Encoding: chunked\r\nETag: \"e1\"\r\n");
            for chunk in served.chunks(100_000) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            // No "0\r\n\r\n": the connection closes before the body is known to be whole.
            let _ = conn.write_all(&out);
            return;
        }
        let _ = conn.write_all(&head(
            "416 Range Not Satisfiable",
            &format!(
                "Content-Range: bytes */{}\r\nContent-Length: 0\r\n",
                served.len()
            ),
        ));
    });
    let sum = util::sha256_hex(&body);
    let upid = d.post_download(&request(
        origin,
        &format!("&checksum-algorithm=sha256&checksum={sum}"),
    ));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    let log = d.log_lines(&upid);
    assert!(
        log.contains(&format!(
            "the origin reports the file complete at {} bytes",
            body.len()
        )),
        "{log:?}"
    );
    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 2);
    assert_eq!(
        header(&heads[1], "range"),
        Some(format!("bytes={}-", body.len()).as_str())
    );
    assert_eq!(header(&heads[1], "if-range"), Some("\"e1\""));
    assert_eq!(
        std::fs::read(d.storage_path().join(ISO)).expect("file"),
        body
    );
    assert_eq!(stored(&d), [ISO]);
}

/// Bytes fetched with `verify-certificates=0` are not handed to a request that wants the
/// certificate checked and has no checksum: it waits, then meets PVE's existing-file rule.
#[test]
fn a_verifying_request_does_not_join_an_unverified_transfer() {
    let d = Daemon::start();
    let body = data();
    let (origin, seen) = util::fault_origin(
        body.clone(),
        vec![Step::Trickle {
            etag: "\"t\"",
            chunk: 100_000,
            pause: Duration::from_millis(200),
        }],
    );
    let first = d.post_download(&request(origin, "&verify-certificates=0"));
    let second = d.post_download(&request(origin, ""));
    assert_eq!(d.wait(&first), "OK", "{:?}", d.log_lines(&first));
    let dest = d.storage_path().join(ISO);
    assert_eq!(
        d.wait(&second),
        format!("refusing to override existing file '{}'", dest.display())
    );
    assert!(
        d.log_lines(&second).contains(&format!(
            "waiting for task {first}, which is downloading to the same file"
        )),
        "{:?}",
        d.log_lines(&second)
    );
    assert_eq!(seen.lock().expect("lock").len(), 1, "one transfer only");
    assert_eq!(std::fs::read(&dest).expect("file"), body);
    assert_eq!(stored(&d), [ISO]);
}

/// A 206 that starts elsewhere than asked cannot continue the bytes in: the next attempt
/// starts from zero without a range.
#[test]
fn a_range_from_the_wrong_offset_restarts_from_zero() {
    let d = Daemon::start();
    let body = data();
    let served = body.clone();
    let cut = 300_000;
    let (origin, heads) = scripted_origin(move |i, conn| {
        let len = served.len();
        let mut out = match i {
            0 => head(
                "200 OK",
                &format!("Content-Length: {len}\r\nETag: \"w\"\r\n"),
            ),
            1 => head(
                "206 Partial Content",
                &format!(
                    "Content-Length: {len}\r\nContent-Range: bytes 0-{}/{len}\r\nETag: \"w\"\r\n",
                    len - 1
                ),
            ),
            _ => head(
                "200 OK",
                &format!("Content-Length: {len}\r\nETag: \"w\"\r\n"),
            ),
        };
        out.extend_from_slice(if i == 0 { &served[..cut] } else { &served });
        let _ = conn.write_all(&out);
    });
    let sum = util::sha256_hex(&body);
    let upid = d.post_download(&request(
        origin,
        &format!("&checksum-algorithm=sha256&checksum={sum}"),
    ));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    let log = d.log_lines(&upid);
    assert!(
        log.iter().any(|l| l.contains(
            "origin answered with a range from byte 0 instead of byte 300000; restarting from zero; retry 2 of 5"
        )),
        "{log:?}"
    );
    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 3);
    assert_eq!(header(&heads[1], "range"), Some("bytes=300000-"));
    assert_eq!(header(&heads[2], "range"), None);
    assert_eq!(
        std::fs::read(d.storage_path().join(ISO)).expect("file"),
        body
    );
    assert_eq!(stored(&d), [ISO]);
}
