//! Storage usage: pve-storage `src/PVE/Storage/Plugin.pm` status (via pve-common
//! `PVE::Tools::df`, i.e. Filesys::Df in bytes), with the mount checks of `DirPlugin.pm`,
//! `NFSPlugin.pm`, `CIFSPlugin.pm` and `CephFSPlugin.pm` status (spec/pve-api.md §7.1-7.2).

use std::path::Path;

use super::model::Storage;
use super::mounts::{expected_mountpoint, network_mounted, path_is_mounted, read_mounts};
use super::plugins::Mount;

/// Sizes in bytes; all zero when the storage is not active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStatus {
    pub total: u64,
    pub used: u64,
    pub avail: u64,
    pub active: bool,
}

/// Widens whatever integer type statvfs uses on this target.
fn wide(value: impl Into<u64>) -> u64 {
    value.into()
}

/// PVE::Tools::df: `blocks`, `used = blocks - bfree` and `bavail`, in fragment-size units.
fn df(path: &Path) -> Option<StorageStatus> {
    let vfs = nix::sys::statvfs::statvfs(path).ok()?;
    let unit = match wide(vfs.fragment_size()) {
        0 => wide(vfs.block_size()),
        frsize => frsize,
    };
    let blocks = wide(vfs.blocks());
    Some(StorageStatus {
        total: blocks.saturating_mul(unit),
        used: blocks
            .saturating_sub(wide(vfs.blocks_free()))
            .saturating_mul(unit),
        avail: wide(vfs.blocks_available()).saturating_mul(unit),
        active: true,
    })
}

impl Storage {
    /// statvfs of `path`. Active means: the expected mount is there, `path` is a directory
    /// and the file system reports a non-zero size (Plugin.pm returns nothing for total 0).
    /// Does not activate the storage first.
    pub fn status(&self) -> StorageStatus {
        let (Some(mount), Some(path)) = (self.mount(), self.path.as_deref()) else {
            return StorageStatus::default();
        };
        let mounted = match mount {
            Mount::Dir | Mount::Btrfs => expected_mountpoint(self)
                .is_none_or(|mp| path_is_mounted(Path::new(&mp), &read_mounts())),
            Mount::Nfs | Mount::Cifs | Mount::CephFs => {
                network_mounted(self, mount, &read_mounts())
            }
        };
        if !mounted || !path.is_dir() {
            return StorageStatus::default();
        }
        df(path).filter(|s| s.total > 0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn directory_sizes() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let mut s = Storage::new("s1", "dir");
        s.path = Some(tmp.path().to_path_buf());
        let st = s.status();
        assert!(st.active);
        assert!(st.total > 0);
        assert!(st.used <= st.total);
        assert!(st.avail <= st.total);
        let vfs = nix::sys::statvfs::statvfs(tmp.path())?;
        assert_eq!(st.total, wide(vfs.blocks()) * wide(vfs.fragment_size()));
        Ok(())
    }

    #[test]
    fn inactive_cases() -> Result<(), Box<dyn std::error::Error>> {
        let mut s = Storage::new("s1", "dir");
        s.path = Some(PathBuf::from("/nonexistent/isolib"));
        assert_eq!(s.status(), StorageStatus::default());
        let tmp = tempfile::tempdir()?;
        s.path = Some(tmp.path().to_path_buf());
        s.is_mountpoint = Some("1".into());
        assert!(!s.status().active);
        assert_eq!(Storage::new("vg", "lvm").status(), StorageStatus::default());
        Ok(())
    }
}
