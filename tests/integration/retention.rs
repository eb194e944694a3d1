//! Task-log retention end to end: `task-log-keep` and `task-log-days` prune finished tasks from
//! the task list and their logs from disk, at start and, for a daemon that runs no more tasks,
//! on the collection interval. Each case asserts the exact UPIDs the API lists and the exact
//! log files left under `<state>/tasks`.

use crate::util;
use crate::util::{Daemon, NODE};

fn download(d: &Daemon, origin: u16, name: &str) -> String {
    let upid = d.post_download(&format!(
        "content=iso&filename={name}&url=http%3A%2F%2F127.0.0.1%3A{origin}%2F{name}"
    ));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    upid
}

/// `n` downloads, one after the other; their UPIDs in the order they ran.
fn run_tasks(d: &Daemon, n: usize) -> Vec<String> {
    let origin = util::origin(vec![9u8; 1000]);
    (0..n)
        .map(|i| download(d, origin, &format!("t{i}.iso")))
        .collect()
}

/// The UPIDs of the task list, as listed (newest first).
fn listed(d: &Daemon) -> Vec<String> {
    d.get_json(&format!("/nodes/{NODE}/tasks?limit=1000"))["data"]
        .as_array()
        .expect("task list")
        .iter()
        .map(|t| t["upid"].as_str().expect("upid").to_string())
        .collect()
}

fn tasks_dir(d: &Daemon) -> std::path::PathBuf {
    d.dir.path().join("state").join("tasks")
}

/// The task logs on disk, by name (their UPID), sorted.
fn logs_on_disk(d: &Daemon) -> Vec<String> {
    let mut logs: Vec<String> = util::files_under(&tasks_dir(d))
        .into_iter()
        .filter_map(|p| p.rsplit('/').next().map(str::to_string))
        .filter(|name| name.starts_with("UPID:"))
        .collect();
    logs.sort();
    logs
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn task_log_keep_leaves_the_newest_after_a_restart() {
    let mut d = Daemon::start_with(&["--task-log-keep", "2"]);
    let upids = run_tasks(&d, 4);
    // Nothing prunes yet: not the start (no tasks then), not a 64th task, not the interval.
    assert_eq!(listed(&d).len(), 4);
    d.terminate();
    d.restart();
    assert_eq!(listed(&d), [upids[3].clone(), upids[2].clone()]);
    assert_eq!(logs_on_disk(&d), sorted(upids[2..].to_vec()));
    // The survivors still answer with their logs.
    assert_eq!(
        d.log_lines(&upids[3]).last().map(String::as_str),
        Some("TASK OK")
    );
}

/// A task counts its age from its end, as the index records it; the test moves the end of
/// two tasks two days back, as if they had finished then.
#[test]
fn task_log_days_drops_old_tasks_at_start() {
    let mut d = Daemon::start_with(&["--task-log-days", "1"]);
    let upids = run_tasks(&d, 3);
    d.terminate();
    let index = tasks_dir(&d).join("index");
    let text = std::fs::read_to_string(&index).expect("index");
    let two_days_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        - 2 * 86_400;
    let aged: String = text
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let (upid, end, status) = (
                parts.next().expect("upid"),
                parts.next().expect("end"),
                parts.next().expect("status"),
            );
            let end = if upid == upids[2] {
                end.to_string()
            } else {
                format!("{two_days_ago:08X}")
            };
            format!("{upid} {end} {status}\n")
        })
        .collect();
    assert_eq!(aged.lines().count(), 3, "{text}");
    std::fs::write(&index, aged).expect("index");
    d.restart();
    assert_eq!(listed(&d), [upids[2].clone()]);
    assert_eq!(logs_on_disk(&d), [upids[2].clone()]);
    assert_eq!(
        std::fs::read_to_string(&index)
            .expect("index")
            .lines()
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect::<Vec<_>>(),
        [upids[2].clone()]
    );
}

/// A daemon that runs no more tasks still prunes: on the collection interval, without a
/// restart.
#[test]
fn a_quiet_daemon_prunes_on_the_collection_interval() {
    let d = Daemon::start_with(&["--task-log-keep", "1", "--partial-collect-interval", "1"]);
    let upids = run_tasks(&d, 3);
    util::wait_until("the periodic prune", || listed(&d).len() == 1);
    assert_eq!(listed(&d), [upids[2].clone()]);
    assert_eq!(logs_on_disk(&d), [upids[2].clone()]);
}
