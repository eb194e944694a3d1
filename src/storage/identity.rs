//! A storage's identity: a UUID in a file in its root, made by whichever node looks first, so
//! two nodes that see the same directory (an NFS or CephFS mount not marked `shared`) know it is
//! one storage, as pve-storage's `get_identity` lets plugins say. The file is linked into place
//! complete, never written in place: every reader sees one UUID, whoever made it.

use std::io::{self, Write};
use std::path::Path;

const NAME: &str = ".isolib-storage-id";

/// The identity of the storage whose root is `root`; made on first use.
pub fn of(root: &Path) -> io::Result<String> {
    let path = root.join(NAME);
    match std::fs::read_to_string(&path) {
        Ok(id) => return Ok(id.trim().to_owned()),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let id = uuid::Uuid::new_v4().to_string();
    let temp = root.join(format!("{NAME}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let made = (|| {
        let mut f = std::fs::File::create_new(&temp)?;
        f.write_all(id.as_bytes())?;
        f.sync_all()?;
        // Fails when another node was first: its identity stands.
        match std::fs::hard_link(&temp, &path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => crate::fsutil::sync_dir(root),
        }
    })();
    let _ = std::fs::remove_file(&temp);
    made?;
    Ok(std::fs::read_to_string(&path)?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_and_kept() {
        let d = tempfile::tempdir().expect("tempdir");
        let first = of(d.path()).expect("made");
        assert_eq!(uuid::Uuid::parse_str(&first).map(|_| ()), Ok(()));
        assert_eq!(of(d.path()).expect("read"), first);
        // Only the identity is left behind.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [NAME]);
    }
}
