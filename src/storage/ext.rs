//! The file-name patterns of pve-storage `src/PVE/Storage.pm` (`$ISO_EXT_RE_0`,
//! `$VZTMPL_EXT_RE_1`, `$BACKUP_EXT_RE_2`, `$IMPORT_EXT_RE_1`, `$UPLOAD_IMPORT_EXT_RE_1`,
//! `$SAFE_CHAR_CLASS_RE`, `$OVA_CONTENT_RE_1`) as regex fragments, composed by the
//! download checks, the listing and the volume-name parser.
//!
//! Case: PVE compiles ISO and VZTMPL with `/i` and the rest without; an embedded `qr//` keeps
//! its own flags, so the listing's outer `/i` does not make the import extensions
//! case-insensitive. `(?i-u:…)` gives ASCII-only folding like Perl on byte strings.
//!
//! `$VZTMPL_EXT_RE_1` is `\.(?|(tar)(?!\.)|tar\.(gz|xz|zst|bz2))`. Every PVE use anchors it at
//! the end of the name, where the look-ahead is always true, so it is left out; the branch
//! reset becomes two groups (plain `tar` in 1, the compression in 2).

use std::sync::LazyLock;

use regex::Regex;

pub(crate) const ISO_EXT: &str = r"\.(?i-u:iso|img)";
pub(crate) const VZTMPL_EXT: &str = r"\.(?i-u:(tar)|tar\.(gz|xz|zst|bz2))";
pub(crate) const BACKUP_EXT: &str = r"\.(tgz|(?:tar|vma)(?:\.(gz|lzo|zst|bz2))?)";
pub(crate) const IMPORT_EXT: &str = r"\.(ova|ovf|qcow2|raw|vmdk)";
pub(crate) const UPLOAD_IMPORT_EXT: &str = r"\.(ova|qcow2|raw|vmdk)";
pub(crate) const SAFE_CHAR: &str = r"[a-zA-Z0-9\-.+=_]";
pub(crate) const SAFE_CHAR_WITH_SPACE: &str = r"[ a-zA-Z0-9\-.+=_]";
pub(crate) const OVA_CONTENT_EXT: &str = r"\.(qcow2|raw|vmdk)";

/// Compiles a pattern assembled from the constants above. They are fixed strings checked by
/// the tests, so a failure is a programming error: it is logged and the pattern matches nothing.
pub(crate) fn fixed(pattern: &str) -> Option<Regex> {
    Regex::new(pattern)
        .inspect_err(|err| tracing::error!("storage: bad built-in pattern {pattern:?}: {err}"))
        .ok()
}

/// `re` matches `text`; a pattern that failed to compile matches nothing.
pub(crate) fn matches(re: &Option<Regex>, text: &str) -> bool {
    re.as_ref().is_some_and(|re| re.is_match(text))
}

/// The captures of `re` in `text`; a pattern that failed to compile matches nothing.
pub(crate) fn captures<'t>(re: &Option<Regex>, text: &'t str) -> Option<regex::Captures<'t>> {
    re.as_ref().and_then(|re| re.captures(text))
}

/// The vztmpl listing format: `t` + the compression as written (`tgz`, `txz`, `tzst`, `tbz2`),
/// or `tar` for an uncompressed template (spec/pve-api.md §7.3).
pub(crate) fn vztmpl_format(caps: &regex::Captures<'_>, plain: usize, compressed: usize) -> String {
    match (caps.get(plain), caps.get(compressed)) {
        (_, Some(comp)) => format!("t{}", comp.as_str()),
        _ => "tar".to_owned(),
    }
}

/// Names accepted for `iso` content by download-url/upload.
pub(crate) static ISO_DOWNLOAD: LazyLock<Option<Regex>> =
    LazyLock::new(|| fixed(&format!(r"[^/]+{ISO_EXT}$")));
/// Names accepted for `vztmpl` content by download-url/upload.
pub(crate) static VZTMPL_DOWNLOAD: LazyLock<Option<Regex>> =
    LazyLock::new(|| fixed(&format!(r"[^/]+{VZTMPL_EXT}$")));
/// Names accepted for `import` content by download-url/upload; group 1 is the extension.
pub(crate) static IMPORT_DOWNLOAD: LazyLock<Option<Regex>> =
    LazyLock::new(|| fixed(&format!(r"{SAFE_CHAR}+{UPLOAD_IMPORT_EXT}$")));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_compile() {
        for p in [
            ISO_EXT,
            VZTMPL_EXT,
            BACKUP_EXT,
            IMPORT_EXT,
            UPLOAD_IMPORT_EXT,
            SAFE_CHAR,
            SAFE_CHAR_WITH_SPACE,
            OVA_CONTENT_EXT,
        ] {
            assert!(Regex::new(p).is_ok(), "{p}");
        }
        for re in [&*ISO_DOWNLOAD, &*VZTMPL_DOWNLOAD, &*IMPORT_DOWNLOAD] {
            assert!(re.is_some());
        }
    }

    #[test]
    fn ascii_only_case_folding() {
        // U+017F (long s) folds to 's' under Unicode rules; Perl's byte match does not.
        assert!(!matches(&VZTMPL_DOWNLOAD, "a.tar.z\u{17f}t"));
        assert!(matches(&VZTMPL_DOWNLOAD, "a.TAR.ZST"));
    }

    #[test]
    fn vztmpl_formats() {
        let re = fixed(&format!(r"^[^/]+{VZTMPL_EXT}$"));
        let fmt = |name: &str| captures(&re, name).map(|c| vztmpl_format(&c, 1, 2));
        assert_eq!(fmt("a.tar.gz").as_deref(), Some("tgz"));
        assert_eq!(fmt("a.tar.xz").as_deref(), Some("txz"));
        assert_eq!(fmt("a.tar.zst").as_deref(), Some("tzst"));
        assert_eq!(fmt("a.tar.bz2").as_deref(), Some("tbz2"));
        assert_eq!(fmt("a.tar").as_deref(), Some("tar"));
        assert_eq!(fmt("a.TAR.GZ").as_deref(), Some("tGZ"));
        assert_eq!(fmt("a.tar.tar.gz").as_deref(), Some("tgz"));
        assert_eq!(fmt("a.tgz"), None);
        assert_eq!(fmt("a.tar.lzo"), None);
    }
}
