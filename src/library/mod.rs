//! The library's work over the catalog: checking volumes against their records (`check`),
//! the background upkeep that adopts unrecorded files and re-verifies old ones (`upkeep`),
//! at a pace the VMs don't notice (`pace`); volumes that arrive whole from this host, uploaded
//! or added (`intake`, `add`); the library as a file, exported and imported (`inventory`).

pub mod add;
pub mod check;
pub mod intake;
pub mod inventory;
mod pace;
pub mod upkeep;

use std::path::PathBuf;

use crate::storage::{Storage, parse_volname};

/// A volume of a file-based storage, as the listing finds it.
#[derive(Debug, Clone)]
pub struct Volume {
    pub volid: String,
    pub storage: String,
    pub volname: String,
    pub content: String,
    pub path: PathBuf,
}

/// The iso, vztmpl and import volumes of `storage` (empty when it has no path). Blocking.
pub fn volumes(storage: &Storage, content: Option<&str>) -> Vec<Volume> {
    let Ok(items) = storage.list_content(content) else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let volname = item.volid.split_once(':')?.1.to_owned();
            let path = storage.volume_path(&volname).ok()?;
            parse_volname(&volname).ok()?;
            Some(Volume {
                storage: storage.id.clone(),
                volname,
                content: item.content,
                path,
                volid: item.volid,
            })
        })
        .collect()
}
