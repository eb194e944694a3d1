//! Files other than itself that an image's own header tells qemu to open: a qcow2 backing file
//! or external data file, a VMDK descriptor's extent files or parent. PVE learns these from
//! `qemu-img info`, but what qemu-img reports depends on its version: before 8.0 it prints no
//! `children`, so a VMDK descriptor with one FLAT extent naming `/etc/shadow` looks like a
//! single-extent image. Reading the header ourselves makes the untrusted-image check hold on
//! every host, whatever qemu-img is installed. The rules follow what qemu's block drivers
//! (block/qcow2.c, block/vmdk.c) open, and err on the side of refusing.

use std::io::Read;
use std::path::Path;

/// How much of the file the rules below can look at: a qcow2 header and its extensions live in
/// the first cluster (2 MiB at most), a VMDK text descriptor is read up to 1 MiB, an embedded
/// one at 0x200.
pub const HEAD_LEN: u64 = 2 * 1024 * 1024;

/// A reference to another file, named after the check PVE would fail on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalRef {
    /// A qcow2 external data file.
    DataFile,
    /// A VMDK that reads extents from files other than itself, or has several extents.
    Extents,
    /// A backing (parent) image.
    BackingFile,
}

/// Reads the start of the file, at most [`HEAD_LEN`] bytes.
pub fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    std::fs::File::open(path)?
        .take(HEAD_LEN)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// The first reference found in `head`, the start of an image that qemu opened as `format`
/// (qemu-img's `format`), in the order PVE checks them: data file and extents before backing.
pub fn find(format: &str, head: &[u8]) -> Option<ExternalRef> {
    match format {
        "qcow2" => qcow2(head),
        "vmdk" => vmdk(head),
        _ => None,
    }
}

const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
/// Incompatible feature bit 2: the guest data lives in an external file.
const QCOW2_INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Header extension holding the external data file's name ("DATA").
const QCOW2_EXT_DATA_FILE: u32 = 0x4441_5441;
/// A version 2 header ends here; version 3 says its own length at offset 100.
const QCOW2_V2_HEADER_LEN: usize = 72;

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn qcow2(head: &[u8]) -> Option<ExternalRef> {
    if !head.starts_with(QCOW2_MAGIC) {
        return None;
    }
    let version = be_u32(head, 4)?;
    if version >= 3 {
        let incompatible = be_u64(head, 72).unwrap_or(0);
        if incompatible & QCOW2_INCOMPAT_DATA_FILE != 0 {
            return Some(ExternalRef::DataFile);
        }
    }
    let header_len = match version {
        3.. => be_u32(head, 100).map_or(QCOW2_V2_HEADER_LEN, |n| n as usize),
        _ => QCOW2_V2_HEADER_LEN,
    };
    if qcow2_extensions(head, header_len).any(|ty| ty == QCOW2_EXT_DATA_FILE) {
        return Some(ExternalRef::DataFile);
    }
    // qemu only takes a backing file when both its offset and its length are set.
    let backing_offset = be_u64(head, 8)?;
    let backing_len = be_u32(head, 16)?;
    (backing_offset != 0 && backing_len != 0).then_some(ExternalRef::BackingFile)
}

/// The types of the header extensions that follow the header, up to the end marker (type 0)
/// or the end of what was read. Each is type, length, data padded to 8 bytes.
fn qcow2_extensions(head: &[u8], start: usize) -> impl Iterator<Item = u32> + '_ {
    let mut at = Some(start);
    std::iter::from_fn(move || {
        let pos = at?;
        let ty = be_u32(head, pos).filter(|&t| t != 0);
        let len = be_u32(head, pos + 4);
        at = match (ty, len) {
            (Some(_), Some(len)) => pos
                .checked_add(8)
                .and_then(|p| p.checked_add((len as usize).next_multiple_of(8))),
            _ => None,
        };
        ty
    })
}

const VMDK3_MAGIC: &[u8; 4] = b"COWD";
const VMDK4_MAGIC: &[u8; 4] = b"KDMV";
/// Where qemu reads the descriptor of a sparse file (for its parent), and how much of it.
const VMDK_SPARSE_DESC_OFFSET: usize = 0x200;
const VMDK_DESC_SIZE: usize = 20 * 512;
/// qemu reads at most this much of a text descriptor file.
const VMDK_TEXT_DESC_MAX: usize = (1 << 20) - 1;
/// The access words that open an extent line; qemu itself only opens `RW` ones today, but
/// any of them naming a file is refused.
const VMDK_ACCESS: [&str; 3] = ["RW", "RDONLY", "NOACCESS"];

fn vmdk(head: &[u8]) -> Option<ExternalRef> {
    let sparse = head.starts_with(VMDK4_MAGIC) || head.starts_with(VMDK3_MAGIC);
    if sparse {
        // A sparse file is its own single extent: qemu ignores the extent lines of an
        // embedded descriptor and only reads its parent hint.
        let desc = head.get(VMDK_SPARSE_DESC_OFFSET..).unwrap_or_default();
        return vmdk_parent(until_nul(&desc[..desc.len().min(VMDK_DESC_SIZE)]));
    }
    let desc = until_nul(&head[..head.len().min(VMDK_TEXT_DESC_MAX)]);
    let (mut extents, mut with_file) = (0usize, 0usize);
    for line in desc.split(|&b| b == b'\n') {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_whitespace();
        let is_extent = words.next().is_some_and(|w| VMDK_ACCESS.contains(&w))
            && words.next().is_some_and(|w| w.parse::<i64>().is_ok());
        if is_extent {
            extents += 1;
            with_file += usize::from(line.contains(&b'"'));
        }
    }
    // The descriptor file is one child already; any extent file makes it two.
    if extents > 1 || with_file > 0 {
        return Some(ExternalRef::Extents);
    }
    vmdk_parent(&desc[..desc.len().min(VMDK_DESC_SIZE)])
}

/// `parentFileNameHint="…"` with a non-empty name makes a backing file, as in qemu.
fn vmdk_parent(desc: &[u8]) -> Option<ExternalRef> {
    const KEY: &[u8] = b"parentFileNameHint";
    let at = desc.windows(KEY.len()).position(|w| w == KEY)?;
    // qemu skips the two characters after the key (`="`) and reads up to the next quote.
    let value = desc.get(at + KEY.len() + 2..).unwrap_or_default();
    let name_len = value.iter().position(|&b| b == b'"').unwrap_or(value.len());
    (name_len > 0).then_some(ExternalRef::BackingFile)
}

/// qemu treats the descriptor as a C string.
fn until_nul(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qcow2_header(version: u32, backing: Option<&str>, incompat: u64, exts: &[u32]) -> Vec<u8> {
        let header_len = if version >= 3 { 104 } else { 72 };
        let mut h = vec![0u8; 4096];
        h[..4].copy_from_slice(QCOW2_MAGIC);
        h[4..8].copy_from_slice(&version.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        if version >= 3 {
            h[72..80].copy_from_slice(&incompat.to_be_bytes());
            h[100..104].copy_from_slice(&(header_len as u32).to_be_bytes());
        }
        let mut at = header_len;
        for &ty in exts {
            h[at..at + 4].copy_from_slice(&ty.to_be_bytes());
            h[at + 4..at + 8].copy_from_slice(&5u32.to_be_bytes());
            at += 16;
        }
        if let Some(name) = backing {
            h[8..16].copy_from_slice(&1024u64.to_be_bytes());
            h[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
            h[1024..1024 + name.len()].copy_from_slice(name.as_bytes());
        }
        h
    }

    #[test]
    fn qcow2_references() {
        assert_eq!(find("qcow2", &qcow2_header(3, None, 0, &[])), None);
        assert_eq!(find("qcow2", &qcow2_header(2, None, 0, &[])), None);
        assert_eq!(
            find("qcow2", &qcow2_header(2, Some("/etc/shadow"), 0, &[])),
            Some(ExternalRef::BackingFile)
        );
        assert_eq!(
            find(
                "qcow2",
                &qcow2_header(3, None, QCOW2_INCOMPAT_DATA_FILE, &[])
            ),
            Some(ExternalRef::DataFile)
        );
        // The name extension alone, after an unrelated one, counts too.
        assert_eq!(
            find(
                "qcow2",
                &qcow2_header(3, None, 0, &[0x6803_f857, QCOW2_EXT_DATA_FILE])
            ),
            Some(ExternalRef::DataFile)
        );
        // Data file before backing file, as PVE checks.
        assert_eq!(
            find(
                "qcow2",
                &qcow2_header(3, Some("b"), QCOW2_INCOMPAT_DATA_FILE, &[])
            ),
            Some(ExternalRef::DataFile)
        );
        // An offset without a length is no backing file for qemu.
        let mut h = qcow2_header(3, None, 0, &[]);
        h[8..16].copy_from_slice(&1024u64.to_be_bytes());
        assert_eq!(find("qcow2", &h), None);
        // Truncated or foreign bytes find nothing and do not panic.
        assert_eq!(find("qcow2", &h[..10]), None);
        assert_eq!(find("qcow2", b"raw bytes"), None);
        assert_eq!(find("raw", &qcow2_header(2, Some("b"), 0, &[])), None);
    }

    fn descriptor(extents: &[&str], extra: &str) -> Vec<u8> {
        let mut d = String::from(
            "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n\
             createType=\"monolithicFlat\"\n\n# Extent description\n",
        );
        for e in extents {
            d.push_str(e);
            d.push('\n');
        }
        d.push_str(extra);
        d.into_bytes()
    }

    #[test]
    fn vmdk_text_descriptor_references() {
        for line in [
            "RW 2048 FLAT \"/etc/shadow\" 0",
            "RW 2048 FLAT \"disk-flat.vmdk\" 0",
            "  RDONLY 8 SPARSE \"/dev/sda\"",
            "NOACCESS 8 VMFS \"x\"",
        ] {
            assert_eq!(
                find("vmdk", &descriptor(&[line], "")),
                Some(ExternalRef::Extents),
                "{line}"
            );
        }
        assert_eq!(
            find("vmdk", &descriptor(&["RW 8 ZERO", "RW 8 ZERO"], "")),
            Some(ExternalRef::Extents)
        );
        assert_eq!(find("vmdk", &descriptor(&["RW 8 ZERO"], "")), None);
        assert_eq!(
            find(
                "vmdk",
                &descriptor(&["RW 8 ZERO"], "parentFileNameHint=\"/etc/passwd\"\n")
            ),
            Some(ExternalRef::BackingFile)
        );
        assert_eq!(
            find(
                "vmdk",
                &descriptor(&["RW 8 ZERO"], "parentFileNameHint=\"\"\n")
            ),
            None
        );
        // Past a NUL byte qemu reads nothing.
        let mut d = descriptor(&[], "");
        d.push(0);
        d.extend_from_slice(b"RW 2048 FLAT \"/etc/shadow\" 0\n");
        assert_eq!(find("vmdk", &d), None);
    }

    #[test]
    fn vmdk_sparse_is_its_own_extent() {
        let mut img = vec![0u8; 0x200 + VMDK_DESC_SIZE];
        img[..4].copy_from_slice(VMDK4_MAGIC);
        let desc = descriptor(&["RW 2048 SPARSE \"disk.vmdk\""], "");
        img[0x200..0x200 + desc.len()].copy_from_slice(&desc);
        assert_eq!(find("vmdk", &img), None);
        let desc = descriptor(
            &["RW 2048 SPARSE \"disk.vmdk\""],
            "parentFileNameHint=\"p\"\n",
        );
        img[0x200..0x200 + desc.len()].copy_from_slice(&desc);
        assert_eq!(find("vmdk", &img), Some(ExternalRef::BackingFile));
        assert_eq!(find("vmdk", &img[..4]), None);
    }
}
