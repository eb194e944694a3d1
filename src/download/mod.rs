//! The download engine: fetch a URL into a storage directory with PVE's semantics and texts
//! (pve-common `download_file_from_url`, spec/pve-api.md §2), but in one pass: the bytes are
//! hashed, decoded and written while they stream, flushed, checked, then renamed into place.
//! It knows neither actix nor the API: a plan in, log lines out, a typed error at the end.

mod checksum;
pub mod content_check;
mod decompress;
#[cfg(test)]
mod engine_tests;
mod error;
mod fetch;
mod growing;
mod image_refs;
mod inflight;
pub mod metadata;
mod partial;
mod peer_copy;
mod pipeline;
mod progress;
mod range;
mod ratelimit;
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

use crate::catalog::{self, Lookup};
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

use inflight::{Entry, Inflight, LeadGuard, Outcome, RequestKey};
use ratelimit::RateLimit;
use transfer::{Delivered, Transfer};
use writer_lock::{Attempt, WriterLock};

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

    /// Makes this task the one writer of `want.dest`, among this daemon's tasks and then among
    /// the daemons that share its storage, and gives it a transfer slot. `None` when the work
    /// is done without it: it joined a running transfer of the same request, or another daemon
    /// wrote what this request asks for while this one waited.
    async fn claim(
        &self,
        want: Want<'_>,
        task: &str,
        log: &dyn LogSink,
        cancel: &CancellationToken,
    ) -> Result<Option<Claim>, DownloadError> {
        let lead = loop {
            let (done, joined) = match self.inflight.enter(want.dest, &want.key, task) {
                Entry::Lead(guard) => break guard,
                Entry::Join { task, done } => {
                    log.line(&format!(
                        "task {task} is downloading the same file; joining it"
                    ));
                    (done, true)
                }
                Entry::Wait { task, done } => {
                    log.line(&format!(
                        "waiting for task {task}, which is downloading to the same file"
                    ));
                    (done, false)
                }
            };
            let outcome = tokio::select! {
                o = done.outcome() => o,
                _ = cancel.cancelled() => return Err(DownloadError::Interrupted),
            };
            match (joined, outcome) {
                (true, Outcome::Ok) => {
                    log.line(&want.finished);
                    return Ok(None);
                }
                (true, Outcome::Failed(text)) => return Err(DownloadError::Joined(text)),
                // A stopped leader says nothing about this request; a different request goes
                // on once the target is free and meets whatever is there now.
                _ => continue,
            }
        };
        // A target that is there is met, not written (unless replaced): nothing to lock.
        if want.dest.is_file() && !want.replace {
            let slot = self.slot(log, cancel).await?;
            return Ok(Some(Claim {
                lead,
                slot,
                _lock: None,
            }));
        }
        let lock_path = WriterLock::path(want.staging_dir, want.dest);
        let mut waited = false;
        let lock = loop {
            let (path, holder) = (lock_path.clone(), format!("task {task}"));
            let attempt =
                tokio::task::spawn_blocking(move || WriterLock::try_acquire(&path, &holder))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
                    .map_err(|source| DownloadError::CreateTemp {
                        path: lock_path.clone(),
                        source,
                    })?;
            match attempt {
                Attempt::Locked(lock) => break lock,
                Attempt::Held { by } => {
                    if !waited {
                        log.line(&format!(
                            "waiting for {by}, which is writing the same file on a storage this node shares"
                        ));
                        waited = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        () = cancel.cancelled() => return Err(DownloadError::Interrupted),
                    }
                }
            }
        };
        // Written by another daemon since this task looked (whether or not it had to wait).
        if !want.replace && want.dest.is_file() && (want.same_request)() {
            log.line(&want.finished);
            lead.finish(Outcome::Ok);
            return Ok(None);
        }
        let slot = self.slot(log, cancel).await?;
        Ok(Some(Claim {
            lead,
            slot,
            _lock: Some(lock),
        }))
    }

    async fn slot(
        &self,
        log: &dyn LogSink,
        cancel: &CancellationToken,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, DownloadError> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        log.line(&format!(
            "waiting for a free transfer slot ({} transfers running, max-transfers)",
            self.limits.max_transfers
        ));
        tokio::select! {
            s = self.slots.clone().acquire_owned() => s.map_err(|_| DownloadError::Interrupted),
            _ = cancel.cancelled() => Err(DownloadError::Interrupted),
        }
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

impl Engine {
    /// Writes the catalog record of the verified temp file `staged`, under `plan.dest`'s name.
    async fn record(
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
fn publish_recorded(
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

/// What a task asks to become the one writer of.
struct Want<'a> {
    dest: &'a Path,
    staging_dir: &'a Path,
    key: RequestKey,
    /// The file there is to be replaced, not met.
    replace: bool,
    /// The line that ends a task whose work another did.
    finished: String,
    /// Whether the file another daemon wrote meanwhile is what this request asks for.
    same_request: &'a (dyn Fn() -> bool + Sync),
}

/// The right to write a target: the lead among this daemon's tasks, a transfer slot, and the
/// lock among daemons.
struct Claim {
    lead: LeadGuard,
    slot: tokio::sync::OwnedSemaphorePermit,
    _lock: Option<WriterLock>,
}

impl Claim {
    /// Ends the transfer: the slot and the lock are free, whoever joined learns how it ended.
    fn release(self, result: &Result<(), DownloadError>) {
        drop(self.slot);
        self.lead.finish(match result {
            Ok(()) => Outcome::Ok,
            Err(DownloadError::Interrupted) => Outcome::Abandoned,
            Err(e) => Outcome::Failed(e.to_string()),
        });
    }
}

/// The file at `plan.dest` came from the same request: its record names the same URL and
/// decompression (a shared storage's other writer did this request's work).
fn same_source(plan: &DownloadPlan) -> bool {
    matches!(
        catalog::store::load(&plan.dest),
        Ok(Lookup::Fresh(r)) if r.source.url.as_deref() == Some(plan.url.as_str())
            && r.source.compression == plan.compression.clone().filter(|c| !c.is_empty())
    )
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
