//! Copies in progress whose bytes may already be served on: a node that is receiving a volume
//! passes on what is in its temp file to the next node while more arrives, so a chain of nodes
//! fills at the speed of one transfer (http/files.rs serves it). What is passed on is only ever
//! bytes of the recorded sha256's version (the copy asks its source with that ETag), and the
//! reader learns when the copy failed, so it never takes a truncated file for a whole one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    /// All `length` bytes are in and have the recorded sha256.
    Done,
    Failed,
}

/// A volume's bytes on their way in.
pub struct GrowingFile {
    /// The temp file; once published, the volume's own path.
    pub part: PathBuf,
    pub dest: PathBuf,
    pub sha256: String,
    pub length: u64,
    written: Arc<AtomicU64>,
    state: AtomicU8,
}

impl GrowingFile {
    /// Leading bytes that are in the file (readable, not necessarily on disk).
    pub fn written(&self) -> u64 {
        if self.state() == State::Done {
            return self.length;
        }
        self.written.load(Ordering::Acquire).min(self.length)
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            RUNNING => State::Running,
            DONE => State::Done,
            _ => State::Failed,
        }
    }
}

/// The copies in progress, by their volume's path.
#[derive(Clone, Default)]
pub struct Growing(Arc<Mutex<HashMap<PathBuf, Arc<GrowingFile>>>>);

impl Growing {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<GrowingFile>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, dest: &Path) -> Option<Arc<GrowingFile>> {
        self.map().get(dest).cloned()
    }

    /// Announces the copy into `part` for `dest`, `written` counting the bytes in it; the
    /// entry goes with the guard, failed unless the guard was told it is done.
    pub fn announce(
        &self,
        part: PathBuf,
        dest: PathBuf,
        sha256: String,
        length: u64,
        written: Arc<AtomicU64>,
    ) -> GrowingGuard {
        let file = Arc::new(GrowingFile {
            part,
            dest: dest.clone(),
            sha256,
            length,
            written,
            state: AtomicU8::new(RUNNING),
        });
        self.map().insert(dest, file.clone());
        GrowingGuard {
            registry: self.clone(),
            file,
        }
    }
}

pub struct GrowingGuard {
    registry: Growing,
    file: Arc<GrowingFile>,
}

impl GrowingGuard {
    /// The bytes are all in and verified; readers may finish.
    pub fn done(&self) {
        self.file.state.store(DONE, Ordering::Release);
    }
}

impl Drop for GrowingGuard {
    fn drop(&mut self) {
        let _ =
            self.file
                .state
                .compare_exchange(RUNNING, FAILED, Ordering::AcqRel, Ordering::Acquire);
        let mut map = self.registry.map();
        if map
            .get(&self.file.dest)
            .is_some_and(|f| Arc::ptr_eq(f, &self.file))
        {
            map.remove(&self.file.dest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_the_count_and_how_it_ended() {
        let g = Growing::default();
        let written = Arc::new(AtomicU64::new(0));
        let dest = PathBuf::from("/s/template/iso/a.iso");
        let guard = g.announce(
            "/s/.p/a.part".into(),
            dest.clone(),
            "ab".into(),
            10,
            written.clone(),
        );
        let f = g.get(&dest).expect("announced");
        written.store(4, Ordering::Release);
        assert_eq!((f.written(), f.state()), (4, State::Running));
        guard.done();
        drop(guard);
        assert_eq!(f.state(), State::Done);
        assert!(g.get(&dest).is_none(), "gone with its copy");

        let guard = g.announce(
            "/s/.p/b.part".into(),
            dest.clone(),
            "ab".into(),
            10,
            written,
        );
        let f = g.get(&dest).expect("announced");
        drop(guard);
        assert_eq!(
            f.state(),
            State::Failed,
            "a copy that ends without done failed"
        );
    }
}
