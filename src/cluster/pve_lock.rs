//! PVE's cluster-wide lock, taken the way PVE::Cluster's `cfs_lock_*` takes it: `mkdir
//! <pve-dir>/priv/lock/<name>` until it succeeds, for at most 10 s ("got lock request
//! timeout"), asking pmxcfs between attempts to drop the lock if it has expired (`utime(0, 0)`
//! on it: pmxcfs expires a lock after 120 s); `rmdir` releases it. For short read-change-write
//! work on isolib's own files in the cluster file system; a download holds its file far
//! longer than a lock may live (download/writer_lock.rs is for that).
//!
//! Where `<pve-dir>` is a plain directory standing in for pmxcfs (tests, a copied /etc/pve),
//! nothing expires a lock, so a lock older than 120 s is removed here instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// PVE's default time to wait for a lock.
const ACQUIRE: Duration = Duration::from_secs(10);
/// pmxcfs's `CFS_LOCK_TIMEOUT`.
const EXPIRY: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
#[error("cfs-lock '{name}' error: {reason}")]
pub struct LockError {
    name: String,
    reason: String,
}

/// A held lock; dropping it releases it.
pub struct PveLock {
    path: PathBuf,
}

/// Takes lock `name`, blocking for up to 10 s.
pub fn acquire(pve_dir: &Path, name: &str) -> Result<PveLock, LockError> {
    let err = |reason: String| LockError {
        name: name.to_owned(),
        reason,
    };
    let dir = pve_dir.join("priv").join("lock");
    std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
    let path = dir.join(name);
    let pmxcfs = nix::sys::statfs::statfs(&dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::FUSE_SUPER_MAGIC);
    let start = Instant::now();
    loop {
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(PveLock { path }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e.to_string())),
        }
        if start.elapsed() >= ACQUIRE {
            return Err(err("got lock request timeout".into()));
        }
        if pmxcfs {
            // pmxcfs's unlock request: it removes the lock if it has expired.
            let _ = nix::sys::stat::utimes(
                &path,
                &nix::sys::time::TimeVal::new(0, 0),
                &nix::sys::time::TimeVal::new(0, 0),
            );
        } else if std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > EXPIRY)
        {
            let _ = std::fs::remove_dir(&path);
            continue;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for PveLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.path) {
            tracing::warn!("unable to release lock '{}': {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_an_expired_lock_is_taken_over() {
        let d = tempfile::tempdir().expect("tempdir");
        let lock = acquire(d.path(), "isolib-test").expect("free lock");
        let path = d.path().join("priv/lock/isolib-test");
        assert!(path.is_dir());
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = d.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let l = acquire(&dir, "isolib-test");
            tx.send(()).expect("send");
            l.map(drop)
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "taken while held"
        );
        drop(lock);
        waiter.join().expect("join").expect("taken once free");
        assert!(!path.exists(), "released");

        // A holder that died long ago (its lock older than pmxcfs's expiry).
        std::fs::create_dir(&path).expect("stale lock");
        let old = std::fs::File::open(&path).expect("open");
        old.set_modified(SystemTime::now() - Duration::from_secs(121))
            .expect("age it");
        drop(acquire(d.path(), "isolib-test").expect("expired lock taken over"));
        assert!(!path.exists());
    }
}
