//! The library's catalog: a record for every volume (its sha256, where it came from, what its
//! content is), kept beside the volume and rebuilt from the file whenever the two disagree.
//!
//! - `record`: the record; `store`: where it lives and when it is stale.
//! - `observe`: the facts gathered from the bytes as any writer streams them;
//!   `iso9660`: ISO descriptors and El Torito; `osinfo`: which OS by osinfo-db;
//!   `template`: what a container template's name says.

pub mod iso9660;
mod observe;
pub mod osinfo;
mod record;
pub mod store;
mod template;

use std::io;
use std::path::Path;

pub use observe::{Observed, Observer};
pub use record::{
    Facts, ImageInfo, Origin, Record, Source, Stamp, TemplateInfo, UserChecksum, Verification,
    VerifyState, VolumeAccess,
};
pub use store::Lookup;

/// Where Debian's osinfo-db package puts the database.
pub const DEFAULT_OSINFO_DIR: &str = "/usr/share/osinfo";

/// The facts of the volume `name` of `content`, from what its bytes said (and, for an import
/// image, what qemu-img said). Blocking: the first call reads osinfo-db.
pub fn facts(
    observed: Observed,
    stamp: Stamp,
    content: &str,
    name: &str,
    image: Option<ImageInfo>,
    osinfo_dir: &Path,
) -> Facts {
    let os = observed
        .iso
        .as_ref()
        .and_then(|iso| osinfo::shared(osinfo_dir).identify(iso));
    Facts {
        sha256: observed.sha256,
        stamp,
        iso: observed.iso,
        os,
        image,
        template: (content == "vztmpl")
            .then(|| template::from_name(name))
            .flatten(),
    }
}

/// Reads the whole file at `path` for its facts, with `pace` called after every chunk (the
/// background work uses it to limit its bandwidth). Blocking. The stamp is taken before the
/// read: a file that changes meanwhile has a stamp that no longer matches, so its record is
/// stale at once and is rebuilt.
pub fn read_facts(
    path: &Path,
    content: &str,
    osinfo_dir: &Path,
    mut pace: impl FnMut(u64),
) -> io::Result<Facts> {
    let file = std::fs::File::open(path)?;
    let stamp = Stamp::of(&file.metadata()?);
    let mut observer = Observer::new(content == "iso");
    observer.feed(&file, |chunk| pace(chunk.len() as u64))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let image = image_info(path, content);
    Ok(facts(
        observer.finish(),
        stamp,
        content,
        &name,
        image,
        osinfo_dir,
    ))
}

/// An import image's format and virtual size by the header qemu-img reads first: only the
/// format the name says and, for qcow2, the size at byte 24 of its header (the content check
/// at download time reports the same through qemu-img).
pub fn image_info(path: &Path, content: &str) -> Option<ImageInfo> {
    use std::io::Read;
    if content != "import" {
        return None;
    }
    let ext = path.extension()?.to_str()?;
    if !matches!(ext, "qcow2" | "raw" | "vmdk" | "ova" | "ovf") {
        return None;
    }
    let virtual_size = match ext {
        "raw" => std::fs::metadata(path).ok().map(|m| m.len()),
        "qcow2" => {
            let mut head = [0u8; 32];
            std::fs::File::open(path)
                .and_then(|mut f| f.read_exact(&mut head))
                .ok()
                .filter(|()| head[..4] == *b"QFI\xfb")
                .map(|()| u64::from_be_bytes(head[24..32].try_into().unwrap_or_default()))
        }
        _ => None,
    };
    Some(ImageInfo {
        format: ext.to_owned(),
        virtual_size,
    })
}
