//! The library as a file (the ISOManager seed's export and import): every volume of every
//! storage with its record, as JSON with a format version or as CSV with a header row; and the
//! plan that brings another daemon's storages to the same library, volume by volume.

use serde::{Deserialize, Serialize};

use std::path::Path;

use super::Volume;
use super::check::{Reading, check};
use crate::catalog::{self, Lookup};
use crate::storage::StorageConfig;

/// Bumped when an entry's fields change meaning.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Inventory {
    pub format_version: u32,
    pub node: String,
    /// Unix time of the export.
    pub exported: i64,
    pub volumes: Vec<Entry>,
}

/// One volume. `sha256` is missing for a volume not hashed yet (adoption is on its way).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entry {
    pub volid: String,
    pub storage: String,
    pub content: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub source: Option<catalog::Source>,
    pub checksum: Option<catalog::UserChecksum>,
    pub os: Option<catalog::osinfo::OsMatch>,
    pub notes: Option<String>,
    pub protected: bool,
    pub verification: Option<catalog::Verification>,
}

impl Entry {
    /// The entry of `volume` as its record describes it. Blocking.
    pub fn of(volume: &Volume) -> Entry {
        let mut entry = Entry {
            volid: volume.volid.clone(),
            storage: volume.storage.clone(),
            content: volume.content.clone(),
            size: std::fs::metadata(&volume.path).ok().map(|m| m.len()),
            ..Entry::default()
        };
        match catalog::store::load(&volume.path) {
            Ok(Lookup::Fresh(r)) => {
                entry.sha256 = Some(r.sha256);
                entry.source = Some(r.source);
                entry.checksum = r.checksum;
                entry.os = r.os;
                entry.notes = r.notes;
                entry.protected = r.protected;
                entry.verification = r.verification;
            }
            // Not hashed yet: what the user set on it still counts.
            Ok(Lookup::Stale(r)) => {
                entry.notes = r.notes;
                entry.protected = r.protected;
            }
            _ => {}
        }
        entry
    }

    /// Where the volume can be fetched again: an http(s) source.
    pub fn url(&self) -> Option<&str> {
        self.source
            .as_ref()
            .and_then(|s| s.url.as_deref())
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
    }

    /// The volume name, without the storage.
    pub fn volname(&self) -> &str {
        self.volid.split_once(':').map_or("", |(_, v)| v)
    }
}

/// The CSV form: a header row, then one row per volume (RFC 4180 quoting).
pub fn to_csv(inventory: &Inventory) -> String {
    const HEADER: [&str; 11] = [
        "volid",
        "storage",
        "content",
        "size",
        "sha256",
        "origin",
        "url",
        "os",
        "verification",
        "protected",
        "notes",
    ];
    let mut out = HEADER.join(",");
    out.push_str("\r\n");
    for e in &inventory.volumes {
        let origin = e
            .source
            .as_ref()
            .and_then(|s| serde_json::to_value(s.origin).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let row = [
            e.volid.clone(),
            e.storage.clone(),
            e.content.clone(),
            e.size.map(|s| s.to_string()).unwrap_or_default(),
            e.sha256.clone().unwrap_or_default(),
            origin,
            e.source
                .as_ref()
                .and_then(|s| s.url.clone())
                .unwrap_or_default(),
            e.os.as_ref().map(|o| o.id.clone()).unwrap_or_default(),
            e.verification
                .as_ref()
                .map(|v| match v.state {
                    catalog::VerifyState::Ok => "ok".to_owned(),
                    catalog::VerifyState::Failed => "failed".to_owned(),
                })
                .unwrap_or_default(),
            u8::from(e.protected).to_string(),
            e.notes.clone().unwrap_or_default(),
        ];
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// What an import does about one entry, decided against what is on disk.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The volume is there with the inventory's sha256.
    Present,
    /// It is missing: fetch it from this URL, expecting the sha256.
    Fetch { url: String },
    /// It is there with other bytes; it is never overwritten.
    Conflict { has: String },
    /// Nothing can be done: no source, no hash, no such storage...
    Skip(String),
}

/// Decides what to do about `entry` on this node. A volume there without a fresh record is
/// read first (and recorded), so the decision is about its bytes. Blocking.
pub fn decide(entry: &Entry, storages: &StorageConfig, node: &str, osinfo_dir: &Path) -> Step {
    let Some(sha256) = entry.sha256.as_deref() else {
        return Step::Skip("the inventory has no sha256 for it".into());
    };
    let storage = match storages
        .storage(&entry.storage)
        .and_then(|s| s.check_enabled(node).map(|()| s))
        .and_then(|s| s.check_download(&entry.content).map(|()| s))
    {
        Ok(s) => s,
        Err(e) => return Step::Skip(e.to_string()),
    };
    let path = match storage.volume_path(entry.volname()) {
        Ok(p) => p,
        Err(e) => return Step::Skip(e.to_string()),
    };
    if !path.exists() {
        return match entry.url() {
            Some(url) => Step::Fetch {
                url: url.to_owned(),
            },
            None => Step::Skip("the inventory names no http(s) source to fetch it from".into()),
        };
    }
    let reading = Reading {
        content: &entry.content,
        osinfo_dir,
        rate: None,
    };
    let has = match catalog::store::load(&path) {
        Ok(Lookup::Fresh(r)) => r.sha256,
        _ => match check(&path, &reading, None)
            .ok()
            .and_then(|_| catalog::store::load(&path).ok()?.fresh())
        {
            Some(r) => r.sha256,
            None => return Step::Skip(format!("cannot read '{}'", path.display())),
        },
    };
    if has == sha256 {
        Step::Present
    } else {
        Step::Conflict { has }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_header_and_quotes_what_needs_it() {
        let inv = Inventory {
            format_version: FORMAT_VERSION,
            node: "n".into(),
            exported: 0,
            volumes: vec![Entry {
                volid: "local:iso/a.iso".into(),
                storage: "local".into(),
                content: "iso".into(),
                size: Some(3),
                sha256: Some("ab".into()),
                notes: Some("say \"hi\", twice\nplease".into()),
                ..Entry::default()
            }],
        };
        let csv = to_csv(&inv);
        let mut lines = csv.split("\r\n");
        assert_eq!(
            lines.next(),
            Some("volid,storage,content,size,sha256,origin,url,os,verification,protected,notes")
        );
        assert_eq!(
            lines.next(),
            Some("local:iso/a.iso,local,iso,3,ab,,,,,0,\"say \"\"hi\"\", twice\nplease\"")
        );
    }

    #[test]
    fn only_http_sources_can_be_fetched_again() {
        let mut e = Entry::default();
        assert_eq!(e.url(), None);
        e.source = Some(catalog::Source {
            url: Some("file:///root/x.iso".into()),
            ..catalog::Source::default()
        });
        assert_eq!(e.url(), None);
        e.source = Some(catalog::Source {
            url: Some("https://mirror/x.iso".into()),
            ..catalog::Source::default()
        });
        assert_eq!(e.url(), Some("https://mirror/x.iso"));
        e.volid = "local:iso/x.iso".into();
        assert_eq!(e.volname(), "iso/x.iso");
    }
}
