//! Faults between the origin and the daemon: transient failures are retried and resumed with
//! `Range` + `If-Range` from the bytes already received, with the hash carried on, so the
//! result equals one clean transfer; an origin that ignores ranges or changed the file starts
//! over; fatal answers are not retried. A body shorter than its `Content-Length` is a dropped
//! connection; one longer is cut at the announced length. Each case asserts the task's
//! outcome, the files in the storage, the requests the origin saw and the body bytes it
//! served.

use crate::util;
use crate::util::{Daemon, Step};

const ETAG: &str = "\"v1\"";

fn data() -> Vec<u8> {
    (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect()
}

fn download(d: &Daemon, origin: u16, sum: &str) -> String {
    d.post_download(&format!(
        "content=iso&filename=r.iso&checksum-algorithm=sha256&checksum={sum}\
         &url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fr.iso"
    ))
}

fn ranges(seen: &util::Seen) -> Vec<(String, String)> {
    seen.lock().expect("lock").clone()
}

fn stored(d: &Daemon) -> Vec<String> {
    util::files_under(&d.storage_path())
}

fn served(served: &util::Served) -> Vec<usize> {
    served.lock().expect("lock").clone()
}

fn iso(d: &Daemon) -> Vec<u8> {
    std::fs::read(d.storage_path().join(ISO)).expect("file")
}

const ISO: &str = "template/iso/r.iso";

/// The first answer's body is shorter than its `Content-Length` (the origin closes early).
#[test]
fn dropped_connection_resumes_with_range_and_if_range() {
    let d = Daemon::start();
    let data = data();
    let cut = 600_000;
    let (origin, seen, count) = util::fault_origin_counted(
        data.clone(),
        vec![
            Step::Serve {
                etag: ETAG,
                limit: Some(cut),
            },
            Step::Serve {
                etag: ETAG,
                limit: None,
            },
        ],
    );
    let upid = download(&d, origin, &util::sha256_hex(&data));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(
        ranges(&seen),
        [
            ("".to_string(), "".to_string()),
            (format!("bytes={cut}-"), ETAG.to_string())
        ]
    );
    // No byte fetched twice: the resume asks from exactly what the first answer delivered.
    let count = served(&count);
    assert_eq!(count, [cut, data.len() - cut]);
    assert_eq!(ranges(&seen)[1].0, format!("bytes={}-", count[0]));
    assert_eq!(iso(&d), data);
    assert_eq!(stored(&d), [ISO]);
    let log = d.log_lines(&upid);
    assert!(
        log.iter().any(|l| l.starts_with(&format!(
            "transfer failed after {cut} bytes: connection closed after {cut} of {} bytes; retry 1 of 5",
            data.len()
        ))),
        "{log:?}"
    );
    assert!(log.contains(&"calculating checksum...OK, checksum verified".to_string()));
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let d = Daemon::start();
    let data = data();
    let (origin, seen, count) = util::fault_origin_counted(
        data.clone(),
        vec![
            Step::Status(503),
            Step::Status(429),
            Step::Serve {
                etag: ETAG,
                limit: None,
            },
        ],
    );
    let upid = download(&d, origin, &util::sha256_hex(&data));
    assert_eq!(d.wait(&upid), "OK");
    // Nothing arrived before the good answer, so none of the requests asks for a range.
    assert_eq!(ranges(&seen), vec![(String::new(), String::new()); 3]);
    assert_eq!(served(&count), [0, 0, data.len()]);
    assert_eq!(iso(&d), data);
    assert_eq!(stored(&d), [ISO]);
    // Both answers say `Retry-After: 1`; without it the second wait would be 2 s.
    assert_eq!(
        retry_lines(&d.log_lines(&upid)),
        [
            "transfer failed after 0 bytes: HTTP 503 Service Unavailable; retry 1 of 5 in 1s",
            "transfer failed after 0 bytes: HTTP 429 Too Many Requests; retry 2 of 5 in 1s",
        ]
    );
}

/// The lines announcing a retry, in order.
fn retry_lines(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.contains("; retry "))
        .cloned()
        .collect()
}

/// The wait before a retry is the origin's `Retry-After` when it sends one, else the backoff
/// (1 s, then 2 s, ...); the log states the wait either way.
#[test]
fn retry_after_sets_the_wait_and_backoff_fills_in_without_it() {
    let d = Daemon::start();
    let data = data();
    let (origin, seen, count) = util::fault_origin_counted(
        data.clone(),
        vec![
            Step::Busy {
                status: 503,
                retry_after: None,
            },
            Step::Busy {
                status: 429,
                retry_after: Some(3),
            },
            Step::Serve {
                etag: ETAG,
                limit: None,
            },
        ],
    );
    let upid = download(&d, origin, &util::sha256_hex(&data));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(
        retry_lines(&d.log_lines(&upid)),
        [
            // No Retry-After: the first backoff step.
            "transfer failed after 0 bytes: HTTP 503 Service Unavailable; retry 1 of 5 in 1s",
            // Retry-After: 3 wins over the second backoff step (2 s).
            "transfer failed after 0 bytes: HTTP 429 Too Many Requests; retry 2 of 5 in 3s",
        ]
    );
    assert_eq!(ranges(&seen), vec![(String::new(), String::new()); 3]);
    assert_eq!(served(&count), [0, 0, data.len()]);
    assert_eq!(iso(&d), data);
    assert_eq!(stored(&d), [ISO]);
}

/// A 5xx in answer to a resume request does not lose the bytes already in: the next attempt
/// asks for the same range again and the file ends up whole, each byte served once.
#[test]
fn server_error_on_a_resume_request_is_retried_with_the_same_range() {
    let d = Daemon::start();
    let data = data();
    let cut = 700_000;
    let (origin, seen, count) = util::fault_origin_counted(
        data.clone(),
        vec![
            Step::Serve {
                etag: ETAG,
                limit: Some(cut),
            },
            Step::Busy {
                status: 503,
                retry_after: Some(1),
            },
            Step::Serve {
                etag: ETAG,
                limit: None,
            },
        ],
    );
    let upid = download(&d, origin, &util::sha256_hex(&data));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    let resume = (format!("bytes={cut}-"), ETAG.to_string());
    assert_eq!(
        ranges(&seen),
        [(String::new(), String::new()), resume.clone(), resume]
    );
    let count = served(&count);
    assert_eq!(count, [cut, 0, data.len() - cut]);
    assert_eq!(count.iter().sum::<usize>(), data.len());
    let log = d.log_lines(&upid);
    assert_eq!(
        retry_lines(&log),
        [
            format!(
                "transfer failed after {cut} bytes: connection closed after {cut} of {} bytes; retry 1 of 5 in 1s",
                data.len()
            ),
            format!(
                "transfer failed after {cut} bytes: HTTP 503 Service Unavailable; retry 2 of 5 in 1s"
            ),
        ]
    );
    assert!(
        log.contains(&"calculating checksum...OK, checksum verified".to_string()),
        "{log:?}"
    );
    assert_eq!(iso(&d), data);
    assert_eq!(stored(&d), [ISO]);
}

#[test]
fn origin_ignoring_range_restarts_from_zero() {
    let d = Daemon::start();
    let data = data();
    let (origin, seen, count) = util::fault_origin_counted(
        data.clone(),
        vec![
            Step::Serve {
                etag: ETAG,
                limit: Some(400_000),
            },
            Step::IgnoreRange,
        ],
    );
    let upid = download(&d, origin, &util::sha256_hex(&data));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(ranges(&seen)[1].0, "bytes=400000-");
    // The partial answer, then the whole file once more.
    assert_eq!(served(&count), [400_000, data.len()]);
    assert!(
        d.log_lines(&upid)
            .contains(&"origin ignored the range request (HTTP 200); restarting from zero".into()),
        "{:?}",
        d.log_lines(&upid)
    );
    assert_eq!(iso(&d), data);
    assert_eq!(stored(&d), [ISO]);
}

#[test]
fn changed_validator_restarts_from_zero() {
    let d = Daemon::start();
    let data = data();
    // The second answer has another ETag: If-Range fails and the origin sends the whole file.
    let (origin, seen, count) = util::fault_origin_counted(
        data.clone(),
        vec![
            Step::Serve {
                etag: ETAG,
                limit: Some(300_000),
            },
            Step::Serve {
                etag: "\"v2\"",
                limit: None,
            },
        ],
    );
    let upid = download(&d, origin, &util::sha256_hex(&data));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(
        ranges(&seen)[1],
        ("bytes=300000-".to_string(), ETAG.to_string())
    );
    let changed = format!(
        "the file changed at the origin (validator \"v2\" instead of {ETAG}); restarting from zero"
    );
    assert!(
        d.log_lines(&upid).contains(&changed),
        "{:?}",
        d.log_lines(&upid)
    );
    assert_eq!(served(&count), [300_000, data.len()]);
    assert_eq!(iso(&d), data);
    assert_eq!(stored(&d), [ISO]);
}

#[test]
fn not_found_is_not_retried_and_leaves_nothing() {
    let d = Daemon::start();
    let (origin, seen, count) = util::fault_origin_counted(data(), vec![Step::Status(404)]);
    let upid = download(&d, origin, &"0".repeat(64));
    assert_eq!(d.wait(&upid), "download failed: HTTP 404 Not Found");
    assert_eq!(ranges(&seen).len(), 1);
    assert_eq!(served(&count), [0]);
    assert_eq!(stored(&d), Vec::<String>::new());
}

#[test]
fn retries_run_out_with_the_last_cause_and_nothing_left() {
    let d = Daemon::start();
    let (origin, seen, count) = util::fault_origin_counted(data(), vec![Step::Status(502)]);
    let upid = download(&d, origin, &"0".repeat(64));
    // Five retries with 1 s Retry-After each.
    assert_eq!(d.wait(&upid), "download failed: HTTP 502 Bad Gateway");
    assert_eq!(ranges(&seen).len(), 6);
    assert_eq!(served(&count), [0; 6]);
    assert_eq!(stored(&d), Vec::<String>::new());
}

#[test]
fn corrupted_bytes_fail_the_checksum_without_retry() {
    let d = Daemon::start();
    let data = data();
    let mut wrong = data.clone();
    wrong[123_456] ^= 0xff;
    let (origin, seen, count) = util::fault_origin_counted(
        wrong.clone(),
        vec![Step::Serve {
            etag: ETAG,
            limit: None,
        }],
    );
    let upid = download(&d, origin, &util::sha256_hex(&data));
    assert_eq!(
        d.wait(&upid),
        format!(
            "checksum mismatch: got '{}' != expect '{}'",
            util::sha256_hex(&wrong),
            util::sha256_hex(&data)
        )
    );
    assert_eq!(ranges(&seen).len(), 1);
    assert_eq!(served(&count), [data.len()]);
    assert_eq!(stored(&d), Vec::<String>::new());
}

#[test]
fn stalled_body_is_retried_and_resumed() {
    let d = Daemon::start_with(&["--stall-timeout", "1"]);
    let data = data();
    let (origin, seen, count) = util::fault_origin_counted(
        data.clone(),
        vec![
            Step::Stall {
                n: 500_000,
                secs: 10,
            },
            Step::Serve {
                etag: ETAG,
                limit: None,
            },
        ],
    );
    let upid = download(&d, origin, &util::sha256_hex(&data));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(ranges(&seen)[1].0, "bytes=500000-");
    assert!(
        d.log_lines(&upid).iter().any(|l| l.starts_with(
            "transfer failed after 500000 bytes: no data received for 1s; retry 1 of 5"
        )),
        "{:?}",
        d.log_lines(&upid)
    );
    assert_eq!(served(&count), [500_000, data.len() - 500_000]);
    assert_eq!(iso(&d), data);
    assert_eq!(stored(&d), [ISO]);
}

#[test]
fn refused_connection_is_final_at_once() {
    let d = Daemon::start();
    let port = util::free_port(); // nothing listens here
    let upid = download(&d, port, &"0".repeat(64));
    let exit = d.wait(&upid);
    assert!(
        exit.starts_with("download failed: ") && exit.to_lowercase().contains("refused"),
        "{exit}"
    );
    assert!(d.log_lines(&upid).iter().all(|l| !l.contains("retry")));
    assert_eq!(stored(&d), Vec::<String>::new());
}

#[test]
fn redirect_loop_fails_at_once_with_a_clear_text() {
    let d = Daemon::start();
    let origin = util::redirect_loop_origin();
    let upid = d.post_download(&format!(
        "content=iso&filename=loop.iso&url=http%3A%2F%2F127.0.0.1%3A{origin}%2Floop.iso"
    ));
    assert_eq!(d.wait(&upid), "download failed: too many redirects");
    assert!(d.log_lines(&upid).iter().all(|l| !l.contains("retry")));
    assert_eq!(stored(&d), Vec::<String>::new());
}

/// A small body, so the long answer fits the origin's socket buffer and its extra bytes are
/// all on the wire (see `Step::LongBody`).
fn small() -> Vec<u8> {
    data()[..8192].to_vec()
}

const EXTRA: usize = 1024;

/// The body runs past its `Content-Length`: as with wget, the announced bytes are the file
/// and the rest is ignored; the checksum of the announced bytes matches.
#[test]
fn longer_body_than_content_length_keeps_the_announced_bytes() {
    let d = Daemon::start();
    let body = small();
    let (origin, seen, count) = util::fault_origin_counted(
        body.clone(),
        vec![Step::LongBody {
            etag: ETAG,
            extra: EXTRA,
        }],
    );
    let upid = download(&d, origin, &util::sha256_hex(&body));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(ranges(&seen), [(String::new(), String::new())]);
    // The origin did send the extra bytes.
    assert_eq!(served(&count), [body.len() + EXTRA]);
    assert_eq!(iso(&d), body);
    assert_eq!(stored(&d), [ISO]);
    let log = d.log_lines(&upid);
    assert!(
        log.contains(&"length: 8192 (8.0 KiB)".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"calculating checksum...OK, checksum verified".to_string()),
        "{log:?}"
    );
}

/// Without a checksum nothing would catch extra bytes later: the file is as long as the
/// announced length.
#[test]
fn longer_body_than_content_length_without_checksum_stops_at_the_length() {
    let d = Daemon::start();
    let body = small();
    let (origin, seen, count) = util::fault_origin_counted(
        body.clone(),
        vec![Step::LongBody {
            etag: ETAG,
            extra: EXTRA,
        }],
    );
    let upid = d.post_download(&format!(
        "content=iso&filename=r.iso&url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fr.iso"
    ));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(ranges(&seen).len(), 1);
    assert_eq!(served(&count), [body.len() + EXTRA]);
    let file = iso(&d);
    assert_eq!(file.len(), body.len());
    assert_eq!(file, body);
    assert_eq!(stored(&d), [ISO]);
}

/// A connection reset (RST) mid-body, not an orderly close: retried with a range from what
/// arrived. Bytes in flight when the reset lands may be lost, so the range starts at or
/// before the bytes the origin wrote, never after. (The origin waits 200 ms before the reset,
/// so some bytes do arrive in practice.)
#[test]
fn a_reset_connection_resumes_from_what_arrived() {
    let d = Daemon::start();
    let data = data();
    let cut = 500_000;
    let (origin, seen, count) = util::fault_origin_counted(
        data.clone(),
        vec![
            Step::Reset { etag: ETAG, n: cut },
            Step::Serve {
                etag: ETAG,
                limit: None,
            },
        ],
    );
    let upid = download(&d, origin, &util::sha256_hex(&data));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    let log = d.log_lines(&upid);
    let retry = log
        .iter()
        .find(|l| l.starts_with("transfer failed after "))
        .unwrap_or_else(|| panic!("no retry line in {log:?}"));
    let received: usize = retry["transfer failed after ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("byte count");
    assert!(received <= cut, "{retry}");
    assert_eq!(
        retry,
        &format!(
            "transfer failed after {received} bytes: connection reset after {received} of {} bytes; retry 1 of 5 in 1s",
            data.len()
        )
    );
    let seen = ranges(&seen);
    assert_eq!(seen.len(), 2);
    // Nothing may have arrived before the reset on a loaded machine: then no range is asked.
    let resume = match received {
        0 => (String::new(), String::new()),
        n => (format!("bytes={n}-"), ETAG.to_string()),
    };
    assert_eq!(seen[1], resume);
    assert_eq!(served(&count), [cut, data.len() - received]);
    assert_eq!(iso(&d), data);
    assert_eq!(stored(&d), [ISO]);
}
