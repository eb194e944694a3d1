//! Storages, exactly as Proxmox VE's pve-storage sees them: storage.cfg (pve-common
//! `SectionConfig.pm`, pve-storage `Plugin.pm`), file-based storage layout and activation
//! (`Plugin.pm`, `DirPlugin.pm`), download file names (`Storage.pm`), content listing, volume
//! IDs and paths, and usage (spec/pve-api.md §1.3, §7, §9).
//!
//! Layout:
//! - `config`: storage.cfg text → [`StorageConfig`]; `plugins`: what each type allows;
//!   `values`: property checks; `ids`: ID grammars.
//! - `model`: [`Storage`], enabled/node checks and content subdirectories.
//! - `activate`, `mounts`, `status`: the file system side.
//! - `filename`, `ext`: download-url/upload names; `list`, `volume`: volumes.

mod activate;
mod api_config;
mod config;
mod error;
mod ext;
mod filename;
pub mod identity;
mod list;
mod model;
mod mounts;
mod plugins;
mod properties;
mod status;
mod volume;

pub use config::StorageConfig;
pub use error::StorageError;
pub use filename::{DownloadTarget, check_download_filename, normalize_content_filename};
pub use list::ContentItem;
pub use model::Storage;
pub use plugins::TYPE_NAMES;
pub use status::StorageStatus;
pub use volume::{VolumeName, parse_volname};
