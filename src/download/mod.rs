//! The download engine: fetch a URL into a storage directory with PVE's semantics and texts
//! (pve-common `download_file_from_url`, spec/pve-api.md §2), but in one pass: the bytes are
//! hashed, decoded and written while they stream, flushed, checked, then renamed into place.
//! It knows neither actix nor the API: a plan in, log lines out, a typed error at the end.

mod attempt;
mod checksum;
pub mod content_check;
mod decompress;
mod error;
mod fetch;
mod inflight;
pub mod metadata;
mod pipeline;
pub mod policy;
mod progress;
mod ratelimit;
mod resolve;
mod staging;

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

pub use attempt::RetryPolicy;
pub use checksum::{Algorithm, Checksum};
pub use content_check::ContentCheck;
pub use decompress::Compression;
pub use error::DownloadError;
pub use fetch::{DEFAULT_MAX_REDIRECTS, FetchConfig, FetchSetupError, Fetcher};
pub use policy::{PolicyError, Rule, RuleError, UrlPolicy};
pub use staging::{collect_orphans, new_tag};

use error::describe_reqwest;
use inflight::{Entry, Inflight, Outcome, RequestKey};
use pipeline::{Sink, SinkError};
use progress::Progress;
use ratelimit::RateLimit;
use staging::Staged;

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
    /// The raw `compression` parameter: PVE's schema lets any string through (spec §1.1).
    pub compression: Option<String>,
    pub verify_certificates: bool,
    pub check: ContentCheck,
    /// Makes the temp file name unique per task.
    pub task_tag: String,
    pub retry: RetryPolicy,
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_transfers: 4,
            max_size: None,
            bwlimit: None,
            bwlimit_total: None,
        }
    }
}

/// The engine's shared parts: HTTP clients, the map of running transfers and the slots.
#[derive(Clone)]
pub struct Engine {
    fetcher: Fetcher,
    inflight: Inflight,
    limits: Limits,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    total_rate: Option<RateLimit>,
}

impl Engine {
    pub fn new(fetcher: Fetcher, limits: Limits) -> Engine {
        Engine {
            fetcher,
            inflight: Inflight::default(),
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_transfers.max(1))),
            total_rate: limits.bwlimit_total.map(RateLimit::new),
            limits,
        }
    }

    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
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
        log.line(&format!(
            "downloading {} to {}",
            plan.url,
            plan.dest.display()
        ));
        let key = RequestKey {
            url: plan.url.clone(),
            compression: plan.compression.clone(),
            checksum: plan.checksum.clone(),
        };
        let lead = loop {
            let (done, joined) = match self.inflight.enter(&plan.dest, &key, task) {
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
                    log.line(&format!(
                        "download of '{}' to '{}' finished",
                        plan.url,
                        plan.dest.display()
                    ));
                    return Ok(());
                }
                (true, Outcome::Failed(text)) => return Err(DownloadError::Joined(text)),
                // A stopped leader says nothing about this request; a different request goes
                // on once the target is free and meets whatever is there now.
                _ => continue,
            }
        };
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                log.line(&format!(
                    "waiting for a free transfer slot ({} transfers running, max-transfers)",
                    self.limits.max_transfers
                ));
                tokio::select! {
                    s = self.slots.clone().acquire_owned() => s.map_err(|_| DownloadError::Interrupted)?,
                    _ = cancel.cancelled() => return Err(DownloadError::Interrupted),
                }
            }
        };
        let result = self.lead(plan, compression, log, cancel).await;
        drop(slot);
        lead.finish(match &result {
            Ok(()) => Outcome::Ok,
            Err(DownloadError::Interrupted) => Outcome::Abandoned,
            Err(e) => Outcome::Failed(e.to_string()),
        });
        result
    }

    async fn lead(
        &self,
        plan: &DownloadPlan,
        compression: Option<Compression>,
        log: &dyn LogSink,
        cancel: &CancellationToken,
    ) -> Result<(), DownloadError> {
        if plan.dest.is_file() {
            return existing_target(plan, log).await;
        }
        let staged = Staged::create(&plan.staging_dir, &plan.dest, &plan.task_tag)?;
        tokio::select! {
            r = transfer(plan, compression, self, log, &staged) => r?,
            _ = cancel.cancelled() => return Err(DownloadError::Interrupted),
        }
        if let Some(c) = compression {
            log.line(&format!(
                "decompressed {} on the fly ({})",
                c.pve_command(),
                staged.path().display()
            ));
        }
        let mut check_log = |l: &str| log.line(l);
        tokio::select! {
            r = content_check::verify_with_log(&plan.check, staged.path(), &mut check_log) => r.map_err(DownloadError::Verify)?,
            _ = cancel.cancelled() => return Err(DownloadError::Interrupted),
        }
        staged.publish(&plan.dest)?;
        log.line(&format!(
            "download of '{}' to '{}' finished",
            plan.url,
            plan.dest.display()
        ));
        Ok(())
    }
}

/// PVE's worker checks the compression before anything is printed (spec §1.5).
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

/// How one attempt ended, when it did not deliver the whole body.
enum Failure {
    /// Worth another attempt; `after` is the origin's Retry-After.
    Transient {
        reason: String,
        after: Option<std::time::Duration>,
    },
    Fatal(DownloadError),
}

async fn transfer(
    plan: &DownloadPlan,
    compression: Option<Compression>,
    engine: &Engine,
    log: &dyn LogSink,
    staged: &Staged,
) -> Result<(), DownloadError> {
    let limits = &engine.limits;
    let fetcher = &engine.fetcher;
    let rates: Vec<RateLimit> = limits
        .bwlimit
        .map(RateLimit::new)
        .into_iter()
        .chain(engine.total_rate.clone())
        .collect();
    let policy = &plan.retry;
    let mut sink: Option<Sink> = None;
    let mut received: u64 = 0;
    let mut total: Option<u64> = None;
    let mut validator: Option<String> = None;
    let mut progress = Progress::new(None, Instant::now());
    let mut failures = 0u32;
    loop {
        let attempt = async {
            let mut req = fetcher
                .download(plan.verify_certificates, &plan.url)
                .map_err(|e| Failure::Fatal(DownloadError::Policy(e)))?;
            if received > 0 {
                req = req.header(reqwest::header::RANGE, format!("bytes={received}-"));
                if let Some(v) = &validator {
                    req = req.header(reqwest::header::IF_RANGE, v.as_str());
                }
            }
            // Refused connections, unknown hosts, failed TLS handshakes and redirect loops do
            // not heal by waiting (wget gives up on them too); timeouts and drops may.
            let mut resp = req.send().await.map_err(|e| {
                if let Some(p) = PolicyError::find(&e) {
                    return Failure::Fatal(DownloadError::Policy(p.clone()));
                }
                let reason = describe_reqwest(&e);
                if (e.is_connect() && !e.is_timeout()) || e.is_redirect() {
                    Failure::Fatal(DownloadError::Transfer(reason))
                } else {
                    Failure::Transient {
                        reason,
                        after: None,
                    }
                }
            })?;
            let status = resp.status();
            let resumed = received > 0
                && status == reqwest::StatusCode::PARTIAL_CONTENT
                && attempt::range_start(resp.headers()) == Some(received);
            if !resumed {
                if !status.is_success() || status == reqwest::StatusCode::PARTIAL_CONTENT {
                    let err = DownloadError::Http {
                        status: status.as_u16(),
                        reason: status.canonical_reason().unwrap_or("").to_string(),
                    };
                    return Err(if attempt::is_transient(status) {
                        Failure::Transient {
                            reason: format!(
                                "HTTP {} {}",
                                status.as_u16(),
                                status.canonical_reason().unwrap_or("")
                            ),
                            after: attempt::retry_after(resp.headers()),
                        }
                    } else {
                        Failure::Fatal(err)
                    });
                }
                if received > 0 {
                    log.line(&format!(
                        "origin answered the resume request with HTTP {} (range ignored or file changed); restarting from zero",
                        status.as_u16()
                    ));
                    if let Some(old) = sink.take() {
                        // The old writer must be done before the file is truncated.
                        let _ = old.finish().await;
                    }
                    received = 0;
                }
                if resp.url().as_str() != plan.url {
                    log.line(&format!("redirected to {}", resp.url()));
                }
                total = resp.content_length();
                validator = attempt::validator(resp.headers());
                log.line(&match total {
                    Some(n) => format!("length: {n} ({})", progress::human_bytes(n)),
                    None => "length: unspecified".to_string(),
                });
                progress = Progress::new(total, Instant::now());
                if let Some(n) = total {
                    check_size(limits, n)?;
                    check_space(staged.dir(), n)?;
                }
            }
            if sink.is_none() {
                let create_err = |source| {
                    Failure::Fatal(DownloadError::CreateTemp {
                        path: staged.path().to_path_buf(),
                        source,
                    })
                };
                let file = staged.open().map_err(create_err)?;
                sink = Some(
                    Sink::start(
                        file,
                        plan.checksum.as_ref().map(|c| c.algorithm),
                        compression,
                    )
                    .map_err(create_err)?,
                );
            }
            let Some(s) = sink.as_ref() else {
                return Err(Failure::Fatal(DownloadError::Transfer(
                    "internal error: no sink".into(),
                )));
            };
            loop {
                let chunk = tokio::time::timeout(policy.stall_timeout, resp.chunk()).await;
                match chunk {
                    Ok(Ok(Some(chunk))) => {
                        let n = chunk.len() as u64;
                        if !s.send(chunk).await {
                            return Ok(()); // the writer failed; finish() says why
                        }
                        received += n;
                        check_size(limits, received)?;
                        for r in &rates {
                            r.consume(n).await;
                        }
                        if let Some(line) = progress.advance(n, Instant::now()) {
                            log.line(&line);
                        }
                    }
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => {
                        let reason = match total {
                            Some(t) if received < t => {
                                format!("connection closed after {received} of {t} bytes")
                            }
                            _ => describe_reqwest(&e),
                        };
                        return Err(Failure::Transient {
                            reason,
                            after: None,
                        });
                    }
                    Err(_) => {
                        return Err(Failure::Transient {
                            reason: format!(
                                "no data received for {}s",
                                policy.stall_timeout.as_secs()
                            ),
                            after: None,
                        });
                    }
                }
            }
            match total {
                Some(t) if received < t => Err(Failure::Transient {
                    reason: format!("connection closed after {received} of {t} bytes"),
                    after: None,
                }),
                _ => Ok(()),
            }
        };
        match attempt.await {
            Ok(()) => break,
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient { reason, after }) => {
                failures += 1;
                if failures > policy.retries {
                    return Err(DownloadError::Transfer(reason));
                }
                let delay = policy.delay(failures, after);
                log.line(&format!(
                    "transfer failed after {received} bytes: {reason}; retry {failures} of {} in {}s",
                    policy.retries,
                    delay.as_secs_f64()
                ));
                tokio::time::sleep(delay).await;
            }
        }
    }
    let Some(sink) = sink else {
        return Err(DownloadError::Transfer("internal error: no data".into()));
    };
    let finished = sink
        .finish()
        .await
        .map_err(|e| sink_error(e, staged.path(), compression))?;
    log.line(&progress.summary(Instant::now()));
    drop(finished.file);

    if let (Some(checksum), Some(got)) = (&plan.checksum, finished.digest) {
        if !checksum.matches(&got) {
            log.line("calculating checksum...");
            return Err(DownloadError::ChecksumMismatch {
                got,
                expected: checksum.expected.clone(),
            });
        }
        log.line("calculating checksum...OK, checksum verified");
    }
    Ok(())
}

fn check_size(limits: &Limits, bytes: u64) -> Result<(), Failure> {
    match limits.max_size {
        Some(limit) if bytes > limit => Err(Failure::Fatal(DownloadError::TooLarge { limit })),
        _ => Ok(()),
    }
}

/// Fails at once when the announced length cannot fit, instead of after filling the disk.
/// A decompressed file may still outgrow the space; the write error then ends the task.
fn check_space(dir: &Path, needed: u64) -> Result<(), Failure> {
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else {
        return Ok(()); // unknown: the write itself will tell
    };
    let available = st.blocks_available().saturating_mul(st.fragment_size());
    if needed > available {
        return Err(Failure::Fatal(DownloadError::NoSpace {
            dir: dir.to_path_buf(),
            needed,
            available,
        }));
    }
    Ok(())
}

fn sink_error(e: SinkError, path: &Path, compression: Option<Compression>) -> DownloadError {
    match (e, compression) {
        (SinkError::Decode(e), Some(c)) => DownloadError::Decompress {
            command: c.pve_command(),
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
        (SinkError::Decode(source) | SinkError::Write(source), _) => DownloadError::Write {
            path: path.to_path_buf(),
            source,
        },
    }
}
