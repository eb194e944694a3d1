//! One writer per target across daemons that share a storage (`shared 1`, or one directory
//! seen by several hosts): an exclusive flock on `<staging dir>/<name>.lock`, which NFSv4 and
//! CephFS carry between hosts. The in-process map (inflight.rs) decides among this daemon's
//! tasks first; this decides among daemons.
//!
//! PVE's lock directory (`priv/lock/`) is not the tool here: pmxcfs expires a lock after 120 s,
//! and a writer holds its target for as long as its download takes.
//!
//! The holder removes the file before it lets go. A waiter that then wins the lock on the
//! removed file finds that the name no longer leads to it and tries again on the new one: no
//! lock file is left behind, and no two writers ever hold different files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct WriterLock {
    path: PathBuf,
    // Held open: closing it releases the lock.
    _file: File,
}

/// Who holds a lock, as its holder wrote it.
pub enum Attempt {
    Locked(WriterLock),
    Held { by: String },
}

impl WriterLock {
    /// The lock for `target`'s writer in `staging_dir`.
    pub fn path(staging_dir: &Path, target: &Path) -> PathBuf {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        staging_dir.join(format!("{name}.lock"))
    }

    /// Takes the lock at `path` for `holder` (written into it for whoever waits), or says who
    /// has it. Blocking, but never waits for the lock itself.
    pub fn try_acquire(path: &Path, holder: &str) -> io::Result<Attempt> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        loop {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .mode(0o600)
                .open(path)?;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    let by = fs::read_to_string(path).unwrap_or_default();
                    return Ok(Attempt::Held {
                        by: by.trim().to_owned(),
                    });
                }
                return Err(e);
            }
            let locked = file.metadata()?;
            let current = match fs::metadata(path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if (current.dev(), current.ino()) != (locked.dev(), locked.ino()) {
                continue;
            }
            file.set_len(0)?;
            file.write_all(holder.as_bytes())?;
            return Ok(Attempt::Locked(WriterLock {
                path: path.to_path_buf(),
                _file: file,
            }));
        }
    }
}

/// Removes the lock files in `dir` nobody holds: a writer that was killed leaves its file
/// (the kernel only drops the lock). Blocking; returns how many were removed.
pub fn collect(dir: &Path) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "lock")
            && matches!(WriterLock::try_acquire(&path, "")?, Attempt::Locked(_))
        {
            removed += 1;
        }
    }
    Ok(removed)
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Removed while still held, so a waiter never locks a file the next one cannot see.
        if let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("unable to remove lock '{}': {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_then_the_next_and_nothing_left() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = WriterLock::path(d.path(), Path::new("/x/a.iso"));
        assert_eq!(path, d.path().join("a.iso.lock"));
        let Attempt::Locked(first) = WriterLock::try_acquire(&path, "task 1").expect("lock") else {
            panic!("free lock not taken");
        };
        // A second open file description, as another daemon has: refused, told who holds it.
        match WriterLock::try_acquire(&path, "task 2").expect("try") {
            Attempt::Held { by } => assert_eq!(by, "task 1"),
            Attempt::Locked(_) => panic!("two holders"),
        }
        drop(first);
        assert!(!path.exists(), "lock file left behind");
        let Attempt::Locked(second) = WriterLock::try_acquire(&path, "task 2").expect("lock")
        else {
            panic!("released lock not taken");
        };
        assert_eq!(fs::read_to_string(&path).expect("read"), "task 2");
        // Held: collection leaves it; a killed holder's file (no lock on it) goes.
        assert_eq!(collect(d.path()).expect("collect"), 0);
        assert!(path.exists());
        std::mem::forget(second);
        let killed = d.path().join("b.iso.lock");
        fs::write(&killed, "task 3").expect("write");
        assert_eq!(collect(d.path()).expect("collect"), 1);
        assert!(!killed.exists());
    }
}
