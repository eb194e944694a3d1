//! Operator limits end with clear errors and leave nothing behind: max-size, a full disk known
//! up front from the length, a disk filling up mid-transfer (ENOSPC, on a 2 MiB tmpfs in a
//! private mount namespace), max-transfers queueing, and the API's request header limits.

mod util;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use util::{Daemon, TOKEN_ID, TOKEN_SECRET};

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

#[test]
fn max_transfers_queues_and_says_so() {
    let d = Daemon::start_with(&["--max-transfers", "1"]);
    let (origin, gets) =
        util::slow_origin(vec![6u8; 600_000], 32 * 1024, Duration::from_millis(30));
    let first = d.post_download(&body(origin, "one.iso", ""));
    let second = d.post_download(&body(origin, "two.iso", ""));
    assert_eq!(d.wait(&first), "OK");
    assert_eq!(d.wait(&second), "OK");
    assert!(
        d.log_lines(&second).contains(
            &"waiting for a free transfer slot (1 transfers running, max-transfers)".to_string()
        ),
        "{:?}",
        d.log_lines(&second)
    );
    assert_eq!(gets.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// The daemon on a storage whose directory is a 2 MiB tmpfs, mounted in its own user and
/// mount namespace (no root needed); the test reads its files through /proc/<pid>/root.
fn daemon_on_small_disk() -> (Daemon, PathBuf) {
    let dir = util::default_dir();
    let mount_point = dir.path().join("local").display().to_string();
    let d = Daemon::spawn_wrapped(
        dir,
        &[
            "unshare",
            "-rm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=2m tmpfs \"$0\" && exec \"$@\"",
            &mount_point,
        ],
        &[],
    );
    let seen = PathBuf::from(format!("/proc/{}/root{}", d.pid(), mount_point));
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
        d.storage_path().join(".isolib-partial").display()
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
