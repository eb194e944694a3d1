//! What each storage type allows in storage.cfg: the `plugindata()` content lists and the
//! `options()` of pve-storage `src/PVE/Storage/{Dir,NFS,CIFS,CephFS,BTRFS,LVM,ISCSI,...}Plugin.pm`,
//! `@SHARED_STORAGE` of `src/PVE/Storage/Plugin.pm`, plus our own `isolib` type
//! (spec/shim-design.md: file based, content `iso,vztmpl,import`, default `iso`).

use crate::pve::content::CONTENT_TYPES;

/// How a type's `path` relates to the file system, which decides activation and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mount {
    /// A local directory, optionally an externally managed mount point (`is_mountpoint`).
    Dir,
    /// Like `Dir`, and the path must be on btrfs.
    Btrfs,
    /// PVE mounts these itself; the daemon only uses them when they are mounted.
    Nfs,
    Cifs,
    CephFs,
}

/// One storage type.
#[derive(Debug)]
pub(crate) struct TypeDef {
    pub name: &'static str,
    /// `Some` for types whose sections carry a `path`.
    pub mount: Option<Mount>,
    pub valid_content: &'static [&'static str],
    pub default_content: &'static [&'static str],
    /// Accepted keys; `None` accepts any key (types the daemon never writes to).
    pub options: Option<&'static [&'static str]>,
    /// Keys that must be present (non-optional options in PVE).
    pub required: &'static [&'static str],
    /// NFS/CIFS/CephFS check_config: a missing path becomes `/mnt/pve/<id>`.
    pub default_mnt_path: bool,
    /// DirPlugin check_config: the path must match `^/[-/a-zA-Z0-9_.@]+$`.
    pub strict_path: bool,
}

const NETFS_CONTENT: &[&str] = &[
    "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import",
];

const DIR_OPTIONS: &[&str] = &[
    "path",
    "content",
    "content-dirs",
    "nodes",
    "shared",
    "disable",
    "prune-backups",
    "max-protected-backups",
    "format",
    "mkdir",
    "create-base-path",
    "create-subdirs",
    "is_mountpoint",
    "bwlimit",
    "preallocation",
    "snapshot-as-volume-chain",
];

const NFS_OPTIONS: &[&str] = &[
    "path",
    "content-dirs",
    "server",
    "export",
    "nodes",
    "disable",
    "prune-backups",
    "max-protected-backups",
    "options",
    "content",
    "format",
    "mkdir",
    "create-base-path",
    "create-subdirs",
    "bwlimit",
    "preallocation",
    "snapshot-as-volume-chain",
];

const CIFS_OPTIONS: &[&str] = &[
    "path",
    "content-dirs",
    "server",
    "share",
    "subdir",
    "nodes",
    "disable",
    "prune-backups",
    "max-protected-backups",
    "content",
    "format",
    "username",
    "password",
    "domain",
    "smbversion",
    "mkdir",
    "create-base-path",
    "create-subdirs",
    "bwlimit",
    "preallocation",
    "options",
    "snapshot-as-volume-chain",
];

const CEPHFS_OPTIONS: &[&str] = &[
    "path",
    "content-dirs",
    "monhost",
    "nodes",
    "subdir",
    "disable",
    "options",
    "username",
    "content",
    "format",
    "mkdir",
    "create-base-path",
    "create-subdirs",
    "fuse",
    "bwlimit",
    "keyring",
    "prune-backups",
    "max-protected-backups",
    "fs-name",
];

const BTRFS_OPTIONS: &[&str] = &[
    "path",
    "nodes",
    "shared",
    "disable",
    "prune-backups",
    "max-protected-backups",
    "content",
    "format",
    "is_mountpoint",
    "nocow",
    "mkdir",
    "create-base-path",
    "create-subdirs",
    "preallocation",
];

/// Content and options of a type with a path.
struct FileType {
    valid_content: &'static [&'static str],
    default_content: &'static [&'static str],
    options: &'static [&'static str],
    required: &'static [&'static str],
}

const fn file_type(name: &'static str, mount: Mount, strict_path: bool, t: FileType) -> TypeDef {
    TypeDef {
        name,
        mount: Some(mount),
        valid_content: t.valid_content,
        default_content: t.default_content,
        options: Some(t.options),
        required: t.required,
        default_mnt_path: matches!(mount, Mount::Nfs | Mount::Cifs | Mount::CephFs),
        strict_path,
    }
}

const fn block_type(
    name: &'static str,
    valid_content: &'static [&'static str],
    default_content: &'static [&'static str],
) -> TypeDef {
    TypeDef {
        name,
        mount: None,
        valid_content,
        default_content,
        options: None,
        required: &[],
        default_mnt_path: false,
        strict_path: false,
    }
}

static TYPES: &[TypeDef] = &[
    file_type(
        "dir",
        Mount::Dir,
        true,
        FileType {
            valid_content: CONTENT_TYPES,
            default_content: &["images", "rootdir"],
            options: DIR_OPTIONS,
            required: &["path"],
        },
    ),
    // The shim's plugin derives from Plugin, not DirPlugin, so no DirPlugin path check.
    file_type(
        ISOLIB_TYPE,
        Mount::Dir,
        false,
        FileType {
            valid_content: &["iso", "vztmpl", "import"],
            default_content: &["iso"],
            options: DIR_OPTIONS,
            required: &["path"],
        },
    ),
    file_type(
        "nfs",
        Mount::Nfs,
        false,
        FileType {
            valid_content: NETFS_CONTENT,
            default_content: &["images"],
            options: NFS_OPTIONS,
            required: &["server", "export"],
        },
    ),
    file_type(
        "cifs",
        Mount::Cifs,
        false,
        FileType {
            valid_content: NETFS_CONTENT,
            default_content: &["images"],
            options: CIFS_OPTIONS,
            required: &["server", "share"],
        },
    ),
    file_type(
        "cephfs",
        Mount::CephFs,
        false,
        FileType {
            valid_content: &["vztmpl", "iso", "backup", "snippets", "import"],
            default_content: &["backup"],
            options: CEPHFS_OPTIONS,
            required: &[],
        },
    ),
    file_type(
        "btrfs",
        Mount::Btrfs,
        true,
        FileType {
            valid_content: CONTENT_TYPES,
            default_content: &["images", "rootdir"],
            options: BTRFS_OPTIONS,
            required: &["path"],
        },
    ),
    block_type("lvm", &["images", "rootdir"], &["images"]),
    block_type("lvmthin", &["images", "rootdir"], &["images", "rootdir"]),
    block_type("zfspool", &["images", "rootdir"], &["images", "rootdir"]),
    block_type("zfs", &["images"], &["images"]),
    block_type("rbd", &["images", "rootdir"], &["images"]),
    block_type("iscsi", &["images", "none"], &["images"]),
    block_type("iscsidirect", &["images", "none"], &["images"]),
    block_type("pbs", &["backup"], &["backup"]),
    block_type("esxi", &["import"], &["import"]),
];

/// Plugin.pm `@SHARED_STORAGE`: these are always `shared`, whatever the config says.
const SHARED_TYPES: &[&str] = &[
    "iscsi",
    "nfs",
    "cifs",
    "rbd",
    "cephfs",
    "iscsidirect",
    "zfs",
    "drbd",
    "pbs",
];

/// The storage type of the shim's plugin (perl-shim/).
pub const ISOLIB_TYPE: &str = "isolib";

/// The names of the types in [`TYPES`], in order: the enumeration of `GET /storage`'s `type`.
pub const TYPE_NAMES: &[&str] = &[
    "dir",
    "isolib",
    "nfs",
    "cifs",
    "cephfs",
    "btrfs",
    "lvm",
    "lvmthin",
    "zfspool",
    "zfs",
    "rbd",
    "iscsi",
    "iscsidirect",
    "pbs",
    "esxi",
];

/// The definition of a known type.
pub(crate) fn lookup(kind: &str) -> Option<&'static TypeDef> {
    TYPES.iter().find(|def| def.name == kind)
}

pub(crate) fn is_shared_type(kind: &str) -> bool {
    SHARED_TYPES.contains(&kind)
}

/// Content types the `pve-storage-content` format accepts (verify_content: dir's list).
/// Plugin.pm `$vtype_subdirs`: the directory of each content type below `path`.
pub(crate) fn default_subdir(vtype: &str) -> Option<&'static str> {
    Some(match vtype {
        "images" => "images",
        "rootdir" => "private",
        "iso" => "template/iso",
        "vztmpl" => "template/cache",
        "backup" => "dump",
        "snippets" => "snippets",
        "import" => "import",
        _ => return None,
    })
}

/// `$vtype_subdirs` keys in Perl's `sort` order, the order activate_storage creates them in.
pub(crate) const VTYPES_SORTED: &[&str] = &[
    "backup", "images", "import", "iso", "rootdir", "snippets", "vztmpl",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_types_and_paths() {
        const FILE_TYPES: [&str; 6] = ["dir", "isolib", "nfs", "cifs", "cephfs", "btrfs"];
        for kind in TYPE_NAMES {
            let def = lookup(kind).expect(kind);
            assert_eq!(def.mount.is_some(), FILE_TYPES.contains(kind), "{kind}");
        }
        assert!(lookup("glusterfs").is_none());
        let strict: Vec<_> = TYPES
            .iter()
            .filter(|d| d.strict_path)
            .map(|d| d.name)
            .collect();
        assert_eq!(strict, ["dir", "btrfs"]);
        let mnt: Vec<_> = TYPES
            .iter()
            .filter(|d| d.default_mnt_path)
            .map(|d| d.name)
            .collect();
        assert_eq!(mnt, ["nfs", "cifs", "cephfs"]);
    }

    #[test]
    fn type_names_match_the_table() {
        let names: Vec<_> = TYPES.iter().map(|d| d.name).collect();
        assert_eq!(names, TYPE_NAMES);
    }

    #[test]
    fn vtypes_sorted_matches_table() {
        let mut sorted = VTYPES_SORTED.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, VTYPES_SORTED);
        assert!(VTYPES_SORTED.iter().all(|v| default_subdir(v).is_some()));
        assert_eq!(default_subdir("none"), None);
    }
}
