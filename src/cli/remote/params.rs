//! What the user types, parsed into plain values before anything is sent: `--checksum ALGO:HEX`,
//! volume ids, content and compression names, and the file name the PVE web UI would pick for
//! a URL (spec/pve-api.md §3, §7.6, §8).

use std::fmt;
use std::str::FromStr;

use crate::pve::ids::parse_volume_id;

pub use crate::pve::content::{Compression, DownloadContent as Content};

// clap's value parser for both, by their API names.
impl clap::ValueEnum for Content {
    fn value_variants<'a>() -> &'a [Self] {
        &Content::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

impl clap::ValueEnum for Compression {
    fn value_variants<'a>() -> &'a [Self] {
        &Compression::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("expected ALGO:HEX, e.g. sha256:<64 hex digits>")]
    ChecksumForm,
    #[error("unknown checksum algorithm '{0}' (md5, sha1, sha224, sha256, sha384, sha512)")]
    ChecksumAlgorithm(String),
    #[error("a {algorithm} checksum has {expected} hex digits, got {got}")]
    ChecksumLength {
        algorithm: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("checksum '{0}' is not hexadecimal")]
    ChecksumHex(String),
    #[error("'{0}' is not a volume id (STORAGE:VOLUME, e.g. local:iso/debian.iso)")]
    Volid(String),
}

/// `--checksum ALGO:HEX`, sent as `checksum-algorithm` and `checksum`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: &'static str,
    pub hex: String,
}

/// The algorithms download-url takes, with their digest length in hex digits.
const ALGORITHMS: [(&str, usize); 6] = [
    ("md5", 32),
    ("sha1", 40),
    ("sha224", 56),
    ("sha256", 64),
    ("sha384", 96),
    ("sha512", 128),
];

impl FromStr for Checksum {
    type Err = ParamError;

    fn from_str(s: &str) -> Result<Checksum, ParamError> {
        let (algo, hex) = s.split_once(':').ok_or(ParamError::ChecksumForm)?;
        let algo = algo.trim().to_ascii_lowercase();
        let hex = hex.trim();
        let (algorithm, expected) = ALGORITHMS
            .iter()
            .find(|(name, _)| *name == algo)
            .copied()
            .ok_or_else(|| ParamError::ChecksumAlgorithm(algo.clone()))?;
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ParamError::ChecksumHex(hex.to_string()));
        }
        // The daemon would only find a wrong length after the whole download; a typo or a
        // digest of another algorithm is caught here instead.
        if hex.len() != expected {
            return Err(ParamError::ChecksumLength {
                algorithm,
                expected,
                got: hex.len(),
            });
        }
        Ok(Checksum {
            algorithm,
            hex: hex.to_ascii_lowercase(),
        })
    }
}

/// A volume id `STORAGE:VOLNAME` in PVE's grammar
/// `^([a-z][a-z0-9\-\_\.]*[a-z0-9]):(.+)$`, case-insensitive (spec §7.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volid {
    pub storage: String,
    pub volname: String,
}

impl FromStr for Volid {
    type Err = ParamError;

    fn from_str(s: &str) -> Result<Volid, ParamError> {
        let (storage, volname) =
            parse_volume_id(s).ok_or_else(|| ParamError::Volid(s.to_string()))?;
        Ok(Volid { storage, volname })
    }
}

impl fmt::Display for Volid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.storage, self.volname)
    }
}

/// The last path segment of `url` without query or fragment, as query-url-metadata derives it
/// when the origin sends no Content-Disposition (spec §3). Not percent-decoded: PVE doesn't
/// either, and the daemon normalises what is left.
pub fn filename_from_url(url: &str) -> Option<String> {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let path = &url[..end];
    let after_scheme = path.split_once("://").map_or(path, |(_, rest)| rest);
    // No '/' after the host means there is no path segment to take.
    let (_, segment) = after_scheme.rsplit_once('/')?;
    (!segment.is_empty()).then(|| segment.to_string())
}

/// What the web UI does with a queried file name (spec §8 step 1): for iso a compression
/// extension is cut off and selects the compression, unless one was chosen already; for
/// import an `.img` becomes `.img.raw`.
pub fn ui_filename(
    name: &str,
    content: Content,
    compression: Option<Compression>,
) -> (String, Option<Compression>) {
    match content {
        Content::Iso => {
            if let Some((stem, ext)) = name.rsplit_once('.')
                && let Some(c) = Compression::from_ext(ext)
                && !stem.is_empty()
            {
                return (stem.to_string(), compression.or(Some(c)));
            }
            (name.to_string(), compression)
        }
        Content::Import if name.to_ascii_lowercase().ends_with(".img") => {
            (format!("{name}.raw"), compression)
        }
        _ => (name.to_string(), compression),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_parses_algo_and_hex() {
        let c: Checksum = format!("SHA256:{}", "Ab".repeat(32)).parse().unwrap();
        assert_eq!(c.algorithm, "sha256");
        assert_eq!(c.hex, "ab".repeat(32));
        let c: Checksum = format!("md5:{}", "0".repeat(32)).parse().unwrap();
        assert_eq!(c.algorithm, "md5");
    }

    #[test]
    fn checksum_rejects_bad_input() {
        assert_eq!(
            "deadbeef".parse::<Checksum>(),
            Err(ParamError::ChecksumForm)
        );
        assert_eq!(
            format!("sha3:{}", "0".repeat(64)).parse::<Checksum>(),
            Err(ParamError::ChecksumAlgorithm("sha3".into()))
        );
        assert_eq!(
            "sha1:abc".parse::<Checksum>(),
            Err(ParamError::ChecksumLength {
                algorithm: "sha1",
                expected: 40,
                got: 3
            })
        );
        assert_eq!(
            format!("sha1:{}", "g".repeat(40)).parse::<Checksum>(),
            Err(ParamError::ChecksumHex("g".repeat(40)))
        );
    }

    #[test]
    fn volid_grammar() {
        let v: Volid = "local:iso/debian.iso".parse().unwrap();
        assert_eq!(v.storage, "local");
        assert_eq!(v.volname, "iso/debian.iso");
        assert_eq!(v.to_string(), "local:iso/debian.iso");
        let v: Volid = "My.Store-1:import/x.ova/disk.vmdk".parse().unwrap();
        assert_eq!(v.storage, "My.Store-1");
        assert_eq!(v.volname, "import/x.ova/disk.vmdk");
        for bad in [
            "local",
            "local:",
            "l:iso/x.iso",
            "1local:iso/x",
            "local-:x",
            "lo cal:x",
        ] {
            assert_eq!(
                bad.parse::<Volid>(),
                Err(ParamError::Volid(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn filename_is_the_last_path_segment() {
        let f = |u| filename_from_url(u);
        assert_eq!(
            f("https://cdimage.debian.org/x/debian-12.iso").as_deref(),
            Some("debian-12.iso")
        );
        assert_eq!(f("http://h/a/b.iso?sig=1/2#top").as_deref(), Some("b.iso"));
        assert_eq!(f("http://h/a%20b.iso").as_deref(), Some("a%20b.iso"));
        assert_eq!(f("http://h/dir/"), None);
        assert_eq!(f("http://h"), None);
        assert_eq!(f("http://h?x=/y"), None);
    }

    #[test]
    fn ui_filename_rules() {
        assert_eq!(
            ui_filename("x.iso.ZST", Content::Iso, None),
            ("x.iso".into(), Some(Compression::Zst))
        );
        assert_eq!(
            ui_filename("x.iso.gz", Content::Iso, Some(Compression::Bz2)),
            ("x.iso".into(), Some(Compression::Bz2))
        );
        assert_eq!(
            ui_filename("x.iso", Content::Iso, None),
            ("x.iso".into(), None)
        );
        assert_eq!(
            ui_filename("t.tar.gz", Content::Vztmpl, None),
            ("t.tar.gz".into(), None)
        );
        assert_eq!(
            ui_filename("disk.IMG", Content::Import, None),
            ("disk.IMG.raw".into(), None)
        );
        assert_eq!(ui_filename(".gz", Content::Iso, None), (".gz".into(), None));
    }
}
