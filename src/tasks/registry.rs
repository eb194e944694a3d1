//! Tasks as PVE keeps them: one log file per UPID under `<state>/tasks/<C>/`, an `index` of
//! finished tasks (`<UPID> <endtime %08X> <status>`), and the running ones in memory with a
//! cancel token each (pve-common `RESTEnvironment.pm` fork_worker, spec/pve-api.md §4).
//!
//! A task is registered and its log file exists before `spawn` returns its UPID, so a client
//! polling right after download-url never sees "no such task" (clients-and-plugin.md §C.3).

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::index::{TaskEntry, TaskIndex, append};
use super::log::TaskLog;
use super::upid::Upid;

/// The text a task gets when the daemon went away while it ran (found at the next start).
pub const INTERRUPTED_BY_RESTART: &str =
    "task interrupted: the daemon stopped while it was running";

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("unable to create task log '{path}': {source}")]
    CreateLog { path: PathBuf, source: io::Error },
    #[error("unable to write task state '{path}': {source}")]
    State { path: PathBuf, source: io::Error },
}

struct Running {
    cancel: CancellationToken,
    done: watch::Receiver<bool>,
}

/// How many finished tasks, and for how long, keep their logs.
#[derive(Clone, Debug)]
pub struct Retention {
    pub max_count: usize,
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_count: 10_000,
            max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// Pruning reads the whole index, so it runs at start and then once per this many tasks.
const PRUNE_EVERY: u32 = 64;

struct Inner {
    dir: PathBuf,
    retention: Retention,
    node: String,
    pstart: u64,
    counter: Mutex<u32>,
    index: TaskIndex,
    running: Mutex<HashMap<String, Running>>,
    /// The runtime tasks run on. Handlers run on actix's worker threads, whose runtimes are
    /// torn down at shutdown, dropping whatever was spawned there mid-flight; the daemon's
    /// main runtime outlives them, so a stopped task still writes its final line.
    runtime: tokio::runtime::Handle,
}

#[derive(Clone)]
pub struct TaskRegistry(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data behind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl TaskRegistry {
    /// Opens (creating) `<state>/tasks` and reports tasks that were running when the daemon last
    /// stopped as failed, so no task stays "running" forever. Call it on the runtime the tasks
    /// should run on.
    pub fn open(
        state_dir: &Path,
        node: &str,
        retention: Retention,
    ) -> Result<TaskRegistry, TaskError> {
        let dir = state_dir.join("tasks");
        let state_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TaskError::State { path, source }
        };
        fs::create_dir_all(&dir).map_err(state_err(&dir))?;
        let counter_path = dir.join("counter");
        let counter = fs::read_to_string(&counter_path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let reg = TaskRegistry(Arc::new(Inner {
            index: TaskIndex::new(dir.join("index")),
            dir,
            retention,
            node: node.to_string(),
            pstart: now() as u64,
            counter: Mutex::new(counter),
            running: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        }));
        reg.recover_interrupted().map_err(state_err(&reg.0.dir))?;
        reg.prune().map_err(state_err(&reg.0.dir))?;
        Ok(reg)
    }

    pub fn node(&self) -> &str {
        &self.0.node
    }

    pub fn log_path(&self, upid: &Upid) -> PathBuf {
        self.0.dir.join(upid.log_subdir()).join(upid.to_string())
    }

    fn next_pid(&self) -> Result<u32, TaskError> {
        let mut c = lock(&self.0.counter);
        *c = c.wrapping_add(1);
        // Not synced: it only has to be unique within one start, since every start has a new
        // pstart in its UPIDs, and an fsync here would put the handler behind the disk's
        // writeback of running downloads.
        let path = self.0.dir.join("counter");
        fs::write(&path, c.to_string()).map_err(|source| TaskError::State { path, source })?;
        Ok(*c)
    }

    /// Starts `work` as a task. Its error text becomes `TASK ERROR: <text>` (newlines squashed
    /// as PVE does); a panic becomes a task error, never a dead daemon.
    pub fn spawn<F, Fut>(
        &self,
        kind: &str,
        id: &str,
        user: &str,
        work: F,
    ) -> Result<Upid, TaskError>
    where
        F: FnOnce(Upid, TaskLog, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let upid = Upid {
            node: self.0.node.clone(),
            pid: self.next_pid()?,
            pstart: self.0.pstart,
            starttime: now(),
            kind: kind.to_string(),
            id: id.to_string(),
            user: user.to_string(),
        };
        let path = self.log_path(&upid);
        let log = TaskLog::create(&path).map_err(|source| TaskError::CreateLog { path, source })?;
        let cancel = CancellationToken::new();
        let (done_tx, done_rx) = watch::channel(false);
        lock(&self.0.running).insert(
            upid.to_string(),
            Running {
                cancel: cancel.clone(),
                done: done_rx,
            },
        );
        let fut = work(upid.clone(), log.clone(), cancel);
        let reg = self.clone();
        let task_upid = upid.clone();
        self.0.runtime.spawn(async move {
            let result = AssertUnwindSafe(fut).catch_unwind().await;
            let status = match result {
                Ok(Ok(())) => "OK".to_string(),
                Ok(Err(text)) => squash(&crate::redact::userinfo(&text)),
                Err(_) => "internal error: the task panicked".to_string(),
            };
            log.finish(&status);
            reg.finish(&task_upid, &status);
            let _ = done_tx.send(true);
        });
        Ok(upid)
    }

    fn finish(&self, upid: &Upid, status: &str) {
        if let Err(e) = self.0.index.append(upid, now(), status) {
            tracing::error!("unable to update task index: {e}");
        }
        lock(&self.0.running).remove(&upid.to_string());
        if upid.pid.is_multiple_of(PRUNE_EVERY) {
            // It reads and rewrites the whole index: off the async runtime.
            let reg = self.clone();
            self.0.runtime.spawn_blocking(move || {
                if let Err(e) = reg.prune() {
                    tracing::warn!("unable to prune old task logs: {e}");
                }
            });
        }
    }

    /// Drops the logs and index lines of finished tasks beyond the retention count or age.
    /// Blocking (it reads and rewrites the index).
    pub fn prune(&self) -> io::Result<usize> {
        let oldest_kept = now() - self.0.retention.max_age.as_secs() as i64;
        let max_count = self.0.retention.max_count;
        // Entries stand in finishing order, so the surplus is at the front.
        let old = self.0.index.remove(|i, total, e| {
            i < total.saturating_sub(max_count)
                || e.end.as_ref().is_some_and(|(end, _)| *end < oldest_kept)
        })?;
        for e in &old {
            match fs::remove_file(self.log_path(&e.upid)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(old.len())
    }

    pub fn is_running(&self, upid: &Upid) -> bool {
        lock(&self.0.running).contains_key(&upid.to_string())
    }

    /// Cancels a running task and waits up to `grace` for it to write its final line, as PVE's
    /// stop waits for the worker. Returns false when the task was not running.
    pub async fn stop(&self, upid: &Upid, grace: Duration) -> bool {
        let done = {
            let running = lock(&self.0.running);
            let Some(r) = running.get(&upid.to_string()) else {
                return false;
            };
            r.cancel.cancel();
            r.done.clone()
        };
        wait_done(done, grace).await;
        true
    }

    /// Cancels every running task and waits for them (daemon shutdown).
    pub async fn stop_all(&self, grace: Duration) {
        let waits: Vec<_> = lock(&self.0.running)
            .values()
            .map(|r| {
                r.cancel.cancel();
                r.done.clone()
            })
            .collect();
        for w in waits {
            wait_done(w, grace).await;
        }
    }

    /// Running tasks first, then finished ones newest-finished first.
    pub fn list(&self) -> Vec<TaskEntry> {
        let mut out: Vec<TaskEntry> = lock(&self.0.running)
            .keys()
            .filter_map(|k| k.parse().ok())
            .map(|upid| TaskEntry { upid, end: None })
            .collect();
        out.sort_by(|a, b| {
            b.upid
                .starttime
                .cmp(&a.upid.starttime)
                .then(b.upid.pid.cmp(&a.upid.pid))
        });
        let mut finished = self.0.index.read();
        finished.reverse();
        out.extend(finished);
        out
    }

    /// The exit status of a stopped task, read from the last line of its log (spec §4.2).
    pub fn exit_status(&self, upid: &Upid) -> String {
        match last_line(&self.log_path(upid)) {
            Ok(line) => status_of_last_line(&line),
            Err(e) => format!("unable to get last line from task log - {e}"),
        }
    }

    fn recover_interrupted(&self) -> io::Result<()> {
        let indexed: std::collections::HashSet<String> = self
            .0
            .index
            .read()
            .into_iter()
            .map(|e| e.upid.to_string())
            .collect();
        for sub in fs::read_dir(&self.0.dir)? {
            let sub = sub?.path();
            if !sub.is_dir() {
                continue;
            }
            for f in fs::read_dir(&sub)? {
                let path = f?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Ok(upid) = name.parse::<Upid>() else {
                    continue;
                };
                if indexed.contains(name) {
                    continue;
                }
                let mut status = status_of_last_line(&last_line(&path).unwrap_or_default());
                if status == "unexpected status" {
                    append(&path, &format!("TASK ERROR: {INTERRUPTED_BY_RESTART}\n"))?;
                    status = INTERRUPTED_BY_RESTART.to_string();
                }
                tracing::warn!("task {upid} did not finish before the last stop: {status}");
                self.0.index.append(&upid, now(), &status)?;
            }
        }
        Ok(())
    }
}

async fn wait_done(mut done: watch::Receiver<bool>, grace: Duration) {
    let _ = tokio::time::timeout(grace, done.wait_for(|d| *d)).await;
}

/// PVE chomps the error and turns remaining newlines into spaces.
fn squash(text: &str) -> String {
    text.trim_end_matches('\n').replace('\n', " ")
}

pub fn status_of_last_line(line: &str) -> String {
    if line == "TASK OK" {
        "OK".into()
    } else if let Some(e) = line.strip_prefix("TASK ERROR: ") {
        e.into()
    } else if let Some(w) = line.strip_prefix("TASK WARNINGS: ") {
        format!("WARNINGS: {w}")
    } else {
        "unexpected status".into()
    }
}

fn last_line(path: &Path) -> io::Result<String> {
    let text = fs::read_to_string(path)?;
    Ok(text.lines().last().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prune_keeps_the_newest_within_count_and_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keep_two = Retention {
            max_count: 2,
            max_age: Duration::from_secs(3600),
        };
        let reg = TaskRegistry::open(dir.path(), "n1", keep_two.clone()).expect("open");
        let mut upids = Vec::new();
        for _ in 0..4 {
            let u = reg
                .spawn("x", "", "root@pam", |_, _, _| async { Ok(()) })
                .expect("spawn");
            while reg.is_running(&u) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            upids.push(u);
        }
        assert_eq!(reg.prune().expect("prune"), 2);
        let listed: Vec<Upid> = reg.list().into_iter().map(|e| e.upid).collect();
        assert_eq!(listed, [upids[3].clone(), upids[2].clone()]);
        assert!(!reg.log_path(&upids[0]).exists() && !reg.log_path(&upids[1]).exists());
        assert!(reg.log_path(&upids[2]).exists());

        // A task that ended two hours ago goes for its age alone.
        let old = Upid {
            pid: 9999,
            ..upids[3].clone()
        };
        TaskLog::create(&reg.log_path(&old))
            .expect("log")
            .line("TASK OK");
        // The index is in finishing order, so an old entry stands first.
        let rest = fs::read_to_string(reg.0.index.path()).expect("index");
        fs::write(
            reg.0.index.path(),
            format!("{old} {:08X} OK\n{rest}", now() - 7200),
        )
        .expect("index");
        assert_eq!(reg.prune().expect("prune"), 1);
        assert!(!reg.log_path(&old).exists());
        assert_eq!(reg.list().len(), 2);
    }

    #[test]
    fn last_line_mapping() {
        assert_eq!(status_of_last_line("TASK OK"), "OK");
        assert_eq!(status_of_last_line("TASK ERROR: boom"), "boom");
        assert_eq!(status_of_last_line("TASK WARNINGS: 2"), "WARNINGS: 2");
        assert_eq!(status_of_last_line("progress"), "unexpected status");
    }

    #[tokio::test]
    async fn task_lifecycle_and_restart_recovery() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = TaskRegistry::open(dir.path(), "n1", Retention::default()).expect("open");
        let a = reg
            .spawn("download", "a.iso", "root@pam", |_, log, _| async move {
                log.line("hello");
                Err("boom\nsecond line\n".to_string())
            })
            .expect("spawn");
        let b = reg
            .spawn("download", "a.iso", "root@pam", |_, _, cancel| async move {
                cancel.cancelled().await;
                Err("download failed: received interrupt".to_string())
            })
            .expect("spawn");
        assert_ne!(a, b, "identical requests in one second get distinct UPIDs");
        assert!(
            reg.log_path(&b).exists(),
            "log exists before the UPID is returned"
        );
        assert!(reg.stop(&b, Duration::from_secs(5)).await);
        assert!(!reg.is_running(&b));
        assert_eq!(reg.exit_status(&b), "download failed: received interrupt");
        tokio::time::timeout(Duration::from_secs(5), async {
            while reg.is_running(&a) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("task a ends");
        assert_eq!(reg.exit_status(&a), "boom second line");
        let log = fs::read_to_string(reg.log_path(&a)).expect("log");
        assert_eq!(log, "hello\nTASK ERROR: boom second line\n");

        // A task whose log has no final line was running when the daemon died.
        let orphan = Upid {
            node: "n1".into(),
            pid: 99,
            pstart: 1,
            starttime: 0x10,
            kind: "download".into(),
            id: "x.iso".into(),
            user: "root@pam".into(),
        };
        let p = reg.log_path(&orphan);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, "downloading\n").expect("write");
        drop(reg);
        let reg = TaskRegistry::open(dir.path(), "n1", Retention::default()).expect("reopen");
        assert_eq!(reg.exit_status(&orphan), INTERRUPTED_BY_RESTART);
        let listed: Vec<String> = reg.list().iter().map(|e| e.upid.to_string()).collect();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0], orphan.to_string());
        let c = reg
            .spawn("x", "", "root@pam", |_, _, _| async { Ok(()) })
            .expect("spawn");
        assert!(c.pid > b.pid, "the counter survives a restart");
    }
}
