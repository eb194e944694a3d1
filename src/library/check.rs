//! One volume against its record: re-read and compared (verification), or read for a record it
//! lacks (adoption). A failed volume is never deleted and never made good by a re-read: only a
//! repair, which fetches the recorded bytes again, clears it.

use std::io;
use std::path::Path;

use crate::catalog::{self, Lookup, Origin, Record, Source, Verification, VerifyState};

use super::pace::Pacer;

/// What checking a volume found.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// The bytes are the recorded ones.
    Ok,
    /// They are not; the text says how.
    Failed(String),
    /// There was no record of this file (or one of an earlier file): it was read and recorded.
    Recorded,
}

/// Where a check reads from and how fast.
pub struct Reading<'a> {
    pub content: &'a str,
    pub osinfo_dir: &'a Path,
    pub rate: Option<u64>,
}

/// Verifies the volume at `path` against its record, or records it when it has none. The
/// record gets the outcome (`upid`: the task that verified). Blocking.
pub fn check(path: &Path, reading: &Reading, upid: Option<&str>) -> io::Result<Verdict> {
    let lookup = catalog::store::load(path)?;
    let mut pacer = Pacer::new(reading.rate);
    let facts = catalog::read_facts(path, reading.content, reading.osinfo_dir, |n| pacer.pace(n))?;
    let now = chrono::Utc::now().timestamp();
    let (mut record, verdict) = match lookup {
        Lookup::Fresh(mut record) => {
            let verdict = if facts.sha256 != record.sha256 {
                Verdict::Failed(format!(
                    "sha256 mismatch: got '{}' != expect '{}'",
                    facts.sha256, record.sha256
                ))
            } else if facts.stamp.size != record.size {
                Verdict::Failed(format!(
                    "size mismatch: got {} != expect {}",
                    facts.stamp.size, record.size
                ))
            } else {
                Verdict::Ok
            };
            // A failed volume keeps the record of what it should be.
            if verdict == Verdict::Ok {
                record.stamp = facts.stamp;
            }
            (record, verdict)
        }
        Lookup::Stale(old) => (rebuilt(facts, Some(old), now), Verdict::Recorded),
        // A user may have set attributes while the file was read (they wait in a stale
        // record, api/volume.rs): the new record keeps them.
        Lookup::Missing => match catalog::store::load(path)? {
            Lookup::Stale(set) => (rebuilt(facts, Some(set), now), Verdict::Recorded),
            _ => (rebuilt(facts, None, now), Verdict::Recorded),
        },
    };
    record.verification = Some(Verification {
        state: match verdict {
            Verdict::Failed(_) => VerifyState::Failed,
            Verdict::Ok | Verdict::Recorded => VerifyState::Ok,
        },
        time: now,
        upid: upid.map(str::to_owned),
    });
    catalog::store::save(path, &record)?;
    Ok(verdict)
}

/// A record of a file read now. What the user set on the old record stays; so does its
/// provenance when the bytes are still the ones it describes (a file copied back with a new
/// mtime, say).
fn rebuilt(facts: catalog::Facts, old: Option<Record>, now: i64) -> Record {
    let fresh_source = Source {
        origin: Origin::Adopted,
        time: now,
        ..Source::default()
    };
    let Some(old) = old else {
        return Record::new(facts, fresh_source);
    };
    let same_bytes = old.sha256 == facts.sha256;
    let mut record = Record::new(
        facts,
        if same_bytes {
            old.source.clone()
        } else {
            fresh_source
        },
    );
    if same_bytes {
        record.checksum = old.checksum.clone();
    }
    record.keep_attributes(old);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Reading<'static> {
        Reading {
            content: "iso",
            osinfo_dir: Path::new("/nonexistent"),
            rate: None,
        }
    }

    #[test]
    fn adopts_then_verifies_then_finds_corruption_and_keeps_what_it_should_be() {
        let dir = tempfile::tempdir().expect("tmp");
        let vol = dir.path().join("a.iso");
        std::fs::write(&vol, b"good bytes").expect("write");
        set_mtime(&vol, 1_700_000_000);
        assert_eq!(
            check(&vol, &reading(), None).expect("adopt"),
            Verdict::Recorded
        );
        let adopted = catalog::store::load(&vol)
            .expect("load")
            .fresh()
            .expect("fresh");
        assert_eq!(adopted.source.origin, Origin::Adopted);
        assert_eq!(
            check(&vol, &reading(), Some("UPID:x")).expect("verify"),
            Verdict::Ok
        );

        // Bit rot: same size, same mtime and inode, other bytes.
        std::fs::write(&vol, b"evil bytes").expect("write");
        set_mtime(&vol, 1_700_000_000);
        let verdict = check(&vol, &reading(), Some("UPID:y")).expect("verify");
        assert!(
            matches!(&verdict, Verdict::Failed(t) if t.starts_with("sha256 mismatch")),
            "{verdict:?}"
        );
        let failed = catalog::store::load(&vol)
            .expect("load")
            .fresh()
            .expect("fresh");
        assert!(failed.failed());
        assert_eq!(
            failed.sha256, adopted.sha256,
            "the record keeps the good hash"
        );
        assert_eq!(
            failed.verification.and_then(|v| v.upid).as_deref(),
            Some("UPID:y")
        );
    }

    #[test]
    fn a_file_touched_but_unchanged_keeps_its_provenance_and_notes() {
        let dir = tempfile::tempdir().expect("tmp");
        let vol = dir.path().join("a.iso");
        std::fs::write(&vol, b"bytes").expect("write");
        check(&vol, &reading(), None).expect("adopt");
        let mut rec = catalog::store::load(&vol)
            .expect("load")
            .fresh()
            .expect("fresh");
        rec.source.url = Some("http://origin/a.iso".into());
        rec.notes = Some("mine".into());
        catalog::store::save(&vol, &rec).expect("save");
        set_mtime(&vol, 1_000_000_000);
        assert_eq!(
            check(&vol, &reading(), None).expect("re-adopt"),
            Verdict::Recorded
        );
        let again = catalog::store::load(&vol)
            .expect("load")
            .fresh()
            .expect("fresh");
        assert_eq!(again.source.url.as_deref(), Some("http://origin/a.iso"));
        assert_eq!(again.notes.as_deref(), Some("mine"));
        // Other bytes: the notes stay, the provenance does not.
        std::fs::write(&vol, b"other").expect("write");
        check(&vol, &reading(), None).expect("re-adopt");
        let other = catalog::store::load(&vol)
            .expect("load")
            .fresh()
            .expect("fresh");
        assert_eq!(other.source.url, None);
        assert_eq!(other.notes.as_deref(), Some("mine"));
    }

    #[test]
    fn attributes_set_while_a_file_is_first_read_are_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let vol = dir.path().join("a.iso");
        std::fs::write(&vol, vec![7u8; 2 << 20]).expect("write");
        // Read at 4 MiB/s: half a second in which the user makes it public, as
        // api/volume.rs does for a file without a record (a stale record with the attribute).
        let slow = Reading {
            rate: Some(4 << 20),
            ..reading()
        };
        let path = vol.clone();
        let reader = std::thread::spawn(move || check(&path, &slow, None));
        std::thread::sleep(std::time::Duration::from_millis(100));
        let set = Record {
            access: catalog::VolumeAccess::Public,
            ..Record::default()
        };
        catalog::store::save(&vol, &set).expect("save");
        assert_eq!(
            reader.join().expect("join").expect("adopt"),
            Verdict::Recorded
        );
        let rec = catalog::store::load(&vol)
            .expect("load")
            .fresh()
            .expect("fresh");
        assert_eq!(rec.access, catalog::VolumeAccess::Public);
        assert_eq!(rec.source.origin, Origin::Adopted);
    }

    fn set_mtime(path: &Path, secs: i64) {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(t))
            .expect("set mtime");
    }
}
