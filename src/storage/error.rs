//! Errors of the storage layer.
//!
//! Each `Display` is the exact text PVE dies with (pve-storage `src/PVE/Storage.pm`,
//! `src/PVE/Storage/{Plugin,DirPlugin,BTRFSPlugin}.pm`), minus the trailing `"\n"` of Perl's
//! `die`: the HTTP layer adds it back where the wire shows it (spec/pve-api.md §5.5).

/// What can go wrong when reading storage.cfg or touching a storage directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// storage.cfg could not be read at all.
    #[error("unable to read '{path}': {reason}")]
    Read { path: String, reason: String },
    /// storage_config: the id is not in storage.cfg (callers raise it; spec §1.3 step 1).
    #[error("storage '{0}' does not exist")]
    DoesNotExist(String),
    /// storage_check_enabled: `disable` is set.
    #[error("storage '{0}' is disabled")]
    Disabled(String),
    /// storage_check_node: a `nodes` list that does not name this node.
    #[error("storage '{id}' is not available on node '{node}'")]
    NotOnNode { id: String, node: String },
    /// download-url/upload on a storage without `path` (spec §1.3 step 2).
    #[error("can't upload to storage type '{0}', not a file based storage!")]
    NotFileBased(String),
    /// download-url: content type not in the storage's `content` (spec §1.3 step 3).
    #[error("storage '{id}' is not configured for content-type '{content}'")]
    ContentNotConfigured { id: String, content: String },
    /// get_subdir on a storage without `path`.
    #[error("storage definition has no path")]
    NoPath,
    /// get_subdir with a content type that has no directory.
    #[error("unknown vtype '{0}'")]
    UnknownVtype(String),
    /// DirPlugin/BTRFSPlugin activate_storage with `is_mountpoint` and nothing mounted there.
    #[error(
        "unable to activate storage '{id}' - directory is expected to be a mount point but is not mounted: '{mountpoint}'"
    )]
    NotMounted { id: String, mountpoint: String },
    /// Plugin activate_storage: `path` is not a directory.
    #[error(
        "unable to activate storage '{id}' - directory '{path}' does not exist or is unreachable"
    )]
    DirUnreachable { id: String, path: String },
    /// Storage.pm activate_storage when the plugin's connection check fails.
    #[error("storage '{0}' is not online")]
    NotOnline(String),
    /// BTRFSPlugin activate_storage on another file system.
    #[error("'{0}' is not a btrfs file system")]
    NotBtrfs(String),
    /// Plugin activate_storage: two content types resolve to one directory.
    #[error("storage '{id}' uses directory {dir} for multiple content types")]
    SharedContentDir { id: String, dir: String },
    /// File::Path mkpath failing (Perl adds " at <file> line <n>." after this).
    #[error("mkdir {path}: {reason}")]
    Mkdir { path: String, reason: String },
    /// Plugin parse_volume_id.
    #[error("unable to parse volume ID '{0}'")]
    VolumeId(String),
    /// Plugin parse_volname for file-based storages.
    #[error("unable to parse directory volume name '{0}'")]
    VolumeName(String),
    /// Plugin parse_name_dir (image names below `images/<vmid>/`).
    #[error("unable to parse volume filename '{0}'")]
    VolumeFilename(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_pve_texts() {
        assert_eq!(
            StorageError::NotOnNode {
                id: "isos".into(),
                node: "pve3".into()
            }
            .to_string(),
            "storage 'isos' is not available on node 'pve3'"
        );
        assert_eq!(
            StorageError::NotFileBased("lvm".into()).to_string(),
            "can't upload to storage type 'lvm', not a file based storage!"
        );
        assert_eq!(
            StorageError::ContentNotConfigured {
                id: "local".into(),
                content: "iso".into()
            }
            .to_string(),
            "storage 'local' is not configured for content-type 'iso'"
        );
    }
}
