//! Target file names for download-url and upload: pve-storage `src/PVE/Storage.pm`
//! normalize_content_filename and the extension checks of `src/PVE/API2/Storage/Status.pm`
//! download_url (spec/pve-api.md §1.3 steps 4 and 5).

use super::ext::{self, IMPORT_DOWNLOAD, ISO_DOWNLOAD, VZTMPL_DOWNLOAD};

/// Where a checked download goes, and what the later content check needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadTarget {
    /// `template/iso`; the file must pass the ISO content check.
    Iso,
    /// `template/cache`; no content check.
    Vztmpl,
    /// `import`; `ext` is `ova` (OVA check) or the image format for the qemu-img check
    /// (`qcow2`, `raw`, `vmdk`).
    Import { ext: String },
}

impl DownloadTarget {
    /// The content type, which is also the key of the target subdirectory.
    pub fn content(&self) -> &'static str {
        match self {
            DownloadTarget::Iso => "iso",
            DownloadTarget::Vztmpl => "vztmpl",
            DownloadTarget::Import { .. } => "import",
        }
    }
}

/// Step 4 of spec §1.3: chomp one trailing newline, drop everything up to the last `/` or `\`,
/// then replace each character outside `[a-zA-Z0-9_.-]` by `_`.
pub fn normalize_content_filename(name: &str) -> String {
    let name = name.strip_suffix('\n').unwrap_or(name);
    // PVE strips with s/^.*[\/\\]//, and `.` stops at a newline: only separators on the first
    // line count.
    let first_line = name.find('\n').unwrap_or(name.len());
    let start = name[..first_line]
        .rfind(['/', '\\'])
        .map_or(0, |sep| sep + 1);
    name[start..]
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Step 5 of spec §1.3, on an already normalised name. The error is the parameter PVE blames
/// and its message.
pub fn check_download_filename(
    content: &str,
    name: &str,
) -> Result<DownloadTarget, (&'static str, String)> {
    const WRONG_EXT: &str = "wrong file extension";
    match content {
        "iso" if ext::matches(&ISO_DOWNLOAD, name) => Ok(DownloadTarget::Iso),
        "vztmpl" if ext::matches(&VZTMPL_DOWNLOAD, name) => Ok(DownloadTarget::Vztmpl),
        "iso" | "vztmpl" => Err(("filename", WRONG_EXT.to_owned())),
        "import" => ext::captures(&IMPORT_DOWNLOAD, name)
            .and_then(|caps| caps.get(1))
            .map(|ext| DownloadTarget::Import {
                ext: ext.as_str().to_owned(),
            })
            .ok_or_else(|| ("filename", "invalid filename or wrong extension".to_owned())),
        other => Err((
            "content",
            format!("upload content-type '{other}' is not allowed"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let n = normalize_content_filename;
        assert_eq!(
            n("debian-12.8.0-amd64-netinst.iso"),
            "debian-12.8.0-amd64-netinst.iso"
        );
        assert_eq!(n("my file.iso"), "my_file.iso");
        assert_eq!(n(" lead and trail "), "_lead_and_trail_");
        assert_eq!(n("a/b/c.iso"), "c.iso");
        assert_eq!(n("C:\\Users\\me\\disk.iso"), "disk.iso");
        assert_eq!(n("../../etc/passwd"), "passwd");
        assert_eq!(n("dir/"), "");
        assert_eq!(n("x.iso\n"), "x.iso");
        // chomp removes one newline only; the carriage return stays and becomes `_`.
        assert_eq!(n("x.iso\r\n"), "x.iso_");
        assert_eq!(n("x.iso\n\n"), "x.iso_");
        // Separators after an inner newline are not stripped.
        assert_eq!(n("a/b\nc/d.iso"), "b_c_d.iso");
        // One `_` per character, not per UTF-8 byte.
        assert_eq!(n("café.iso"), "caf_.iso");
        assert_eq!(n("日本.iso"), "__.iso");
        assert_eq!(n("a:b%c?d=e&f.iso"), "a_b_c_d_e_f.iso");
        assert_eq!(n("a+b.qcow2"), "a_b.qcow2");
    }

    fn target(content: &str, name: &str) -> Result<DownloadTarget, (&'static str, String)> {
        check_download_filename(content, name)
    }

    fn wrong_ext() -> Result<DownloadTarget, (&'static str, String)> {
        Err(("filename", "wrong file extension".to_owned()))
    }

    #[test]
    fn iso_extensions() {
        for ok in ["a.iso", "a.img", "A.ISO", "a.Img", "..iso", "a.tar.iso"] {
            assert_eq!(target("iso", ok), Ok(DownloadTarget::Iso), "{ok}");
        }
        for bad in [".iso", "a.iso.gz", "a.isox", "aiso", "a.qcow2", ""] {
            assert_eq!(target("iso", bad), wrong_ext(), "{bad}");
        }
    }

    #[test]
    fn vztmpl_extensions() {
        for ok in [
            "a.tar",
            "a.tar.gz",
            "a.tar.xz",
            "a.tar.zst",
            "a.tar.bz2",
            "A.TAR.GZ",
            "a.Tar.Zst",
        ] {
            assert_eq!(target("vztmpl", ok), Ok(DownloadTarget::Vztmpl), "{ok}");
        }
        // `.tar` must not be followed by another `.`: only the listed compressions may follow.
        for bad in [
            "a.tgz",
            "a.tar.",
            "a.tar.lzo",
            "a.tar.gz.x",
            "a.tar.foo",
            "a.tar_gz",
            ".tar",
            "a.txz",
        ] {
            assert_eq!(target("vztmpl", bad), wrong_ext(), "{bad}");
        }
    }

    #[test]
    fn import_extensions() {
        for ext in ["ova", "qcow2", "raw", "vmdk"] {
            assert_eq!(
                target("import", &format!("disk.{ext}")),
                Ok(DownloadTarget::Import {
                    ext: ext.to_owned()
                })
            );
        }
        assert_eq!(
            target("import", "a.raw.qcow2"),
            Ok(DownloadTarget::Import {
                ext: "qcow2".into()
            })
        );
        // Case-sensitive, no `.ovf`, no `.img`, and at least one character before the dot.
        for bad in [
            "disk.QCOW2",
            "disk.Raw",
            "disk.ovf",
            "disk.img",
            ".qcow2",
            "disk.qcow",
            "disk.qcow2.gz",
        ] {
            assert_eq!(
                target("import", bad),
                Err(("filename", "invalid filename or wrong extension".to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn other_content() {
        assert_eq!(
            target("images", "a.raw"),
            Err((
                "content",
                "upload content-type 'images' is not allowed".to_owned()
            ))
        );
        assert_eq!(
            DownloadTarget::Import { ext: "ova".into() }.content(),
            "import"
        );
    }
}
