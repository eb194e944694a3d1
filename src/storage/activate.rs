//! Storage activation for file-based storages: pve-storage `src/PVE/Storage/DirPlugin.pm` and
//! `BTRFSPlugin.pm` activate_storage (mount point check, base directory), `Plugin.pm`
//! activate_storage (the directory must exist, content subdirectories are created, no two
//! content types may share a directory) and config_aware_base_mkdir (spec/pve-api.md §1.3
//! step 6, §7.6).
//!
//! NFS, CIFS and CephFS storages are never mounted by the daemon: when their mount is missing
//! activation fails with "storage '<id>' is not online", PVE's text for an unreachable storage.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::error::StorageError;
use super::model::Storage;
use super::mounts::{expected_mountpoint, network_mounted, path_is_mounted, read_mounts};
use super::plugins::{Mount, VTYPES_SORTED};
use crate::pve::perl::errno_text;

impl Storage {
    /// activate_storage. Storages without a path have nothing to activate here.
    pub fn activate(&self) -> Result<(), StorageError> {
        let (Some(mount), Some(path)) = (self.mount(), self.path.as_deref()) else {
            return Ok(());
        };
        match mount {
            Mount::Dir => {
                self.check_mountpoint()?;
                self.make_base(path)?;
            }
            Mount::Btrfs => {
                self.make_base(path)?;
                self.check_mountpoint()?;
                assert_btrfs(path)?;
            }
            Mount::Nfs | Mount::Cifs | Mount::CephFs => {
                if !network_mounted(self, mount, &read_mounts()) {
                    return Err(StorageError::NotOnline(self.id.clone()));
                }
            }
        }
        self.activate_dirs(path)
    }

    fn check_mountpoint(&self) -> Result<(), StorageError> {
        match expected_mountpoint(self) {
            Some(mp) if !path_is_mounted(Path::new(&mp), &read_mounts()) => {
                Err(StorageError::NotMounted {
                    id: self.id.clone(),
                    mountpoint: mp,
                })
            }
            _ => Ok(()),
        }
    }

    /// config_aware_base_mkdir: `create-base-path`, else `mkdir`, default on.
    fn make_base(&self, path: &Path) -> Result<(), StorageError> {
        if self.create_base_path {
            mkpath(path)
        } else {
            Ok(())
        }
    }

    /// Plugin.pm activate_storage.
    fn activate_dirs(&self, path: &Path) -> Result<(), StorageError> {
        if !path.is_dir() {
            return Err(StorageError::DirUnreachable {
                id: self.id.clone(),
                path: path.display().to_string(),
            });
        }
        if self.create_subdirs {
            for vtype in VTYPES_SORTED {
                // Container migration uses the backup directory, so rootdir implies it.
                let wanted = self.content.contains(*vtype)
                    || (*vtype == "backup" && self.content.contains("rootdir"));
                if wanted {
                    mkpath(&self.get_subdir(vtype)?)?;
                }
            }
        }
        let mut seen = BTreeSet::new();
        for vtype in &self.content {
            // Also for `none`, which has no directory: PVE dies with "unknown vtype 'none'" here.
            let Some(dir) = abs_path(&self.get_subdir(vtype)?) else {
                continue;
            };
            if !seen.insert(dir.clone()) {
                return Err(StorageError::SharedContentDir {
                    id: self.id.clone(),
                    dir: dir.display().to_string(),
                });
            }
        }
        Ok(())
    }
}

/// File::Path mkpath.
fn mkpath(dir: &Path) -> Result<(), StorageError> {
    std::fs::create_dir_all(dir).map_err(|err| StorageError::Mkdir {
        path: dir.display().to_string(),
        reason: errno_text(&err),
    })
}

/// Cwd::abs_path: like realpath, but a missing last component is tolerated.
fn abs_path(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok().or_else(|| {
        let parent = std::fs::canonicalize(path.parent()?).ok()?;
        Some(parent.join(path.file_name()?))
    })
}

fn assert_btrfs(path: &Path) -> Result<(), StorageError> {
    let on_btrfs = nix::sys::statfs::statfs(path)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC);
    if on_btrfs {
        Ok(())
    } else {
        Err(StorageError::NotBtrfs(path.display().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_storage(root: &Path, content: &[&str]) -> Storage {
        let mut s = Storage::new("store1", "dir");
        s.path = Some(root.to_path_buf());
        s.content = content.iter().map(|c| (*c).to_owned()).collect();
        s
    }

    #[test]
    fn creates_content_subdirs() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("base");
        let s = dir_storage(&root, &["iso", "vztmpl", "import", "rootdir"]);
        s.activate()?;
        for sub in [
            "template/iso",
            "template/cache",
            "import",
            "private",
            "dump",
        ] {
            assert!(root.join(sub).is_dir(), "{sub}");
        }
        assert!(!root.join("images").exists());
        assert!(!root.join("snippets").exists());
        Ok(())
    }

    #[test]
    fn honours_content_dirs_and_opt_outs() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let mut s = dir_storage(tmp.path(), &["iso"]);
        s.content_dirs.insert("iso".into(), "images/cd".into());
        s.activate()?;
        assert!(tmp.path().join("images/cd").is_dir());
        assert!(!tmp.path().join("template").exists());

        let tmp = tempfile::tempdir()?;
        let mut s = dir_storage(tmp.path(), &["iso"]);
        s.create_subdirs = false;
        s.activate()?;
        assert!(!tmp.path().join("template").exists());

        let tmp = tempfile::tempdir()?;
        let mut s = dir_storage(&tmp.path().join("missing"), &["iso"]);
        s.create_base_path = false;
        assert_eq!(
            s.activate().map_err(|e| e.to_string()),
            Err(format!(
                "unable to activate storage 'store1' - directory '{}/missing' does not exist or is unreachable",
                tmp.path().display()
            ))
        );
        Ok(())
    }

    #[test]
    fn is_mountpoint_failure_text() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let mut s = dir_storage(tmp.path(), &["iso"]);
        s.is_mountpoint = Some("yes".into());
        assert_eq!(
            s.activate().map_err(|e| e.to_string()),
            Err(format!(
                "unable to activate storage 'store1' - directory is expected to be a mount point but is not mounted: '{}'",
                tmp.path().display()
            ))
        );
        s.is_mountpoint = Some("/nonexistent/mp".into());
        assert_eq!(
            s.activate().map_err(|e| e.to_string()),
            Err("unable to activate storage 'store1' - directory is expected to be a mount point but is not mounted: '/nonexistent/mp'".to_owned())
        );
        // Nothing was created before the check failed.
        assert!(!tmp.path().join("template").exists());
        s.is_mountpoint = Some("no".into());
        s.activate()?;
        Ok(())
    }

    #[test]
    fn shared_and_none_dirs() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let mut s = dir_storage(tmp.path(), &["iso", "vztmpl"]);
        s.content_dirs
            .insert("vztmpl".into(), "template/iso".into());
        let real = std::fs::canonicalize(tmp.path())?;
        assert_eq!(
            s.activate().map_err(|e| e.to_string()),
            Err(format!(
                "storage 'store1' uses directory {}/template/iso for multiple content types",
                real.display()
            ))
        );
        let s = dir_storage(tmp.path(), &["none"]);
        assert_eq!(s.activate(), Err(StorageError::UnknownVtype("none".into())));
        Ok(())
    }

    #[test]
    fn network_and_block_storages() {
        let mut nfs = Storage::new("nfs1", "nfs");
        nfs.path = Some(PathBuf::from("/nonexistent/mnt/pve/nfs1"));
        nfs.options.insert("server".into(), "192.0.2.1".into());
        nfs.options.insert("export".into(), "/x".into());
        assert_eq!(nfs.activate(), Err(StorageError::NotOnline("nfs1".into())));
        assert_eq!(Storage::new("vg", "lvm").activate(), Ok(()));
    }

    #[test]
    fn btrfs_check() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let mut s = dir_storage(tmp.path(), &["iso"]);
        s.kind = "btrfs".into();
        let on_btrfs = nix::sys::statfs::statfs(tmp.path())?.filesystem_type()
            == nix::sys::statfs::BTRFS_SUPER_MAGIC;
        if !on_btrfs {
            assert_eq!(
                s.activate(),
                Err(StorageError::NotBtrfs(tmp.path().display().to_string()))
            );
        }
        Ok(())
    }
}
