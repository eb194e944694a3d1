//! The download engine: fetch a URL into a storage directory with PVE's semantics and texts
//! (pve-common `download_file_from_url`, spec/pve-api.md §2), but in one pass: the bytes are
//! hashed, decoded and written while they stream, flushed, checked, then renamed into place.
//! It knows neither actix nor the API: a plan in, log lines out, a typed error at the end.

mod checksum;
mod claim;
pub mod content_check;
mod decompress;
mod direct;
#[cfg(test)]
mod engine_tests;
mod error;
mod fetch;
mod growing;
mod image_refs;
mod inflight;
pub mod metadata;
mod origin;
mod partial;
mod peer_copy;
mod pipeline;
mod progress;
mod range;
mod ratelimit;
mod record;
mod resolve;
mod resume;
mod retry;
mod segment_writer;
mod segmented;
mod staging;
mod transfer;
pub mod url_policy;
mod writer_lock;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::catalog;
use crate::file_cache::FileCache;

pub use crate::pve::content::Compression;
pub use checksum::{Algorithm, Checksum, Hasher};
pub use content_check::ContentCheck;
pub use error::{DownloadError, describe_reqwest};
pub use fetch::{DEFAULT_MAX_REDIRECTS, FetchConfig, FetchSetupError, Fetcher, fetchers};
pub use growing::{GrowingFile, State as GrowingState};
pub use peer_copy::{PeerCopy, volume_sha256};
pub use pipeline::{Finished, Sink, SinkError, user_hasher};
pub use progress::human_bytes;
pub use retry::RetryPolicy;
pub use staging::new_tag;
pub use url_policy::{PolicyError, Rule, RuleError, UrlPolicy};

use claim::{Want, same_source};
use inflight::{Inflight, LeadGuard, RequestKey};
use ratelimit::RateLimit;
use record::publish_recorded;
use transfer::Transfer;

/// Where task-log lines go; the engine does not know it runs inside a task.
pub trait LogSink: Send + Sync {
    fn line(&self, text: &str);
}

pub struct DownloadPlan {
    pub url: String,
    /// The final path; its directory exists.
    pub dest: PathBuf,
    /// Directory for the temp file, on the same filesystem as `dest`, outside the content
    /// directories, so no listing ever shows a partial file.
    pub staging_dir: PathBuf,
    /// The content type, for the decompression rule.
    pub content: String,
    pub checksum: Option<Checksum>,
    /// PVE's `hash_required`: `checksum` was sent, so a usable one must be there.
    pub checksum_required: bool,
    /// The raw `compression` parameter: PVE's schema lets any string through (spec §1.1).
    pub compression: Option<String>,
    pub verify_certificates: bool,
    pub check: ContentCheck,
    /// Makes the temp file name unique per task.
    pub task_tag: String,
    pub retry: RetryPolicy,
    /// Who asked, for the catalog record.
    pub user: String,
    /// The sha256 the stored bytes (after any decompression) must have: the catalog's, when
    /// a volume is fetched again (a repair, an inventory import).
    pub expect_sha256: Option<String>,
    /// Replace the file at `dest` (a repair) instead of meeting it as PVE does.
    pub replace: bool,
    /// The checksum file `checksum` came from (download-url's `checksum-url`).
    pub checksum_source: Option<crate::upstream::ChecksumSource>,
    /// Connections this download may use at once, instead of the configured number.
    pub connections: Option<u32>,
}

impl DownloadPlan {
    /// A plan as PVE's download-url makes one without optional parameters: no checksum, no
    /// decompression, certificates verified, no content check, an existing file met rather
    /// than replaced; the temp file tagged for `node`.
    pub fn new(
        url: String,
        dest: PathBuf,
        staging_dir: PathBuf,
        content: &str,
        node: &str,
        user: String,
    ) -> DownloadPlan {
        DownloadPlan {
            url,
            dest,
            staging_dir,
            content: content.to_owned(),
            checksum: None,
            checksum_required: false,
            compression: None,
            verify_certificates: true,
            check: ContentCheck::None,
            task_tag: new_tag(node),
            retry: RetryPolicy::default(),
            user,
            expect_sha256: None,
            replace: false,
            checksum_source: None,
            connections: None,
        }
    }
}

/// Operator limits that hold for every download.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Transfers running at once; further ones queue.
    pub max_transfers: usize,
    /// Largest file accepted, in bytes as downloaded.
    pub max_size: Option<u64>,
    /// Bytes per second for each transfer.
    pub bwlimit: Option<u64>,
    /// Bytes per second for all transfers together.
    pub bwlimit_total: Option<u64>,
    /// Connections one download may use at once, for an origin that answers ranges.
    pub connections: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_transfers: 4,
            max_size: None,
            bwlimit: None,
            bwlimit_total: None,
            connections: 1,
        }
    }
}

/// The engine's shared parts: HTTP clients, the map of running transfers and the slots.
#[derive(Clone)]
pub struct Engine {
    fetchers: std::sync::Arc<FileCache<Fetcher, FetchSetupError>>,
    inflight: Inflight,
    limits: Limits,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    total_rate: Option<RateLimit>,
    /// This daemon's node: the staging files it may resume and collect carry its name.
    node: String,
    /// How long a partial download nobody owns is kept for a resume.
    partial_keep: Duration,
    /// osinfo-db, to name the OS of an ISO.
    osinfo_dir: PathBuf,
    /// Copies whose bytes may be passed on before they are all in.
    growing: growing::Growing,
}

impl Engine {
    pub fn new(
        fetchers: FileCache<Fetcher, FetchSetupError>,
        limits: Limits,
        node: &str,
        partial_keep: Duration,
    ) -> Engine {
        Engine {
            fetchers: std::sync::Arc::new(fetchers),
            inflight: Inflight::default(),
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_transfers.max(1))),
            total_rate: limits.bwlimit_total.map(RateLimit::new),
            limits,
            node: node.to_string(),
            partial_keep,
            osinfo_dir: PathBuf::from(catalog::DEFAULT_OSINFO_DIR),
            growing: growing::Growing::default(),
        }
    }

    /// Names the OSes of ISOs by the osinfo-db in `dir`.
    pub fn with_osinfo_dir(mut self, dir: PathBuf) -> Engine {
        self.osinfo_dir = dir;
        self
    }

    /// Removes the partial downloads in `staging_dir` that no running transfer owns and that
    /// cannot be resumed any more (no readable state, or untouched for `partial_keep`), and the
    /// lock files of writers that were killed.
    /// Blocking; returns how many were removed.
    pub fn collect_partials(&self, staging_dir: &Path) -> std::io::Result<usize> {
        let partials = partial::collect(
            staging_dir,
            &self.node,
            self.partial_keep,
            &self.inflight,
            SystemTime::now(),
        )?;
        Ok(partials + writer_lock::collect(staging_dir)?)
    }

    /// One transfer's limits: its own and the share of all transfers', each chunk waits for both.
    fn rates(&self) -> Vec<RateLimit> {
        self.limits
            .bwlimit
            .map(RateLimit::new)
            .into_iter()
            .chain(self.total_rate.clone())
            .collect()
    }

    /// The HTTP clients as configured right now (datacenter.cfg's proxy may change).
    pub fn fetcher(&self) -> Result<std::sync::Arc<Fetcher>, FetchSetupError> {
        self.fetchers.get()
    }

    /// Runs `plan` for task `task`, or joins or waits for a transfer to the same target.
    pub async fn run(
        &self,
        plan: &DownloadPlan,
        task: &str,
        log: &dyn LogSink,
        cancel: &CancellationToken,
    ) -> Result<(), DownloadError> {
        let compression = resolve_compression(plan)?;
        if plan.checksum_required && plan.checksum.is_none() {
            return Err(DownloadError::ChecksumRequired);
        }
        log.line(&format!(
            "downloading {} to {}",
            plan.url,
            plan.dest.display()
        ));
        let key = RequestKey {
            url: plan.url.clone(),
            compression: plan.compression.clone(),
            checksum: plan.checksum.clone(),
            verify_certificates: plan.verify_certificates,
        };
        let want = Want {
            dest: &plan.dest,
            staging_dir: &plan.staging_dir,
            key,
            replace: plan.replace,
            finished: format!(
                "download of '{}' to '{}' finished",
                plan.url,
                plan.dest.display()
            ),
            same_request: &|| same_source(plan),
        };
        let Some(claim) = self.claim(want, task, log, cancel).await? else {
            return Ok(());
        };
        let result = self
            .lead(plan, task, compression, &claim.lead, log, cancel)
            .await;
        claim.release(&result);
        result
    }

    async fn lead(
        &self,
        plan: &DownloadPlan,
        task: &str,
        compression: Option<Compression>,
        guard: &LeadGuard,
        log: &dyn LogSink,
        cancel: &CancellationToken,
    ) -> Result<(), DownloadError> {
        if plan.dest.is_file() && !plan.replace {
            return existing_target(plan, log).await;
        }
        let start = tokio::select! {
            s = resume::start(plan, compression, &self.node, guard, log) => s?,
            _ = cancel.cancelled() => return Err(DownloadError::Interrupted),
        };
        let mut staged = start.staged;
        let fetcher = self
            .fetcher()
            .map_err(|e| DownloadError::Transfer(e.to_string()))?;
        let transfer = Transfer::new(plan, compression, self, fetcher, log, &mut staged);
        let transfer = match start.resume {
            Some((sink, offset)) => transfer.continue_after(sink, offset),
            None => transfer,
        };
        let delivered = tokio::select! {
            r = transfer.run() => r?,
            _ = cancel.cancelled() => return Err(DownloadError::Interrupted),
        };
        if let Some(expected) = &plan.expect_sha256
            && delivered.observed.sha256 != *expected
        {
            return Err(DownloadError::NotTheRecordedBytes {
                got: delivered.observed.sha256,
                expected: expected.clone(),
            });
        }
        if let Some(c) = compression {
            log.line(&format!(
                "decompressed {} on the fly ({})",
                c.pve_command(),
                staged.path().display()
            ));
        }
        let mut check_log = |l: &str| log.line(l);
        let image = tokio::select! {
            r = content_check::verify_with_log(&plan.check, staged.path(), &mut check_log) => r.map_err(DownloadError::Verify)?,
            _ = cancel.cancelled() => return Err(DownloadError::Interrupted),
        };
        let recorded = self
            .record(plan, task, delivered, image, staged.path())
            .await;
        publish_recorded(staged, &plan.dest, recorded, log)?;
        log.line(&format!(
            "download of '{}' to '{}' finished",
            plan.url,
            plan.dest.display()
        ));
        Ok(())
    }
}

/// PVE's worker checks the compression before anything is printed (spec §1.5), then
/// download_file_from_url the required checksum (in `run`).
fn resolve_compression(plan: &DownloadPlan) -> Result<Option<Compression>, DownloadError> {
    match plan.compression.as_deref() {
        None | Some("") => Ok(None),
        Some(_) if plan.content != "iso" => Err(DownloadError::DecompressionNotSupported(
            plan.content.clone(),
        )),
        Some(name) => Compression::parse(name)
            .map(Some)
            .ok_or(DownloadError::NoDecompressionMethod),
    }
}

/// PVE's three outcomes for an existing target (spec §2 step 3): a matching checksum is success
/// without a download, a different one fails, no checksum refuses.
async fn existing_target(plan: &DownloadPlan, log: &dyn LogSink) -> Result<(), DownloadError> {
    let Some(checksum) = plan.checksum.clone() else {
        return Err(DownloadError::RefuseOverride(plan.dest.clone()));
    };
    let path = plan.dest.clone();
    let algorithm = checksum.algorithm;
    let got = tokio::task::spawn_blocking(move || checksum::hash_file(algorithm, &path))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| DownloadError::ReadExisting {
            path: plan.dest.clone(),
            source,
        })?;
    if checksum.matches(&got) {
        log.line("calculating checksum of existing file...OK, got correct file already, no need to download");
        return Ok(());
    }
    log.line("calculating checksum of existing file...");
    Err(DownloadError::ExistingMismatch {
        got,
        expected: checksum.expected,
    })
}
