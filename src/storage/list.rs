//! Content listing of iso, vztmpl and import volumes: pve-storage `src/PVE/Storage.pm`
//! volume_list (only configured content types, sorted by lower-cased volid) and
//! `src/PVE/Storage/Plugin.pm` list_volumes / get_subdir_files (spec/pve-api.md §7.3).
//!
//! Anything whose name does not match PVE's patterns is invisible, which is what keeps the
//! download engine's staging files (`*.part`, `*.tmp_dwnl.*`, dot files) out of the listing.

use std::os::unix::fs::MetadataExt;
use std::sync::LazyLock;

use regex::Regex;

use super::error::StorageError;
use super::ext::{self, IMPORT_EXT, ISO_EXT, SAFE_CHAR, VZTMPL_EXT, vztmpl_format};
use super::model::Storage;
use crate::catalog;

/// One volume as the content API returns it (and a client reads it: `api::replies`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ContentItem {
    pub volid: String,
    pub format: String,
    #[serde(deserialize_with = "crate::pve::perl_serde::number")]
    pub size: u64,
    pub ctime: i64,
    pub content: String,
    /// From the volume's catalog record, once it has one.
    pub sha256: Option<String>,
    /// The osinfo-db short id of an ISO that matched one.
    pub os: Option<String>,
    pub verification: Option<catalog::Verification>,
}

static ISO_FILE: LazyLock<Option<Regex>> =
    LazyLock::new(|| ext::fixed(&format!("^[^/]+{ISO_EXT}$")));
static VZTMPL_FILE: LazyLock<Option<Regex>> =
    LazyLock::new(|| ext::fixed(&format!("^[^/]+{VZTMPL_EXT}$")));
static IMPORT_FILE: LazyLock<Option<Regex>> =
    LazyLock::new(|| ext::fixed(&format!("^{SAFE_CHAR}+{IMPORT_EXT}$")));

/// The format of a listed file, or `None` if the name is not a volume of this content type.
fn volume_format(content: &str, name: &str) -> Option<String> {
    match content {
        "iso" => ext::matches(&ISO_FILE, name).then(|| "iso".to_owned()),
        "vztmpl" => ext::captures(&VZTMPL_FILE, name).map(|caps| vztmpl_format(&caps, 1, 2)),
        "import" => ext::captures(&IMPORT_FILE, name)
            .and_then(|caps| caps.get(1))
            .map(|m| m.as_str().to_owned()),
        _ => None,
    }
}

impl Storage {
    /// The iso, vztmpl and import volumes (all configured ones, or just `content`), sorted by
    /// lower-cased volid. Missing or unreadable directories list as empty, like PVE's glob.
    pub fn list_content(&self, content: Option<&str>) -> Result<Vec<ContentItem>, StorageError> {
        // volume_list's type order; the sort below makes it matter only for equal volids.
        const LISTED: [&str; 3] = ["vztmpl", "iso", "import"];
        let wanted: Vec<&str> = match content {
            Some(one) => vec![one],
            None => LISTED.to_vec(),
        };
        let mut items = Vec::new();
        for vtype in wanted {
            if LISTED.contains(&vtype) && self.content.contains(vtype) {
                items.extend(self.subdir_files(vtype));
            }
        }
        // Perl's sort is stable and glob returns names case-insensitively then bytewise sorted,
        // so ties on the lower-cased volid end up in byte order.
        items.sort_by(|a, b| {
            a.volid
                .to_ascii_lowercase()
                .cmp(&b.volid.to_ascii_lowercase())
                .then_with(|| a.volid.cmp(&b.volid))
        });
        Ok(items)
    }

    /// get_subdir_files for one content type.
    fn subdir_files(&self, vtype: &str) -> Vec<ContentItem> {
        let Some(dir) = self.subdir(vtype) else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                // `<$dir/*>` does not match dot files.
                if name.starts_with('.') {
                    return None;
                }
                let format = volume_format(vtype, &name)?;
                // stat follows symlinks; only regular files are volumes.
                let meta = std::fs::metadata(entry.path()).ok()?;
                if !meta.is_file() {
                    return None;
                }
                let record = catalog::store::load(&entry.path())
                    .ok()
                    .and_then(catalog::Lookup::fresh);
                Some(ContentItem {
                    volid: format!("{}:{vtype}/{name}", self.id),
                    format,
                    size: meta.len(),
                    ctime: meta.ctime(),
                    content: vtype.to_owned(),
                    sha256: record.as_ref().map(|r| r.sha256.clone()),
                    os: record
                        .as_ref()
                        .and_then(|r| r.os.as_ref().map(|o| o.id.clone())),
                    verification: record.and_then(|r| r.verification),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;

    fn touch(dir: &Path, name: &str, size: usize) -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        fs::write(dir.join(name), vec![0u8; size])
    }

    fn storage(root: &Path, content: &[&str]) -> Storage {
        let mut s = Storage::new("local", "dir");
        s.path = Some(root.to_path_buf());
        s.content = content.iter().map(|c| (*c).to_owned()).collect();
        s
    }

    #[test]
    fn formats() {
        assert_eq!(volume_format("iso", "a.ISO").as_deref(), Some("iso"));
        assert_eq!(volume_format("iso", "a.img").as_deref(), Some("iso"));
        assert_eq!(
            volume_format("vztmpl", "a.tar.bz2").as_deref(),
            Some("tbz2")
        );
        assert_eq!(volume_format("vztmpl", "a.tar").as_deref(), Some("tar"));
        assert_eq!(volume_format("import", "a.ovf").as_deref(), Some("ovf"));
        assert_eq!(volume_format("import", "a.QCOW2"), None);
        assert_eq!(volume_format("import", "a b.qcow2"), None);
        assert_eq!(volume_format("iso", "a.iso.part"), None);
        assert_eq!(volume_format("iso", "a.iso.tmp_dwnl.123"), None);
        assert_eq!(volume_format("vztmpl", "a.tar.gz.tmp_dwnl.1"), None);
        assert_eq!(volume_format("snippets", "a.yaml"), None);
    }

    #[test]
    fn lists_a_directory() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        let iso = root.join("template/iso");
        touch(&iso, "b.iso", 3)?;
        touch(&iso, "A.img", 1)?;
        touch(&iso, "a.iso", 2)?;
        touch(&iso, "c.iso.part", 1)?;
        touch(&iso, "d.iso.tmp_dwnl.42", 1)?;
        touch(&iso, ".hidden.iso", 1)?;
        touch(&iso, "notes.txt", 1)?;
        fs::create_dir_all(iso.join("dir.iso"))?;
        std::os::unix::fs::symlink(iso.join("b.iso"), iso.join("link.iso"))?;
        std::os::unix::fs::symlink(iso.join("gone"), iso.join("dangling.iso"))?;
        let cache = root.join("template/cache");
        for name in [
            "t1.tar.gz",
            "t2.tar.xz",
            "t3.tar.zst",
            "t4.tar.bz2",
            "t5.tar",
            "t6.tgz",
        ] {
            touch(&cache, name, 1)?;
        }
        let import = root.join("import");
        for name in [
            "d.qcow2", "e.ova", "f.ovf", "g.vmdk", "h.raw", "i.img", "j.RAW",
        ] {
            touch(&import, name, 1)?;
        }

        let s = storage(root, &["iso", "vztmpl", "import"]);
        let all = s.list_content(None)?;
        let volids: Vec<_> = all.iter().map(|i| i.volid.as_str()).collect();
        assert_eq!(
            volids,
            [
                "local:import/d.qcow2",
                "local:import/e.ova",
                "local:import/f.ovf",
                "local:import/g.vmdk",
                "local:import/h.raw",
                "local:iso/A.img",
                "local:iso/a.iso",
                "local:iso/b.iso",
                "local:iso/link.iso",
                "local:vztmpl/t1.tar.gz",
                "local:vztmpl/t2.tar.xz",
                "local:vztmpl/t3.tar.zst",
                "local:vztmpl/t4.tar.bz2",
                "local:vztmpl/t5.tar",
            ]
        );
        let formats: Vec<_> = all.iter().map(|i| i.format.as_str()).collect();
        assert_eq!(
            formats,
            [
                "qcow2", "ova", "ovf", "vmdk", "raw", "iso", "iso", "iso", "iso", "tgz", "txz",
                "tzst", "tbz2", "tar"
            ]
        );

        let isos = s.list_content(Some("iso"))?;
        let b = &isos[2];
        let meta = fs::metadata(iso.join("b.iso"))?;
        assert_eq!(
            b,
            &ContentItem {
                volid: "local:iso/b.iso".into(),
                format: "iso".into(),
                size: 3,
                ctime: meta.ctime(),
                content: "iso".into(),
                ..ContentItem::default()
            }
        );
        assert_eq!(isos[3].size, 3);
        let json = serde_json::to_value(b)?;
        assert_eq!(json["volid"], "local:iso/b.iso");
        assert_eq!(json["size"], 3);
        // No record yet: none of its fields, not even as null.
        assert!(json.get("sha256").is_none(), "{json}");

        // With a record, its hash and OS come along; a stale one says nothing.
        let path = iso.join("b.iso");
        let stamp = catalog::Stamp::of(&fs::metadata(&path)?);
        let mut record = catalog::Record::new(
            catalog::Facts {
                sha256: "ab".repeat(32),
                stamp,
                ..catalog::Facts::default()
            },
            catalog::Source::default(),
        );
        record.os = Some(catalog::osinfo::OsMatch {
            id: "debian11".into(),
            name: "Debian 11".into(),
            version: None,
            arch: None,
            variant: None,
        });
        catalog::store::save(&path, &record)?;
        let isos = s.list_content(Some("iso"))?;
        assert_eq!(isos.len(), 4, "the record is not a volume");
        assert_eq!(isos[2].sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(isos[2].os.as_deref(), Some("debian11"));
        fs::write(&path, b"xyzw")?;
        assert_eq!(s.list_content(Some("iso"))?[2].sha256, None);
        Ok(())
    }

    #[test]
    fn only_configured_content() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        touch(&tmp.path().join("template/iso"), "a.iso", 1)?;
        touch(&tmp.path().join("template/cache"), "a.tar", 1)?;
        let s = storage(tmp.path(), &["vztmpl"]);
        assert!(s.list_content(Some("iso"))?.is_empty());
        assert_eq!(s.list_content(None)?.len(), 1);
        assert!(s.list_content(Some("backup"))?.is_empty());
        let missing = storage(&tmp.path().join("nope"), &["iso"]);
        assert!(missing.list_content(None)?.is_empty());
        assert!(Storage::new("vg", "lvm").list_content(None)?.is_empty());
        Ok(())
    }

    #[test]
    fn content_dirs_override_listing() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        touch(&tmp.path().join("cd"), "x.iso", 1)?;
        let mut s = storage(tmp.path(), &["iso"]);
        s.content_dirs.insert("iso".into(), "cd".into());
        let volids: Vec<_> = s.list_content(None)?.into_iter().map(|i| i.volid).collect();
        assert_eq!(volids, ["local:iso/x.iso"]);
        Ok(())
    }
}
