//! Faults between the origin and the daemon: transient failures are retried and resumed with
//! `Range` + `If-Range` from the bytes already received, with the hash carried on, so the
//! result equals one clean transfer; an origin that ignores ranges or changed the file starts
//! over; fatal answers are not retried. Each case asserts the task's outcome, the files in the
//! storage and the requests the origin saw.

mod util;

use util::{Daemon, Step};

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

#[test]
fn dropped_connection_resumes_with_range_and_if_range() {
    let d = Daemon::start();
    let data = data();
    let cut = 600_000;
    let (origin, seen) = util::fault_origin(
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
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/r.iso")).expect("file"),
        data
    );
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
    let (origin, seen) = util::fault_origin(
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
    assert_eq!(ranges(&seen).len(), 3);
    let log = d.log_lines(&upid);
    assert!(
        log.iter()
            .any(|l| l.contains("HTTP 503 Service Unavailable; retry 1 of 5")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("HTTP 429 Too Many Requests; retry 2 of 5")),
        "{log:?}"
    );
}

#[test]
fn origin_ignoring_range_restarts_from_zero() {
    let d = Daemon::start();
    let data = data();
    let (origin, seen) = util::fault_origin(
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
    assert!(
        d.log_lines(&upid)
            .iter()
            .any(|l| l.contains("restarting from zero"))
    );
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/r.iso")).expect("file"),
        data
    );
}

#[test]
fn changed_validator_restarts_from_zero() {
    let d = Daemon::start();
    let data = data();
    // The second answer has another ETag: If-Range fails and the origin sends the whole file.
    let (origin, seen) = util::fault_origin(
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
    assert!(
        d.log_lines(&upid)
            .iter()
            .any(|l| l.contains("HTTP 200 (range ignored or file changed); restarting from zero"))
    );
}

#[test]
fn not_found_is_not_retried_and_leaves_nothing() {
    let d = Daemon::start();
    let (origin, seen) = util::fault_origin(data(), vec![Step::Status(404)]);
    let upid = download(&d, origin, &"0".repeat(64));
    assert_eq!(d.wait(&upid), "download failed: HTTP 404 Not Found");
    assert_eq!(ranges(&seen).len(), 1);
    assert_eq!(stored(&d), Vec::<String>::new());
}

#[test]
fn retries_run_out_with_the_last_cause_and_nothing_left() {
    let d = Daemon::start();
    let (origin, seen) = util::fault_origin(data(), vec![Step::Status(502)]);
    let upid = download(&d, origin, &"0".repeat(64));
    // Five retries with 1 s Retry-After each.
    assert_eq!(d.wait(&upid), "download failed: HTTP 502 Bad Gateway");
    assert_eq!(ranges(&seen).len(), 6);
    assert_eq!(stored(&d), Vec::<String>::new());
}

#[test]
fn corrupted_bytes_fail_the_checksum_without_retry() {
    let d = Daemon::start();
    let data = data();
    let mut wrong = data.clone();
    wrong[123_456] ^= 0xff;
    let (origin, seen) = util::fault_origin(
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
    assert_eq!(stored(&d), Vec::<String>::new());
}

#[test]
fn stalled_body_is_retried_and_resumed() {
    let d = Daemon::start_with(&["--stall-timeout", "1"]);
    let data = data();
    let (origin, seen) = util::fault_origin(
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
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/r.iso")).expect("file"),
        data
    );
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
