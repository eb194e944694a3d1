//! Volume names of file-based storages and their paths: pve-storage
//! `src/PVE/Storage/Plugin.pm` parse_volname, parse_name_dir and filesystem_path
//! (spec/pve-api.md §7.4, §7.6).

use std::path::PathBuf;
use std::sync::LazyLock;

use regex::Regex;

use super::error::StorageError;
use super::ext::{
    self, BACKUP_EXT, IMPORT_EXT, ISO_EXT, OVA_CONTENT_EXT, SAFE_CHAR_WITH_SPACE, VZTMPL_EXT,
};
use super::model::{Storage, join};

/// A parsed volume name (`iso/x.iso`, `vztmpl/x.tar.zst`, `import/x.ova/disk.vmdk`,
/// `100/vm-100-disk-0.qcow2`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeName {
    /// Content type: images, rootdir, iso, vztmpl, backup, snippets, import.
    pub vtype: String,
    /// File name below the content directory (for images: below `images/<vmid>`).
    pub name: String,
    pub vmid: Option<String>,
    /// `raw` for iso/vztmpl/backup/snippets, the image format, or `ova+<fmt>` for OVA members.
    pub format: String,
}

struct Patterns {
    linked_image: Option<Regex>,
    image: Option<Regex>,
    iso: Option<Regex>,
    vztmpl: Option<Regex>,
    rootdir: Option<Regex>,
    backup: Option<Regex>,
    backup_owner: Option<Regex>,
    snippets: Option<Regex>,
    ova_member: Option<Regex>,
    import: Option<Regex>,
    disk_name: Option<Regex>,
    old_disk_name: Option<Regex>,
    snap_name: Option<Regex>,
}

// Perl matches these on character strings, so `\d` and `\S` keep their Unicode meaning.
static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    linked_image: ext::fixed(r"^(\d+)/(\S+)/(\d+)/(\S+)$"),
    image: ext::fixed(r"^(\d+)/(\S+)$"),
    iso: ext::fixed(&format!("^iso/([^/]+{ISO_EXT})$")),
    vztmpl: ext::fixed(&format!("^vztmpl/([^/]+{VZTMPL_EXT})$")),
    rootdir: ext::fixed(r"^rootdir/(\d+)$"),
    backup: ext::fixed(&format!("^backup/([^/]+{BACKUP_EXT})$")),
    backup_owner: ext::fixed(r"^vzdump-(openvz|lxc|qemu)-(\d+)-."),
    snippets: ext::fixed(r"^snippets/([^/]+)$"),
    ova_member: ext::fixed(&format!(
        r"^import/({SAFE_CHAR_WITH_SPACE}+\.ova/{SAFE_CHAR_WITH_SPACE}+{OVA_CONTENT_EXT})$"
    )),
    import: ext::fixed(&format!("^import/({SAFE_CHAR_WITH_SPACE}+{IMPORT_EXT})$")),
    disk_name: ext::fixed(r"^((vm-|base-|subvol-)(\d+)-[^/\s]+\.(raw|qcow2|vmdk|subvol))$"),
    old_disk_name: ext::fixed(r"^((base-)?[^/\s]+\.(raw|qcow2|vmdk|subvol))$"),
    snap_name: ext::fixed(r"^snap-(.*)-vm(.*)$"),
});

fn group(caps: &regex::Captures<'_>, i: usize) -> String {
    caps.get(i)
        .map_or_else(String::new, |m| m.as_str().to_owned())
}

/// parse_name_dir: the format of an image file name.
fn image_format(name: &str) -> Result<String, StorageError> {
    let p = &*PATTERNS;
    if let Some(caps) = ext::captures(&p.disk_name, name) {
        return Ok(group(&caps, 4));
    }
    if ext::matches(&p.old_disk_name, name) && !ext::matches(&p.snap_name, name) {
        tracing::warn!("this volume name `{name}` is not supported anymore");
    }
    Err(StorageError::VolumeFilename(name.to_owned()))
}

fn volume(vtype: &str, name: String, vmid: Option<String>, format: String) -> VolumeName {
    VolumeName {
        vtype: vtype.to_owned(),
        name,
        vmid,
        format,
    }
}

/// parse_volname of Plugin.pm, in PVE's order of patterns.
pub fn parse_volname(volname: &str) -> Result<VolumeName, StorageError> {
    let p = &*PATTERNS;
    let raw = || "raw".to_owned();
    if let Some(caps) = ext::captures(&p.linked_image, volname) {
        image_format(&group(&caps, 2))?;
        let name = group(&caps, 4);
        let format = image_format(&name)?;
        return Ok(volume("images", name, Some(group(&caps, 3)), format));
    }
    if let Some(caps) = ext::captures(&p.image, volname) {
        let name = group(&caps, 2);
        let format = image_format(&name)?;
        return Ok(volume("images", name, Some(group(&caps, 1)), format));
    }
    if let Some(caps) = ext::captures(&p.iso, volname) {
        return Ok(volume("iso", group(&caps, 1), None, raw()));
    }
    if let Some(caps) = ext::captures(&p.vztmpl, volname) {
        return Ok(volume("vztmpl", group(&caps, 1), None, raw()));
    }
    if let Some(caps) = ext::captures(&p.rootdir, volname) {
        return Ok(volume(
            "rootdir",
            group(&caps, 1),
            Some(group(&caps, 1)),
            String::new(),
        ));
    }
    if let Some(caps) = ext::captures(&p.backup, volname) {
        let name = group(&caps, 1);
        let vmid = ext::captures(&p.backup_owner, &name).map(|owner| group(&owner, 2));
        return Ok(volume("backup", name, vmid, raw()));
    }
    if let Some(caps) = ext::captures(&p.snippets, volname) {
        return Ok(volume("snippets", group(&caps, 1), None, raw()));
    }
    if let Some(caps) = ext::captures(&p.ova_member, volname) {
        let format = format!("ova+{}", group(&caps, 2));
        return Ok(volume("import", group(&caps, 1), None, format));
    }
    if let Some(caps) = ext::captures(&p.import, volname) {
        return Ok(volume("import", group(&caps, 1), None, group(&caps, 2)));
    }
    Err(StorageError::VolumeName(volname.to_owned()))
}

impl Storage {
    /// filesystem_path: `<subdir>/<name>` (images: `<subdir>/<vmid>/<name>`).
    pub fn volume_path(&self, volname: &str) -> Result<PathBuf, StorageError> {
        let vol = parse_volname(volname)?;
        let mut dir = self.get_subdir(&vol.vtype)?;
        if let (Some(vmid), "images") = (&vol.vmid, vol.vtype.as_str()) {
            dir = join(&dir, vmid);
        }
        Ok(join(&dir, &vol.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Storage {
        let mut s = Storage::new("local", "dir");
        s.path = Some(PathBuf::from("/srv/vz"));
        s
    }

    fn path(volname: &str) -> Result<String, String> {
        store()
            .volume_path(volname)
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn template_paths() {
        assert_eq!(path("iso/x.iso"), Ok("/srv/vz/template/iso/x.iso".into()));
        assert_eq!(path("iso/X.IMG"), Ok("/srv/vz/template/iso/X.IMG".into()));
        assert_eq!(
            path("vztmpl/x.tar.gz"),
            Ok("/srv/vz/template/cache/x.tar.gz".into())
        );
        assert_eq!(
            path("vztmpl/x.tar"),
            Ok("/srv/vz/template/cache/x.tar".into())
        );
        assert_eq!(path("import/x.qcow2"), Ok("/srv/vz/import/x.qcow2".into()));
        assert_eq!(
            path("import/my vm.ova"),
            Ok("/srv/vz/import/my vm.ova".into())
        );
        assert_eq!(
            path("import/a.ova/disk-1.vmdk"),
            Ok("/srv/vz/import/a.ova/disk-1.vmdk".into())
        );
        assert_eq!(
            path("snippets/user.yaml"),
            Ok("/srv/vz/snippets/user.yaml".into())
        );
        assert_eq!(
            path("backup/vzdump-qemu-100-2024_01_01-00_00_00.vma.zst"),
            Ok("/srv/vz/dump/vzdump-qemu-100-2024_01_01-00_00_00.vma.zst".into())
        );
        assert_eq!(
            path("100/vm-100-disk-0.qcow2"),
            Ok("/srv/vz/images/100/vm-100-disk-0.qcow2".into())
        );
        assert_eq!(
            path("100/base-100-disk-0.raw/101/vm-101-disk-0.qcow2"),
            Ok("/srv/vz/images/101/vm-101-disk-0.qcow2".into())
        );
        assert_eq!(path("rootdir/105"), Ok("/srv/vz/private/105".into()));
    }

    #[test]
    fn content_dir_override() {
        let mut s = store();
        s.content_dirs.insert("iso".into(), "images/cd".into());
        assert_eq!(
            s.volume_path("iso/x.iso"),
            Ok(PathBuf::from("/srv/vz/images/cd/x.iso"))
        );
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "iso/x.qcow2",
            "iso/sub/x.iso",
            "iso/.iso",
            "vztmpl/x.tgz",
            "import/x.QCOW2",
            "import/x.img",
            "import/a/b.qcow2",
            "x.iso",
            "",
            "rootdir/abc",
        ] {
            assert_eq!(
                path(bad),
                Err(format!("unable to parse directory volume name '{bad}'")),
                "{bad}"
            );
        }
        assert_eq!(
            path("100/foo.qcow2"),
            Err("unable to parse volume filename 'foo.qcow2'".into())
        );
        assert_eq!(
            Storage::new("vg", "lvm").volume_path("iso/x.iso"),
            Err(StorageError::NoPath)
        );
    }

    #[test]
    fn parsed_fields() {
        assert_eq!(
            parse_volname("import/a.ova/d.vmdk"),
            Ok(VolumeName {
                vtype: "import".into(),
                name: "a.ova/d.vmdk".into(),
                vmid: None,
                format: "ova+vmdk".into()
            })
        );
        assert_eq!(
            parse_volname("import/a.ovf").map(|v| v.format),
            Ok("ovf".into())
        );
        assert_eq!(
            parse_volname("backup/vzdump-lxc-101-x.tar.gz").map(|v| v.vmid),
            Ok(Some("101".into()))
        );
        assert_eq!(parse_volname("backup/other.tgz").map(|v| v.vmid), Ok(None));
    }
}
