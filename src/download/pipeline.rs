//! The one pass over the downloaded bytes: a writer thread hashes each chunk, decodes it when
//! asked, and writes it, while the network task goes on reading. A bounded channel between them
//! keeps memory flat whatever the file size (architecture invariants 3 and 4).
//!
//! Every `CHECKPOINT` the writer fdatasyncs an undecoded file and publishes how many bytes are
//! on disk for good, which the resume state records (partial.rs): what a crash may not take.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::checksum::{Algorithm, Hasher};
use super::decompress::{Compression, Output};

/// Chunks in flight between the network and the disk. reqwest yields chunks of up to a few
/// hundred KiB, so this bounds the buffer to a few MiB.
const CHANNEL_DEPTH: usize = 16;

/// How often the bytes written so far are made durable. A crash that takes the page cache
/// with it (power cut) costs at most this much transfer time on resume; a sync per interval
/// is noise next to the final one, which has to write everything anyway.
const CHECKPOINT: Duration = Duration::from_secs(2);

pub struct Finished {
    /// Digest of the bytes as downloaded (before decoding), as PVE computes it.
    pub digest: Option<String>,
    pub file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("write failed: {0}")]
    Write(io::Error),
    #[error("decompression failed: {0}")]
    Decode(io::Error),
}

pub struct Sink {
    tx: mpsc::Sender<Bytes>,
    thread: JoinHandle<Result<Finished, SinkError>>,
    synced: Arc<AtomicU64>,
}

impl Sink {
    pub fn start(
        file: File,
        algorithm: Option<Algorithm>,
        compression: Option<Compression>,
    ) -> io::Result<Sink> {
        Sink::continue_at(file, algorithm.map(Hasher::new), compression, 0)
    }

    /// A sink whose file already holds `offset` bytes (positioned at its end), with `hasher`
    /// fed with them.
    pub fn continue_at(
        file: File,
        hasher: Option<Hasher>,
        compression: Option<Compression>,
        offset: u64,
    ) -> io::Result<Sink> {
        let mut out = Output::new(file, compression)?;
        let synced = Arc::new(AtomicU64::new(offset));
        let published = synced.clone();
        let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let decoding = compression.is_some();
        let classify = move |e: io::Error| {
            // A decoder reports bad input as InvalidInput/InvalidData/Other; the file itself
            // reports ENOSPC and friends with an OS error code.
            if decoding && e.raw_os_error().is_none() {
                SinkError::Decode(e)
            } else {
                SinkError::Write(e)
            }
        };
        let thread = std::thread::Builder::new()
            .name("isolib-writer".into())
            .spawn(move || {
                let mut hasher = hasher;
                let mut written = offset;
                let mut last_sync = Instant::now();
                while let Some(chunk) = rx.blocking_recv() {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    out.write_all(&chunk).map_err(classify)?;
                    written += chunk.len() as u64;
                    // A decoded file's length says nothing about the download's offset.
                    if !decoding && last_sync.elapsed() >= CHECKPOINT {
                        out.sync_data().map_err(SinkError::Write)?;
                        published.store(written, Ordering::Release);
                        last_sync = Instant::now();
                    }
                }
                let file = out.finish().map_err(classify)?;
                file.sync_all().map_err(SinkError::Write)?;
                Ok(Finished {
                    digest: hasher.map(Hasher::finish_hex),
                    file,
                })
            })?;
        Ok(Sink { tx, thread, synced })
    }

    /// Leading bytes of the file that are on disk for good.
    pub fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Hands a chunk to the writer; fails when the writer has stopped (its error comes from
    /// `finish`).
    pub async fn send(&self, chunk: Bytes) -> bool {
        self.tx.send(chunk).await.is_ok()
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
