//! A download over several connections (the `connections` setting): for an origin that answers
//! ranges and names its version, the file is cut into segments and each connection fetches
//! one into its place in the temp file (segment_writer.rs keeps the digest in file order).
//! Every request after the first carries `If-Range` with the first answer's validator, and
//! every answer must be a range of that version at the asked offset, so bytes of two versions
//! are never joined. A segment whose connection breaks or stalls goes on from its own bytes
//! with the same retry policy as a single transfer; after a crash, the segments go on from
//! their bytes on disk (resume.rs).

use std::sync::Mutex;
use std::time::Instant;

use reqwest::Response;
use reqwest::header::ACCEPT_RANGES;

use super::error::describe_reqwest;
use super::fetch::Fetcher;
use super::origin::{Failure, send_with_range, status_failure};
use super::pipeline::Sink;
use super::progress::Progress;
use super::range::{self, Resume};
use super::ratelimit::RateLimit;
use super::segment_writer::{MIN_SEGMENT, SegmentState};
use super::{DownloadError, DownloadPlan, LogSink};

/// Why a first answer is not split, when more than one connection was asked for.
pub fn refusal(resp: &Response, total: Option<u64>, validator: Option<&str>) -> Option<String> {
    let ranges = resp
        .headers()
        .get(ACCEPT_RANGES)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|u| u.trim().eq_ignore_ascii_case("bytes")));
    if !ranges {
        return Some("the origin does not announce byte ranges".into());
    }
    if validator.is_none() {
        return Some("the origin sent neither a strong ETag nor Last-Modified".into());
    }
    match total {
        Some(n) if n >= 2 * MIN_SEGMENT => None,
        Some(_) => Some("the file is too small to split".into()),
        None => Some("the origin did not announce the length".into()),
    }
}

/// How a segmented run ended, when not with every segment complete.
pub enum Stopped {
    /// The writer stopped taking bytes; finishing the sink says why.
    WriterGone,
    /// An answer was not a range of the version being fetched: start over from zero, with one
    /// connection.
    Unusable(String),
    Failed(DownloadError),
}

/// The connections of one segmented download.
pub struct Connections<'a> {
    pub plan: &'a DownloadPlan,
    /// Where the segments are asked for.
    pub url: &'a str,
    pub fetcher: &'a Fetcher,
    pub rates: &'a [RateLimit],
    pub log: &'a dyn LogSink,
    pub validator: &'a str,
    pub total: u64,
    pub sink: &'a Sink,
    pub progress: Mutex<Progress>,
}

impl Connections<'_> {
    /// Fetches what `segments` still miss; `first` is the answer that started the download,
    /// whose body is the first segment. Stops at the first segment that cannot go on.
    pub async fn run(
        &self,
        segments: &[SegmentState],
        mut first: Option<Response>,
    ) -> Result<(), Stopped> {
        let each = segments.iter().enumerate().map(|(i, s)| {
            let first = if i == 0 { first.take() } else { None };
            self.segment(i, s, first)
        });
        futures_util::future::try_join_all(each).await.map(drop)
    }

    async fn segment(
        &self,
        i: usize,
        s: &SegmentState,
        mut answer: Option<Response>,
    ) -> Result<(), Stopped> {
        let len = s.end - s.start;
        let mut done = s.synced;
        let mut failures = 0;
        while done < len {
            let at = s.start + done;
            let outcome = match answer.take() {
                Some(resp) => self.stream(i, resp, len, &mut done).await,
                None => match self.request(at, s.end).await {
                    Ok(resp) => self.stream(i, resp, len, &mut done).await,
                    Err(f) => Err(f),
                },
            };
            match outcome {
                Ok(()) => {}
                Err(Failure::Fatal(e)) => return Err(Stopped::Failed(e)),
                Err(Failure::Unusable(reason)) => return Err(Stopped::Unusable(reason)),
                Err(Failure::WriterGone) => return Err(Stopped::WriterGone),
                Err(Failure::Transient { reason, after }) => {
                    failures += 1;
                    let policy = &self.plan.retry;
                    if failures > policy.retries {
                        return Err(Stopped::Failed(DownloadError::Transfer(reason)));
                    }
                    let delay = policy.delay(failures, after);
                    self.log.line(&format!(
                        "segment {} (bytes {}-{}): transfer failed after {done} bytes: {reason}; retry {failures} of {} in {}s",
                        i + 1,
                        s.start,
                        s.end - 1,
                        policy.retries,
                        delay.as_secs_f64()
                    ));
                    tokio::time::sleep(delay).await;
                }
            }
        }
        Ok(())
    }

    /// Asks for `[at, end)` of the version being fetched, and checks the answer is that.
    async fn request(&self, at: u64, end: u64) -> Result<Response, Failure> {
        let range = format!("bytes={at}-{}", end - 1);
        let asked = Some((range.as_str(), Some(self.validator)));
        let resp = send_with_range(self.fetcher, self.plan, self.url, asked).await?;
        match range::judge_resume(
            at,
            Some(self.validator),
            Some(self.total),
            resp.status(),
            resp.headers(),
        ) {
            Resume::Continue => Ok(resp),
            Resume::Status => Err(match status_failure(&resp) {
                // Where a redirect led may refuse a later request (a signed URL that expired):
                // the plan's URL, asked again with one connection, may still answer.
                Failure::Fatal(DownloadError::Http { status, .. }) if self.url != self.plan.url => {
                    Failure::Unusable(format!("HTTP {status} for a segment from {}", self.url))
                }
                other => other,
            }),
            Resume::Restart(reason) | Resume::Replace(reason) => Err(Failure::Unusable(reason)),
            Resume::Complete => Err(Failure::Unusable(format!(
                "HTTP 416 for a range from byte {at}"
            ))),
        }
    }

    /// Moves the body into the segment until the segment is full, or the body ends, breaks or
    /// stalls.
    async fn stream(
        &self,
        i: usize,
        mut resp: Response,
        len: u64,
        done: &mut u64,
    ) -> Result<(), Failure> {
        let stall = self.plan.retry.stall_timeout;
        while *done < len {
            let chunk = match tokio::time::timeout(stall, resp.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => {
                    return Err(Failure::transient(format!(
                        "connection closed {} bytes before the end of the segment",
                        len - *done
                    )));
                }
                Ok(Err(e)) => return Err(Failure::transient(describe_reqwest(&e))),
                Err(_) => {
                    return Err(Failure::transient(format!(
                        "no data received for {}s",
                        stall.as_secs()
                    )));
                }
            };
            // The first answer is the whole file: only its first segment is ours.
            let n = (chunk.len() as u64).min(len - *done);
            if !self.sink.send_to(i, chunk.slice(..n as usize)).await {
                return Err(Failure::WriterGone);
            }
            *done += n;
            for r in self.rates {
                r.consume(n).await;
            }
            let line = self
                .progress
                .lock()
                .ok()
                .and_then(|mut p| p.advance(n, Instant::now()));
            if let Some(line) = line {
                self.log.line(&line);
            }
        }
        Ok(())
    }
}
