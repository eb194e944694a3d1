//! The one pass over the downloaded bytes: a writer thread hashes each chunk, decodes it when
//! asked, and writes it, while the network task goes on reading. A bounded channel between them
//! keeps memory flat whatever the file size (architecture invariants 3 and 4).
//!
//! The writer hands the file's bytes to direct.rs, which writes them past the page cache on a
//! thread of its own. Where that is refused, and for the segments of a segmented download
//! (segment_writer.rs), the bytes go through the page cache, and the syncer sees to them.
//!
//! Beside the writer, a syncer thread keeps the disk busy from the first bytes on: every
//! `KICK_BYTES` (or `KICK`, whichever comes first) it starts writeback of what was written
//! since, without waiting for it, so the final fsync has little left to do instead of the whole
//! file; then it waits for the window before that one and drops it from the page cache. Every
//! `CHECKPOINT` it fdatasyncs an undecoded file and publishes how many bytes are on disk for
//! good, which the resume state records (partial.rs): what a crash may not take. Neither ever
//! stalls hashing and writing.

use std::fs::File;
use std::io;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Compression;
use super::checksum::{Algorithm, Hasher};
use super::decompress::Output;
use super::direct::Direct;
use super::segment_writer::{self, Counters, Ordered, Piece, SegmentState};
use crate::catalog::{Observed, Observer};

/// Chunks in flight between the network and the disk. reqwest yields chunks of up to a few
/// hundred KiB, so this bounds the buffer to a few MiB.
const CHANNEL_DEPTH: usize = 16;

/// How often the bytes written so far are made durable. A crash that takes the page cache
/// with it (power cut) costs at most this much transfer time on resume; a sync per interval
/// is noise next to the final one, which has to write everything anyway.
const CHECKPOINT: Duration = Duration::from_secs(2);

/// How often writeback of new bytes is started at the latest. The kernel alone would wait until
/// a tenth of memory is dirty or the data is 30 s old, leaving the disk idle while the network
/// is busy.
const KICK: Duration = Duration::from_millis(50);

/// New bytes that start writeback sooner: two such windows are about all a fast download holds
/// dirty, whatever the network's speed.
const KICK_BYTES: u64 = 8 << 20;

/// How often the syncer looks at the writer's count.
const TICK: Duration = Duration::from_millis(5);

pub struct Finished {
    /// Digest of the bytes as downloaded (before decoding), as PVE computes it.
    pub digest: Option<String>,
    /// What the bytes in the file are (after decoding): the catalog's facts.
    pub observed: Observed,
    pub file: File,
}

impl Finished {
    /// The user's digest is the file's sha256 when `user_hasher` gave no hasher of its own.
    pub fn new(
        hasher: Option<Hasher>,
        algorithm: Option<Algorithm>,
        observed: Observed,
        file: File,
    ) -> Finished {
        let digest = match hasher {
            Some(h) => Some(h.finish_hex()),
            None => algorithm.map(|_| observed.sha256.clone()),
        };
        Finished {
            digest,
            observed,
            file,
        }
    }
}

/// The digest the user asked for, as a hasher of its own, unless the file's sha256 (always
/// computed) is that digest already: one hash pass where PVE makes two, never three.
pub fn user_hasher(
    algorithm: Option<Algorithm>,
    compression: Option<Compression>,
) -> Option<Hasher> {
    algorithm
        .filter(|a| *a != Algorithm::Sha256 || compression.is_some())
        .map(Hasher::new)
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("write failed: {0}")]
    Write(io::Error),
    #[error("decompression failed: {0}")]
    Decode(io::Error),
}

pub struct Sink {
    tx: mpsc::Sender<Piece>,
    thread: Writer,
    synced: Arc<AtomicU64>,
    /// Leading bytes of the file that are in it (not yet on disk for good).
    written: Arc<AtomicU64>,
    /// Set by `abort`: the bytes are about to be thrown away, so they are not synced.
    abandoned: Arc<AtomicBool>,
    /// A segmented download's progress per segment.
    segments: Option<Arc<Counters>>,
}

impl Sink {
    /// `iso`: the file is an ISO image, whose descriptors the catalog reads on the way.
    pub fn start(
        file: File,
        algorithm: Option<Algorithm>,
        compression: Option<Compression>,
        iso: bool,
    ) -> io::Result<Sink> {
        let hasher = user_hasher(algorithm, compression);
        let observer = Observer::new(iso);
        match compression {
            None => Sink::continue_at(file, algorithm, hasher, observer, 0),
            Some(c) => Sink::decoded(file, algorithm, hasher, observer, c),
        }
    }

    /// A sink whose file already holds `offset` bytes, with `hasher` (from [`user_hasher`])
    /// and `observer` fed with them.
    pub fn continue_at(
        file: File,
        algorithm: Option<Algorithm>,
        hasher: Option<Hasher>,
        observer: Observer,
        offset: u64,
    ) -> io::Result<Sink> {
        let syncer_file = file.try_clone()?;
        let mut out = Direct::new(file, offset)?;
        // Only what is in the file is there for the syncer to make durable.
        let written = out.in_file();
        let (syncer, synced) = Syncer::checkpointing(syncer_file, written.clone(), None)?;
        let abandoned = Arc::new(AtomicBool::new(false));
        let abandon = abandoned.clone();
        let work = move |mut rx: mpsc::Receiver<Piece>| {
            let (mut hasher, mut observer) = (hasher, observer);
            while let Some(Piece { bytes, .. }) = rx.blocking_recv() {
                if let Some(h) = hasher.as_mut() {
                    h.update(&bytes);
                }
                observer.update(&bytes);
                out.write_all(&bytes).map_err(SinkError::Write)?;
            }
            syncer.stop();
            let file = out.finish().map_err(SinkError::Write)?;
            close(file, &abandon, hasher, algorithm, observer.finish())
        };
        Sink::launch(synced, written, abandoned, None, work)
    }

    /// A sink that decodes the bytes (`compression`) into the file. Its file is never
    /// resumed (the decoder's state is gone with it), so it has no checkpoints, only the
    /// syncer's writeback.
    fn decoded(
        file: File,
        algorithm: Option<Algorithm>,
        hasher: Option<Hasher>,
        observer: Observer,
        compression: Compression,
    ) -> io::Result<Sink> {
        let syncer = Syncer::start(file.try_clone()?, None)?;
        let mut out = Output::new(file, compression, observer)?;
        let written = Arc::new(AtomicU64::new(0));
        let abandoned = Arc::new(AtomicBool::new(false));
        let (abandon, accepted) = (abandoned.clone(), written.clone());
        let work = move |mut rx: mpsc::Receiver<Piece>| {
            let mut hasher = hasher;
            // A decoder reports bad input as InvalidInput/InvalidData/Other; the file itself
            // reports ENOSPC and friends with an OS error code.
            let classify = |e: io::Error| match e.raw_os_error() {
                None => SinkError::Decode(e),
                Some(_) => SinkError::Write(e),
            };
            while let Some(Piece { bytes, .. }) = rx.blocking_recv() {
                if let Some(h) = hasher.as_mut() {
                    h.update(&bytes);
                }
                out.write_all(&bytes).map_err(classify)?;
                accepted.fetch_add(bytes.len() as u64, Ordering::Release);
            }
            syncer.stop();
            let (file, observed) = out.finish().map_err(classify)?;
            close(file, &abandon, hasher, algorithm, observed)
        };
        Sink::launch(Arc::new(AtomicU64::new(0)), written, abandoned, None, work)
    }

    /// A sink for the bytes of several connections, each fetching one of `segments` into its
    /// place (segment_writer.rs). The file holds `segments[i].synced` bytes of each already,
    /// of which the leading `front` were fed to `hasher` and `observer`.
    pub fn segmented(
        file: File,
        algorithm: Option<Algorithm>,
        hasher: Option<Hasher>,
        observer: Observer,
        segments: &[SegmentState],
        front: u64,
    ) -> io::Result<Sink> {
        let counters = Arc::new(Counters::new(segments));
        let written = Arc::new(AtomicU64::new(front));
        let (syncer, synced) =
            Syncer::checkpointing(file.try_clone()?, written.clone(), Some(counters.clone()))?;
        let abandoned = Arc::new(AtomicBool::new(false));
        let (abandon, shared, front) = (abandoned.clone(), counters.clone(), written.clone());
        let work = move |rx| {
            let ordered = Ordered { hasher, observer };
            let gone = || abandon.load(Ordering::Acquire);
            let result = segment_writer::run(rx, &file, &shared, &front, ordered, gone);
            syncer.stop();
            let (hasher, observed) = result.map_err(SinkError::Write)?;
            close(file, &abandon, hasher, algorithm, observed)
        };
        Sink::launch(synced, written, abandoned, Some(counters), work)
    }

    /// Starts the writer thread, which does `work` with the pieces sent to the sink.
    fn launch(
        synced: Arc<AtomicU64>,
        written: Arc<AtomicU64>,
        abandoned: Arc<AtomicBool>,
        segments: Option<Arc<Counters>>,
        work: impl FnOnce(mpsc::Receiver<Piece>) -> Result<Finished, SinkError> + Send + 'static,
    ) -> io::Result<Sink> {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let thread = std::thread::Builder::new()
            .name("isolib-writer".into())
            .spawn(move || work(rx))?;
        Ok(Sink {
            tx,
            thread,
            synced,
            written,
            abandoned,
            segments,
        })
    }

    /// Whether the bytes come over several connections, each into its segment.
    pub fn is_segmented(&self) -> bool {
        self.segments.is_some()
    }

    /// The segments of a segmented download with the bytes written into each.
    pub fn segments_written(&self) -> Option<Vec<SegmentState>> {
        self.segments.as_ref().map(|c| c.current())
    }

    /// Ends segment `i` of a segmented download at `at`; the rest becomes a new segment, whose
    /// index is returned. Nothing of segment `i` may have been sent past `at`.
    pub fn split(&self, i: usize, at: u64) -> Option<usize> {
        self.segments.as_ref()?.split(i, at)
    }

    /// The segments of a segmented download as far as they are on disk for good.
    pub fn segments(&self) -> Option<Vec<SegmentState>> {
        self.segments.as_ref().map(|c| c.synced())
    }

    /// The writer's count of leading bytes in the file, as it goes.
    pub fn written(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    /// Leading bytes of the file that are on disk for good.
    pub fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Hands a chunk to the writer; fails when the writer has stopped (its error comes from
    /// `finish`).
    pub async fn send(&self, chunk: Bytes) -> bool {
        self.send_to(0, chunk).await
    }

    /// Hands the next bytes of `segment` to the writer of a segmented download.
    pub async fn send_to(&self, segment: usize, bytes: Bytes) -> bool {
        self.tx.send(Piece { segment, bytes }).await.is_ok()
    }

    /// Ends the stream for bytes that are dropped next (a restart from zero): waits for the
    /// writer to let go of the file, without making them durable.
    pub async fn abort(self) {
        self.abandoned.store(true, Ordering::Release);
        let _ = self.finish().await;
    }

    /// Ends the stream and waits for the writer: everything is written and fsynced on Ok.
    pub async fn finish(self) -> Result<Finished, SinkError> {
        drop(self.tx);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| SinkError::Write(io::Error::other(e)))?
            .map_err(|_| SinkError::Write(io::Error::other("writer thread panicked")))?
    }
}

type Writer = JoinHandle<Result<Finished, SinkError>>;

/// The writer's last step: the file on disk for good and out of the page cache, unless its
/// bytes are about to be thrown away.
fn close(
    file: File,
    abandoned: &AtomicBool,
    hasher: Option<Hasher>,
    algorithm: Option<Algorithm>,
    observed: Observed,
) -> Result<Finished, SinkError> {
    if !abandoned.load(Ordering::Acquire) {
        file.sync_all().map_err(SinkError::Write)?;
        release_cache(&file, 0, 0);
    }
    Ok(Finished::new(hasher, algorithm, observed, file))
}

/// Starts writeback of the bytes written so far every `KICK_BYTES` or `KICK` and, for an
/// undecoded file, makes them durable every `CHECKPOINT`, through its own handle on the file.
struct Syncer {
    stop: std::sync::mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// The writer's count of bytes in the file, and the syncer's of those on disk for good; for a
/// segmented download also per segment.
struct Checkpoints {
    written: Arc<AtomicU64>,
    synced: Arc<AtomicU64>,
    segments: Option<Arc<Counters>>,
}

impl Syncer {
    fn start(file: File, checkpoints: Option<Checkpoints>) -> io::Result<Syncer> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("isolib-syncer".into())
            .spawn(move || {
                // How far the file is written: the writer's count for an undecoded file; the
                // file's own length for a decoded one (what its decoder has written so far).
                let upto = |c: &Option<Checkpoints>| match c {
                    Some(c) => c.written.load(Ordering::Acquire),
                    None => file.metadata().map_or(0, |m| m.len()),
                };
                let mut kicked = upto(&checkpoints);
                let mut last_kick = Instant::now();
                // The window started last time: written back by now, or soon, and then
                // dropped from the page cache, so a download holds at most two windows of
                // dirty pages and leaves the cache the VMs use as it found it.
                let mut in_flight: Option<(u64, u64)> = None;
                let mut last_sync = Instant::now();
                // Ends when the writer drops the sender (or sends): the final sync is its own.
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(TICK)
                {
                    // Loaded before the sync: every byte counted here was written already.
                    let upto = upto(&checkpoints);
                    // A decoded file is never resumed (its decoder's state is gone), so it has
                    // no checkpoints to make.
                    if let Some(c) = checkpoints
                        .as_ref()
                        .filter(|_| last_sync.elapsed() >= CHECKPOINT)
                    {
                        let segments_now = c.segments.as_ref().map(|s| s.current());
                        if let Err(e) = file.sync_data() {
                            tracing::warn!("periodic sync of a partial download failed: {e}");
                            return;
                        }
                        c.synced.store(upto, Ordering::Release);
                        if let (Some(s), Some(now)) = (&c.segments, segments_now) {
                            s.publish_synced(now);
                        }
                        release_cache(&file, 0, upto);
                        in_flight = None;
                        last_sync = Instant::now();
                        (kicked, last_kick) = (upto, Instant::now());
                    } else if upto >= kicked + KICK_BYTES
                        || (upto > kicked && last_kick.elapsed() >= KICK)
                    {
                        start_writeback(&file, kicked, upto - kicked);
                        if let Some((offset, len)) = in_flight {
                            finish_writeback(&file, offset, len);
                            release_cache(&file, offset, len);
                        }
                        in_flight = Some((kicked, upto - kicked));
                        (kicked, last_kick) = (upto, Instant::now());
                    }
                }
            })?;
        Ok(Syncer { stop, thread })
    }

    /// A syncer that makes an undecoded file's leading bytes durable as the writer's count
    /// `written` grows, with the count of bytes on disk for good.
    fn checkpointing(
        file: File,
        written: Arc<AtomicU64>,
        segments: Option<Arc<Counters>>,
    ) -> io::Result<(Syncer, Arc<AtomicU64>)> {
        let synced = Arc::new(AtomicU64::new(written.load(Ordering::Acquire)));
        let checkpoints = Checkpoints {
            written,
            synced: synced.clone(),
            segments,
        };
        let syncer = Syncer::start(file, Some(checkpoints))?;
        Ok((syncer, synced))
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` (0: up to the end) to disk, without
/// waiting for it. Only a hint: when it fails, the checkpoints and the final fsync still write
/// everything.
pub(super) fn start_writeback(file: &File, offset: u64, len: u64) {
    sync_range(file, offset, len, libc::SYNC_FILE_RANGE_WRITE);
}

/// Waits until `len` bytes at `offset` are written back (not durable: no metadata, no flush of
/// the disk's cache; the fsyncs see to that), so their pages are clean and can be dropped.
fn finish_writeback(file: &File, offset: u64, len: u64) {
    sync_range(
        file,
        offset,
        len,
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
    );
}

fn sync_range(file: &File, offset: u64, len: u64, flags: libc::c_uint) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is owned by `file`, which outlives the call; the call only reads
    // its arguments.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if rc != 0 {
        tracing::debug!("sync_file_range failed: {}", io::Error::last_os_error());
    }
}

/// Drops the clean pages of `len` bytes at `offset` (0: up to the end) from the page cache: a
/// download is written once and read rarely, and on a PVE node the cache belongs to the VMs.
/// Dirty pages stay (the kernel skips them); only a hint.
pub fn release_cache(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: as in `sync_range`.
    let rc =
        unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        tracing::debug!("posix_fadvise failed: {}", io::Error::from_raw_os_error(rc));
    }
}
