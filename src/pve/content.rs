//! Content types and compressions: pve-storage's `valid_content` of a directory storage
//! (Plugin.pm), the content types download-url takes (`API2/Storage/Status.pm`), and the
//! compressions it can undo (`decompressor_info`, spec/pve-api.md §1.5), plus the daemon's xz.

/// Every content type a file-based storage may hold (DirPlugin's `content` list).
pub const CONTENT_TYPES: &[&str] = &[
    "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "none", "import",
];

/// The content types download-url and upload take.
pub const DOWNLOAD_CONTENT: &[&str] = &["iso", "vztmpl", "import"];

/// One of [`DOWNLOAD_CONTENT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownloadContent {
    Iso,
    Vztmpl,
    Import,
}

impl DownloadContent {
    pub const ALL: [DownloadContent; 3] = [
        DownloadContent::Iso,
        DownloadContent::Vztmpl,
        DownloadContent::Import,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DownloadContent::Iso => "iso",
            DownloadContent::Vztmpl => "vztmpl",
            DownloadContent::Import => "import",
        }
    }
}

/// Whether `content` is a content type PVE knows.
pub fn is_known_content(content: &str) -> bool {
    CONTENT_TYPES.contains(&content)
}

/// A compression download-url can undo for `iso` content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gz,
    Lzo,
    Zst,
    Bz2,
    Xz,
}

impl Compression {
    pub const ALL: [Compression; 5] = [
        Compression::Gz,
        Compression::Lzo,
        Compression::Zst,
        Compression::Bz2,
        Compression::Xz,
    ];

    /// The API's name for it, which is also the file extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gz => "gz",
            Compression::Lzo => "lzo",
            Compression::Zst => "zst",
            Compression::Bz2 => "bz2",
            Compression::Xz => "xz",
        }
    }

    /// By the API's name, exactly.
    pub fn parse(name: &str) -> Option<Compression> {
        Compression::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// By a file extension, in any case (`debian.iso.XZ`).
    pub fn from_ext(ext: &str) -> Option<Compression> {
        Compression::parse(&ext.to_ascii_lowercase())
    }

    /// The command PVE would run; error texts keep its shape
    /// (`command '<cmd> <file>' failed: ...`).
    pub fn pve_command(self) -> &'static str {
        match self {
            Compression::Gz => "zcat",
            Compression::Lzo => "lzop -d -c",
            Compression::Zst => "zstd -q -d -c",
            Compression::Bz2 => "bzcat -q",
            Compression::Xz => "xzcat",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressions_by_name_and_extension() {
        for c in Compression::ALL {
            assert_eq!(Compression::parse(c.as_str()), Some(c));
        }
        assert_eq!(Compression::parse("GZ"), None);
        assert_eq!(Compression::from_ext("XZ"), Some(Compression::Xz));
        assert_eq!(Compression::from_ext("zip"), None);
        assert!(DOWNLOAD_CONTENT.iter().all(|c| is_known_content(c)));
        let names: Vec<_> = DownloadContent::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, DOWNLOAD_CONTENT);
    }
}
