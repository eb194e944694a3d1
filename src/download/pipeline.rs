//! The one pass over the downloaded bytes: a writer thread hashes each chunk, decodes it when
//! asked, and writes it, while the network task goes on reading. A bounded channel between them
//! keeps memory flat whatever the file size (architecture invariants 3 and 4).

use std::fs::File;
use std::io;
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::checksum::{Algorithm, Hasher};
use super::decompress::{Compression, Output};

/// Chunks in flight between the network and the disk. reqwest yields chunks of up to a few
/// hundred KiB, so this bounds the buffer to a few MiB.
const CHANNEL_DEPTH: usize = 16;

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
}

impl Sink {
    pub fn start(
        file: File,
        algorithm: Option<Algorithm>,
        compression: Option<Compression>,
    ) -> io::Result<Sink> {
        let mut out = Output::new(file, compression)?;
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
                let mut hasher = algorithm.map(Hasher::new);
                while let Some(chunk) = rx.blocking_recv() {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    out.write_all(&chunk).map_err(classify)?;
                }
                let file = out.finish().map_err(classify)?;
                file.sync_all().map_err(SinkError::Write)?;
                Ok(Finished {
                    digest: hasher.map(Hasher::finish_hex),
                    file,
                })
            })?;
        Ok(Sink { tx, thread })
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
