//! Which OS an ISO is, by osinfo-db's media entries (Debian's `osinfo-db` package in
//! `/usr/share/osinfo`): the vocabulary of libosinfo, virt-install and Glance's `os_distro`.
//! The rules are libosinfo's (`osinfo_db.c` compare_media): an entry that sets none of volume
//! id, system id, publisher, application and volume size never matches; each one it sets must
//! match, the texts as regular expressions found anywhere in the ISO's field, the size
//! exactly. The first matching entry, in file and document order, is the answer; no match is
//! no answer, never a guess.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use quick_xml::events::{BytesStart, Event};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::iso9660::IsoInfo;

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsMatch {
    /// The short id, e.g. `debian11`: Glance's `os_distro` vocabulary.
    pub id: String,
    pub name: String,
    pub version: Option<String>,
    pub arch: Option<String>,
    pub variant: Option<String>,
}

/// One `<media>` with an `<iso>` block.
#[derive(Debug)]
struct Media {
    os: OsMatch,
    volume_id: Option<Regex>,
    system_id: Option<Regex>,
    publisher: Option<Regex>,
    application: Option<Regex>,
    volume_size: Option<u64>,
}

impl Media {
    fn matches(&self, iso: &IsoInfo) -> bool {
        let found = |re: &Option<Regex>, text: &str| re.as_ref().is_none_or(|re| re.is_match(text));
        let decides = self.volume_id.is_some()
            || self.system_id.is_some()
            || self.publisher.is_some()
            || self.application.is_some()
            || self.volume_size.is_some();
        decides
            && found(&self.volume_id, &iso.volume_id)
            && found(&self.system_id, &iso.system_id)
            && found(&self.publisher, &iso.publisher)
            && found(&self.application, &iso.application)
            && self.volume_size.is_none_or(|s| s == iso.volume_size)
    }
}

#[derive(Debug, Default)]
pub struct OsinfoDb {
    media: Vec<Media>,
}

impl OsinfoDb {
    /// Reads every `os/**/*.xml` under `dir`. A missing directory is an empty database; a file
    /// that does not parse, or an expression the regex engine does not take, is skipped.
    pub fn load(dir: &Path) -> OsinfoDb {
        let mut files = Vec::new();
        collect_xml(&dir.join("os"), &mut files);
        files.sort();
        let mut db = OsinfoDb::default();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => {
                    if let Err(e) = parse_into(&text, &mut db.media) {
                        tracing::debug!("osinfo-db: skipping {}: {e}", file.display());
                    }
                }
                Err(e) => tracing::debug!("osinfo-db: cannot read {}: {e}", file.display()),
            }
        }
        db
    }

    pub fn identify(&self, iso: &IsoInfo) -> Option<OsMatch> {
        self.media
            .iter()
            .find(|m| m.matches(iso))
            .map(|m| m.os.clone())
    }

    pub fn len(&self) -> usize {
        self.media.len()
    }

    pub fn is_empty(&self) -> bool {
        self.media.is_empty()
    }
}

/// The database of `dir`, read once per process (it is a few thousand entries; reading it
/// takes a moment, and the package changes only on upgrades, which restart the daemon).
pub fn shared(dir: &Path) -> Arc<OsinfoDb> {
    static CACHE: Mutex<Option<(PathBuf, Arc<OsinfoDb>)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((cached, db)) = cache.as_ref()
        && cached == dir
    {
        return db.clone();
    }
    let db = Arc::new(OsinfoDb::load(dir));
    *cache = Some((dir.to_path_buf(), db.clone()));
    db
}

fn collect_xml(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_xml(&path, out);
        } else if path.extension().is_some_and(|e| e == "xml") {
            out.push(path);
        }
    }
}

/// The OS being read and the media entry inside it.
#[derive(Default)]
struct OsState {
    id: Option<String>,
    name: Option<String>,
    version: Option<String>,
    media: Option<MediaState>,
}

#[derive(Default)]
struct MediaState {
    arch: Option<String>,
    variant: Option<String>,
    has_iso: bool,
    volume_id: Option<String>,
    system_id: Option<String>,
    publisher: Option<String>,
    application: Option<String>,
    volume_size: Option<String>,
}

fn parse_into(text: &str, out: &mut Vec<Media>) -> Result<(), quick_xml::Error> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut value = String::new();
    let mut localized = false;
    let mut os = OsState::default();
    let mut done: Vec<MediaState> = Vec::new();
    let mut pending: Vec<Media> = Vec::new();
    loop {
        match reader.read_event()? {
            Event::Start(e) => {
                let name = local(&e);
                value.clear();
                localized = e.try_get_attribute("xml:lang").ok().flatten().is_some();
                match (path_tail(&path).as_slice(), name.as_str()) {
                    (["libosinfo"], "os") => os = OsState::default(),
                    ([.., "os"], "media") => {
                        os.media = Some(MediaState {
                            arch: attribute(&e, "arch"),
                            ..MediaState::default()
                        })
                    }
                    ([.., "media"], "iso") => {
                        if let Some(m) = os.media.as_mut() {
                            m.has_iso = true;
                        }
                    }
                    _ => {}
                }
                path.push(name);
            }
            Event::Empty(e) => {
                if local(&e) == "variant"
                    && path_tail(&path).ends_with(&["media"])
                    && let Some(m) = os.media.as_mut()
                {
                    m.variant = attribute(&e, "id");
                }
            }
            Event::Text(t) => value.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    value.push(c);
                } else {
                    value.push_str(match &*r {
                        "lt" => "<",
                        "gt" => ">",
                        "amp" => "&",
                        "apos" => "'",
                        "quot" => "\"",
                        _ => "",
                    });
                }
            }
            Event::End(_) => {
                let Some(name) = path.pop() else { continue };
                let v = || Some(value.trim().to_owned());
                match (path_tail(&path).as_slice(), name.as_str()) {
                    ([.., "libosinfo", "os"], "short-id") if os.id.is_none() => os.id = v(),
                    ([.., "libosinfo", "os"], "name") if !localized => os.name = v(),
                    ([.., "libosinfo", "os"], "version") => os.version = v(),
                    ([.., "iso"], field) => {
                        if let Some(m) = os.media.as_mut() {
                            match field {
                                "volume-id" => m.volume_id = v(),
                                "system-id" => m.system_id = v(),
                                "publisher-id" => m.publisher = v(),
                                "application-id" => m.application = v(),
                                "volume-size" => m.volume_size = v(),
                                _ => {}
                            }
                        }
                    }
                    ([.., "os"], "media") => {
                        if let Some(m) = os.media.take().filter(|m| m.has_iso) {
                            done.push(m);
                        }
                    }
                    (["libosinfo"], "os") => {
                        for m in done.drain(..) {
                            if let Some(media) = finish_media(&os, m) {
                                pending.push(media);
                            }
                        }
                    }
                    _ => {}
                }
                value.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out.append(&mut pending);
    Ok(())
}

fn finish_media(os: &OsState, m: MediaState) -> Option<Media> {
    let re = |s: &Option<String>| -> Result<Option<Regex>, ()> {
        s.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| Regex::new(s).map_err(|_| ()))
            .transpose()
    };
    Some(Media {
        os: OsMatch {
            id: os.id.clone()?,
            name: os.name.clone().unwrap_or_default(),
            version: os.version.clone(),
            arch: m.arch.clone(),
            variant: m.variant.clone(),
        },
        volume_id: re(&m.volume_id).ok()?,
        system_id: re(&m.system_id).ok()?,
        publisher: re(&m.publisher).ok()?,
        application: re(&m.application).ok()?,
        volume_size: match m.volume_size {
            Some(s) => Some(s.parse().ok()?),
            None => None,
        },
    })
}

fn path_tail(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

fn local(e: &BytesStart) -> String {
    e.local_name().as_ref().to_owned()
}

fn attribute(e: &BytesStart, name: &str) -> Option<String> {
    let a = e.try_get_attribute(name).ok()??;
    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
        .ok()
        .map(|v| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = r#"<?xml version="1.0"?>
<libosinfo version="0.0.1">
  <os id="http://debian.org/debian/11">
    <short-id>debian11</short-id>
    <short-id>debianbullseye</short-id>
    <name>Debian 11</name>
    <name xml:lang="ko">&#xB370;&#xBE44;&#xC548; 11</name>
    <version>11</version>
    <variant id="universal-netinst"><name>Debian 11</name></variant>
    <media arch="x86_64">
      <variant id="universal-netinst"/>
      <url>https://example.invalid/debian-11.5.0-amd64-netinst.iso</url>
      <iso>
        <volume-id>Debian 11.\d+.\d+ amd64 n</volume-id>
      </iso>
      <kernel>install.amd/vmlinuz</kernel>
    </media>
    <media arch="aarch64">
      <iso><volume-id>Debian 11.\d+.\d+ arm64 n</volume-id><system-id>LINUX</system-id></iso>
    </media>
    <media arch="x86_64"><url>https://example.invalid/no-iso-block</url></media>
  </os>
  <os id="http://example.invalid/sized/1">
    <short-id>sized1</short-id>
    <name>Sized &amp; Exact</name>
    <media arch="i686"><iso><volume-size>4096</volume-size></iso></media>
    <media arch="i686"><iso><volume-id>(?&lt;=lookbehind)x</volume-id></iso></media>
  </os>
</libosinfo>"#;

    fn db() -> OsinfoDb {
        let mut db = OsinfoDb::default();
        parse_into(DB, &mut db.media).expect("parses");
        db
    }

    fn iso(volume_id: &str, system_id: &str, size: u64) -> IsoInfo {
        IsoInfo {
            volume_id: volume_id.into(),
            system_id: system_id.into(),
            volume_size: size,
            ..IsoInfo::default()
        }
    }

    #[test]
    fn matches_by_regex_anywhere_in_the_field_and_names_the_entry() {
        let db = db();
        // The lookbehind expression is skipped; the entry without <iso> is not media.
        assert_eq!(db.len(), 3);
        let m = db
            .identify(&iso("Debian 11.5.0 amd64 n", "", 1 << 20))
            .expect("a match");
        assert_eq!(
            m,
            OsMatch {
                id: "debian11".into(),
                name: "Debian 11".into(),
                version: Some("11".into()),
                arch: Some("x86_64".into()),
                variant: Some("universal-netinst".into()),
            }
        );
    }

    #[test]
    fn every_field_an_entry_sets_must_match() {
        let db = db();
        assert_eq!(db.identify(&iso("Debian 11.5.0 arm64 n", "", 1)), None);
        let arm = db
            .identify(&iso("Debian 11.5.0 arm64 n", "LINUX", 1))
            .expect("arm");
        assert_eq!(arm.arch.as_deref(), Some("aarch64"));
        assert_eq!(arm.variant, None);
        let sized = db.identify(&iso("ANYTHING", "", 4096)).expect("sized");
        assert_eq!(sized.name, "Sized & Exact");
        assert_eq!(db.identify(&iso("ANYTHING", "", 4097)), None);
        assert_eq!(db.identify(&iso("Debian 12.1.0 amd64 n", "", 1)), None);
    }

    #[test]
    fn no_database_matches_nothing() {
        let empty = OsinfoDb::load(Path::new("/nonexistent/osinfo"));
        assert!(empty.is_empty());
        assert_eq!(empty.identify(&iso("Debian 11.5.0 amd64 n", "", 1)), None);
    }
}
