//! Tracked releases: where a distribution announces its images (a checksum file, a directory
//! index, Alpine's `latest-releases.yaml`, Fedora CoreOS's stream JSON), a pattern whose first
//! capture is the version, and how many releases to keep. The daemon polls each track
//! (`poll`), downloads a newer release through the normal path and applies retention
//! (`library::retention`).
//!
//! Each track is one JSON file `<state-dir>/tracks/<name>.json` holding its definition and
//! what its polls found, replaced atomically.

pub mod discover;
pub mod poll;
pub mod version;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_INTERVAL: u64 = 86_400;

/// A structured release feed, instead of a pattern over file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feed {
    /// Alpine's `latest-releases.yaml`: the `iso` of the entry whose `flavor` the pattern
    /// matches, with its `version` and `sha256`.
    Alpine,
    /// Fedora CoreOS's stream JSON: the x86_64 `metal` ISO, with its `release` and `sha256`.
    Fcos,
}

impl Feed {
    pub fn parse(s: &str) -> Option<Feed> {
        match s {
            "alpine" => Some(Feed::Alpine),
            "fcos" => Some(Feed::Fcos),
            _ => None,
        }
    }
}

/// What the operator declared.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Track {
    pub name: String,
    pub storage: String,
    pub content: String,
    /// The checksum file, the directory index or the feed.
    pub url: String,
    /// Matched against a whole file name; the first capture group is the version. For the
    /// Alpine feed, against the flavor.
    pub pattern: Option<String>,
    pub feed: Option<Feed>,
    pub signature_url: Option<String>,
    pub keyring: Option<String>,
    /// Releases kept; none: every release stays.
    pub keep: Option<u32>,
    /// Seconds between polls.
    pub interval: u64,
}

/// A release a poll found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub version: String,
    /// The file name it is stored under.
    pub name: String,
    pub url: String,
}

/// A release of this track present in its storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub version: String,
    pub volid: String,
}

/// What the polls found.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrackState {
    pub latest: Option<Release>,
    /// Newest first.
    #[serde(default)]
    pub held: Vec<Held>,
    pub last_poll: Option<i64>,
    pub last_change: Option<i64>,
    pub error: Option<String>,
    /// The validators of the announcement as last fetched, for a conditional request.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The UPID of the last task a poll started.
    pub task: Option<String>,
}

impl TrackState {
    pub fn current(&self) -> Option<&Held> {
        self.held.first()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub track: Track,
    #[serde(default)]
    pub state: TrackState,
}

#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("track '{0}' does not exist")]
    Missing(String),
    #[error("track '{0}' already exists")]
    Exists(String),
    #[error("unable to read track '{name}': {reason}")]
    Read { name: String, reason: String },
    #[error("unable to write track '{name}': {source}")]
    Write {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// The directory of the track files.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("tracks")
}

fn path(state_dir: &Path, name: &str) -> PathBuf {
    dir(state_dir).join(format!("{name}.json"))
}

pub fn load(state_dir: &Path, name: &str) -> Result<Entry, TrackError> {
    let text = match std::fs::read(path(state_dir, name)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TrackError::Missing(name.to_owned()));
        }
        Err(e) => {
            return Err(TrackError::Read {
                name: name.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    serde_json::from_slice(&text).map_err(|e| TrackError::Read {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Every track, sorted by name; one that cannot be read is skipped with a warning.
pub fn load_all(state_dir: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir(state_dir)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".json")
                .filter(|s| !s.starts_with('.'))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
        .iter()
        .filter_map(|n| match load(state_dir, n) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        })
        .collect()
}

pub fn save(state_dir: &Path, entry: &Entry) -> Result<(), TrackError> {
    let name = &entry.track.name;
    let write_err = |source| TrackError::Write {
        name: name.clone(),
        source,
    };
    std::fs::create_dir_all(dir(state_dir)).map_err(write_err)?;
    let p = path(state_dir, name);
    let text = serde_json::to_vec_pretty(entry).map_err(|e| write_err(e.into()))?;
    crate::fsutil::replace_file(&p, &crate::fsutil::temp_beside(&p), &text, 0o600)
        .map_err(write_err)
}

/// Creates a track; an existing one of that name is an error.
pub fn create(state_dir: &Path, track: Track) -> Result<(), TrackError> {
    if path(state_dir, &track.name).exists() {
        return Err(TrackError::Exists(track.name));
    }
    save(
        state_dir,
        &Entry {
            track,
            state: TrackState::default(),
        },
    )
}

pub fn remove(state_dir: &Path, name: &str) -> Result<(), TrackError> {
    match std::fs::remove_file(path(state_dir, name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(TrackError::Missing(name.to_owned()))
        }
        Err(source) => Err(TrackError::Write {
            name: name.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(name: &str) -> Track {
        Track {
            name: name.into(),
            storage: "local".into(),
            content: "iso".into(),
            url: "http://o/SHA256SUMS".into(),
            pattern: Some(r"debian-([0-9.]+)-amd64-netinst\.iso".into()),
            feed: None,
            signature_url: None,
            keyring: None,
            keep: Some(2),
            interval: DEFAULT_INTERVAL,
        }
    }

    #[test]
    fn tracks_are_created_listed_and_removed() {
        let d = tempfile::tempdir().expect("tempdir");
        create(d.path(), track("b")).expect("create");
        create(d.path(), track("a")).expect("create");
        assert!(matches!(
            create(d.path(), track("a")),
            Err(TrackError::Exists(_))
        ));
        let all = load_all(d.path());
        assert_eq!(
            all.iter()
                .map(|e| e.track.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(all[0].track, track("a"));
        remove(d.path(), "a").expect("remove");
        assert!(matches!(load(d.path(), "a"), Err(TrackError::Missing(_))));
        assert!(matches!(remove(d.path(), "a"), Err(TrackError::Missing(_))));
    }
}
