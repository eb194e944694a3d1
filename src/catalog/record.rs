//! A volume's catalog record: what isolib knows about one file, kept beside it (store.rs).
//! Field names follow the API's kebab-case, so the record is what `GET .../content/{volume}`
//! adds to PVE's fields, as it is.

use serde::{Deserialize, Serialize};

use super::iso9660::IsoInfo;
use super::osinfo::OsMatch;

/// Bumped when a field changes meaning; a record of another version is rebuilt.
pub const RECORD_VERSION: u32 = 1;

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    pub version: u32,
    /// Of the bytes in the file (after any decompression), always.
    pub sha256: String,
    pub size: u64,
    /// Which file the record describes; another inode, size or mtime means it is stale.
    pub stamp: Stamp,
    /// What the user gave when the volume arrived (any of PVE's algorithms).
    pub checksum: Option<UserChecksum>,
    pub source: Source,
    pub notes: Option<String>,
    #[serde(default)]
    pub protected: bool,
    /// Who may fetch it over HTTP (`/files/`); new volumes are private.
    #[serde(default)]
    pub access: VolumeAccess,
    /// The network boot configs that fit this image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_configs: Vec<String>,
    pub iso: Option<IsoInfo>,
    pub os: Option<OsMatch>,
    /// Import images: what qemu-img reported.
    pub image: Option<ImageInfo>,
    /// Container templates: what PVE's naming says.
    pub template: Option<TemplateInfo>,
    pub verification: Option<Verification>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ino: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ino: meta.ino(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserChecksum {
    pub algorithm: String,
    pub value: String,
}

/// How the volume came to be here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Download,
    Upload,
    /// `isolib add`.
    Local,
    /// Copied from another node that held it verified.
    Copy,
    /// Found without a record and hashed in the background.
    #[default]
    Adopted,
}

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Source {
    pub origin: Origin,
    pub url: Option<String>,
    /// After redirects.
    pub final_url: Option<String>,
    /// The download's `compression`: the file holds the decompressed bytes.
    pub compression: Option<String>,
    /// The checksum file the expected checksum was taken from (`checksum-url`).
    pub checksum_url: Option<String>,
    /// The sha256 of that checksum file as it was fetched.
    pub checksum_file_sha256: Option<String>,
    /// The fingerprint of the certificate that signed it, when a keyring checked it.
    pub checksum_signer: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub upid: Option<String>,
    /// The user or token that brought it.
    pub user: Option<String>,
    /// Unix time the record was made.
    pub time: i64,
}

/// Who may fetch a volume over HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeAccess {
    /// Anyone: installers and iPXE fetch it without credentials.
    Public,
    /// The API's credentials with Datastore.Audit on the storage, or the owner.
    #[default]
    Private,
}

impl VolumeAccess {
    pub fn parse(text: &str) -> Option<VolumeAccess> {
        match text {
            "public" => Some(VolumeAccess::Public),
            "private" => Some(VolumeAccess::Private),
            _ => None,
        }
    }
}

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageInfo {
    pub format: String,
    pub virtual_size: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInfo {
    pub os: String,
    pub version: String,
    pub arch: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyState {
    Ok,
    Failed,
}

/// The last verification, as Proxmox Backup Server reports a snapshot's.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub state: VerifyState,
    pub time: i64,
    pub upid: Option<String>,
}

impl Record {
    /// A record of `facts`, found the way `source` says.
    pub fn new(facts: Facts, source: Source) -> Record {
        Record {
            version: RECORD_VERSION,
            sha256: facts.sha256,
            size: facts.stamp.size,
            stamp: facts.stamp,
            source,
            iso: facts.iso,
            os: facts.os,
            image: facts.image,
            template: facts.template,
            ..Record::default()
        }
    }

    /// What the user set on a volume stays when its record is made again.
    pub fn keep_attributes(&mut self, old: Record) {
        self.notes = old.notes;
        self.protected = old.protected;
        self.access = old.access;
        self.boot_configs = old.boot_configs;
    }

    pub fn failed(&self) -> bool {
        matches!(
            self.verification,
            Some(Verification {
                state: VerifyState::Failed,
                ..
            })
        )
    }
}

/// What reading a file's bytes told: everything of a record that the content decides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub sha256: String,
    pub stamp: Stamp,
    pub iso: Option<IsoInfo>,
    pub os: Option<OsMatch>,
    pub image: Option<ImageInfo>,
    pub template: Option<TemplateInfo>,
}
