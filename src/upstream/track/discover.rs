//! Finding a track's releases in what its announcement URL returned: the names a checksum
//! file lists, the links of a directory index (both matched against the track's pattern), or
//! the entries of a structured feed.

use regex::Regex;

use super::version;
use super::{Feed, Release};
use crate::download::{Algorithm, Checksum};
use crate::upstream::sums;

/// A release and, from a feed, its checksum (a checksum file's is read, and its signature
/// checked, when the release is downloaded).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub release: Release,
    pub checksum: Option<Checksum>,
    /// Found in a directory index, so there is no checksum file to read.
    pub from_index: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DiscoverError {
    #[error("invalid pattern: {0}")]
    Pattern(String),
    #[error("the pattern has no capture group for the version")]
    NoCapture,
    #[error("nothing in '{0}' matches the pattern")]
    NoMatch(String),
    #[error("'{url}' is not {what}: {reason}")]
    Feed {
        url: String,
        what: &'static str,
        reason: String,
    },
}

/// The pattern, matched against a whole name; its first capture group is the version.
pub fn compile(pattern: &str) -> Result<Regex, DiscoverError> {
    let re = Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| DiscoverError::Pattern(e.to_string()))?;
    if re.captures_len() < 2 {
        return Err(DiscoverError::NoCapture);
    }
    Ok(re)
}

/// The newest release `body` announces; `url` is where it came from (after redirects).
pub fn latest(
    body: &str,
    url: &str,
    pattern: Option<&str>,
    feed: Option<Feed>,
) -> Result<Found, DiscoverError> {
    let pattern = pattern.map(compile).transpose()?;
    let found = match feed {
        Some(Feed::Alpine) => alpine(body, url, pattern.as_ref())?,
        Some(Feed::Fcos) => fcos(body, url)?,
        None => {
            let re = pattern.ok_or(DiscoverError::NoCapture)?;
            let (names, from_index) = names(body, url);
            names
                .into_iter()
                .filter_map(|name| {
                    let version = re.captures(&name)?.get(1)?.as_str().to_owned();
                    Some(Found {
                        release: Release {
                            version,
                            url: join(url, &name),
                            name,
                        },
                        checksum: None,
                        from_index,
                    })
                })
                .collect()
        }
    };
    found
        .into_iter()
        // The first of equal versions wins: the order the origin listed them in.
        .reduce(|best, f| {
            if version::compare(&f.release.version, &best.release.version).is_gt() {
                f
            } else {
                best
            }
        })
        .ok_or_else(|| DiscoverError::NoMatch(url.to_owned()))
}

/// The file names a checksum file lists, or the links of an HTML directory index (and
/// whether it was one).
fn names(body: &str, url: &str) -> (Vec<String>, bool) {
    if body.to_ascii_lowercase().contains("href") {
        return (links(body), true);
    }
    let path = url.split(['?', '#']).next().unwrap_or_default();
    // A checksum file that does not parse lists no names; the caller says nothing matched.
    let names = sums::parse(body, crate::upstream::file_name(path))
        .map(|entries| entries.into_iter().filter_map(|e| e.name).collect())
        .unwrap_or_default();
    (names, false)
}

/// The last path segment of every relative link to a file (Apache, nginx and lighttpd
/// autoindex pages, mirror listings).
fn links(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find("href") {
        at += i + 4;
        let Some(rest) = html[at..].trim_start().strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(quote) = rest.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
            continue;
        };
        let target = rest[1..].split(quote).next().unwrap_or_default();
        let target = target.split(['?', '#']).next().unwrap_or_default();
        if target.is_empty()
            || target.ends_with('/')
            || target.contains("://")
            || target.starts_with('/')
        {
            continue;
        }
        if let Some(name) = target.rsplit('/').next() {
            out.push(percent_decode(name));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name` beside the file at `base`.
fn join(base: &str, name: &str) -> String {
    let path_end = base.find(['?', '#']).unwrap_or(base.len());
    let dir_end = base[..path_end].rfind('/').map_or(0, |i| i + 1);
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{}{encoded}", &base[..dir_end])
}

/// Alpine's `latest-releases.yaml`: a list of flat mappings (`flavor`, `version`, `iso`,
/// `sha256`, ...). Only that shape is read, so no YAML library is needed.
fn alpine(body: &str, url: &str, flavor: Option<&Regex>) -> Result<Vec<Found>, DiscoverError> {
    let bad = |reason: &str| DiscoverError::Feed {
        url: url.to_owned(),
        what: "an Alpine release list",
        reason: reason.to_owned(),
    };
    let mut items: Vec<std::collections::HashMap<String, String>> = Vec::new();
    for line in body.lines() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.is_empty() || trimmed.trim_start().starts_with('#') {
            continue;
        }
        let rest = match trimmed.strip_prefix('-') {
            Some(r) => {
                items.push(Default::default());
                r.trim()
            }
            None => trimmed.trim(),
        };
        if rest.is_empty() {
            continue;
        }
        let (k, v) = rest
            .split_once(':')
            .ok_or_else(|| bad("a line is not 'key: value'"))?;
        let item = items
            .last_mut()
            .ok_or_else(|| bad("a field before the first '-'"))?;
        item.insert(
            k.trim().to_owned(),
            v.trim().trim_matches(['"', '\'']).to_owned(),
        );
    }
    if items.is_empty() {
        return Err(bad("no entries"));
    }
    Ok(items
        .into_iter()
        .filter(|i| flavor.is_none_or(|re| i.get("flavor").is_some_and(|f| re.is_match(f))))
        .filter_map(|i| {
            let name = i.get("iso")?.clone();
            Some(Found {
                release: Release {
                    version: i.get("version")?.clone(),
                    url: join(url, &name),
                    name,
                },
                checksum: i.get("sha256").map(|hex| Checksum {
                    algorithm: Algorithm::Sha256,
                    expected: hex.to_ascii_lowercase(),
                }),
                from_index: false,
            })
        })
        .collect())
}

/// Fedora CoreOS's stream JSON: the x86_64 metal live ISO.
fn fcos(body: &str, url: &str) -> Result<Vec<Found>, DiscoverError> {
    let bad = |reason: String| DiscoverError::Feed {
        url: url.to_owned(),
        what: "a Fedora CoreOS stream",
        reason,
    };
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
    let metal = &v["architectures"]["x86_64"]["artifacts"]["metal"];
    let disk = &metal["formats"]["iso"]["disk"];
    let (Some(version), Some(location)) = (metal["release"].as_str(), disk["location"].as_str())
    else {
        return Err(bad("no x86_64 metal ISO".into()));
    };
    let path = location.split(['?', '#']).next().unwrap_or_default();
    Ok(vec![Found {
        release: Release {
            version: version.to_owned(),
            name: crate::upstream::file_name(path).to_owned(),
            url: location.to_owned(),
        },
        checksum: disk["sha256"].as_str().map(|hex| Checksum {
            algorithm: Algorithm::Sha256,
            expected: hex.to_ascii_lowercase(),
        }),
        from_index: false,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATTERN: &str = r"debian-([0-9.]+)-amd64-netinst\.iso";

    #[test]
    fn the_newest_name_a_checksum_file_lists() {
        let sums = "\
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa  debian-12.9.0-amd64-netinst.iso
bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb  debian-12.10.0-amd64-netinst.iso
cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc  debian-12.10.0-amd64-netinst.iso.torrent
dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd  debian-edu-12.11.0-amd64-netinst.iso
";
        let f = latest(
            sums,
            "http://m/debian-cd/current/SHA256SUMS",
            Some(PATTERN),
            None,
        )
        .expect("found");
        assert_eq!(f.release.version, "12.10.0");
        assert_eq!(f.release.name, "debian-12.10.0-amd64-netinst.iso");
        assert_eq!(
            f.release.url,
            "http://m/debian-cd/current/debian-12.10.0-amd64-netinst.iso"
        );
    }

    #[test]
    fn the_newest_link_of_a_directory_index() {
        let html = r#"<html><body><a href="../">../</a>
<a href="debian-12.9.0-amd64-netinst.iso">x</a>
<a href="sub/">sub/</a> <A HREF="debian-12.10.0-amd64-netinst.iso">y</A>
<a href="http://elsewhere/debian-99-amd64-netinst.iso">z</a>
<a href="my%20debian-13.0.0-amd64-netinst.iso">w</a></body></html>"#;
        let f = latest(html, "http://m/iso/", Some(PATTERN), None).expect("found");
        assert_eq!(f.release.version, "12.10.0");
        assert_eq!(
            f.release.url,
            "http://m/iso/debian-12.10.0-amd64-netinst.iso"
        );
        let spaced = latest(
            html,
            "http://m/iso/",
            Some(r"my debian-([0-9.]+)-amd64-netinst\.iso"),
            None,
        )
        .expect("decoded");
        assert_eq!(
            spaced.release.url,
            "http://m/iso/my%20debian-13.0.0-amd64-netinst.iso"
        );
    }

    #[test]
    fn bad_patterns_and_no_match_are_errors() {
        assert!(matches!(
            compile("debian-.*"),
            Err(DiscoverError::NoCapture)
        ));
        assert!(matches!(compile("("), Err(DiscoverError::Pattern(_))));
        assert_eq!(
            latest(
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa  other.iso\n",
                "http://m/SUMS",
                Some(PATTERN),
                None
            ),
            Err(DiscoverError::NoMatch("http://m/SUMS".into()))
        );
    }

    #[test]
    fn alpine_release_list() {
        let yaml = "---
-
  title: \"Standard\"
  flavor: alpine-standard
  version: 3.21.2
  iso: alpine-standard-3.21.2-x86_64.iso
  sha256: AB12
-
  title: \"Virtual\"
  flavor: alpine-virt
  version: 3.21.2
  iso: alpine-virt-3.21.2-x86_64.iso
  sha256: cd34
";
        let f = latest(
            yaml,
            "http://m/v3.21/releases/x86_64/latest-releases.yaml",
            Some("alpine-(virt)"),
            Some(Feed::Alpine),
        )
        .expect("found");
        assert_eq!(f.release.name, "alpine-virt-3.21.2-x86_64.iso");
        assert_eq!(f.release.version, "3.21.2");
        assert_eq!(
            f.release.url,
            "http://m/v3.21/releases/x86_64/alpine-virt-3.21.2-x86_64.iso"
        );
        assert_eq!(f.checksum.expect("sha256").expected, "cd34");
        assert!(latest("nonsense", "http://m/y", None, Some(Feed::Alpine)).is_err());
    }

    #[test]
    fn fedora_coreos_stream() {
        let json = r#"{"stream":"stable","architectures":{"x86_64":{"artifacts":{"metal":{"release":"41.20250105.3.0","formats":{"iso":{"disk":{"location":"http://m/prod/41.20250105.3.0/x86_64/fedora-coreos-41.20250105.3.0-live.x86_64.iso","sha256":"EF56"}}}}}}}}"#;
        let f =
            latest(json, "http://m/streams/stable.json", None, Some(Feed::Fcos)).expect("found");
        assert_eq!(f.release.version, "41.20250105.3.0");
        assert_eq!(
            f.release.name,
            "fedora-coreos-41.20250105.3.0-live.x86_64.iso"
        );
        assert_eq!(f.checksum.expect("sha256").expected, "ef56");
        assert!(latest("{}", "http://m/s.json", None, Some(Feed::Fcos)).is_err());
    }
}
