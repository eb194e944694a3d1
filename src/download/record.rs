//! The end of a transfer: the catalog record of the verified temp file, then the file under its
//! name. The record comes first, so a listed file never lacks one.

use std::path::Path;

use super::transfer::Delivered;
use super::{DownloadError, DownloadPlan, Engine, LogSink, staging};
use crate::catalog::{self, Lookup};

impl Engine {
    /// Writes the catalog record of the verified temp file `staged`, under `plan.dest`'s name.
    pub(super) async fn record(
        &self,
        plan: &DownloadPlan,
        task: &str,
        delivered: Delivered,
        image: Option<catalog::ImageInfo>,
        staged: &Path,
    ) -> std::io::Result<()> {
        let name = plan
            .dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = catalog::Source {
            origin: catalog::Origin::Download,
            url: Some(plan.url.clone()),
            compression: plan.compression.clone().filter(|c| !c.is_empty()),
            checksum_url: plan.checksum_source.as_ref().map(|c| c.url.clone()),
            checksum_file_sha256: plan.checksum_source.as_ref().map(|c| c.sha256.clone()),
            checksum_signer: plan.checksum_source.as_ref().and_then(|c| c.signer.clone()),
            final_url: delivered.provenance.final_url,
            etag: delivered.provenance.etag,
            last_modified: delivered.provenance.last_modified,
            upid: Some(task.to_owned()),
            user: Some(plan.user.clone()),
            time: chrono::Utc::now().timestamp(),
        };
        let checksum = plan.checksum.as_ref().map(|c| catalog::UserChecksum {
            algorithm: c.algorithm.name().to_owned(),
            value: c.expected.to_ascii_lowercase(),
        });
        let (dest, staged) = (plan.dest.clone(), staged.to_path_buf());
        let (content, osinfo_dir) = (plan.content.clone(), self.osinfo_dir.clone());
        let repaired = plan.replace.then(|| catalog::Verification {
            state: catalog::VerifyState::Ok,
            time: chrono::Utc::now().timestamp(),
            upid: Some(task.to_owned()),
        });
        tokio::task::spawn_blocking(move || {
            let stamp = catalog::Stamp::of(&std::fs::metadata(&staged)?);
            let facts = catalog::facts(
                delivered.observed,
                stamp,
                &content,
                &name,
                image,
                &osinfo_dir,
            );
            let mut record = catalog::Record::new(facts, source);
            record.checksum = checksum;
            record.verification = repaired;
            // What the user set on the volume this one replaces (a repair) stays.
            if let Ok(Lookup::Fresh(old) | Lookup::Stale(old)) = catalog::store::load(&dest) {
                record.keep_attributes(old);
            }
            catalog::store::save(&dest, &record)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// Puts the verified temp file under its name once its record is written: the file is never
/// listed without it. A record that cannot be written costs only a re-hash later (the file
/// is adopted), not the transfer.
pub(super) fn publish_recorded(
    staged: staging::Staged,
    dest: &Path,
    recorded: std::io::Result<()>,
    log: &dyn LogSink,
) -> Result<(), DownloadError> {
    if let Err(e) = recorded {
        log.line(&format!("warning: unable to write the catalog record: {e}"));
    }
    if let Some(e) = staged.publish(dest)? {
        log.line(&format!(
            "warning: unable to sync the directory of '{}': {e}",
            dest.display()
        ));
    }
    Ok(())
}
