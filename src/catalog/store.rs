//! Where records live: beside the volumes, in a hidden directory of each content directory
//! (`template/iso/.isolib-catalog/<name>.json`). So a shared storage shares its records, a
//! reinstalled daemon finds them, and a content directory mounted on its own carries its
//! records along. PVE's listings take files with volume names only, so none shows them.
//! The file is the truth: a record whose stamp (size, mtime, inode) no longer matches its file
//! describes another file and is not used.

use std::io;
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::record::{RECORD_VERSION, Record, Stamp};
use crate::fsutil;

pub const CATALOG_DIR: &str = ".isolib-catalog";

/// Longest file name most file systems take.
const NAME_MAX: usize = 255;

/// What is known about a volume file.
#[derive(Debug)]
pub enum Lookup {
    /// A record of this very file.
    Fresh(Record),
    /// A record of an earlier file under this name (or of an older format); what the user
    /// set on it (notes, protection) carries over when it is rebuilt.
    Stale(Record),
    Missing,
}

impl Lookup {
    pub fn fresh(self) -> Option<Record> {
        match self {
            Lookup::Fresh(r) => Some(r),
            _ => None,
        }
    }
}

/// The record file of the volume at `volume`.
pub fn record_path(volume: &Path) -> PathBuf {
    let dir = volume.parent().unwrap_or(Path::new("/")).join(CATALOG_DIR);
    let name = volume
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.len() + ".json".len() <= NAME_MAX {
        dir.join(format!("{name}.json"))
    } else {
        // PVE allows 255-byte volume names; the record then goes by the name's digest.
        let digest = sha2::Sha256::digest(name.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        dir.join(format!("{hex}.json"))
    }
}

/// The record of `volume` and whether it still describes the file there. Blocking.
pub fn load(volume: &Path) -> io::Result<Lookup> {
    let meta = std::fs::metadata(volume)?;
    let text = match std::fs::read(record_path(volume)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Missing),
        Err(e) => return Err(e),
    };
    let Ok(record) = serde_json::from_slice::<Record>(&text) else {
        tracing::warn!(
            "unreadable catalog record {}; it will be rebuilt",
            record_path(volume).display()
        );
        return Ok(Lookup::Missing);
    };
    Ok(
        if record.version == RECORD_VERSION && record.stamp == Stamp::of(&meta) {
            Lookup::Fresh(record)
        } else {
            Lookup::Stale(record)
        },
    )
}

/// Writes `record` for `volume`, atomically and durably. Blocking.
pub fn save(volume: &Path, record: &Record) -> io::Result<()> {
    let path = record_path(volume);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    text.push(b'\n');
    fsutil::replace_file(&path, &fsutil::temp_beside(&path), &text, 0o644)
}

/// Forgets `volume`'s record (the volume was removed). Blocking.
pub fn remove(volume: &Path) -> io::Result<()> {
    match std::fs::remove_file(record_path(volume)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the records in content directory `dir` whose volume is gone (removed by hand or by
/// PVE itself) and that were last written longer than `grace` ago: a download writes its
/// record just before its volume appears. Blocking; returns how many went.
pub fn remove_orphans(dir: &Path, grace: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir.join(CATALOG_DIR)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(volume) = name.strip_suffix(".json") else {
            continue;
        };
        // A digest name (a volume name too long to use) cannot be traced back: kept.
        if volume.len() == 64 && volume.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let old = fsutil::age(&entry).is_some_and(|age| age >= grace);
        if old && !dir.join(volume).exists() && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::record::{Facts, Source};

    fn record_of(path: &Path) -> Record {
        let stamp = Stamp::of(&std::fs::metadata(path).expect("stat"));
        Record::new(
            Facts {
                sha256: "ab".repeat(32),
                stamp,
                ..Facts::default()
            },
            Source::default(),
        )
    }

    #[test]
    fn a_record_is_fresh_until_its_file_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let vol = dir.path().join("a.iso");
        std::fs::write(&vol, b"one").expect("write");
        assert!(matches!(load(&vol).expect("load"), Lookup::Missing));
        let mut rec = record_of(&vol);
        rec.notes = Some("kept".into());
        save(&vol, &rec).expect("save");
        assert!(dir.path().join(".isolib-catalog/a.iso.json").is_file());
        assert_eq!(load(&vol).expect("load").fresh(), Some(rec.clone()));
        // Same size, another inode: a different file under the old name.
        let other = dir.path().join("b.iso");
        std::fs::write(&other, b"two").expect("write");
        std::fs::rename(&other, &vol).expect("rename");
        match load(&vol).expect("load") {
            Lookup::Stale(old) => assert_eq!(old.notes.as_deref(), Some("kept")),
            other => panic!("expected stale, got {other:?}"),
        }
        remove(&vol).expect("remove");
        remove(&vol).expect("removing twice is fine");
        assert!(matches!(load(&vol).expect("load"), Lookup::Missing));
    }

    #[test]
    fn orphans_go_after_the_grace_time_and_records_of_volumes_stay() {
        let dir = tempfile::tempdir().expect("tmp");
        let kept = dir.path().join("kept.iso");
        let gone = dir.path().join("gone.iso");
        for vol in [&kept, &gone] {
            std::fs::write(vol, b"v").expect("write");
            save(vol, &record_of(vol)).expect("save");
        }
        std::fs::remove_file(&gone).expect("rm");
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(remove_orphans(dir.path(), hour), 0, "too young");
        assert_eq!(remove_orphans(dir.path(), std::time::Duration::ZERO), 1);
        assert!(record_path(&kept).exists() && !record_path(&gone).exists());
    }

    #[test]
    fn a_long_name_gets_a_digest_name_and_garbage_is_missing() {
        let dir = tempfile::tempdir().expect("tmp");
        let long = format!("{}.iso", "x".repeat(251));
        let vol = dir.path().join(&long);
        let path = record_path(&vol);
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert_eq!(file.len(), 64 + 5);
        let vol = dir.path().join("c.iso");
        std::fs::write(&vol, b"c").expect("write");
        std::fs::create_dir_all(record_path(&vol).parent().expect("dir")).expect("mkdir");
        std::fs::write(record_path(&vol), b"{not json").expect("write");
        assert!(matches!(load(&vol).expect("load"), Lookup::Missing));
    }
}
