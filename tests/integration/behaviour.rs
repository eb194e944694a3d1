//! Behaviours of issue 2 that the client suites do not pin down: progress lines in the task
//! log (present, with percent and ETA, and throttled), `content-dirs`, and the configurable
//! delay of authentication failures.

use std::time::{Duration, Instant};

use crate::util;
use crate::util::{Daemon, NODE};

#[test]
fn progress_lines_are_regular_but_no_flood() {
    let d = Daemon::start();
    // About 5 s: 1.5 MB in 32 KiB pieces every 100 ms.
    let (origin, _) =
        util::slow_origin(vec![8u8; 1_500_000], 32 * 1024, Duration::from_millis(100));
    let started = Instant::now();
    let upid = d.post_download(&format!(
        "content=iso&filename=p.iso&url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fp.iso"
    ));
    assert_eq!(d.wait(&upid), "OK");
    let elapsed = started.elapsed().as_secs();
    let log = d.log_lines(&upid);
    let progress: Vec<&String> = log.iter().filter(|l| l.contains(" of 1.4 MiB (")).collect();
    assert!(!progress.is_empty(), "{log:?}");
    for l in &progress {
        assert!(
            l.starts_with("downloaded ") && l.contains("%), ") && l.contains("/s, ETA "),
            "{l}"
        );
    }
    // One line per 2 s interval at most, by construction of the throttle.
    assert!(
        progress.len() as u64 <= elapsed / 2 + 1,
        "{} lines in {elapsed} s",
        progress.len()
    );
    assert!(
        log.iter().any(|l| l.starts_with("downloaded 1.4 MiB in ")),
        "{log:?}"
    );
}

#[test]
fn content_dirs_choose_the_directory_and_listing_follows() {
    let dir = util::default_dir();
    let store = dir.path().join("local");
    std::fs::write(
        dir.path().join("storage.cfg"),
        format!(
            "dir: local\n\tpath {}\n\tcontent iso,vztmpl,import\n\tcontent-dirs iso=images/cd\n",
            store.display()
        ),
    )
    .expect("storage.cfg");
    let d = Daemon::start_in(dir);
    let origin = util::origin(b"cd image".to_vec());
    let upid = d.post_download(&format!(
        "content=iso&filename=cd.iso&url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fcd.iso"
    ));
    assert_eq!(d.wait(&upid), "OK");
    assert_eq!(
        std::fs::read(store.join("images/cd/cd.iso")).expect("file"),
        b"cd image"
    );
    let r = d.raw(
        format!(
            "GET /api2/json/nodes/{NODE}/storage/local/content?content=iso HTTP/1.1\r\nHost: x\r\n\
             Authorization: PVEAPIToken={}={}\r\n\r\n",
            util::TOKEN_ID,
            util::TOKEN_SECRET
        )
        .as_bytes(),
    );
    let items = r.json()["data"].clone();
    assert_eq!(items[0]["volid"], "local:iso/cd.iso");
    assert_eq!(items[0]["size"], 8);
}

#[test]
fn authentication_failures_are_delayed_as_configured() {
    let d = Daemon::start_with(&["--auth-fail-delay", "1.5"]);
    let started = Instant::now();
    let r = d.raw(b"GET /api2/json/version HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status_line, "HTTP/1.1 401 No ticket");
    assert!(r.body.is_empty());
    // A lower bound: the delay is a deliberate sleep, never shorter than configured.
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}
