//! The resume state of a download, kept next to its temp file, so a download cut off by a crash
//! can go on from the bytes on disk when it is asked for again; and the collection of partial
//! downloads nobody picked up (architecture invariant 2).
//!
//! # Files
//!
//! One download is a group of files in a storage's staging directory that share the base name
//! `<file>.<node>-<uuid>` (`<node>` lets daemons share a storage and each touch only its own):
//!
//! - `<base>.json`: a [`PartialState`], written before the temp file exists and replaced
//!   (`<base>.json.tmp`, then rename) whenever it changes, so a reader sees a whole state or
//!   none;
//! - `<base>.part`: the bytes so far (the decoded output when decompressing).
//!
//! A group without a readable state is garbage: it can never be resumed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::inflight::{Inflight, Needs};
use super::segment_writer::SegmentState;
use super::{Checksum, DownloadPlan};

/// The state's `format`; a state of another format is not understood and treated as garbage.
pub const FORMAT: u32 = 1;

/// The `format` of a state with segments. A daemon from before segments reads format 1 only:
/// it would take the file, whose gaps are zeros, for contiguous bytes.
const SEGMENTED_FORMAT: u32 = 2;

const PART: &str = ".part";
const STATE: &str = ".json";
const STATE_TMP: &str = ".json.tmp";

/// What resuming a partial download needs, as `<base>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PartialState {
    pub format: u32,
    /// The file the download publishes to.
    pub target: PathBuf,
    pub url: String,
    /// The origin's strong ETag or Last-Modified for the bytes in `.part`, sent as `If-Range`.
    pub validator: Option<String>,
    /// The length the origin announced.
    pub length: Option<u64>,
    pub checksum_algorithm: Option<String>,
    pub checksum: Option<String>,
    pub compression: Option<String>,
    /// Whether the origin's certificate was checked; a state from before this field counts as
    /// unchecked.
    #[serde(default)]
    pub verify_certificates: bool,
    /// Leading bytes of `.part` that were fdatasynced before this state was written.
    pub synced: u64,
    /// A download over several connections: its segments, each with its leading bytes that
    /// were fdatasynced before this state was written (segmented.rs). Empty for one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentState>,
    /// The kernel's boot id when this was written. Within one boot a crash of the daemon loses
    /// nothing the kernel already has, so the whole length of `.part` is good; after a reboot
    /// only `synced` is.
    pub boot_id: Option<String>,
}

impl PartialState {
    /// The state of a download of `plan` that has not received anything yet.
    pub fn new(plan: &DownloadPlan) -> PartialState {
        PartialState {
            url: plan.url.clone(),
            checksum_algorithm: plan.checksum.as_ref().map(|c| c.algorithm.name().into()),
            checksum: plan.checksum.as_ref().map(|c| c.expected.clone()),
            compression: plan.compression.clone().filter(|c| !c.is_empty()),
            verify_certificates: plan.verify_certificates,
            ..PartialState::for_target(plan.dest.clone(), String::new())
        }
    }

    /// The state of a transfer to `target` from `source` (no URL a download could ask for
    /// again: nothing adopts it but the collector).
    pub fn for_target(target: PathBuf, url: String) -> PartialState {
        PartialState {
            format: FORMAT,
            target,
            url,
            validator: None,
            length: None,
            checksum_algorithm: None,
            checksum: None,
            compression: None,
            verify_certificates: false,
            synced: 0,
            segments: Vec::new(),
            boot_id: boot_id(),
        }
    }

    /// `plan` asks for the download this state belongs to: same target and URL, no checksum
    /// that contradicts the one asked before, and bytes fetched with certificates checked if
    /// `plan` checks them and has no checksum. The digest is recomputed from the bytes on disk
    /// anyway, so another algorithm is no contradiction.
    pub fn same_download(&self, plan: &DownloadPlan) -> bool {
        let conflict = match (&plan.checksum, &self.checksum_algorithm, &self.checksum) {
            (
                Some(Checksum {
                    algorithm,
                    expected,
                }),
                Some(alg),
                Some(value),
            ) => algorithm.name() == alg && !expected.eq_ignore_ascii_case(value),
            _ => false,
        };
        self.target == plan.dest
            && self.url == plan.url
            && !conflict
            && Needs {
                verified: plan.verify_certificates,
                checksum: plan.checksum.is_some(),
            }
            .met_by(self.verify_certificates)
    }

    /// How many leading bytes of a `.part` file of `len` bytes hold the download.
    pub fn usable(&self, len: u64) -> u64 {
        if !self.segments.is_empty() {
            // The file has its full length from the start, with gaps between the segments:
            // only what was synced counts.
            let prefix = super::segment_writer::prefix(&self.segments, |i| self.segments[i].synced);
            return prefix.min(len);
        }
        let same_boot = self.boot_id.is_some() && self.boot_id == boot_id();
        if same_boot { len } else { self.synced.min(len) }
    }

    fn expected_format(&self) -> u32 {
        if self.segments.is_empty() {
            FORMAT
        } else {
            SEGMENTED_FORMAT
        }
    }

    /// Reads a state file; `None` when it is missing, unreadable or of another format.
    pub fn load(path: &Path) -> Option<PartialState> {
        let text = fs::read(path).ok()?;
        serde_json::from_slice::<PartialState>(&text)
            .ok()
            .filter(|s| s.format == s.expected_format())
    }

    /// Replaces the state file at `path` in one rename, stamped with the current boot.
    pub fn store(&mut self, path: &Path) -> io::Result<()> {
        self.boot_id = boot_id();
        self.format = self.expected_format();
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let tmp = with_suffix(path, STATE_TMP, STATE);
        crate::fsutil::replace_file(path, &tmp, &text, 0o600)
    }
}

/// The kernel's random id of the running boot.
fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `path` with `from` at its end replaced by `to`.
fn with_suffix(path: &Path, to: &str, from: &str) -> PathBuf {
    let name = path.to_string_lossy();
    PathBuf::from(format!("{}{to}", name.strip_suffix(from).unwrap_or(&name)))
}

/// The state file that belongs to the temp file `part`.
pub fn state_path(part: &Path) -> PathBuf {
    with_suffix(part, STATE, PART)
}

/// A partial download of this node in a staging directory.
pub struct Group {
    /// `<dir>/<file>.<node>-<uuid>`, without suffix.
    base: PathBuf,
    /// `<node>-<uuid>`
    tag: String,
}

impl Group {
    /// Recognises the files of `node`: `<file>.<node>-<32 hex>` plus one of the suffixes.
    fn parse(dir: &Path, name: &str, node: &str) -> Option<Group> {
        let base = [STATE_TMP, STATE, PART]
            .iter()
            .find_map(|s| name.strip_suffix(s))?;
        let (_, tag) = base.rsplit_once('.')?;
        let (owner, uuid) = tag.rsplit_once('-')?;
        let is_uuid = uuid.len() == 32 && uuid.bytes().all(|b| b.is_ascii_hexdigit());
        (owner == node && is_uuid).then(|| Group {
            base: dir.join(base),
            tag: tag.to_string(),
        })
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn part(&self) -> PathBuf {
        with_suffix(&self.base, PART, "")
    }

    pub fn state(&self) -> PathBuf {
        with_suffix(&self.base, STATE, "")
    }

    fn files(&self) -> [PathBuf; 3] {
        [
            self.part(),
            self.state(),
            with_suffix(&self.base, STATE_TMP, ""),
        ]
    }

    /// The newest modification time among its files.
    fn modified(&self) -> Option<SystemTime> {
        self.files()
            .iter()
            .filter_map(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
            .max()
    }

    /// Deletes its files, the temp file first, so an interrupted removal leaves garbage that
    /// the next collection recognises.
    pub fn remove(&self) -> io::Result<()> {
        for p in self.files() {
            match fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The groups of `node` in `dir`, each once.
fn groups(dir: &Path, node: &str) -> io::Result<Vec<Group>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out: Vec<Group> = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(g) = Group::parse(dir, &name, node)
            && !out.iter().any(|o| o.base == g.base)
        {
            out.push(g);
        }
    }
    Ok(out)
}

/// A partial download whose state names `target` and whose temp file exists.
pub struct Found {
    pub group: Group,
    pub state: PartialState,
}

/// The partial downloads of `node` in `dir` for `target`.
pub fn find(dir: &Path, node: &str, target: &Path) -> Vec<Found> {
    groups(dir, node)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|group| {
            let state = PartialState::load(&group.state())?;
            (state.target == target && group.part().is_file()).then_some(Found { group, state })
        })
        .collect()
}

/// Removes the partial downloads of `node` in `dir` that no running transfer owns and that
/// can no longer be resumed: garbage (no readable state), a state without its temp file, or
/// nothing touched for `keep`. Returns how many were removed.
pub fn collect(
    dir: &Path,
    node: &str,
    keep: Duration,
    inflight: &Inflight,
    now: SystemTime,
) -> io::Result<usize> {
    let mut removed = 0;
    for group in groups(dir, node)? {
        let state = PartialState::load(&group.state());
        let expired = match &state {
            None => true,
            Some(_) if !group.part().is_file() => true,
            Some(_) => group
                .modified()
                .and_then(|m| now.duration_since(m).ok())
                .is_none_or(|age| age >= keep),
        };
        if !expired {
            continue;
        }
        let target = state.as_ref().map(|s| s.target.as_path());
        // Decided outside the lock; removed under it, so a transfer cannot take the group
        // over in between.
        if let Some(result) = inflight.unless_owned(target, group.tag(), || group.remove()) {
            result?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::super::inflight::{Entry, RequestKey};
    use super::super::{Algorithm, ContentCheck, new_tag};
    use super::*;

    fn plan(dir: &Path, url: &str, sum: Option<&str>) -> DownloadPlan {
        DownloadPlan {
            checksum: sum.map(|s| Checksum {
                algorithm: Algorithm::Sha256,
                expected: s.into(),
            }),
            check: ContentCheck::for_download("iso", None),
            ..DownloadPlan::new(
                url.into(),
                dir.join("x.iso"),
                dir.join(".isolib-partial"),
                "iso",
                "n1",
                "root@pam".into(),
            )
        }
    }

    /// Writes a group with a state for `p` and `data` as its temp file.
    fn partial(dir: &Path, p: &DownloadPlan, data: &[u8]) -> Group {
        fs::create_dir_all(dir).expect("mkdir");
        let tag = new_tag("n1");
        let group = Group {
            base: dir.join(format!("x.iso.{tag}")),
            tag,
        };
        PartialState::new(p).store(&group.state()).expect("state");
        fs::write(group.part(), data).expect("part");
        group
    }

    #[test]
    fn state_round_trip_and_same_download() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = plan(dir.path(), "http://o/x.iso", Some("AB"));
        let g = partial(&dir.path().join("s"), &p, b"123");
        let s = PartialState::load(&g.state()).expect("load");
        assert_eq!(s.checksum_algorithm.as_deref(), Some("sha256"));
        assert!(s.same_download(&p));
        assert!(s.same_download(&plan(dir.path(), "http://o/x.iso", None)));
        assert!(s.same_download(&plan(dir.path(), "http://o/x.iso", Some("ab"))));
        assert!(!s.same_download(&plan(dir.path(), "http://o/x.iso", Some("cd"))));
        assert!(!s.same_download(&plan(dir.path(), "http://o/y.iso", None)));
        let unverified = PartialState {
            verify_certificates: false,
            ..s.clone()
        };
        assert!(!unverified.same_download(&plan(dir.path(), "http://o/x.iso", None)));
        assert!(
            unverified.same_download(&p),
            "a checksum checks the bytes anyway"
        );
        let found = find(&dir.path().join("s"), "n1", &p.dest);
        assert_eq!(found.len(), 1);
        assert!(find(&dir.path().join("s"), "n2", &p.dest).is_empty());
    }

    #[test]
    fn after_a_reboot_only_synced_bytes_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = PartialState::new(&plan(dir.path(), "u", None));
        s.synced = 100;
        assert_eq!(s.usable(150), 150, "same boot: the page cache survived");
        s.boot_id = Some("another boot".into());
        assert_eq!(s.usable(150), 100);
        assert_eq!(s.usable(50), 50);
        s.boot_id = None;
        assert_eq!(s.usable(150), 100);
    }

    /// A state with segments is format 2, which a daemon from before segments does not read;
    /// only the synced bytes of its segments count, up to the first gap, whatever the boot.
    #[test]
    fn a_segmented_state_has_its_own_format_and_counts_its_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.json");
        let mut s = PartialState::new(&plan(dir.path(), "u", None));
        s.segments = vec![
            SegmentState {
                start: 0,
                end: 10,
                synced: 10,
            },
            SegmentState {
                start: 20,
                end: 30,
                synced: 5,
            },
            SegmentState {
                start: 10,
                end: 20,
                synced: 4,
            },
        ];
        s.store(&path).expect("store");
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.contains("\"format\": 2"), "{text}");
        let loaded = PartialState::load(&path).expect("load");
        assert_eq!(loaded.usable(30), 14);
        let old = text.replace("\"format\": 2", "\"format\": 1");
        fs::write(&path, old).expect("write");
        assert!(
            PartialState::load(&path).is_none(),
            "format 1 with segments"
        );
        s.segments.clear();
        s.store(&path).expect("store");
        assert_eq!(PartialState::load(&path).expect("load").format, FORMAT);
    }

    #[test]
    fn collection_keeps_fresh_and_owned_partials_and_removes_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = dir.path().join("s");
        let p = plan(dir.path(), "u", None);
        let kept = partial(&staging, &p, b"fresh");
        let garbage = partial(&staging, &p, b"bad state");
        fs::write(garbage.state(), b"{ not json").expect("corrupt");
        let lone_state = partial(&staging, &p, b"");
        fs::remove_file(lone_state.part()).expect("rm");
        let other_node = staging.join(format!("x.iso.{}.part", new_tag("n2")));
        fs::write(&other_node, b"x").expect("write");
        let unrelated = staging.join("notes.txt");
        fs::write(&unrelated, b"x").expect("write");

        let inflight = Inflight::default();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        assert_eq!(
            collect(&staging, "n1", day, &inflight, now).expect("collect"),
            2
        );
        assert!(kept.part().exists() && kept.state().exists());
        assert!(!garbage.part().exists() && !garbage.state().exists());
        assert!(!lone_state.state().exists());
        assert!(other_node.exists() && unrelated.exists());

        // Expired, but a running transfer owns its target: untouched.
        let key = RequestKey {
            url: "u".into(),
            compression: None,
            checksum: None,
            verify_certificates: true,
        };
        let later = now + 2 * day;
        let lead = inflight.enter(&p.dest, &key, "T1");
        assert_eq!(
            collect(&staging, "n1", day, &inflight, later).expect("collect"),
            0
        );
        assert!(kept.part().exists());
        drop(lead);
        assert_eq!(
            collect(&staging, "n1", day, &inflight, later).expect("collect"),
            1
        );
        assert!(!kept.part().exists() && !kept.state().exists());
        assert_eq!(
            collect(&dir.path().join("missing"), "n1", day, &inflight, now).expect("none"),
            0
        );

        // A transfer that is writing its first state has marked the tag as its own: the lone
        // temp state is not garbage yet.
        let tag = new_tag("n1");
        let starting = staging.join(format!("y.iso.{tag}.json.tmp"));
        fs::write(&starting, b"{").expect("write");
        let lead = inflight.enter(&dir.path().join("y.iso"), &key, "T2");
        let Entry::Lead(guard) = lead else {
            panic!("leads");
        };
        guard.own_staging(&tag);
        assert_eq!(
            collect(&staging, "n1", day, &inflight, later).expect("collect"),
            0
        );
        assert!(starting.exists());
        drop(guard);
        assert_eq!(
            collect(&staging, "n1", day, &inflight, later).expect("collect"),
            1
        );
        assert!(!starting.exists());
    }
}
