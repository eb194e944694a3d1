//! Where a transfer starts: from the bytes an earlier run of the same download left on disk
//! (a daemon that crashed or was killed mid-transfer), or from zero. Picking up is only done
//! when it is sound: an undecoded file, a validator to send as `If-Range`, bytes known to be
//! on disk (partial.rs). The bytes are hashed once to restore the digest state; the origin then
//! decides with `Range` + `If-Range` whether they are still good (transfer.rs).

use std::io::Read;

use super::inflight::LeadGuard;
use super::partial::{self, Found, PartialState};
use super::pipeline::{Sink, user_hasher};
use super::staging::Staged;
use super::{Compression, DownloadError, DownloadPlan, LogSink};
use crate::catalog::Observer;

pub struct Start {
    pub staged: Staged,
    /// When picking up: the sink over the bytes already there, and how many they are.
    pub resume: Option<(Sink, u64)>,
}

/// Chooses the temp file of `plan` and marks it owned by the transfer `lead`.
pub async fn start(
    plan: &DownloadPlan,
    compression: Option<Compression>,
    node: &str,
    lead: &LeadGuard,
    log: &dyn LogSink,
) -> Result<Start, DownloadError> {
    let found = partial::find(&plan.staging_dir, node, &plan.dest)
        .into_iter()
        .filter(|f| f.state.same_download(plan))
        .max_by_key(|f| on_disk(f).unwrap_or(0));
    if let Some(found) = found {
        lead.own_staging(found.group.tag());
        match pick_up(found, plan, compression).await {
            Ok(start) => {
                let segments = &start.staged.state().segments;
                match &start.resume {
                    Some(_) if !segments.is_empty() => log.line(&format!(
                        "resuming {} segments from {} bytes already on disk",
                        segments.len(),
                        segments.iter().map(|s| s.synced).sum::<u64>()
                    )),
                    Some((_, offset)) => {
                        log.line(&format!("resuming from {offset} bytes already on disk"))
                    }
                    None => {}
                }
                return Ok(start);
            }
            Err(reason) => log.line(&format!("{reason}, starting over")),
        }
    }
    lead.own_staging(&plan.task_tag);
    let staged = Staged::create(&plan.staging_dir, &plan.task_tag, PartialState::new(plan))?;
    Ok(Start {
        staged,
        resume: None,
    })
}

/// The bytes of `f` that hold the download.
fn on_disk(f: &Found) -> std::io::Result<u64> {
    let len = std::fs::metadata(f.group.part())?.len();
    Ok(f.state.usable(len))
}

/// Continues `found`, or says why not (and removes it: a new transfer replaces it).
async fn pick_up(
    found: Found,
    plan: &DownloadPlan,
    compression: Option<Compression>,
) -> Result<Start, String> {
    let refuse = |found: Found, reason: String| {
        if let Err(e) = found.group.remove() {
            tracing::warn!("unable to remove partial download: {e}");
        }
        Err(reason)
    };
    if compression.is_some() || found.state.compression.is_some() {
        return refuse(
            found,
            "cannot resume a decompressing download from disk".into(),
        );
    }
    if found.state.validator.is_none() {
        return refuse(
            found,
            "cannot resume from disk: the origin sent neither ETag nor Last-Modified".into(),
        );
    }
    let mut offset = match on_disk(&found) {
        Ok(n) => n,
        Err(e) => {
            return refuse(
                found,
                format!("cannot read the partial download on disk: {e}"),
            );
        }
    };
    let segments = found.state.segments.clone();
    // A range that starts at the end is unsatisfiable (416); ask for the last byte again.
    // Segments ask for their own ends.
    if let Some(len) = found.state.length.filter(|l| *l > 0 && segments.is_empty()) {
        offset = offset.min(len - 1);
    }
    if offset == 0 && segments.iter().all(|s| s.synced == 0) {
        return refuse(found, "nothing of the earlier download is on disk".into());
    }
    // Dropping `staged` on any failure below removes the files.
    let staged = Staged::adopt(found);
    let algorithm = plan.checksum.as_ref().map(|c| c.algorithm);
    let iso = plan.content == "iso";
    let file = if segments.is_empty() {
        staged.continue_at(offset)
    } else {
        staged.continue_segments()
    };
    let hashed = tokio::task::spawn_blocking(move || {
        let mut file = file?;
        let mut hasher = user_hasher(algorithm, None);
        let mut observer = Observer::new(iso);
        let mut prefix = (&mut file).take(offset);
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        loop {
            let got = prefix.read(&mut buf)?;
            if got == 0 {
                break;
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&buf[..got]);
            }
            observer.update(&buf[..got]);
            n += got as u64;
        }
        if n != offset {
            return Err(std::io::Error::other(format!(
                "only {n} of {offset} bytes could be read"
            )));
        }
        Ok((file, hasher, observer))
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    let sink = hashed
        .and_then(|(file, hasher, observer)| {
            if segments.is_empty() {
                Sink::continue_at(file, algorithm, hasher, observer, offset)
            } else {
                Sink::segmented(file, algorithm, hasher, observer, &segments, offset)
            }
        })
        .map_err(|e| format!("cannot read the partial download on disk: {e}"))?;
    Ok(Start {
        staged,
        resume: Some((sink, offset)),
    })
}
