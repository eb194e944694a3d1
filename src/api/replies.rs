//! The replies a client reads back, typed once: the handlers build them, the export names
//! their fields ([`super::router::Returns`]), and the command-line client (`cli/remote`) reads
//! them, leniently, since a Perl API may send numbers and booleans as strings
//! ([`crate::pve::perl_serde`]).

use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::pve::perl_serde::{flag, int_flag, number};
use crate::tasks::Upid;

pub use crate::download::metadata::UrlMetadata;
pub use crate::storage::ContentItem;

/// What every task reply says about the task, from its UPID (spec §4.3, §4.5).
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct TaskFields {
    pub upid: String,
    pub node: String,
    #[serde(deserialize_with = "number")]
    pub pid: u64,
    #[serde(deserialize_with = "number")]
    pub pstart: u64,
    #[serde(deserialize_with = "number")]
    pub starttime: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub user: String,
    /// Set for a task a token started; `user` is then the token's owner.
    pub tokenid: Option<String>,
}

impl TaskFields {
    pub fn of(upid: &Upid) -> TaskFields {
        let (user, token) = upid.user_and_token();
        TaskFields {
            upid: upid.to_string(),
            node: upid.node.clone(),
            pid: upid.pid.into(),
            pstart: upid.pstart,
            starttime: u64::try_from(upid.starttime).unwrap_or_default(),
            kind: upid.kind.clone(),
            id: upid.id.clone(),
            user: user.to_string(),
            tokenid: token.map(str::to_string),
        }
    }
}

/// `GET /nodes/{node}/tasks` item.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct TaskListItem {
    #[serde(flatten)]
    pub task: TaskFields,
    pub endtime: Option<i64>,
    /// The exit status, or `RUNNING`.
    pub status: String,
    /// PVE's marker of a running task's entry.
    pub saved: Option<String>,
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct TaskStatus {
    #[serde(flatten)]
    pub task: TaskFields,
    /// `running` or `stopped`.
    pub status: String,
    pub exitstatus: Option<String>,
}

impl TaskStatus {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
}

/// `GET /nodes/{node}/storage` item and `.../storage/{storage}/status` (spec §7.1-7.2); the
/// list adds `storage` and `used_fraction`.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct StorageStatus {
    pub storage: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
    #[serde(deserialize_with = "flag", serialize_with = "int_flag")]
    pub enabled: bool,
    #[serde(deserialize_with = "flag", serialize_with = "int_flag")]
    pub active: bool,
    #[serde(deserialize_with = "flag", serialize_with = "int_flag")]
    pub shared: bool,
    #[serde(deserialize_with = "number")]
    pub total: u64,
    #[serde(deserialize_with = "number")]
    pub used: u64,
    #[serde(deserialize_with = "number")]
    pub avail: u64,
    pub used_fraction: Option<f64>,
}

impl Default for StorageStatus {
    /// What a client assumes of a field the server left out: enabled and active.
    fn default() -> Self {
        StorageStatus {
            storage: None,
            kind: String::new(),
            content: String::new(),
            enabled: true,
            active: true,
            shared: false,
            total: 0,
            used: 0,
            avail: 0,
            used_fraction: None,
        }
    }
}

/// `GET /nodes/{node}/storage/{storage}/content/{volume}`: PVE's fields (pve-storage
/// `API2/Storage/Content.pm` info), then what the catalog record adds.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct VolumeInfo {
    pub path: String,
    #[serde(deserialize_with = "number")]
    pub size: u64,
    #[serde(deserialize_with = "number")]
    pub used: u64,
    pub format: String,
    pub notes: Option<String>,
    #[serde(serialize_with = "opt_int_flag", deserialize_with = "opt_flag")]
    pub protected: Option<bool>,
    pub sha256: Option<String>,
    pub checksum: Option<catalog::UserChecksum>,
    pub source: Option<catalog::Source>,
    pub iso: Option<catalog::iso9660::IsoInfo>,
    pub os: Option<catalog::osinfo::OsMatch>,
    pub image: Option<catalog::ImageInfo>,
    pub template: Option<catalog::TemplateInfo>,
    pub verification: Option<catalog::Verification>,
    pub access: Option<catalog::VolumeAccess>,
    #[serde(
        rename = "boot-configs",
        skip_serializing_if = "Vec::is_empty",
        default
    )]
    pub boot_configs: Vec<String>,
}

impl VolumeInfo {
    /// Adds the fields of `record` (a fresh one: it describes this very file).
    pub fn with_record(mut self, record: catalog::Record) -> VolumeInfo {
        self.sha256 = Some(record.sha256);
        self.checksum = record.checksum;
        self.source = Some(record.source);
        self.iso = record.iso;
        self.os = record.os;
        self.image = record.image;
        self.template = record.template;
        self.verification = record.verification;
        self.access = Some(record.access);
        self.boot_configs = record.boot_configs;
        self
    }
}

fn opt_int_flag<S: serde::Serializer>(b: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => int_flag(b, s),
        None => s.serialize_none(),
    }
}

fn opt_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    flag(d).map(Some)
}
