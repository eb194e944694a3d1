//! One transfer per target (architecture invariant 5): identical requests join the running
//! transfer and share its outcome; a different request for the same target waits and then gets
//! PVE's existing-file outcome; a stopped leader hands the transfer to a waiting request.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::util;
use crate::util::{Daemon, Step};

fn body(origin: u16, name: &str, checksum: Option<&str>) -> String {
    let sum = checksum
        .map(|c| format!("&checksum={c}&checksum-algorithm=sha256"))
        .unwrap_or_default();
    format!("content=iso&filename=same.iso&url=http%3A%2F%2F127.0.0.1%3A{origin}%2F{name}{sum}")
}

/// About 3 s per transfer, so later requests arrive while the first one runs.
fn slow(data: &[u8]) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    util::slow_origin(data.to_vec(), 32 * 1024, Duration::from_millis(50))
}

#[test]
fn ten_identical_requests_make_one_transfer() {
    let d = Daemon::start();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let sum = util::sha256_hex(&data);
    let (origin, gets) = slow(&data);
    let mut upids = vec![d.post_download(&body(origin, "a.iso", Some(&sum)))];
    // The first one leads for sure once its GET is out; the others arrive while it runs.
    util::wait_until("the first GET", || gets.load(Ordering::SeqCst) == 1);
    upids.extend((1..10).map(|i| {
        // Half ask with the checksum, half without: both may join a verified transfer.
        let c = if i % 2 == 0 { Some(sum.as_str()) } else { None };
        d.post_download(&body(origin, "a.iso", c))
    }));
    for u in &upids {
        assert_eq!(d.wait(u), "OK", "{u}: {:?}", d.log_lines(u));
    }
    assert_eq!(gets.load(Ordering::SeqCst), 1, "origin GETs");
    let joined = upids[1..]
        .iter()
        .filter(|u| {
            d.log_lines(u).iter().any(|l| {
                l.contains(&format!(
                    "task {} is downloading the same file; joining it",
                    upids[0]
                ))
            })
        })
        .count();
    assert_eq!(joined, 9);
    let iso = d.storage_path().join("template/iso");
    assert_eq!(std::fs::read(iso.join("same.iso")).expect("file"), data);
    assert_eq!(
        util::files_under(&d.storage_path()),
        ["template/iso/same.iso"]
    );
}

#[test]
fn different_requests_wait_then_get_the_existing_file_outcome() {
    let d = Daemon::start();
    let data = vec![9u8; 1_000_000];
    let sum = util::sha256_hex(&data);
    let (origin, gets) = slow(&data);
    let first = d.post_download(&body(origin, "a.iso", Some(&sum)));
    util::wait_until("the first GET", || gets.load(Ordering::SeqCst) == 1);
    let other_sum = "f".repeat(64);
    let mismatch = d.post_download(&body(origin, "a.iso", Some(&other_sum)));
    let other_url = d.post_download(&body(origin, "b.iso", None));
    assert_eq!(d.wait(&first), "OK");
    assert_eq!(
        d.wait(&mismatch),
        format!("checksum mismatch: got '{sum}' != expect '{other_sum}', aborting")
    );
    let dest = d.storage_path().join("template/iso/same.iso");
    assert_eq!(
        d.wait(&other_url),
        format!("refusing to override existing file '{}'", dest.display())
    );
    let waiting = format!("waiting for task {first}, which is downloading to the same file");
    for waiter in [&mismatch, &other_url] {
        let log = d.log_lines(waiter);
        assert!(log.contains(&waiting), "{waiter}: {log:?}");
    }
    assert_eq!(gets.load(Ordering::SeqCst), 1);
    assert_eq!(std::fs::read(&dest).expect("file"), data);
    assert_eq!(util::files_under(&d.staging_path()), Vec::<String>::new());
}

#[test]
fn a_different_url_with_the_same_checksum_waits_then_finds_the_file_without_a_transfer() {
    let d = Daemon::start();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let sum = util::sha256_hex(&data);
    let (origin, gets) = slow(&data);
    // Another origin for the other URL, so a second transfer could not hide in the first
    // origin's count.
    let (mirror, mirror_lines) = util::recording_origin(data.clone());
    let first = d.post_download(&body(origin, "a.iso", Some(&sum)));
    util::wait_until("the first GET", || gets.load(Ordering::SeqCst) == 1);
    let second = d.post_download(&body(mirror, "a.iso", Some(&sum)));
    assert_eq!(d.wait(&first), "OK", "{:?}", d.log_lines(&first));
    assert_eq!(d.wait(&second), "OK", "{:?}", d.log_lines(&second));
    let log = d.log_lines(&second);
    assert!(
        log.contains(&format!(
            "waiting for task {first}, which is downloading to the same file"
        )),
        "{log:?}"
    );
    assert!(
        log.contains(
            &"calculating checksum of existing file...OK, got correct file already, no need to download"
                .to_string()
        ),
        "{log:?}"
    );
    assert_eq!(gets.load(Ordering::SeqCst), 1, "GETs of the first URL");
    assert_eq!(
        *mirror_lines.lock().expect("lock"),
        Vec::<String>::new(),
        "GETs of the second URL"
    );
    let iso = d.storage_path().join("template/iso");
    assert_eq!(std::fs::read(iso.join("same.iso")).expect("file"), data);
    assert_eq!(
        util::files_under(&d.storage_path()),
        ["template/iso/same.iso"]
    );
    assert_eq!(util::files_under(&d.staging_path()), Vec::<String>::new());
}

#[test]
fn a_joined_request_shares_the_leaders_failure() {
    let d = Daemon::start();
    let data = vec![7u8; 1_000_000];
    let sum = util::sha256_hex(&data);
    let wrong = "0".repeat(64);
    // Trickles for about 1.6 s, so the joiners arrive while the leader still transfers.
    let (origin, seen) = util::fault_origin(
        data,
        vec![Step::Trickle {
            etag: "\"v1\"",
            chunk: 32 * 1024,
            pause: Duration::from_millis(50),
        }],
    );
    let leader = d.post_download(&body(origin, "a.iso", Some(&wrong)));
    util::wait_until("the leader's GET", || seen.lock().expect("lock").len() == 1);
    // Both may join: one asks for the checksum the leader verifies, one for none.
    let same_sum = d.post_download(&body(origin, "a.iso", Some(&wrong)));
    let no_sum = d.post_download(&body(origin, "a.iso", None));
    let failure = format!("checksum mismatch: got '{sum}' != expect '{wrong}'");
    assert_eq!(d.wait(&leader), failure, "{:?}", d.log_lines(&leader));
    for joiner in [&same_sum, &no_sum] {
        assert_eq!(d.wait(joiner), failure, "{:?}", d.log_lines(joiner));
        let log = d.log_lines(joiner);
        assert!(
            log.contains(&format!(
                "task {leader} is downloading the same file; joining it"
            )),
            "{joiner}: {log:?}"
        );
    }
    assert_eq!(seen.lock().expect("lock").len(), 1, "origin GETs");
    assert_eq!(util::files_under(&d.storage_path()), Vec::<String>::new());
    assert_eq!(util::files_under(&d.staging_path()), Vec::<String>::new());
}

#[test]
fn a_stopped_leader_hands_over_to_the_joined_request() {
    let d = Daemon::start();
    let data = vec![5u8; 1_000_000];
    let (origin, gets) = slow(&data);
    let leader = d.post_download(&body(origin, "a.iso", None));
    let joiner = d.post_download(&body(origin, "a.iso", None));
    let r = d.raw(
        format!(
            "DELETE /api2/json/nodes/{}/tasks/{leader} HTTP/1.1\r\nHost: x\r\n\
             Authorization: PVEAPIToken={}={}\r\n\r\n",
            util::NODE,
            util::TOKEN_ID,
            util::TOKEN_SECRET
        )
        .as_bytes(),
    );
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(d.wait(&leader), "download failed: received interrupt");
    assert_eq!(d.wait(&joiner), "OK", "{:?}", d.log_lines(&joiner));
    assert_eq!(
        gets.load(Ordering::SeqCst),
        2,
        "the joiner fetched again after the stop"
    );
    assert_eq!(
        util::files_under(&d.storage_path()),
        ["template/iso/same.iso"]
    );
}
