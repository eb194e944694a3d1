//! The library's work over the catalog: checking volumes against their records (`check`),
//! the background upkeep that adopts unrecorded files and re-verifies old ones (`upkeep`),
//! at a pace the VMs don't notice (`pace`); volumes that arrive whole from this host, uploaded
//! or added (`intake`, `add`); the library as a file, exported and imported (`inventory`).

pub mod add;
pub mod check;
pub mod intake;
pub mod inventory;
mod pace;
pub mod retention;
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

/// A volume fetched again from where it came from (a repair, an inventory import).
pub struct Refetch<'a> {
    pub storage: &'a Storage,
    pub content: &'a str,
    pub dest: PathBuf,
    pub url: String,
    /// The download's `compression`, from the record.
    pub compression: Option<String>,
    /// What the stored bytes must hash to: the recorded sha256.
    pub sha256: String,
    /// Over the volume there (a repair), instead of meeting it as a download does.
    pub replace: bool,
}

impl Refetch<'_> {
    /// download-url's plan for the volume's content, with the recorded sha256 required.
    pub fn plan(
        self,
        node: &str,
        retry: &crate::download::RetryPolicy,
        user: &str,
    ) -> Result<crate::download::DownloadPlan, crate::storage::StorageError> {
        use crate::download::{ContentCheck, DownloadPlan};
        let import_ext = (self.content == "import")
            .then(|| self.dest.extension().and_then(|e| e.to_str()))
            .flatten();
        let staging_dir = self
            .storage
            .staging_dir(self.content)
            .ok_or(crate::storage::StorageError::NoPath)?;
        Ok(DownloadPlan {
            compression: self.compression,
            check: ContentCheck::for_download(self.content, import_ext),
            retry: retry.clone(),
            expect_sha256: Some(self.sha256),
            replace: self.replace,
            ..DownloadPlan::new(
                self.url,
                self.dest,
                staging_dir,
                self.content,
                node,
                user.to_owned(),
            )
        })
    }
}
