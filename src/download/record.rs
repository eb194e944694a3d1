//! The end of a transfer: the catalog record of the verified temp file, then the file under its
//! name. The record comes first, so a listed file never lacks one.

use std::path::Path;

use super::transfer::Delivered;
use super::{DownloadError, DownloadPlan, Engine, LogSink, staging};
use crate::catalog::{self, Lookup};

/// A record to write for a verified temp file, apart from what its bytes say.
pub(super) struct Recording<'a> {
    /// The name the file is published under.
    pub dest: &'a Path,
    pub content: &'a str,
    pub source: catalog::Source,
    pub checksum: Option<catalog::UserChecksum>,
    pub verification: Option<catalog::Verification>,
    pub image: Option<catalog::ImageInfo>,
}

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
        let recording = Recording {
            dest: &plan.dest,
            content: &plan.content,
            source,
            checksum: plan.checksum.as_ref().map(|c| catalog::UserChecksum {
                algorithm: c.algorithm.name().to_owned(),
                value: c.expected.to_ascii_lowercase(),
            }),
            // A repair fetched the recorded bytes again: as good as a verification.
            verification: plan.replace.then(|| verified(task)),
            image,
        };
        self.save_record(recording, delivered.observed, staged)
            .await
    }

    /// Writes the record of the temp file `staged`, whose bytes are `observed`, under
    /// `recording.dest`'s name. What the user set on a record already there (a volume this one
    /// replaces) stays.
    pub(super) async fn save_record(
        &self,
        recording: Recording<'_>,
        observed: catalog::Observed,
        staged: &Path,
    ) -> std::io::Result<()> {
        let name = recording
            .dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (dest, staged) = (recording.dest.to_path_buf(), staged.to_path_buf());
        let (content, osinfo_dir) = (recording.content.to_owned(), self.osinfo_dir.clone());
        let Recording {
            source,
            checksum,
            verification,
            image,
            ..
        } = recording;
        tokio::task::spawn_blocking(move || {
            let stamp = catalog::Stamp::of(&std::fs::metadata(&staged)?);
            let facts = catalog::facts(observed, stamp, &content, &name, image, &osinfo_dir);
            let mut record = catalog::Record::new(facts, source);
            record.checksum = checksum;
            record.verification = verification;
            if let Ok(Lookup::Fresh(old) | Lookup::Stale(old)) = catalog::store::load(&dest) {
                record.keep_attributes(old);
            }
            catalog::store::save(&dest, &record)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// A verification that passed now, in task `task`.
pub(super) fn verified(task: &str) -> catalog::Verification {
    catalog::Verification {
        state: catalog::VerifyState::Ok,
        time: chrono::Utc::now().timestamp(),
        upid: Some(task.to_owned()),
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
