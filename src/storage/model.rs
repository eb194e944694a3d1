//! One storage section of storage.cfg and the questions answered from it alone:
//! pve-storage `src/PVE/Storage.pm` storage_check_enabled / storage_check_node and
//! `src/PVE/Storage/Plugin.pm` get_subdir (spec/pve-api.md §1.3 steps 1-2, §7.6).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::StorageError;
use super::plugins::{self, Mount};
use crate::pve::content::DOWNLOAD_CONTENT;

/// A storage as PVE sees it after parsing (Plugin.pm parse_config applied: default content,
/// forced `shared`). The `local` storage is taken as configured, not forced to /var/lib/vz.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    pub id: String,
    /// The section type, lower-cased: `dir`, `nfs`, `isolib`, `lvm`, ...
    pub kind: String,
    /// Set exactly for the file-based types (PVE's `defined $scfg->{path}`).
    pub path: Option<PathBuf>,
    /// Allowed content types; may hold `none`, as PVE's hash does.
    pub content: BTreeSet<String>,
    /// `content-dirs` overrides: content type → path relative to `path`.
    pub content_dirs: BTreeMap<String, String>,
    /// `nodes`; `None` means every node. An empty set matches no node, as in PVE.
    pub nodes: Option<BTreeSet<String>>,
    pub disabled: bool,
    pub shared: bool,
    /// Raw `is_mountpoint`: a boolean (`yes` means `path`) or a mount point path.
    pub is_mountpoint: Option<String>,
    /// Populate the content subdirectories on activation (`create-subdirs` and the deprecated
    /// `mkdir`, both defaulting to on).
    pub create_subdirs: bool,
    /// Create `path` itself on activation (`create-base-path`, else `mkdir`, default on).
    pub create_base_path: bool,
    /// Every other accepted property, as written (`server`, `export`, `prune-backups`, ...).
    pub options: BTreeMap<String, String>,
    /// Every property of the section as checked (booleans as `0`/`1`), before the fields
    /// above were taken from it: what PVE's storage configuration API shows.
    pub properties: BTreeMap<String, String>,
}

impl Storage {
    /// A storage of `kind` with PVE's defaults and nothing configured.
    pub fn new(id: &str, kind: &str) -> Storage {
        let kind = kind.to_ascii_lowercase();
        let content = plugins::lookup(&kind)
            .map(|def| {
                def.default_content
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect()
            })
            .unwrap_or_default();
        Storage {
            id: id.to_owned(),
            shared: plugins::is_shared_type(&kind),
            kind,
            path: None,
            content,
            content_dirs: BTreeMap::new(),
            nodes: None,
            disabled: false,
            is_mountpoint: None,
            create_subdirs: true,
            create_base_path: true,
            options: BTreeMap::new(),
            properties: BTreeMap::new(),
        }
    }

    /// download-url's and upload's checks of the storage (spec §1.3 steps 2-3): it must be
    /// file based and configured for `content`.
    pub fn check_download(&self, content: &str) -> Result<(), StorageError> {
        if !self.is_file_based() {
            return Err(StorageError::NotFileBased(self.kind.clone()));
        }
        if !self.content.contains(content) {
            return Err(StorageError::ContentNotConfigured {
                id: self.id.clone(),
                content: content.to_owned(),
            });
        }
        Ok(())
    }

    /// storage_check_enabled: `"storage '<id>' is disabled"`, then storage_check_node:
    /// `"storage '<id>' is not available on node '<node>'"`. An empty node or `localhost`
    /// stands for this host's node name, as in PVE.
    pub fn check_enabled(&self, node: &str) -> Result<(), StorageError> {
        if self.disabled {
            return Err(StorageError::Disabled(self.id.clone()));
        }
        if let Some(nodes) = &self.nodes {
            let node = match node {
                "" | "localhost" => local_nodename(),
                node => node.to_owned(),
            };
            if !nodes.contains(&node) {
                return Err(StorageError::NotOnNode {
                    id: self.id.clone(),
                    node,
                });
            }
        }
        Ok(())
    }

    /// PVE's "file based" test: the storage has a `path` (dir, nfs, cifs, cephfs, btrfs,
    /// isolib). Everything else gets "can't upload to storage type ...".
    pub fn is_file_based(&self) -> bool {
        self.path.is_some()
    }

    /// get_subdir: `<path>/<subdir>` for a content type, honouring `content-dirs`
    /// (iso → template/iso, vztmpl → template/cache, import → import, backup → dump,
    /// snippets → snippets, images → images, rootdir → private).
    pub fn subdir(&self, vtype: &str) -> Option<PathBuf> {
        self.get_subdir(vtype).ok()
    }

    /// get_subdir with PVE's errors.
    pub fn get_subdir(&self, vtype: &str) -> Result<PathBuf, StorageError> {
        let path = self.path.as_deref().ok_or(StorageError::NoPath)?;
        let default = plugins::default_subdir(vtype)
            .ok_or_else(|| StorageError::UnknownVtype(vtype.to_owned()))?;
        let sub = self.content_dirs.get(vtype).map_or(default, String::as_str);
        Ok(join(path, sub))
    }

    /// Where partial downloads of content `vtype` live. Normally `.isolib-partial` under the
    /// storage's path, outside every content directory. A temp file must be renamed into
    /// place, which cannot cross mounts: a content directory mounted on its own (an NFS share
    /// or a bind mount on `template/iso` is common) gets a hidden `.isolib-partial` inside it
    /// instead, which no listing shows because listings take files only.
    pub fn staging_dir(&self, vtype: &str) -> Option<PathBuf> {
        let path = self.path.as_deref()?;
        let content = self.subdir(vtype)?;
        Some(if same_mount(path, &content) {
            path.join(STAGING_DIR)
        } else {
            content.join(STAGING_DIR)
        })
    }

    /// Every place this storage may have staged downloads in, whatever is mounted where today
    /// (a share mounted or unmounted since leaves its partials behind), for the collection of
    /// abandoned ones.
    pub fn staging_dirs(&self) -> Vec<PathBuf> {
        let Some(path) = self.path.as_deref() else {
            return Vec::new();
        };
        let mut dirs = vec![path.join(STAGING_DIR)];
        dirs.extend(
            DOWNLOAD_CONTENT
                .iter()
                .filter_map(|vtype| self.subdir(vtype))
                .map(|content| content.join(STAGING_DIR)),
        );
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Notes and protection on every volume. PVE's own types keep them for backups only
    /// (DirPlugin `update_volume_attribute`); isolib's type keeps them in the catalog.
    pub fn keeps_volume_attributes(&self) -> bool {
        self.kind == plugins::ISOLIB_TYPE
    }

    /// How this storage's path is provided, when it has one.
    pub(crate) fn mount(&self) -> Option<Mount> {
        self.path.as_ref()?;
        plugins::lookup(&self.kind)?.mount
    }
}

/// The directory partial downloads are staged in (see [`Storage::staging_dir`]).
const STAGING_DIR: &str = ".isolib-partial";

/// A rename from one to the other can work: both are on one mount. A directory that does not
/// exist yet (it is created on the first download) is judged by its nearest existing parent.
fn same_mount(a: &Path, b: &Path) -> bool {
    let mount = |p: &Path| p.ancestors().find_map(mount_of);
    mount(a) == mount(b)
}

#[derive(PartialEq)]
enum MountKey {
    Id(u64),
    /// Where the kernel has no mount IDs (before Linux 5.8): two mounts of one filesystem (a
    /// bind mount) look the same.
    Device(u64),
}

fn mount_of(path: &Path) -> Option<MountKey> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx writes into the zeroed struct it is given (plain integers) and reads the
    // NUL-terminated path, both alive for the call.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            0,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if rc != 0 {
        return None;
    }
    Some(if stx.stx_mask & libc::STATX_MNT_ID != 0 {
        MountKey::Id(stx.stx_mnt_id)
    } else {
        MountKey::Device(libc::makedev(stx.stx_dev_major, stx.stx_dev_minor))
    })
}

/// PVE builds paths as `"$dir/$name"`: a plain string join, so an override or name starting
/// with `/` stays below `dir` (unlike `Path::join`).
pub(crate) fn join(dir: &Path, name: &str) -> PathBuf {
    let mut joined = OsString::from(dir.as_os_str());
    joined.push("/");
    joined.push(name);
    PathBuf::from(joined)
}

/// PVE::INotify::nodename: the kernel host name up to the first dot.
fn local_nodename() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    let short = name.split('.').next().unwrap_or(name);
    if short.is_empty() {
        "localhost".to_owned()
    } else {
        short.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(id: &str) -> Storage {
        let mut s = Storage::new(id, "dir");
        s.path = Some(PathBuf::from("/srv/isos"));
        s
    }

    #[test]
    fn enabled_checks() {
        let mut s = dir("isos");
        assert_eq!(s.check_enabled("pve1"), Ok(()));
        s.nodes = Some(["pve1".to_owned(), "pve2".to_owned()].into());
        assert_eq!(s.check_enabled("pve2"), Ok(()));
        assert_eq!(
            s.check_enabled("pve3").map_err(|e| e.to_string()),
            Err("storage 'isos' is not available on node 'pve3'".to_owned())
        );
        s.disabled = true;
        assert_eq!(
            s.check_enabled("pve1").map_err(|e| e.to_string()),
            Err("storage 'isos' is disabled".to_owned())
        );
        let mut none = dir("x1");
        none.nodes = Some(BTreeSet::new());
        assert!(none.check_enabled("pve1").is_err());
    }

    #[test]
    fn localhost_is_this_node() {
        let mut s = dir("isos");
        s.nodes = Some([local_nodename()].into());
        assert_eq!(s.check_enabled("localhost"), Ok(()));
        assert_eq!(s.check_enabled(""), Ok(()));
    }

    #[test]
    fn subdirs_and_overrides() {
        let mut s = dir("isos");
        assert_eq!(
            s.subdir("iso"),
            Some(PathBuf::from("/srv/isos/template/iso"))
        );
        assert_eq!(
            s.subdir("vztmpl"),
            Some(PathBuf::from("/srv/isos/template/cache"))
        );
        assert_eq!(s.subdir("import"), Some(PathBuf::from("/srv/isos/import")));
        assert_eq!(s.subdir("backup"), Some(PathBuf::from("/srv/isos/dump")));
        assert_eq!(
            s.subdir("rootdir"),
            Some(PathBuf::from("/srv/isos/private"))
        );
        assert_eq!(s.subdir("none"), None);
        s.content_dirs.insert("iso".into(), "images/cd".into());
        s.content_dirs.insert("import".into(), "/abs".into());
        assert_eq!(s.subdir("iso"), Some(PathBuf::from("/srv/isos/images/cd")));
        assert_eq!(s.subdir("import"), Some(PathBuf::from("/srv/isos//abs")));
        assert_eq!(
            s.get_subdir("foo"),
            Err(StorageError::UnknownVtype("foo".into()))
        );
        let lvm = Storage::new("vg", "lvm");
        assert_eq!(lvm.get_subdir("iso"), Err(StorageError::NoPath));
        assert!(!lvm.is_file_based());
        assert!(s.is_file_based());
    }

    #[test]
    fn defaults_per_type() {
        assert_eq!(
            Storage::new("a1", "dir").content,
            ["images".to_owned(), "rootdir".to_owned()].into()
        );
        assert_eq!(
            Storage::new("a1", "isolib").content,
            ["iso".to_owned()].into()
        );
        assert!(Storage::new("a1", "nfs").shared);
        assert!(Storage::new("a1", "drbd").shared);
        assert!(!Storage::new("a1", "dir").shared);
        assert!(Storage::new("a1", "foo").content.is_empty());
    }
}
