//! Crash safety (architecture invariants 1 and 2): a daemon killed with SIGKILL mid-transfer
//! leaves no file under a listed name, reports the task stopped with an error after a restart
//! and collects its temp file; SIGTERM stops transfers cleanly; and the flush order
//! fsync(file) → rename → fsync(directory) is asserted on the real syscalls, not assumed.

mod util;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use util::Daemon;

fn slow_body(origin: u16, name: &str) -> String {
    format!("content=iso&filename={name}&url=http%3A%2F%2F127.0.0.1%3A{origin}%2F{name}")
}

fn staging(d: &Daemon) -> PathBuf {
    d.storage_path().join(".isolib-partial")
}

/// Waits until the transfer has written something to its temp file.
fn wait_for_partial(dir: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let part = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.metadata().map(|m| m.len() > 0).unwrap_or(false));
        if let Some(p) = part {
            return p;
        }
        assert!(Instant::now() < deadline, "no temp file appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn task_log(d: &Daemon, upid: &str) -> String {
    let starttime = upid.split(':').nth(4).expect("starttime field");
    let sub = &starttime[starttime.len() - 1..];
    std::fs::read_to_string(d.dir.path().join("state/tasks").join(sub).join(upid))
        .expect("task log")
}

#[test]
fn sigkill_mid_transfer_then_restart() {
    let mut d = Daemon::start();
    let (origin, _) = util::slow_origin(vec![1u8; 3_000_000], 32 * 1024, Duration::from_millis(50));
    let upid = d.post_download(&slow_body(origin, "k.iso"));
    let part = wait_for_partial(&staging(&d));
    d.kill9();
    assert!(
        part.exists(),
        "the crash left its temp file (the case under test)"
    );
    assert_eq!(
        util::files_under(&d.storage_path().join("template/iso")),
        Vec::<String>::new()
    );

    d.restart();
    assert_eq!(
        d.wait(&upid),
        "task interrupted: the daemon stopped while it was running"
    );
    assert!(
        !part.exists(),
        "the orphaned temp file is collected at start"
    );
    assert_eq!(util::files_under(&d.storage_path()), Vec::<String>::new());
}

#[test]
fn sigterm_stops_transfers_and_leaves_nothing() {
    let mut d = Daemon::start();
    let (origin, _) = util::slow_origin(vec![2u8; 3_000_000], 32 * 1024, Duration::from_millis(50));
    let upid = d.post_download(&slow_body(origin, "t.iso"));
    wait_for_partial(&staging(&d));
    assert!(d.terminate().success());
    assert_eq!(util::files_under(&d.storage_path()), Vec::<String>::new());
    assert!(
        task_log(&d, &upid).ends_with("TASK ERROR: download failed: received interrupt\n"),
        "{}",
        task_log(&d, &upid)
    );
}

#[test]
fn flush_order_is_fsync_file_rename_fsync_directory() {
    let dir = util::default_dir();
    let trace = dir.path().join("syscalls.trace");
    let trace_arg = trace.display().to_string();
    let mut d = Daemon::spawn_wrapped(
        dir,
        &[
            "strace",
            "-f",
            "-qq",
            "-y",
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2",
            "-o",
            &trace_arg,
        ],
        &[],
    );
    let data = vec![4u8; 200_000];
    let origin = util::origin(data.clone());
    let upid = d.post_download(&format!(
        "content=iso&filename=s.iso&checksum-algorithm=sha256&checksum={}\
         &url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fs.iso",
        util::sha256_hex(&data)
    ));
    assert_eq!(d.wait(&upid), "OK");
    assert!(d.terminate().success());

    let text = std::fs::read_to_string(&trace).expect("strace output");
    let lines: Vec<&str> = text.lines().collect();
    let dest_dir = d.storage_path().join("template/iso");
    let dest = dest_dir.join("s.iso").display().to_string();
    let find = |what: &dyn Fn(&str) -> bool| lines.iter().position(|l| what(l));
    let rename = find(&|l| {
        l.contains("rename") && l.contains(".part\"") && l.contains(&format!("\"{dest}\""))
    })
    .unwrap_or_else(|| panic!("no rename to {dest} in:\n{text}"));
    let file_sync = find(&|l| {
        (l.contains("fsync(") || l.contains("fdatasync("))
            && l.contains("s.iso.")
            && l.contains(".part>")
    })
    .unwrap_or_else(|| panic!("no fsync of the temp file in:\n{text}"));
    let dir_sync = lines
        .iter()
        .skip(rename)
        .position(|l| l.contains("fsync(") && l.contains(&format!("{}>)", dest_dir.display())))
        .unwrap_or_else(|| {
            panic!(
                "no fsync of {} after the rename in:\n{text}",
                dest_dir.display()
            )
        });
    assert!(
        file_sync < rename,
        "fsync(file) must come before the rename:\n{text}"
    );
    assert!(
        dir_sync > 0,
        "fsync(directory) must come after the rename:\n{text}"
    );
}
