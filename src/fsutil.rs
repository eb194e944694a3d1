//! Replacing a file in one step, durably: write a temporary file beside it, fsync it, rename it
//! over the original, fsync the directory. A reader sees the old or the new file, never half of
//! one, and after a crash the new one is there only if it is whole. Every writer of a file that
//! others read (config files, the task index, a download's resume state) goes through here, as
//! proxmox-backup's `replace_file` serves all of its writers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A fresh temporary name beside `path` (`.<name>.<random>.tmp`), for writers that may race.
pub fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir_of(path).join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()))
}

/// Writes `contents` to `tmp` with permission bits `mode`, then puts it in place of `path`
/// (see the module docs). The temporary file is removed when any step fails.
pub fn replace_file(path: &Path, tmp: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(tmp)?;
        // The umask may have narrowed `mode`; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(tmp, path)
    })();
    if result.is_err() {
        // Best effort: the write error is what the caller needs to see.
        let _ = fs::remove_file(tmp);
    }
    result?;
    sync_dir(dir_of(path))
}

/// How long ago the entry was last modified; `None` when that cannot be told.
pub fn age(entry: &fs::DirEntry) -> Option<std::time::Duration> {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()?
        .elapsed()
        .ok()
}

/// Makes a rename or a new entry in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_sets_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index");
        replace_file(&path, &temp_beside(&path), b"one", 0o640).expect("first");
        replace_file(&path, &dir.path().join("fixed.tmp"), b"two", 0o600).expect("second");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn a_failed_rename_removes_the_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("busy");
        fs::create_dir_all(target.join("x")).expect("mkdir");
        let tmp = temp_beside(&target);
        assert!(replace_file(&target, &tmp, b"data", 0o600).is_err());
        assert!(!tmp.exists());
    }
}
