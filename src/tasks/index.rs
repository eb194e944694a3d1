//! The index of finished tasks, `<state>/tasks/index`: one line per task in finishing order,
//! `<UPID> <endtime %08X> <status>` (pve-common `RESTEnvironment.pm`'s active/index files,
//! spec/pve-api.md §4). Appends and whole rewrites (pruning) are serialised by one lock, so a
//! task that finishes during a prune keeps its line. Blocking file work throughout.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::upid::Upid;

/// A finished or running task as the task list reports it.
#[derive(Clone, Debug)]
pub struct TaskEntry {
    pub upid: Upid,
    /// `None` while running.
    pub end: Option<(i64, String)>,
}

pub struct TaskIndex {
    path: PathBuf,
    lock: Mutex<()>,
}

impl TaskIndex {
    pub fn new(path: PathBuf) -> TaskIndex {
        TaskIndex {
            path,
            lock: Mutex::new(()),
        }
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The lock guards no data, so a panic while holding it leaves nothing inconsistent.
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a finished task.
    pub fn append(&self, upid: &Upid, end: i64, status: &str) -> io::Result<()> {
        let _guard = self.lock();
        append(&self.path, &line(upid, end, status))
    }

    /// The finished tasks, oldest first; lines that do not parse are skipped.
    pub fn read(&self) -> Vec<TaskEntry> {
        let Ok(f) = File::open(&self.path) else {
            return Vec::new();
        };
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let upid = parts.next()?.parse().ok()?;
                let end = i64::from_str_radix(parts.next()?, 16).ok()?;
                let status = parts.next()?.to_string();
                Some(TaskEntry {
                    upid,
                    end: Some((end, status)),
                })
            })
            .collect()
    }

    /// Rewrites the index without the entries for which `drop(position, count, entry)` holds,
    /// and returns those.
    pub fn remove(
        &self,
        mut drop: impl FnMut(usize, usize, &TaskEntry) -> bool,
    ) -> io::Result<Vec<TaskEntry>> {
        let _guard = self.lock();
        let entries = self.read();
        let count = entries.len();
        let (old, keep): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .enumerate()
            .partition(|(i, e)| drop(*i, count, e));
        if old.is_empty() {
            return Ok(Vec::new());
        }
        let text: String = keep
            .iter()
            .filter_map(|(_, e)| e.end.as_ref().map(|(end, st)| line(&e.upid, *end, st)))
            .collect();
        crate::fsutil::replace_file(
            &self.path,
            &self.path.with_extension("tmp"),
            text.as_bytes(),
            0o644,
        )?;
        Ok(old.into_iter().map(|(_, e)| e).collect())
    }
}

fn line(upid: &Upid, end: i64, status: &str) -> String {
    format!("{upid} {end:08X} {status}\n")
}

/// Appends `text` to the file at `path`, creating it.
pub fn append(path: &Path, text: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(text.as_bytes())
}
