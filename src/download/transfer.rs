//! One transfer: the attempt loop of a download, from the first request to the fsynced temp file
//! with its digest checked. An attempt sends the request (origin.rs: with `Range` + `If-Range`
//! once bytes are in), reads the answer (go on, start over, or fail), and streams the body into
//! the sink, or hands it to several connections (segmented.rs); a transient failure backs off
//! and tries again (retry.rs holds the policy). The resume state next to the temp file follows
//! along: the origin's version whenever the file starts from zero, the bytes on disk for good
//! whenever the writer has synced more.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use reqwest::{Response, StatusCode};

use super::error::describe_reqwest;
use super::fetch::Fetcher;
use super::origin::{Failure, is_reset, send_with_range, status_failure};
use super::pipeline::{Sink, SinkError, user_hasher};
use super::progress::{self, Progress};
use super::range::{self, Resume};
use super::ratelimit::RateLimit;
use super::segment_writer;
use super::segmented;
use super::staging::Staged;
use super::{Compression, DownloadError, DownloadPlan, Engine, Limits, LogSink};

#[derive(PartialEq)]
enum Accepted {
    /// The body that follows goes into the file.
    Body,
    /// The bytes already in are the whole file; there is no body to read.
    Complete,
}

pub struct Transfer<'a> {
    plan: &'a DownloadPlan,
    compression: Option<Compression>,
    limits: &'a Limits,
    fetcher: Arc<Fetcher>,
    /// The per-transfer limit and the shared one; each chunk waits for both.
    rates: Vec<RateLimit>,
    log: &'a dyn LogSink,
    staged: &'a mut Staged,
    /// Created with the first body byte and kept across retries, so the hash and decoder state
    /// carry on where the previous attempt stopped.
    sink: Option<Sink>,
    /// Body bytes received so far, as downloaded (before decoding).
    received: u64,
    /// The length the origin announced for the whole file.
    total: Option<u64>,
    /// What `If-Range` sends, so a changed file is never spliced onto the old bytes.
    validator: Option<String>,
    progress: Progress,
    failures: u32,
    /// Where the accepted body came from, for the catalog.
    provenance: Provenance,
    /// Connections a download may use at once (segmented.rs).
    connections: u32,
}

/// Where the bytes came from, as the last answer that delivered some said.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    /// After redirects.
    pub final_url: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Provenance {
    fn of(resp: &Response) -> Provenance {
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Provenance {
            final_url: Some(resp.url().to_string()),
            etag: header(reqwest::header::ETAG),
            last_modified: header(reqwest::header::LAST_MODIFIED),
        }
    }
}

/// A finished transfer: the fsynced temp file's facts and where its bytes came from.
pub struct Delivered {
    pub observed: crate::catalog::Observed,
    pub provenance: Provenance,
}

impl<'a> Transfer<'a> {
    pub fn new(
        plan: &'a DownloadPlan,
        compression: Option<Compression>,
        engine: &'a Engine,
        fetcher: Arc<Fetcher>,
        log: &'a dyn LogSink,
        staged: &'a mut Staged,
    ) -> Transfer<'a> {
        Transfer {
            plan,
            compression,
            limits: &engine.limits,
            fetcher,
            rates: engine.rates(),
            log,
            staged,
            sink: None,
            received: 0,
            total: None,
            validator: None,
            progress: Progress::new(None, Instant::now()),
            failures: 0,
            provenance: Provenance::default(),
            connections: plan.connections.unwrap_or(engine.limits.connections),
        }
    }

    /// Goes on after the `offset` bytes already in `sink`, which hold the version of the file
    /// the resume state names (resume.rs).
    pub fn continue_after(mut self, sink: Sink, offset: u64) -> Transfer<'a> {
        self.total = self.staged.state().length;
        self.validator = self.staged.state().validator.clone();
        // A segmented download has bytes after gaps too.
        let on_disk = sink
            .segments_written()
            .map_or(offset, |s| s.iter().map(|s| s.synced).sum());
        self.received = on_disk;
        self.sink = Some(sink);
        self.progress = Progress::resumed(self.total, on_disk, Instant::now());
        self
    }

    /// Attempts until the body is complete or a failure is final, then finishes the file.
    pub async fn run(mut self) -> Result<Delivered, DownloadError> {
        loop {
            match self.attempt().await {
                Ok(()) => break,
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient { reason, after }) => self.back_off(reason, after).await?,
                Err(Failure::Unusable(reason)) => self.back_off(reason, None).await?,
                Err(Failure::WriterGone) => break,
            }
        }
        self.finish().await
    }

    async fn attempt(&mut self) -> Result<(), Failure> {
        if self.sink.as_ref().is_some_and(Sink::is_segmented) {
            return self.fetch_segments(None).await;
        }
        if self.received > 0 && self.validator.is_none() && self.plan.checksum.is_none() {
            // Nothing could tell a changed file from the old one: a resume might splice two
            // versions together, and no digest would notice.
            self.log.line(
                "the origin sent neither ETag nor Last-Modified and no checksum was given; restarting from zero",
            );
            self.restart_from_zero().await;
        }
        let mut resp = self.send().await?;
        if self.accept(&resp).await? == Accepted::Complete {
            return Ok(());
        }
        if self.sink.is_none() && self.connections > 1 {
            let refused = match self.compression {
                Some(_) => Some("a decompressing download is decoded in order".to_string()),
                None => segmented::refusal(&resp, self.total, self.validator.as_deref()),
            };
            match refused {
                None => {
                    self.start_segments()?;
                    return self.fetch_segments(Some(resp)).await;
                }
                Some(why) => {
                    self.log.line(&format!("{why}; using one connection"));
                    self.connections = 1;
                }
            }
        }
        self.ensure_sink()?;
        self.stream(&mut resp).await
    }

    /// Cuts the file the first answer announced into segments, one per connection, and starts
    /// their writer.
    fn start_segments(&mut self) -> Result<(), Failure> {
        let total = self.total.unwrap_or(0);
        let segments = segment_writer::split(total, self.connections);
        let path = self.staged.path().to_path_buf();
        let create_err = |source| Failure::Fatal(DownloadError::CreateTemp { path, source });
        let algorithm = self.plan.checksum.as_ref().map(|c| c.algorithm);
        let observer = crate::catalog::Observer::new(self.plan.content == "iso");
        let sink = self
            .staged
            .start_segments(self.validator.clone(), total, segments.clone())
            .and_then(|file| {
                let hasher = user_hasher(algorithm, None);
                Sink::segmented(file, algorithm, hasher, observer, &segments, 0)
            })
            .map_err(create_err)?;
        self.sink = Some(sink);
        self.log.line(&format!(
            "fetching {} segments over as many connections",
            segments.len()
        ));
        Ok(())
    }

    /// Fetches what the segments still miss, recording their progress for a resume as it is
    /// made durable.
    async fn fetch_segments(&mut self, first: Option<Response>) -> Result<(), Failure> {
        let (Some(sink), Some(total), Some(validator)) =
            (self.sink.as_ref(), self.total, self.validator.as_deref())
        else {
            return Err(Failure::Fatal(DownloadError::Transfer(
                "internal error: a segmented download without its length or version".into(),
            )));
        };
        let segments = sink.segments_written().unwrap_or_default();
        let connections = segmented::Connections {
            plan: self.plan,
            // Every connection asks where the first answer came from: a mirror redirector
            // could send each to another mirror. A resumed download asks again.
            url: self
                .provenance
                .final_url
                .as_deref()
                .unwrap_or(&self.plan.url),
            fetcher: &self.fetcher,
            rates: &self.rates,
            log: self.log,
            validator,
            total,
            sink,
            progress: std::sync::Mutex::new(std::mem::replace(
                &mut self.progress,
                Progress::new(None, Instant::now()),
            )),
        };
        let staged = &mut *self.staged;
        let result = {
            let run = connections.run(&segments, first);
            tokio::pin!(run);
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                tokio::select! {
                    r = &mut run => break r,
                    _ = tick.tick() => record_segments(staged, sink),
                }
            }
        };
        record_segments(staged, sink);
        self.progress = connections
            .progress
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                self.received = total;
                Ok(())
            }
            Err(segmented::Stopped::WriterGone) => Err(Failure::WriterGone),
            Err(segmented::Stopped::Failed(e)) => Err(Failure::Fatal(e)),
            Err(segmented::Stopped::Unusable(reason)) => {
                self.log.line(&format!("{reason}; using one connection"));
                self.connections = 1;
                self.restart_from_zero().await;
                Err(Failure::Unusable(reason))
            }
        }
    }

    /// Drops the bytes received so far; the next body is written from the start of the file.
    async fn restart_from_zero(&mut self) {
        if let Some(old) = self.sink.take() {
            // The old writer must be done before the file is truncated.
            old.abort().await;
        }
        self.received = 0;
    }

    async fn send(&self) -> Result<Response, Failure> {
        let range = format!("bytes={}-", self.received);
        let range = (self.received > 0).then_some((range.as_str(), self.validator.as_deref()));
        send_with_range(&self.fetcher, self.plan, &self.plan.url, range).await
    }

    /// Decides from the status whether the body continues the bytes already in, replaces them,
    /// or ends the attempt.
    async fn accept(&mut self, resp: &Response) -> Result<Accepted, Failure> {
        let status = resp.status();
        if self.received > 0 {
            let judged = range::judge_resume(
                self.received,
                self.validator.as_deref(),
                self.total,
                status,
                resp.headers(),
            );
            match judged {
                Resume::Continue => {
                    self.provenance = Provenance::of(resp);
                    return Ok(Accepted::Body);
                }
                Resume::Complete => {
                    self.log.line(&format!(
                        "the origin reports the file complete at {} bytes",
                        self.received
                    ));
                    return Ok(Accepted::Complete);
                }
                Resume::Restart(reason) => {
                    self.restart_from_zero().await;
                    return Err(Failure::transient(reason));
                }
                Resume::Replace(line) => {
                    self.log.line(&line);
                    self.restart_from_zero().await;
                    return self.accept_whole(resp);
                }
                Resume::Status => {}
            }
        }
        if !status.is_success() || status == StatusCode::PARTIAL_CONTENT {
            return Err(status_failure(resp));
        }
        self.accept_whole(resp)
    }

    /// Takes an answer whose body is the whole file, from its first byte.
    fn accept_whole(&mut self, resp: &Response) -> Result<Accepted, Failure> {
        if resp.url().as_str() != self.plan.url {
            self.log.line(&format!("redirected to {}", resp.url()));
        }
        self.total = resp.content_length();
        self.validator = range::validator(resp.headers());
        self.provenance = Provenance::of(resp);
        self.log.line(&match self.total {
            Some(n) => format!("length: {n} ({})", progress::human_bytes(n)),
            None => "length: unspecified".to_string(),
        });
        self.progress = Progress::new(self.total, Instant::now());
        if let Some(n) = self.total {
            check_size(self.limits, n)?;
            // Bytes of an earlier attempt in the temp file give their room to the new body;
            // a decoded file's length is not comparable with the download's.
            let held = match self.compression {
                Some(_) => 0,
                None => std::fs::metadata(self.staged.path()).map_or(0, |m| m.len()),
            };
            check_space(self.staged.dir(), n, held)?;
        }
        Ok(Accepted::Body)
    }

    fn ensure_sink(&mut self) -> Result<(), Failure> {
        if self.sink.is_some() {
            return Ok(());
        }
        let path = self.staged.path().to_path_buf();
        let create_err = |source| {
            Failure::Fatal(DownloadError::CreateTemp {
                path: path.clone(),
                source,
            })
        };
        let file = self
            .staged
            .start_over(self.validator.clone(), self.total)
            .map_err(create_err)?;
        let algorithm = self.plan.checksum.as_ref().map(|c| c.algorithm);
        let iso = self.plan.content == "iso";
        self.sink = Some(Sink::start(file, algorithm, self.compression, iso).map_err(create_err)?);
        Ok(())
    }

    /// Moves the body into the sink until it ends, breaks or stalls.
    async fn stream(&mut self, resp: &mut Response) -> Result<(), Failure> {
        let Some(sink) = self.sink.as_ref() else {
            return Err(Failure::Fatal(DownloadError::Transfer(
                "internal error: no sink".into(),
            )));
        };
        let stall = self.plan.retry.stall_timeout;
        loop {
            match tokio::time::timeout(stall, resp.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    let n = chunk.len() as u64;
                    // Before the write: not one byte over the limit reaches the disk.
                    check_size(self.limits, self.received + n)?;
                    if !sink.send(chunk).await {
                        return Ok(()); // the writer failed; finish() says why
                    }
                    self.received += n;
                    let synced = sink.synced();
                    if synced > self.staged.state().synced {
                        self.staged.record_synced(synced);
                    }
                    for r in &self.rates {
                        r.consume(n).await;
                    }
                    if let Some(line) = self.progress.advance(n, Instant::now()) {
                        self.log.line(&line);
                    }
                }
                Ok(Ok(None)) => break,
                Ok(Err(e)) => {
                    return Err(Failure::transient(
                        self.short_body(is_reset(&e))
                            .unwrap_or_else(|| describe_reqwest(&e)),
                    ));
                }
                Err(_) => {
                    return Err(Failure::transient(format!(
                        "no data received for {}s",
                        stall.as_secs()
                    )));
                }
            }
        }
        match self.short_body(false) {
            Some(reason) => Err(Failure::transient(reason)),
            None => Ok(()),
        }
    }

    /// Why the body is incomplete, when the announced length says it is.
    fn short_body(&self, reset: bool) -> Option<String> {
        let how = if reset { "reset" } else { "closed" };
        match self.total {
            Some(t) if self.received < t => Some(format!(
                "connection {how} after {} of {t} bytes",
                self.received
            )),
            _ => None,
        }
    }

    /// Counts a transient failure and waits before the next attempt, or gives up.
    async fn back_off(
        &mut self,
        reason: String,
        after: Option<std::time::Duration>,
    ) -> Result<(), DownloadError> {
        let policy = &self.plan.retry;
        self.failures += 1;
        if self.failures > policy.retries {
            return Err(DownloadError::Transfer(reason));
        }
        let delay = policy.delay(self.failures, after);
        self.log.line(&format!(
            "transfer failed after {} bytes: {reason}; retry {} of {} in {}s",
            self.received,
            self.failures,
            policy.retries,
            delay.as_secs_f64()
        ));
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Waits for the writer (everything written and fsynced), then checks the digest.
    async fn finish(self) -> Result<Delivered, DownloadError> {
        let Some(sink) = self.sink else {
            return Err(DownloadError::Transfer("internal error: no data".into()));
        };
        let finished = sink
            .finish()
            .await
            .map_err(|e| sink_error(e, self.staged.path(), self.compression))?;
        self.log.line(&self.progress.summary(Instant::now()));
        drop(finished.file);

        if let (Some(checksum), Some(got)) = (&self.plan.checksum, finished.digest) {
            if !checksum.matches(&got) {
                self.log.line("calculating checksum...");
                return Err(DownloadError::ChecksumMismatch {
                    got,
                    expected: checksum.expected.clone(),
                });
            }
            self.log
                .line("calculating checksum...OK, checksum verified");
        }
        Ok(Delivered {
            observed: finished.observed,
            provenance: self.provenance,
        })
    }
}

/// Records the segments as far as they are durable, when that changed.
fn record_segments(staged: &mut Staged, sink: &Sink) {
    if let Some(segments) = sink.segments()
        && segments != staged.state().segments
    {
        staged.record_segments(segments, sink.synced());
    }
}

fn check_size(limits: &Limits, bytes: u64) -> Result<(), Failure> {
    match limits.max_size {
        Some(limit) if bytes > limit => Err(Failure::Fatal(DownloadError::TooLarge { limit })),
        _ => Ok(()),
    }
}

/// Fails at once when the announced length cannot fit, instead of after filling the disk.
/// `freed` bytes are about to be truncated away. A decompressed file may still outgrow the
/// space; the write error then ends the task.
fn check_space(dir: &Path, needed: u64, freed: u64) -> Result<(), Failure> {
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else {
        return Ok(()); // unknown: the write itself will tell
    };
    let available = st
        .blocks_available()
        .saturating_mul(st.fragment_size())
        .saturating_add(freed);
    if needed > available {
        return Err(Failure::Fatal(DownloadError::NoSpace {
            dir: dir.to_path_buf(),
            needed,
            available,
        }));
    }
    Ok(())
}

pub(super) fn sink_error(
    e: SinkError,
    path: &Path,
    compression: Option<Compression>,
) -> DownloadError {
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
