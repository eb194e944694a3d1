//! The background upkeep: every scan, records whose volume is gone go, each volume without a
//! fresh record is adopted (read and recorded) and each one not verified for
//! `verify-after-days` is verified, one at a time and at `background-bwlimit`. A volume that failed verification is left as it is: re-reading it
//! changes nothing, and a repair is the operator's call.

use std::time::Duration;

use super::check::{Reading, Verdict, check};
use super::volumes;
use crate::catalog::{self, Lookup, Record};
use crate::config::CatalogSettings;
use crate::pve::content::DOWNLOAD_CONTENT;
use crate::state::AppState;
use crate::storage::StorageConfig;

/// How long a record may wait for its volume: a download writes it just before the rename.
const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

/// Runs forever: one pass at start, then one per `catalog-scan-interval`.
pub async fn run(state: AppState) {
    loop {
        let settings = state.config().catalog.clone();
        match state.storage_config() {
            Ok(storages) => {
                let node = state.config().node.clone();
                let s = settings.clone();
                let pass = tokio::task::spawn_blocking(move || pass(&storages, &node, &s));
                if let Err(e) = pass.await {
                    tracing::warn!("catalog upkeep failed: {e}");
                }
            }
            Err(e) => tracing::warn!("catalog upkeep: {}", e.message),
        }
        tokio::time::sleep(settings.scan_every).await;
    }
}

/// One pass over every volume of every storage enabled on `node`. Blocking.
pub fn pass(storages: &StorageConfig, node: &str, settings: &CatalogSettings) {
    let now = chrono::Utc::now().timestamp();
    for storage in &storages.storages {
        if storage.check_enabled(node).is_err() || !storage.is_file_based() {
            continue;
        }
        for dir in DOWNLOAD_CONTENT.iter().filter_map(|c| storage.subdir(c)) {
            let n = catalog::store::remove_orphans(&dir, ORPHAN_GRACE);
            if n > 0 {
                tracing::info!(
                    "removed {n} record(s) of volumes gone from {}",
                    dir.display()
                );
            }
        }
        for volume in volumes(storage, None) {
            let due = match catalog::store::load(&volume.path) {
                Ok(Lookup::Fresh(record)) => verify_due(&record, settings.verify_after, now),
                Ok(Lookup::Stale(_) | Lookup::Missing) => true,
                Err(_) => false, // gone meanwhile
            };
            if !due {
                continue;
            }
            let reading = Reading {
                content: &volume.content,
                osinfo_dir: &settings.osinfo_dir,
                rate: settings.background_rate,
            };
            match check(&volume.path, &reading, None) {
                Ok(Verdict::Recorded) => tracing::info!("{}: recorded", volume.volid),
                Ok(Verdict::Ok) => tracing::info!("{}: verified", volume.volid),
                Ok(Verdict::Failed(why)) => {
                    tracing::error!("{}: verification failed - {why}", volume.volid)
                }
                Err(e) => tracing::warn!("{}: cannot be read: {e}", volume.volid),
            }
        }
    }
}

/// Verified (or, never verified, recorded) longer ago than `after`; a failed volume waits
/// for the operator.
fn verify_due(record: &Record, after: Option<Duration>, now: i64) -> bool {
    let Some(after) = after else { return false };
    if record.failed() {
        return false;
    }
    let last = record
        .verification
        .as_ref()
        .map_or(record.source.time, |v| v.time);
    now.saturating_sub(last) >= i64::try_from(after.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Verification, VerifyState};

    #[test]
    fn due_after_the_interval_unless_failed_or_never() {
        let day = Duration::from_secs(86_400);
        let mut r = Record::default();
        r.source.time = 1_000;
        assert!(!verify_due(&r, Some(day), 1_000 + 86_399));
        assert!(verify_due(&r, Some(day), 1_000 + 86_400));
        assert!(!verify_due(&r, None, i64::MAX));
        r.verification = Some(Verification {
            state: VerifyState::Ok,
            time: 100_000,
            upid: None,
        });
        assert!(!verify_due(&r, Some(day), 100_000 + 10));
        r.verification = Some(Verification {
            state: VerifyState::Failed,
            time: 0,
            upid: None,
        });
        assert!(!verify_due(&r, Some(day), i64::MAX));
    }
}
