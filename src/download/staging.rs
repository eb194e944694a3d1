//! The temp file of one download and its publication: the file lives in a staging directory
//! outside the content directories (so no listing sees it), is removed when the download fails
//! or is dropped, and reaches its final name only after the data was fsynced: then rename, then
//! fsync of the directory, so a crash can never leave a listed name with unflushed content
//! (architecture invariants 1 and 2).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::DownloadError;

/// A temp-file tag owned by `node`: storages may be shared by several nodes, and each daemon
/// collects only its own leftovers.
pub fn new_tag(node: &str) -> String {
    format!("{node}-{}", uuid::Uuid::new_v4().simple())
}

/// Removes the temp files `node` left in `staging_dir` when it last stopped without cleaning
/// up (a crash or kill -9). Called at start, before any task runs.
pub fn collect_orphans(staging_dir: &Path, node: &str) -> io::Result<usize> {
    let entries = match fs::read_dir(staging_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mine = format!(".{node}-");
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".part") && name.contains(&mine) && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

pub struct Staged {
    path: PathBuf,
    published: bool,
}

impl Staged {
    pub fn create(staging_dir: &Path, dest: &Path, tag: &str) -> Result<Staged, DownloadError> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = staging_dir.join(format!("{name}.{tag}.part"));
        fs::create_dir_all(staging_dir).map_err(|source| DownloadError::CreateTemp {
            path: path.clone(),
            source,
        })?;
        Ok(Staged {
            path,
            published: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    pub fn open(&self) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)
    }

    /// The data is already fsynced by the writer; rename, then make the rename durable.
    pub fn publish(mut self, dest: &Path) -> Result<(), DownloadError> {
        fs::rename(&self.path, dest).map_err(DownloadError::Rename)?;
        self.published = true;
        if let Some(dir) = dest.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(DownloadError::Rename)?;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("could not cleanup temporary file: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_of_this_node_only_are_collected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mine = dir.path().join(format!("x.iso.{}.part", new_tag("n1")));
        let other = dir.path().join(format!("x.iso.{}.part", new_tag("n2")));
        let unrelated = dir.path().join("notes.txt");
        for p in [&mine, &other, &unrelated] {
            fs::write(p, b"x").expect("write");
        }
        assert_eq!(collect_orphans(dir.path(), "n1").expect("collect"), 1);
        assert!(!mine.exists() && other.exists() && unrelated.exists());
        assert_eq!(
            collect_orphans(&dir.path().join("missing"), "n1").expect("none"),
            0
        );
    }

    #[test]
    fn dropped_staging_file_is_removed_and_published_one_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = dir.path().join(".isolib-partial");
        let dest = dir.path().join("x.iso");
        let s = Staged::create(&staging, &dest, "1").expect("create");
        fs::write(s.path(), b"partial").expect("write");
        let p = s.path().to_path_buf();
        drop(s);
        assert!(!p.exists());

        let s = Staged::create(&staging, &dest, "2").expect("create");
        fs::write(s.path(), b"done").expect("write");
        s.publish(&dest).expect("publish");
        assert_eq!(fs::read(&dest).expect("read"), b"done");
        assert_eq!(fs::read_dir(&staging).expect("ls").count(), 0);
    }
}
