//! The temp file of one download and its publication: the file lives in a staging directory
//! outside the content directories (so no listing sees it), is removed when the download fails
//! or is dropped, and reaches its final name only after the data was fsynced: then rename, then
//! fsync of the directory, so a crash can never leave a listed name with unflushed content
//! (architecture invariants 1 and 2). Next to it lives its resume state (partial.rs), which
//! goes with it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::DownloadError;
use super::partial::{self, Found, PartialState};
use super::segment_writer::SegmentState;

/// A temp-file tag owned by `node`: storages may be shared by several nodes, and each daemon
/// collects only its own leftovers.
pub fn new_tag(node: &str) -> String {
    format!("{node}-{}", uuid::Uuid::new_v4().simple())
}

/// The temp file of a running download and its resume state (partial.rs).
pub struct Staged {
    part: PathBuf,
    state_path: PathBuf,
    state: PartialState,
    published: bool,
}

impl Staged {
    /// A new temp file tagged `tag` for `state.target`. The state is written first, so the
    /// temp file never exists without one.
    pub fn create(
        staging_dir: &Path,
        tag: &str,
        mut state: PartialState,
    ) -> Result<Staged, DownloadError> {
        let name = state
            .target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let part = staging_dir.join(format!("{name}.{tag}.part"));
        let state_path = partial::state_path(&part);
        fs::create_dir_all(staging_dir)
            .and_then(|()| state.store(&state_path))
            .map_err(|source| DownloadError::CreateTemp {
                path: state_path.clone(),
                source,
            })?;
        Ok(Staged {
            part,
            state_path,
            state,
            published: false,
        })
    }

    /// Takes over a partial download an earlier run left on disk.
    pub fn adopt(found: Found) -> Staged {
        Staged {
            part: found.group.part(),
            state_path: found.group.state(),
            state: found.state,
            published: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.part
    }

    pub fn dir(&self) -> &Path {
        self.part.parent().unwrap_or(Path::new("/"))
    }

    pub fn state(&self) -> &PartialState {
        &self.state
    }

    /// Empties the temp file for a download from the first byte of the origin's version
    /// `validator`, and records that before any byte of it is written: a state never describes
    /// bytes of another version.
    pub fn start_over(
        &mut self,
        validator: Option<String>,
        length: Option<u64>,
    ) -> io::Result<File> {
        self.reset(validator, length, Vec::new())
    }

    /// `start_over` for a download fetched in `segments` (segmented.rs), at its full length.
    pub fn start_segments(
        &mut self,
        validator: Option<String>,
        length: u64,
        segments: Vec<SegmentState>,
    ) -> io::Result<File> {
        self.reset(validator, Some(length), segments)
    }

    fn reset(
        &mut self,
        validator: Option<String>,
        length: Option<u64>,
        segments: Vec<SegmentState>,
    ) -> io::Result<File> {
        // Readable too: what lzop writes into it is read back for the catalog.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.part)?;
        if !segments.is_empty() {
            // Segments are written in place, each at its offset.
            file.set_len(length.unwrap_or(0))?;
        }
        self.state.validator = validator;
        self.state.length = length;
        self.state.synced = 0;
        self.state.segments = segments;
        self.state.store(&self.state_path)?;
        Ok(file)
    }

    /// Opens the temp file of a segmented download as it is: its segments go on in place.
    pub fn continue_segments(&self) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(&self.part)
    }

    /// Opens the temp file cut to its first `offset` bytes; the writer goes on at `offset`.
    pub fn continue_at(&self, offset: u64) -> io::Result<File> {
        let file = OpenOptions::new().read(true).write(true).open(&self.part)?;
        file.set_len(offset)?;
        Ok(file)
    }

    /// Records that the first `n` bytes are on disk for good. A failure costs only the
    /// ability to resume from them, not the download.
    pub fn record_synced(&mut self, n: u64) {
        self.state.synced = n;
        if let Err(e) = self.state.store(&self.state_path) {
            tracing::warn!(
                "unable to update resume state '{}': {e}",
                self.state_path.display()
            );
        }
    }

    /// Records how far each segment (and the leading bytes without a gap) are on disk for good.
    pub fn record_segments(&mut self, segments: Vec<SegmentState>, synced: u64) {
        self.state.segments = segments;
        self.record_synced(synced);
    }

    /// The data is already fsynced by the writer; rename, then make the rename durable. The
    /// state goes last, on drop: a crash before that leaves a state without its temp file,
    /// which the collector removes. A directory that cannot be synced is returned, not failed
    /// on: the file is already under its name, complete and fsynced, and a task that failed
    /// would leave it there all the same.
    pub fn publish(mut self, dest: &Path) -> Result<Option<io::Error>, DownloadError> {
        fs::rename(&self.part, dest).map_err(DownloadError::Rename)?;
        self.published = true;
        let dir = dest.parent().unwrap_or(Path::new("/"));
        Ok(crate::fsutil::sync_dir(dir).err())
    }
}

fn remove(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("could not cleanup temporary file: {e}"),
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.published {
            remove(&self.part);
        }
        remove(&self.state_path);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ContentCheck, DownloadPlan};
    use super::*;

    fn state(dest: &Path) -> PartialState {
        PartialState::new(&DownloadPlan {
            check: ContentCheck::for_download("iso", None),
            ..DownloadPlan::new(
                "http://o/x.iso".into(),
                dest.to_path_buf(),
                PathBuf::new(),
                "iso",
                "n1",
                "root@pam".into(),
            )
        })
    }

    #[test]
    fn dropped_staging_files_are_removed_and_published_one_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = dir.path().join(".isolib-partial");
        let dest = dir.path().join("x.iso");
        let mut s = Staged::create(&staging, &new_tag("n1"), state(&dest)).expect("create");
        assert!(partial::state_path(s.path()).is_file(), "state before data");
        s.start_over(Some("\"v1\"".into()), Some(7)).expect("open");
        fs::write(s.path(), b"partial").expect("write");
        let p = s.path().to_path_buf();
        drop(s);
        assert!(!p.exists());
        assert_eq!(fs::read_dir(&staging).expect("ls").count(), 0);

        let mut s = Staged::create(&staging, &new_tag("n1"), state(&dest)).expect("create");
        s.start_over(None, None).expect("open");
        fs::write(s.path(), b"done").expect("write");
        assert!(s.publish(&dest).expect("publish").is_none());
        assert_eq!(fs::read(&dest).expect("read"), b"done");
        assert_eq!(fs::read_dir(&staging).expect("ls").count(), 0);
    }

    #[test]
    fn start_over_records_the_new_version_and_continue_cuts_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("x.iso");
        let mut s = Staged::create(dir.path(), &new_tag("n1"), state(&dest)).expect("create");
        s.start_over(Some("\"v2\"".into()), Some(10)).expect("open");
        let stored = PartialState::load(&partial::state_path(s.path())).expect("state");
        assert_eq!(
            (stored.validator.as_deref(), stored.length, stored.synced),
            (Some("\"v2\""), Some(10), 0)
        );
        s.record_synced(4);
        let stored = PartialState::load(&partial::state_path(s.path())).expect("state");
        assert_eq!(stored.synced, 4);
        fs::write(s.path(), b"0123456").expect("write");
        drop(s.continue_at(4).expect("continue"));
        assert_eq!(fs::read(s.path()).expect("read"), b"0123");
    }
}
