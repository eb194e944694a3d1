//! Is the storage's file system there? pve-common `src/PVE/ProcFSTools.pm` parse_proc_mounts,
//! pve-storage `src/PVE/Storage/DirPlugin.pm` parse_is_mountpoint / path_is_mounted, and the
//! mount tests of `NFSPlugin.pm` nfs_is_mounted, `CIFSPlugin.pm` cifs_is_mounted and
//! `CephFSPlugin.pm` cephfs_is_mounted.

use std::path::Path;

use super::model::Storage;
use super::plugins::Mount;
use crate::schema::parse_boolean;

/// One line of /proc/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub source: String,
    pub target: String,
    pub fstype: String,
}

/// The kernel writes space, tab, newline and backslash as `\ooo` octal escapes.
fn decode_mount(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let digits = after
            .bytes()
            .take(3)
            .take_while(|b| (b'0'..=b'7').contains(b))
            .count();
        match u8::from_str_radix(&after[..digits], 8)
            .ok()
            .filter(|b| b.is_ascii())
        {
            Some(byte) if digits > 0 => {
                out.push(char::from(byte));
                rest = &after[digits..];
            }
            _ => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

pub(crate) fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            Some(MountEntry {
                source: decode_mount(fields.next()?),
                target: decode_mount(fields.next()?),
                fstype: fields.next()?.to_owned(),
            })
        })
        .collect()
}

/// The current mount table; unreadable means nothing is mounted.
pub(crate) fn read_mounts() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/mounts")
        .map(|text| parse_mounts(&text))
        .unwrap_or_default()
}

/// path_is_mounted: the real path (symlinks resolved) is a mount target.
pub(crate) fn path_is_mounted(mountpoint: &Path, mounts: &[MountEntry]) -> bool {
    let Ok(real) = std::fs::canonicalize(mountpoint) else {
        return false;
    };
    mounts.iter().any(|m| Path::new(&m.target) == real)
}

/// parse_is_mountpoint: `is_mountpoint yes` means the storage path, `no` means no check, any
/// other value is the mount point itself.
pub(crate) fn expected_mountpoint(storage: &Storage) -> Option<String> {
    let value = storage.is_mountpoint.as_deref()?;
    match parse_boolean(value) {
        Some(true) => storage.path.as_ref().map(|p| p.display().to_string()),
        Some(false) => None,
        None => Some(value.to_owned()),
    }
}

/// The NFS/CIFS/CephFS mount of this storage is in the table (same source, type and target
/// the plugins look for; PVE would mount it, the daemon only uses it).
pub(crate) fn network_mounted(storage: &Storage, mount: Mount, mounts: &[MountEntry]) -> bool {
    let Some(target) = storage.path.as_ref().map(|p| p.display().to_string()) else {
        return false;
    };
    let opt = |key: &str| storage.options.get(key).map(String::as_str);
    // IPv6 servers are written in brackets in the mount source.
    let server = opt("server").map(|s| {
        if s.contains(':') {
            format!("[{s}]")
        } else {
            s.to_owned()
        }
    });
    let same_source =
        |source: &str, want: &str| source == want || source.strip_suffix('/') == Some(want);
    mounts.iter().any(|m| {
        m.target == target
            && match mount {
                Mount::Nfs => {
                    let want = format!(
                        "{}:{}",
                        server.as_deref().unwrap_or(""),
                        opt("export").unwrap_or("")
                    );
                    m.fstype.starts_with("nfs") && same_source(&m.source, &want)
                }
                Mount::Cifs => {
                    let want = format!(
                        "//{}/{}{}",
                        server.as_deref().unwrap_or(""),
                        opt("share").unwrap_or(""),
                        opt("subdir").unwrap_or("")
                    );
                    m.fstype.starts_with("cifs") && same_source(&m.source, &want)
                }
                Mount::CephFs => {
                    let subdir = opt("subdir").unwrap_or("/");
                    (m.fstype.starts_with("ceph") || m.fstype.contains("fuse.ceph-fuse"))
                        && (m.source.ends_with(&format!(":{subdir}")) || m.source == "ceph-fuse")
                }
                Mount::Dir | Mount::Btrfs => true,
            }
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const MOUNTS: &str = "\
/dev/sda1 / ext4 rw 0 0
10.0.0.1:/export/iso /mnt/pve/nfs1 nfs4 rw 0 0
[fd00::1]:/e6/ /mnt/pve/nfs6 nfs rw 0 0
//srv/share/sub /mnt/pve/smb cifs rw 0 0
10.0.0.2:6789:/ /mnt/pve/ceph ceph rw 0 0
/dev/sdb1 /mnt/with\\040space ext4 rw 0 0
";

    fn storage(kind: &str, path: &str, opts: &[(&str, &str)]) -> Storage {
        let mut s = Storage::new("s1", kind);
        s.path = Some(PathBuf::from(path));
        s.options = opts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        s
    }

    #[test]
    fn parses_and_decodes() {
        let mounts = parse_mounts(MOUNTS);
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[5].target, "/mnt/with space");
        assert_eq!(decode_mount(r"a\134b\0x\9"), "a\\b\0x\\9");
    }

    #[test]
    fn network_mounts() {
        let m = parse_mounts(MOUNTS);
        let nfs = storage(
            "nfs",
            "/mnt/pve/nfs1",
            &[("server", "10.0.0.1"), ("export", "/export/iso")],
        );
        assert!(network_mounted(&nfs, Mount::Nfs, &m));
        let nfs6 = storage(
            "nfs",
            "/mnt/pve/nfs6",
            &[("server", "fd00::1"), ("export", "/e6")],
        );
        assert!(network_mounted(&nfs6, Mount::Nfs, &m));
        let other = storage(
            "nfs",
            "/mnt/pve/nfs1",
            &[("server", "10.0.0.9"), ("export", "/export/iso")],
        );
        assert!(!network_mounted(&other, Mount::Nfs, &m));
        let cifs = storage(
            "cifs",
            "/mnt/pve/smb",
            &[("server", "srv"), ("share", "share"), ("subdir", "/sub")],
        );
        assert!(network_mounted(&cifs, Mount::Cifs, &m));
        let ceph = storage("cephfs", "/mnt/pve/ceph", &[]);
        assert!(network_mounted(&ceph, Mount::CephFs, &m));
        assert!(!network_mounted(&ceph, Mount::Nfs, &m));
    }

    #[test]
    fn is_mountpoint_values() {
        let mut s = storage("dir", "/srv/x", &[]);
        assert_eq!(expected_mountpoint(&s), None);
        s.is_mountpoint = Some("yes".into());
        assert_eq!(expected_mountpoint(&s).as_deref(), Some("/srv/x"));
        s.is_mountpoint = Some("0".into());
        assert_eq!(expected_mountpoint(&s), None);
        s.is_mountpoint = Some("/srv".into());
        assert_eq!(expected_mountpoint(&s).as_deref(), Some("/srv"));
    }

    #[test]
    fn mounted_paths() {
        let m = parse_mounts(MOUNTS);
        assert!(path_is_mounted(Path::new("/"), &m));
        assert!(!path_is_mounted(Path::new("/nonexistent/dir"), &m));
    }
}
