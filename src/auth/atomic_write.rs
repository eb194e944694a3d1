//! Replacing a config file in one step ([`fsutil::replace_file`]), in a directory made
//! root-only when it is missing, as PVE keeps `priv/`.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::fsutil;

use super::error::AuthError;

/// Writes `contents` to `path` atomically, with permission bits `mode`.
pub(crate) fn write_atomically(path: &Path, contents: &str, mode: u32) -> Result<(), AuthError> {
    let err = |source| AuthError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // PVE keeps token.cfg in a root-only directory; create a missing one the same way.
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    fsutil::replace_file(path, &fsutil::temp_beside(path), contents.as_bytes(), mode).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_sets_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("priv").join("token.cfg");
        write_atomically(&path, "one\n", 0o600).unwrap_or_else(|e| panic!("{e}"));
        write_atomically(&path, "two\n", 0o600).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read_to_string(&path).ok().as_deref(), Some("two\n"));
        let mode = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        let entries = fs::read_dir(dir.path().join("priv"))
            .map(|d| d.count())
            .ok();
        assert_eq!(entries, Some(1));
    }

    #[test]
    fn reports_the_target_path_on_failure() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // The target is a non-empty directory, so the rename must fail.
        let target = dir.path().join("user.cfg");
        fs::create_dir_all(target.join("x")).unwrap_or_else(|e| panic!("{e}"));
        let err = write_atomically(&target, "x", 0o640)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("user.cfg")));
        let leftovers = fs::read_dir(dir.path()).map(|d| d.count()).ok();
        assert_eq!(leftovers, Some(1));
    }
}
