//! Checksum files as distributions publish them (spec/library-research.md §4): coreutils lines
//! (`hex  name`, `hex *name`: Debian, Ubuntu, Arch, Alpine, openSUSE), BSD lines
//! (`SHA256 (name) = hex`: Fedora, Rocky, AlmaLinux, with `# name: N bytes` comments), one file
//! per image (`name.sha256` holding `hex  name` or the bare hex), upper- or lower-case hex, and
//! any of them inside an OpenPGP cleartext signature frame.

use crate::download::Algorithm;

/// One image's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// As listed, without a leading `./` or `*`; `None` for a bare hex line.
    pub name: Option<String>,
    pub algorithm: Algorithm,
    /// Lower-case.
    pub hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SumsError {
    #[error("has no entry for '{0}'")]
    Missing(String),
    #[error("lists '{0}' twice with different checksums")]
    Conflicting(String),
    #[error("uses {0}, which isolib cannot check")]
    Unsupported(String),
}

/// The text a cleartext-signed file signs (RFC 9580 §7: the lines after the armor headers,
/// dash-escapes removed, up to the signature); any other text as it is.
pub fn signed_text(text: &str) -> &str {
    const BEGIN: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
    const SIG: &str = "\n-----BEGIN PGP SIGNATURE-----";
    let Some(rest) = text.trim_start().strip_prefix(BEGIN) else {
        return text;
    };
    // Armor headers ("Hash: SHA256") end at the first empty line.
    let body = match rest.find("\n\n").or_else(|| rest.find("\r\n\r\n")) {
        Some(i) => rest[i..].trim_start_matches(['\r', '\n']),
        None => "",
    };
    match body.find(SIG) {
        Some(end) => &body[..end],
        None => body,
    }
}

/// The entries of a checksum file named `file_name` (its name may say the algorithm:
/// `SHA512SUMS`, `x.iso.sha256`, `b2sums.txt`).
pub fn parse(text: &str, file_name: &str) -> Result<Vec<Entry>, SumsError> {
    let named = algorithm_by_name(file_name)?;
    let mut out = Vec::new();
    for raw in signed_text(text).lines() {
        // Dash-escaped lines of a cleartext signature.
        let line = raw.strip_prefix("- ").unwrap_or(raw).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(entry) = bsd_line(line).or_else(|| coreutils_line(line, named)) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// The checksum for `target` (the file name isolib writes), else for `url_name` (the URL's last
/// path segment); a file with a single bare hex line stands for the one image it is named after.
pub fn find(entries: &[Entry], target: &str, url_name: &str) -> Result<Entry, SumsError> {
    for name in [target, url_name] {
        let mut hits = entries
            .iter()
            .filter(|e| e.name.as_deref().is_some_and(|n| base(n) == name));
        if let Some(first) = hits.next() {
            if hits.any(|e| e.hex != first.hex || e.algorithm != first.algorithm) {
                return Err(SumsError::Conflicting(name.to_owned()));
            }
            return Ok(first.clone());
        }
    }
    match entries {
        [only] if only.name.is_none() => Ok(only.clone()),
        _ => Err(SumsError::Missing(target.to_owned())),
    }
}

fn base(name: &str) -> &str {
    let name = name.strip_prefix("./").unwrap_or(name);
    name.rsplit('/').next().unwrap_or(name)
}

/// `SHA256 (name) = hex`.
fn bsd_line(line: &str) -> Option<Entry> {
    let (algo, rest) = line.split_once(" (")?;
    let (name, hex) = rest.rsplit_once(") = ")?;
    let algorithm = Algorithm::parse(&algo.to_ascii_lowercase())?;
    let hex = hex.trim();
    (hex.len() == hex_len(algorithm) && is_hex(hex)).then(|| Entry {
        name: Some(name.to_owned()),
        algorithm,
        hex: hex.to_ascii_lowercase(),
    })
}

/// `hex  name`, `hex *name`, or a bare `hex`.
fn coreutils_line(line: &str, named: Option<Algorithm>) -> Option<Entry> {
    let (hex, name) = match line.split_once(char::is_whitespace) {
        Some((hex, name)) => (hex, Some(name.trim_start().trim_start_matches('*'))),
        None => (line, None),
    };
    if !is_hex(hex) {
        return None;
    }
    let algorithm = match named {
        Some(a) if hex.len() == hex_len(a) => a,
        Some(_) => return None,
        None => by_length(hex.len())?,
    };
    Some(Entry {
        name: name.filter(|n| !n.is_empty()).map(str::to_owned),
        algorithm,
        hex: hex.to_ascii_lowercase(),
    })
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex_len(a: Algorithm) -> usize {
    match a {
        Algorithm::Md5 => 32,
        Algorithm::Sha1 => 40,
        Algorithm::Sha224 => 56,
        Algorithm::Sha256 => 64,
        Algorithm::Sha384 => 96,
        Algorithm::Sha512 => 128,
    }
}

fn by_length(len: usize) -> Option<Algorithm> {
    Algorithm::NAMES
        .iter()
        .filter_map(|n| Algorithm::parse(n))
        .find(|a| hex_len(*a) == len)
}

/// What a file's name says of its algorithm: `SHA512SUMS`, `sha256sums.txt`, `x.iso.sha256`,
/// `MD5SUMS`; BLAKE2 (`b2sums.txt`) is not one isolib can check.
fn algorithm_by_name(file_name: &str) -> Result<Option<Algorithm>, SumsError> {
    let lower = file_name.to_ascii_lowercase();
    if lower.contains("b2sum") || lower.ends_with(".b2") {
        return Err(SumsError::Unsupported("BLAKE2".into()));
    }
    // Longest names first: "sha256" must not be read as "sha2…" of another.
    for name in ["sha512", "sha384", "sha256", "sha224", "sha1", "md5"] {
        if lower.contains(name) {
            return Ok(Algorithm::parse(name));
        }
    }
    Ok(None)
}

/// Algorithms from weakest to strongest, for the operator's minimum.
pub fn strength(a: Algorithm) -> u8 {
    match a {
        Algorithm::Md5 => 0,
        Algorithm::Sha1 => 1,
        Algorithm::Sha224 => 2,
        Algorithm::Sha256 => 3,
        Algorithm::Sha384 => 4,
        Algorithm::Sha512 => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H256: &str = "9f62d862496c8b5f20e3b643d1ac0c87f591160b62d5b75607f42ee6563c97e3";

    fn one(text: &str, file: &str, target: &str) -> Result<Entry, SumsError> {
        find(&parse(text, file)?, target, target)
    }

    #[test]
    fn coreutils_lines_with_and_without_the_binary_star() {
        let debian = format!(
            "{}  debian-12.7.0-amd64-netinst.iso\n{H256}  other.iso\n",
            "a".repeat(64)
        );
        let e = one(&debian, "SHA256SUMS", "other.iso").expect("found");
        assert_eq!((e.algorithm, e.hex.as_str()), (Algorithm::Sha256, H256));
        let ubuntu = format!(
            "{} *ubuntu-24.04-live-server-amd64.iso\n",
            H256.to_uppercase()
        );
        let e = one(&ubuntu, "SHA256SUMS", "ubuntu-24.04-live-server-amd64.iso").expect("found");
        assert_eq!(e.hex, H256, "upper-case hex is read as lower-case");
    }

    #[test]
    fn bsd_lines_with_fedora_comments_in_a_cleartext_signature() {
        let fedora = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n\
             # Fedora-Server-netinst-x86_64-41-1.4.iso: 1047527424 bytes\n\
             SHA256 (Fedora-Server-netinst-x86_64-41-1.4.iso) = {H256}\n\
             - -dash-escaped line\n\
             -----BEGIN PGP SIGNATURE-----\n\niQIz...\n-----END PGP SIGNATURE-----\n"
        );
        let e = one(
            &fedora,
            "Fedora-Server-41-1.4-x86_64-CHECKSUM",
            "Fedora-Server-netinst-x86_64-41-1.4.iso",
        )
        .expect("found");
        assert_eq!(e.hex, H256);
        assert!(signed_text(&fedora).starts_with("# Fedora-Server"));
        assert!(!signed_text(&fedora).contains("SIGNATURE"));
    }

    #[test]
    fn the_file_name_decides_between_algorithms_of_one_length() {
        let sha512 = "b".repeat(128);
        let line = format!("{sha512}  x.iso\n");
        assert_eq!(
            one(&line, "SHA512SUMS", "x.iso").expect("found").algorithm,
            Algorithm::Sha512
        );
        assert_eq!(
            parse(&line, "b2sums.txt"),
            Err(SumsError::Unsupported("BLAKE2".into()))
        );
        // A 64-digit line in a SHA512SUMS file is not a sha512.
        assert_eq!(
            one(&format!("{H256}  x.iso\n"), "SHA512SUMS", "x.iso"),
            Err(SumsError::Missing("x.iso".into()))
        );
    }

    #[test]
    fn one_file_per_image_with_a_bare_hex() {
        assert_eq!(
            one(
                &format!("{H256}\n"),
                "alpine-3.20.3-x86_64.iso.sha256",
                "a.iso"
            )
            .expect("found")
            .hex,
            H256
        );
    }

    #[test]
    fn found_by_target_then_url_name_refused_when_missing_or_conflicting() {
        let text = format!("{H256}  ./dir/url-name.iso\n");
        let entries = parse(&text, "SHA256SUMS").expect("parse");
        assert_eq!(
            find(&entries, "renamed.iso", "url-name.iso")
                .expect("by url")
                .hex,
            H256
        );
        assert_eq!(
            find(&entries, "x.iso", "y.iso"),
            Err(SumsError::Missing("x.iso".into()))
        );
        let twice = format!("{H256}  x.iso\n{}  x.iso\n", "c".repeat(64));
        assert_eq!(
            one(&twice, "SHA256SUMS", "x.iso"),
            Err(SumsError::Conflicting("x.iso".into()))
        );
        let same_twice = format!("{H256}  x.iso\n{H256}  x.iso\n");
        assert!(one(&same_twice, "SHA256SUMS", "x.iso").is_ok());
    }
}
