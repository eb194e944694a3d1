//! A download over several connections (the `connections` setting): for an origin that answers
//! ranges and names its version, the file is cut into segments and each connection fetches
//! one into its place in the temp file (segment_writer.rs keeps the digest in file order).
//! Every request after the first carries `If-Range` with the first answer's validator, and
//! every answer must be a range of that version at the asked offset, so bytes of two versions
//! are never joined. A segment whose connection breaks or stalls goes on from its own bytes
//! with the same retry policy as a single transfer; a connection that is done takes over half
//! of the slowest one's rest; after a crash, the segments go on from their bytes on disk
//! (resume.rs).

use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// A segment as the connections see it: `sent` bytes of it were handed to the writer (or are
/// on their way), so a split never gives away bytes already fetched.
struct Live {
    start: u64,
    end: u64,
    sent: u64,
    /// When its connection began, and `sent` then: its rate so far.
    began: Instant,
    sent_then: u64,
}

impl Live {
    fn new(start: u64, end: u64, sent: u64) -> Live {
        Live {
            start,
            end,
            sent,
            began: Instant::now(),
            sent_then: sent,
        }
    }

    fn left(&self) -> u64 {
        self.end - (self.start + self.sent)
    }

    /// How long its connection will take for the rest at its rate so far.
    fn time_left(&self, now: Instant) -> Duration {
        let rate = (self.sent - self.sent_then) as f64 / (now - self.began).as_secs_f64();
        if rate > 0.0 {
            Duration::from_secs_f64((self.left() as f64 / rate).min(1e9))
        } else {
            Duration::MAX
        }
    }
}

type Table = Mutex<Vec<Live>>;

/// Segments a download is cut into at the most: splits stop there.
const MAX_SEGMENTS: usize = 64;

/// A segment whose connection will be done sooner is left alone (a new connection costs a
/// request, and the bytes in flight on the old one are lost), and so is one whose connection
/// began less than this ago.
const WORTH_A_SPLIT: Duration = Duration::from_secs(1);

/// How often a free connection looks again for a segment worth splitting.
const LOOK_AGAIN: Duration = Duration::from_millis(250);

enum Split {
    /// This connection goes on with the new segment.
    Took(usize),
    /// Nothing is worth it yet.
    Later,
    /// Nothing will be: this connection is done.
    Never,
}

impl Connections<'_> {
    /// Fetches what `segments` still miss, one connection per segment; `first` is the answer
    /// that started the download, whose body is the first segment. A connection whose
    /// segment is done takes over the second half of what is left of the largest other one,
    /// so a slow connection does not hold up the end. Stops at the first segment that cannot
    /// go on.
    pub async fn run(
        &self,
        segments: &[SegmentState],
        mut first: Option<Response>,
    ) -> Result<(), Stopped> {
        let table: Table = Mutex::new(
            segments
                .iter()
                .map(|s| Live::new(s.start, s.end, s.synced))
                .collect(),
        );
        let each = (0..segments.len()).map(|i| {
            let first = if i == 0 { first.take() } else { None };
            self.connection(&table, i, first)
        });
        futures_util::future::try_join_all(each).await.map(drop)
    }

    async fn connection(
        &self,
        table: &Table,
        mut i: usize,
        mut answer: Option<Response>,
    ) -> Result<(), Stopped> {
        loop {
            self.segment(table, i, answer.take()).await?;
            i = loop {
                match self.take_over(table) {
                    Split::Took(next) => break next,
                    // A connection's rate shows only after a while (its first bytes come in a
                    // burst, or not yet).
                    Split::Later => tokio::time::sleep(LOOK_AGAIN).await,
                    Split::Never => return Ok(()),
                }
            };
        }
    }

    /// Splits the segment whose connection will take longest for what it has left, when that
    /// is worth a connection, and returns the index of its second half.
    fn take_over(&self, table: &Table) -> Split {
        let Ok(mut t) = table.lock() else {
            return Split::Never;
        };
        let now = Instant::now();
        let big_enough = |l: &&Live| l.left() >= 2 * MIN_SEGMENT;
        if t.len() >= MAX_SEGMENTS || !t.iter().any(|l| big_enough(&l)) {
            return Split::Never;
        }
        // A connection is judged by its rate once it has had time to show one.
        let slowest = t
            .iter()
            .enumerate()
            .filter(|(_, l)| big_enough(l) && now - l.began >= WORTH_A_SPLIT)
            .max_by_key(|(_, l)| l.time_left(now));
        let Some((j, slowest)) = slowest.filter(|(_, l)| l.time_left(now) >= WORTH_A_SPLIT) else {
            return Split::Later;
        };
        let (at, end) = (
            slowest.start + slowest.sent + slowest.left() / 2,
            slowest.end,
        );
        let Some(k) = self.sink.split(j, at) else {
            return Split::Never;
        };
        t[j].end = at;
        t.push(Live::new(at, end, 0));
        // Both tables grow only here, under this lock: their indexes agree.
        debug_assert_eq!(k, t.len() - 1);
        self.log.line(&format!(
            "segment {} split at byte {at}: bytes {at}-{} go to a connection that is free",
            j + 1,
            end - 1
        ));
        Split::Took(k)
    }

    async fn segment(
        &self,
        table: &Table,
        i: usize,
        mut answer: Option<Response>,
    ) -> Result<(), Stopped> {
        let mut failures = 0;
        loop {
            let Some((start, end, sent)) = live(table, i) else {
                return Ok(());
            };
            if start + sent >= end {
                return Ok(());
            }
            let outcome = match answer.take() {
                Some(resp) => self.stream(table, i, resp).await,
                None => match self.request(start + sent, end).await {
                    Ok(resp) => self.stream(table, i, resp).await,
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
                    let (start, end, sent) = live(table, i).unwrap_or((start, end, sent));
                    self.log.line(&format!(
                        "segment {} (bytes {start}-{}): transfer failed after {sent} bytes: {reason}; retry {failures} of {} in {}s",
                        i + 1,
                        end - 1,
                        policy.retries,
                        delay.as_secs_f64()
                    ));
                    tokio::time::sleep(delay).await;
                }
            }
        }
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

    /// Moves the body into segment `i` until the segment is full (its end may move: another
    /// connection may take over its rest), or the body ends, breaks or stalls.
    async fn stream(&self, table: &Table, i: usize, mut resp: Response) -> Result<(), Failure> {
        let stall = self.plan.retry.stall_timeout;
        loop {
            let Some((start, end, sent)) = live(table, i) else {
                return Ok(());
            };
            let left = end - (start + sent);
            if left == 0 {
                return Ok(());
            }
            let chunk = match tokio::time::timeout(stall, resp.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => {
                    return Err(Failure::transient(format!(
                        "connection closed {left} bytes before the end of the segment"
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
            // The end may have moved while the chunk arrived; the first answer is the whole
            // file, of which only the first segment is ours.
            let n = reserve(table, i, chunk.len() as u64);
            if n == 0 {
                return Ok(());
            }
            if !self.sink.send_to(i, chunk.slice(..n as usize)).await {
                return Err(Failure::WriterGone);
            }
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
    }
}

/// Segment `i`: its start, its end and the bytes sent of it.
fn live(table: &Table, i: usize) -> Option<(u64, u64, u64)> {
    let t = table.lock().ok()?;
    t.get(i).map(|l| (l.start, l.end, l.sent))
}

/// Counts up to `want` more bytes of segment `i` as sent, as many as it still has room for, and
/// returns how many. Counted before the send: a split while it waits leaves these bytes here.
fn reserve(table: &Table, i: usize, want: u64) -> u64 {
    let Ok(mut t) = table.lock() else { return 0 };
    let Some(l) = t.get_mut(i) else { return 0 };
    let n = want.min(l.end - (l.start + l.sent));
    l.sent += n;
    n
}
