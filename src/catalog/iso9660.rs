//! What an ISO image says about itself, read while its bytes stream by: the primary volume
//! descriptor (ECMA-119 §8.4), the El Torito boot catalog (BIOS and UEFI entries) and the
//! isohybrid MBR/GPT marks (spec/library-research.md §3 has the offsets). Only the first 32
//! sectors and the one sector of the boot catalog are kept, so memory stays at about 66 KiB
//! whatever the image size.

use serde::{Deserialize, Serialize};

const SECTOR: usize = 2048;
/// Sectors 0-15 (system area: MBR, GPT) and up to 16 volume descriptors from sector 16.
const HEAD: usize = 32 * SECTOR;
const FIRST_DESCRIPTOR: usize = 16;

/// El Torito platform IDs (El Torito 1.0 §2.1, plus 0xEF from UEFI 2.x §13.3.2.1).
const PLATFORM_BIOS: u8 = 0x00;
const PLATFORM_UEFI: u8 = 0xEF;

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsoInfo {
    #[serde(rename = "system-id")]
    pub system_id: String,
    #[serde(rename = "volume-id")]
    pub volume_id: String,
    pub publisher: String,
    pub preparer: String,
    pub application: String,
    /// The PVD's creation date as ISO 8601 (`2024-06-29T10:11:12+00:00`), when set.
    pub created: Option<String>,
    /// Volume space size × logical block size: what the file system says it spans.
    #[serde(rename = "volume-size")]
    pub volume_size: u64,
    /// The file holds the whole volume (a cut download or copy does not).
    #[serde(rename = "size-ok")]
    pub size_ok: bool,
    pub boot: Boot,
    pub hybrid: Hybrid,
}

/// Which firmware finds a bootable El Torito entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    pub bios: bool,
    pub uefi: bool,
}

/// isohybrid: the image also boots when written to a disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hybrid {
    pub mbr: bool,
    pub gpt: bool,
}

/// Collects the sectors the facts are read from out of a stream of bytes.
#[derive(Default)]
pub struct IsoProbe {
    head: Vec<u8>,
    /// Bytes seen so far.
    pos: u64,
    /// Where the boot catalog starts, once the descriptors have been read.
    catalog_at: Option<u64>,
    catalog: Vec<u8>,
}

impl IsoProbe {
    pub fn new() -> IsoProbe {
        IsoProbe::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        let start = self.pos;
        self.pos += data.len() as u64;
        if self.head.len() < HEAD {
            let n = (HEAD - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            if self.head.len() == HEAD {
                self.catalog_at = boot_catalog_lba(&self.head).map(|lba| lba * SECTOR as u64);
            }
        }
        if let Some(at) = self.catalog_at {
            let want = at + self.catalog.len() as u64;
            if self.catalog.len() < SECTOR && want >= start && want < self.pos {
                let from = (want - start) as usize;
                let n = (SECTOR - self.catalog.len()).min(data.len() - from);
                self.catalog.extend_from_slice(&data[from..from + n]);
            }
        }
    }

    /// The facts, or `None` when the bytes are not an ISO 9660 image.
    pub fn finish(self, file_size: u64) -> Option<IsoInfo> {
        let pvd = descriptors(&self.head).find(|d| d[0] == 1)?;
        let text = |range: std::ops::Range<usize>| a_characters(&pvd[range]);
        let blocks = u32::from_le_bytes(pvd[80..84].try_into().ok()?);
        let block_size = u16::from_le_bytes(pvd[128..130].try_into().ok()?);
        let volume_size = u64::from(blocks) * u64::from(block_size);
        let catalog = match self.catalog_at {
            // A catalog inside the head was passed before its place was known.
            Some(at) if at + (SECTOR as u64) <= HEAD as u64 => {
                self.head[at as usize..at as usize + SECTOR].to_vec()
            }
            _ => self.catalog,
        };
        Some(IsoInfo {
            system_id: text(8..40),
            volume_id: text(40..72),
            publisher: text(318..446),
            preparer: text(446..574),
            application: text(574..702),
            created: date(&pvd[813..830]),
            volume_size,
            size_ok: volume_size > 0 && volume_size <= file_size,
            boot: boot_entries(&catalog),
            hybrid: Hybrid {
                mbr: self.head.get(510..512) == Some(&[0x55, 0xAA][..]),
                gpt: self.head.get(512..520) == Some(&b"EFI PART"[..]),
            },
        })
    }
}

/// The volume descriptors from sector 16 up to the set terminator (type 255).
fn descriptors(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.chunks_exact(SECTOR)
        .skip(FIRST_DESCRIPTOR)
        .take_while(|d| &d[1..6] == b"CD001" && d[0] != 255)
}

/// The boot record's catalog sector (El Torito 1.0 §2.0: "EL TORITO SPECIFICATION" at 7,
/// the catalog's LBA little-endian at 0x47).
fn boot_catalog_lba(head: &[u8]) -> Option<u64> {
    let record =
        descriptors(head).find(|d| d[0] == 0 && d[7..30] == *b"EL TORITO SPECIFICATION")?;
    let lba = u32::from_le_bytes(record[0x47..0x4B].try_into().ok()?);
    Some(u64::from(lba))
}

/// Walks the catalog's 32-byte entries: the validation entry (0x01, with 0x55 0xAA at 30)
/// names the default entry's platform; section headers (0x90, 0x91 for the last) name theirs
/// and how many entries follow. An entry counts when its boot indicator is 0x88.
fn boot_entries(catalog: &[u8]) -> Boot {
    let mut boot = Boot::default();
    let mut entries = catalog.chunks_exact(32);
    let Some(validation) = entries.next() else {
        return boot;
    };
    if validation[0] != 0x01 || validation[30..32] != [0x55, 0xAA] {
        return boot;
    }
    let mut mark = |platform: u8, entry: &[u8]| {
        if entry[0] == 0x88 {
            match platform {
                PLATFORM_BIOS => boot.bios = true,
                PLATFORM_UEFI => boot.uefi = true,
                _ => {}
            }
        }
    };
    if let Some(default) = entries.next() {
        mark(validation[1], default);
    }
    while let Some(header) = entries.next() {
        if header[0] != 0x90 && header[0] != 0x91 {
            break;
        }
        let count = u16::from_le_bytes([header[2], header[3]]);
        for _ in 0..count {
            // Extension entries (0x44) continue the entry before them.
            let Some(entry) = entries.by_ref().find(|e| e[0] != 0x44) else {
                return boot;
            };
            mark(header[1], entry);
        }
        if header[0] == 0x91 {
            break;
        }
    }
    boot
}

/// A fixed-width text field: ASCII padded with spaces (or NULs from some mastering tools).
fn a_characters(field: &[u8]) -> String {
    String::from_utf8_lossy(field)
        .trim_end_matches([' ', '\0'])
        .to_owned()
}

/// ECMA-119 §8.4.26.1: 16 digits `YYYYMMDDHHMMSScc` and a signed offset from GMT in 15-minute
/// steps; all zeros (or all spaces) means "not specified".
fn date(field: &[u8]) -> Option<String> {
    let digits = std::str::from_utf8(&field[..16]).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.bytes().all(|b| b == b'0') {
        return None;
    }
    let quarters = i32::from(field[16] as i8);
    let sign = if quarters < 0 { '-' } else { '+' };
    let minutes = quarters.abs() * 15;
    Some(format!(
        "{}-{}-{}T{}:{}:{}{sign}{:02}:{:02}",
        &digits[0..4],
        &digits[4..6],
        &digits[6..8],
        &digits[8..10],
        &digits[10..12],
        &digits[12..14],
        minutes / 60,
        minutes % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pad(s: &str, n: usize) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.resize(n, b' ');
        v
    }

    /// An image of `sectors` sectors: a PVD, a boot record pointing at `catalog_lba` and a
    /// terminator, with `catalog` written there.
    fn image(sectors: u32, catalog_lba: u32, catalog: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; sectors as usize * SECTOR];
        img[510] = 0x55;
        img[511] = 0xAA;
        let pvd = &mut img[16 * SECTOR..17 * SECTOR];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[8..40].copy_from_slice(&pad("LINUX", 32));
        pvd[40..72].copy_from_slice(&pad("Debian 11.5.0 amd64 n", 32));
        pvd[80..84].copy_from_slice(&sectors.to_le_bytes());
        pvd[128..130].copy_from_slice(&2048u16.to_le_bytes());
        pvd[318..446].copy_from_slice(&pad("ISOLIB TESTS", 128));
        pvd[574..702].copy_from_slice(&pad("XORRISO", 128));
        pvd[813..829].copy_from_slice(b"2024062910111200");
        pvd[829] = 8; // +02:00
        let br = &mut img[17 * SECTOR..18 * SECTOR];
        br[1..6].copy_from_slice(b"CD001");
        br[7..30].copy_from_slice(b"EL TORITO SPECIFICATION");
        br[0x47..0x4B].copy_from_slice(&catalog_lba.to_le_bytes());
        let term = &mut img[18 * SECTOR..19 * SECTOR];
        term[0] = 255;
        term[1..6].copy_from_slice(b"CD001");
        let at = catalog_lba as usize * SECTOR;
        img[at..at + catalog.len()].copy_from_slice(catalog);
        img
    }

    fn entry(first: u8, platform: u8) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[0] = first;
        e[1] = platform;
        e
    }

    /// A BIOS default entry and a last section with one UEFI entry, as xorriso writes them.
    fn bios_and_uefi() -> Vec<u8> {
        let mut validation = entry(0x01, PLATFORM_BIOS);
        validation[30] = 0x55;
        validation[31] = 0xAA;
        let mut section = entry(0x91, PLATFORM_UEFI);
        section[2] = 1;
        [
            validation,
            entry(0x88, 0),
            section,
            entry(0x44, 0),
            entry(0x88, 0),
        ]
        .concat()
    }

    fn probe(img: &[u8], chunk: usize) -> Option<IsoInfo> {
        let mut p = IsoProbe::new();
        for c in img.chunks(chunk) {
            p.feed(c);
        }
        p.finish(img.len() as u64)
    }

    #[test]
    fn reads_the_descriptor_and_both_boot_platforms_in_any_chunking() {
        let img = image(64, 40, &bios_and_uefi());
        for chunk in [1, 7, 2048, 4096, 65536, 1 << 20] {
            let info = probe(&img, chunk).expect("an iso");
            assert_eq!(info.volume_id, "Debian 11.5.0 amd64 n", "{chunk}");
            assert_eq!(info.system_id, "LINUX");
            assert_eq!(info.publisher, "ISOLIB TESTS");
            assert_eq!(info.application, "XORRISO");
            assert_eq!(info.preparer, "");
            assert_eq!(info.created.as_deref(), Some("2024-06-29T10:11:12+02:00"));
            assert_eq!(info.volume_size, 64 * 2048);
            assert!(info.size_ok);
            assert_eq!(
                info.boot,
                Boot {
                    bios: true,
                    uefi: true
                },
                "{chunk}"
            );
            assert_eq!(
                info.hybrid,
                Hybrid {
                    mbr: true,
                    gpt: false
                }
            );
        }
    }

    #[test]
    fn a_catalog_inside_the_head_is_found_too() {
        let info = probe(&image(64, 20, &bios_and_uefi()), 4096).expect("an iso");
        assert_eq!(
            info.boot,
            Boot {
                bios: true,
                uefi: true
            }
        );
    }

    #[test]
    fn a_cut_image_fails_the_size_check_and_a_lost_catalog_boots_nothing() {
        let img = image(64, 40, &bios_and_uefi());
        let cut = &img[..36 * SECTOR];
        let info = probe(cut, 4096).expect("an iso");
        assert!(!info.size_ok);
        assert_eq!(info.boot, Boot::default());
    }

    #[test]
    fn a_non_bootable_entry_and_no_iso_at_all() {
        let mut catalog = bios_and_uefi();
        catalog[32] = 0x00; // default entry not bootable
        let info = probe(&image(64, 40, &catalog), 4096).expect("an iso");
        assert_eq!(
            info.boot,
            Boot {
                bios: false,
                uefi: true
            }
        );
        assert_eq!(probe(&vec![0u8; 100 * SECTOR], 4096), None);
        assert_eq!(probe(b"short", 4096), None);
    }
}
