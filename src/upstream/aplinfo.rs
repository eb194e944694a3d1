//! PVE's appliance index (pve-manager `PVE::APLInfo`, `pveam`): Debian-control records (Package,
//! Version, Type, OS, Section, Location, sha512sum, ...) published as `<source>/aplinfo.dat.gz`
//! with a detached OpenPGP signature `<source>/aplinfo.dat.asc` over the unpacked text. An index
//! is used only once its signature verified against the `aplinfo` keyring; the verified text is
//! kept in the state directory, one file per source host, as pveam keeps it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::openpgp::Keyring;
use crate::download::{Fetcher, describe_reqwest};

/// PVE's sources (`PVE::APLInfo::get_apl_sources`).
pub const DEFAULT_SOURCES: &[&str] = &[
    "http://download.proxmox.com/images",
    "https://releases.turnkeylinux.org/pve",
];

const MAX_INDEX_SIZE: usize = 64 << 20;

/// One appliance: its fields as the index names them (lower-cased), plus `headline`,
/// `description`, `section`, `source`, `template` and an absolute `location`, as PVE fills them.
pub type Appliance = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum AplError {
    #[error("unable to parse appliance record: {0}")]
    Record(String),
    #[error("found incomplete appliance records")]
    Incomplete,
    #[error("update failed - {0}")]
    Update(String),
}

/// The records of `text` from `source`. `strict` (an update) fails on what PVE's update dies
/// on; otherwise bad records are skipped, as PVE warns and goes on.
pub fn parse(text: &str, source: &str, strict: bool) -> Result<Vec<Appliance>, AplError> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        match record(paragraph, source) {
            Ok(Some(a)) => out.push(a),
            Ok(None) => {}
            Err(e) if strict => return Err(e),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    Ok(out)
}

fn record(paragraph: &str, source: &str) -> Result<Option<Appliance>, AplError> {
    let mut res = Appliance::new();
    let mut lines = paragraph.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((key, value)) = line.split_once(':') else {
            return Err(AplError::Record(line.to_owned()));
        };
        let (key, value) = (key.to_ascii_lowercase(), value.trim().to_owned());
        match key.as_str() {
            "description" => {
                let mut long = Vec::new();
                while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                    long.push(next.trim().to_owned());
                    lines.next();
                }
                res.insert("headline".into(), value);
                res.insert("description".into(), long.join(" "));
            }
            "version" => {
                let ok = value.starts_with(|c: char| c.is_ascii_digit())
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".+-:~".contains(c));
                if !ok {
                    return Err(AplError::Record(format!("version = '{value}'")));
                }
                res.insert(key, value);
            }
            "type" => {
                if value != "openvz" && value != "lxc" {
                    return Err(AplError::Record(format!("unknown type '{value}'")));
                }
                res.insert(key, value);
            }
            _ => {
                res.insert(key, value);
            }
        }
    }
    if res.get("package").map(String::as_str) == Some("pve-web-news") {
        return Ok(None);
    }
    res.entry("section".into())
        .or_insert_with(|| "unknown".into());
    let complete = ["package", "type", "os", "version", "infopage"]
        .iter()
        .all(|k| res.get(*k).is_some_and(|v| !v.is_empty()));
    if !complete {
        return Err(AplError::Incomplete);
    }
    let (template, location) = match res.get("location") {
        Some(loc) => {
            let name = loc.rsplit('/').next().unwrap_or(loc).to_owned();
            let absolute = if loc.contains("://") {
                loc.clone()
            } else {
                format!("{source}/{loc}")
            };
            (name, absolute)
        }
        None => {
            let arch = res.get("architecture").map_or("i386", String::as_str);
            let os = &res["os"];
            let mut name = format!("{os}-{}_{}_{arch}.tar.gz", res["package"], res["version"]);
            let doubled = format!("{os}-{os}-");
            if name.starts_with(&doubled) {
                name = format!("{os}-{}", &name[doubled.len()..]);
            }
            let location = format!("{source}/{}/{name}", res["section"]);
            (name, location)
        }
    };
    res.insert("location".into(), location);
    res.insert("source".into(), source.to_owned());
    res.insert("template".into(), template);
    Ok(Some(res))
}

/// Where the verified index of `source` is kept.
pub fn stored_path(dir: &Path, source: &str) -> PathBuf {
    let host = reqwest::Url::parse(source)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| source.replace('/', "_"));
    dir.join(host)
}

/// Every appliance of the stored indexes of `sources`, by template name. Blocking.
pub fn load(dir: &Path, sources: &[String]) -> BTreeMap<String, Appliance> {
    let mut all = BTreeMap::new();
    for source in sources {
        let Ok(text) = std::fs::read_to_string(stored_path(dir, source)) else {
            continue;
        };
        if let Ok(records) = parse(&text, source, false) {
            for a in records {
                all.insert(a["template"].clone(), a);
            }
        }
    }
    all
}

/// A record as the API returns it.
pub fn to_json(a: &Appliance) -> Value {
    Value::Object(
        a.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// Fetches, verifies and stores the index of `source`; returns how many appliances it lists.
pub async fn update(
    fetcher: &Fetcher,
    keyring: &Keyring,
    source: &str,
    dir: &Path,
) -> Result<usize, AplError> {
    let fetch = |url: String| async move {
        let resp = fetcher
            .download(true, &url)
            .map_err(|e| AplError::Update(e.to_string()))?
            .send()
            .await
            .map_err(|e| AplError::Update(format!("{url}: {}", describe_reqwest(&e))))?;
        if !resp.status().is_success() {
            return Err(AplError::Update(format!(
                "{url}: HTTP {}",
                resp.status().as_u16()
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| AplError::Update(format!("{url}: {}", describe_reqwest(&e))))?;
        if body.len() > MAX_INDEX_SIZE {
            return Err(AplError::Update(format!("{url}: too large")));
        }
        Ok::<_, AplError>(body)
    };
    let sig = fetch(format!("{source}/aplinfo.dat.asc")).await?;
    let packed = fetch(format!("{source}/aplinfo.dat.gz")).await?;
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(&packed[..])
        .take(MAX_INDEX_SIZE as u64)
        .read_to_end(&mut text)
        .map_err(|e| AplError::Update(format!("unable to unpack the index: {e}")))?;
    keyring
        .verify_detached(&sig, &text)
        .map_err(|e| AplError::Update(format!("the index {e}")))?;
    let text = String::from_utf8(text)
        .map_err(|_| AplError::Update("the index is not UTF-8 text".into()))?;
    let count = parse(&text, source, true)?.len();
    let path = stored_path(dir, source);
    std::fs::create_dir_all(dir).map_err(|e| AplError::Update(e.to_string()))?;
    crate::fsutil::replace_file(
        &path,
        &crate::fsutil::temp_beside(&path),
        text.as_bytes(),
        0o644,
    )
    .map_err(|e| AplError::Update(format!("unable to store data: {e}")))?;
    Ok(count)
}

/// Refreshes every source's index at start and then every `aplinfo-interval`, as `pveam
/// update` does from cron. A keyring that is not configured leaves the stored indexes as they
/// are, and says so.
pub async fn run(state: crate::state::AppState) {
    loop {
        let settings = state.config().aplinfo.clone();
        let Some(every) = settings.every else { return };
        refresh(&state, &settings).await;
        tokio::time::sleep(every).await;
    }
}

async fn refresh(state: &crate::state::AppState, settings: &crate::config::AplinfoSettings) {
    let keyring = match Keyring::load(&state.config().keyrings, &settings.keyring) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!("appliance index not updated: {e}");
            return;
        }
    };
    let fetcher = match state.engine().fetcher() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("appliance index not updated: {e}");
            return;
        }
    };
    for source in &settings.sources {
        match update(&fetcher, &keyring, source, &settings.dir).await {
            Ok(n) => tracing::info!("appliance index of {source}: {n} appliances"),
            Err(e) => tracing::warn!("appliance index of {source}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "Package: debian-12-standard
Version: 12.7-1
Type: lxc
OS: debian-12
Section: system
Maintainer: Proxmox Support Team <support@proxmox.com>
Architecture: amd64
Location: system/debian-12-standard_12.7-1_amd64.tar.zst
Infopage: https://pve.proxmox.com/wiki/Linux_Container#pct_supported_distributions
sha512sum: abc
Description: Debian 12 Bookworm (standard)
 A small Debian Bookworm system including all standard packages.

Package: pve-web-news
Version: 1.0
Description: news
 nothing

Package: old
Version: 1.0-1
Type: openvz
OS: ubuntu
Infopage: http://x
";

    #[test]
    fn records_as_pve_reads_them() {
        let all = parse(INDEX, "http://mirror/images", true).expect("parses");
        assert_eq!(all.len(), 2, "the news record is not an appliance");
        let d = &all[0];
        assert_eq!(d["template"], "debian-12-standard_12.7-1_amd64.tar.zst");
        assert_eq!(
            d["location"],
            "http://mirror/images/system/debian-12-standard_12.7-1_amd64.tar.zst"
        );
        assert_eq!(d["headline"], "Debian 12 Bookworm (standard)");
        assert_eq!(
            d["description"],
            "A small Debian Bookworm system including all standard packages."
        );
        assert_eq!(d["os"], "debian-12");
        assert_eq!(d["sha512sum"], "abc");
        // No Location: PVE builds the name and puts it under the section.
        let old = &all[1];
        assert_eq!(old["template"], "ubuntu-old_1.0-1_i386.tar.gz");
        assert_eq!(
            old["location"],
            "http://mirror/images/unknown/ubuntu-old_1.0-1_i386.tar.gz"
        );
    }

    #[test]
    fn an_update_refuses_what_pve_refuses() {
        let bad = INDEX.replace("Type: lxc", "Type: docker");
        assert!(matches!(parse(&bad, "s", true), Err(AplError::Record(_))));
        assert_eq!(parse(&bad, "s", false).expect("lenient").len(), 1);
        let incomplete = "Package: x\nVersion: 1\nType: lxc\n";
        assert!(matches!(
            parse(incomplete, "s", true),
            Err(AplError::Incomplete)
        ));
    }
}
