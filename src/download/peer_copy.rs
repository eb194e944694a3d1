//! A volume copied from other nodes that hold it verified: one fetch from the origin per
//! cluster, every other node filled from a peer. Each source is asked over TLS pinned to its own
//! certificate (cluster/pin.rs) for `/files/{storage}/{volname}`, the export every daemon serves,
//! with the ETag that names the recorded sha256 as `If-Range`, so only those very bytes are ever
//! spliced. The bytes go through the same writer as a download (hashed in the same pass, written
//! back as they come, fsynced); a source that fails or stalls is replaced by the next, which
//! goes on from the bytes already on disk. The result must have the recorded sha256 before it
//! is recorded and published under its name, exactly like a download.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::growing::{Growing, GrowingFile, GrowingGuard};
use super::inflight::RequestKey;
use super::partial::PartialState;
use super::pipeline::Sink;
use super::progress::{Progress, human_bytes};
use super::ratelimit::RateLimit;
use super::record::{Recording, verified};
use super::staging::Staged;
use super::{DownloadError, Engine, LogSink, Want, checksum, publish_recorded};
use crate::catalog::{self, Lookup};
use crate::cluster::forward::{DISABLE_PROXY, parse_head};
use crate::cluster::peers::Peer;
use crate::cluster::pin;

/// A response head larger than this is not a daemon's.
const MAX_HEAD: usize = 64 << 10;
const READ_SIZE: usize = 256 << 10;

pub struct PeerCopy {
    /// This node's storage is the sources' very directory (the same identity): nothing to
    /// copy, the file must just be there.
    pub same_storage: bool,
    /// `storage:volname`, for the log.
    pub volid: String,
    /// The export's path, the same on every node: `/files/{storage}/{volname}`.
    pub path: String,
    pub dest: PathBuf,
    /// As for a download: beside `dest`'s directory, outside every listing.
    pub staging_dir: PathBuf,
    pub content: String,
    /// The volume's recorded sha256: the bytes must have it.
    pub sha256: String,
    /// The nodes to copy from, in order of preference.
    pub sources: Vec<Peer>,
    /// The headers that authenticate this node to its peers.
    pub credentials: Vec<(String, String)>,
    pub task_tag: String,
    /// Who asked, for the catalog record.
    pub user: String,
    /// A source that sends nothing for this long is given up.
    pub stall: Duration,
    /// Passes over the sources before the copy fails; one more pass after each backoff.
    pub rounds: u32,
    pub backoff: Duration,
}

/// What stands for a download's URL in a copy's request key.
const KEY_PREFIX: &str = "peer-copy:";

/// How long a request for a volume whose copy has begun waits for its first bytes.
const FIRST_BYTES: Duration = Duration::from_secs(10);

impl PeerCopy {
    /// Two copies of one volume are one transfer.
    fn key(&self) -> String {
        format!("{KEY_PREFIX}{}", self.path)
    }

    fn etag(&self) -> String {
        format!("\"sha256-{}\"", self.sha256)
    }
}

/// Why one source gave out; the copy goes on with the next.
#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error("{0}")]
    Failed(String),
    /// The writer stopped: no source can help; its error says why.
    #[error("the writer stopped")]
    WriterStopped,
}

fn failed(e: impl std::fmt::Display) -> SourceError {
    SourceError::Failed(e.to_string())
}

impl Engine {
    /// The copy arriving at `dest` whose bytes may be passed on: announced already, or,
    /// while a copy to `dest` has begun, once it is (it knows the length with its first
    /// answer). `None` when no copy is on its way or it ended meanwhile (the file may be
    /// there then).
    pub async fn arriving(&self, dest: &std::path::Path) -> Option<Arc<GrowingFile>> {
        let start = tokio::time::Instant::now();
        loop {
            if let Some(g) = self.growing.get(dest) {
                return Some(g);
            }
            let copying = self
                .inflight
                .running(dest)
                .is_some_and(|k| k.starts_with(KEY_PREFIX));
            if !copying || dest.exists() || start.elapsed() > FIRST_BYTES {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Copies `copy` into place for task `task`, or joins a copy of it that is running.
    pub async fn copy_from_peers(
        &self,
        copy: &PeerCopy,
        task: &str,
        log: &dyn LogSink,
        cancel: &CancellationToken,
    ) -> Result<(), DownloadError> {
        let key = RequestKey {
            url: copy.key(),
            compression: None,
            checksum: None,
            verify_certificates: true,
        };
        let want = Want {
            dest: &copy.dest,
            staging_dir: &copy.staging_dir,
            key,
            replace: false,
            finished: format!("copy of '{}' finished", copy.volid),
            // The copy meets whatever another daemon wrote by its sha256.
            same_request: &|| false,
        };
        let Some(claim) = self.claim(want, task, log, cancel).await? else {
            return Ok(());
        };
        let result = self.copy(copy, task, log, cancel).await;
        claim.release(&result);
        result
    }

    async fn copy(
        &self,
        copy: &PeerCopy,
        task: &str,
        log: &dyn LogSink,
        cancel: &CancellationToken,
    ) -> Result<(), DownloadError> {
        if copy.same_storage {
            log.line(&format!(
                "'{}' is in the sources' own storage (the same identity): nothing to copy",
                copy.volid
            ));
            return present(copy, log).await;
        }
        if copy.dest.is_file() {
            return present(copy, log).await;
        }
        let state = PartialState::for_target(copy.dest.clone(), copy.key());
        let mut staged = Staged::create(&copy.staging_dir, &copy.task_tag, state)?;
        let file = staged
            .start_over(None, None)
            .map_err(|source| DownloadError::CreateTemp {
                path: staged.path().to_path_buf(),
                source,
            })?;
        let write_err = |e| super::transfer::sink_error(e, staged.path(), None);
        let sink = Sink::start(file, None, None, copy.content == "iso").map_err(|source| {
            DownloadError::CreateTemp {
                path: staged.path().to_path_buf(),
                source,
            }
        })?;
        let mut rx = Receiving {
            sink,
            // The operator's limits hold for copies as for downloads.
            rates: self.rates(),
            received: 0,
            progress: None,
            log,
            growing: &self.growing,
            part: staged.path().to_path_buf(),
            announced: None,
            copy,
        };
        let mut last = String::from("no node to copy from");
        let mut from = Vec::new();
        'rounds: for round in 0..copy.rounds.max(1) {
            if round > 0 {
                let wait = copy.backoff * 2u32.saturating_pow(round - 1);
                log.line(&format!(
                    "no node could go on; trying again in {}s",
                    wait.as_secs_f32()
                ));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = cancel.cancelled() => {
                        rx.sink.abort().await;
                        return Err(DownloadError::Interrupted);
                    }
                }
            }
            for peer in &copy.sources {
                let before = rx.received;
                log.line(&format!(
                    "copying '{}' from node '{}' ({}){}",
                    copy.volid,
                    peer.name,
                    peer.addr,
                    if before > 0 {
                        format!(", going on after {}", human_bytes(before))
                    } else {
                        String::new()
                    }
                ));
                let result = tokio::select! {
                    r = fetch(peer, &mut rx) => r,
                    () = cancel.cancelled() => {
                        rx.sink.abort().await;
                        return Err(DownloadError::Interrupted);
                    }
                };
                if rx.received > before && !from.contains(&peer.name) {
                    from.push(peer.name.clone());
                }
                match result {
                    Ok(()) => break 'rounds,
                    Err(SourceError::WriterStopped) => {
                        return Err(match rx.sink.finish().await {
                            Err(e) => write_err(e),
                            Ok(_) => DownloadError::Transfer("the writer stopped".into()),
                        });
                    }
                    Err(SourceError::Failed(reason)) => {
                        log.line(&format!(
                            "node '{}' failed after {}: {reason}",
                            peer.name,
                            human_bytes(rx.received)
                        ));
                        last = format!("node '{}': {reason}", peer.name);
                    }
                }
            }
            if round + 1 == copy.rounds.max(1) {
                rx.sink.abort().await;
                return Err(DownloadError::Transfer(format!(
                    "no node could provide '{}' ({last})",
                    copy.volid
                )));
            }
        }
        let Receiving {
            sink,
            received,
            progress,
            announced,
            ..
        } = rx;
        if let Some(p) = progress {
            log.line(&p.summary(Instant::now()));
        }
        let done = sink.finish().await.map_err(write_err)?;
        if done.observed.sha256 != copy.sha256 {
            return Err(DownloadError::NotTheRecordedBytes {
                got: done.observed.sha256,
                expected: copy.sha256.clone(),
            });
        }
        if let Some(g) = &announced {
            g.done();
        }
        log.line(&format!(
            "copied {} from {}; sha256 {} as recorded",
            human_bytes(received),
            from.iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", "),
            copy.sha256
        ));
        let source = catalog::Source {
            origin: catalog::Origin::Copy,
            url: from.last().map(|n| format!("{n}:{}", copy.path)),
            upid: Some(task.to_owned()),
            user: Some(copy.user.clone()),
            time: chrono::Utc::now().timestamp(),
            ..catalog::Source::default()
        };
        let recording = Recording {
            dest: &copy.dest,
            content: &copy.content,
            source,
            checksum: None,
            // Compared with the record of a verified copy: as good as a verification.
            verification: Some(verified(task)),
            image: None,
        };
        let recorded = self
            .save_record(recording, done.observed, staged.path())
            .await;
        publish_recorded(staged, &copy.dest, recorded, log)?;
        log.line(&format!("copy of '{}' finished", copy.volid));
        Ok(())
    }
}

/// The file is there already: done when it is the volume's bytes, refused when it is not.
async fn present(copy: &PeerCopy, log: &dyn LogSink) -> Result<(), DownloadError> {
    let got = volume_sha256(&copy.dest)
        .await
        .map_err(|source| DownloadError::ReadExisting {
            path: copy.dest.clone(),
            source,
        })?;
    if got != copy.sha256 {
        return Err(DownloadError::ExistingMismatch {
            got,
            expected: copy.sha256.clone(),
        });
    }
    log.line(&format!(
        "'{}' is here already with the recorded sha256",
        copy.dest.display()
    ));
    Ok(())
}

/// The sha256 of the volume at `path`: its record's while that is fresh, else read.
pub async fn volume_sha256(path: &std::path::Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || match catalog::store::load(&path) {
        Ok(Lookup::Fresh(record)) => Ok(record.sha256),
        _ => checksum::hash_file(checksum::Algorithm::Sha256, &path),
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// A copy's bytes as they come in, from whichever source: the writer, the limits, the count,
/// the progress lines, and the announcement to the next nodes once the length is known.
struct Receiving<'a> {
    sink: Sink,
    rates: Vec<RateLimit>,
    /// Bytes handed to the writer: where the next source goes on from.
    received: u64,
    progress: Option<Progress>,
    log: &'a dyn LogSink,
    growing: &'a Growing,
    part: PathBuf,
    announced: Option<GrowingGuard>,
    copy: &'a PeerCopy,
}

impl Receiving<'_> {
    fn length_known(&mut self, total: u64) {
        if self.progress.is_none() {
            self.log
                .line(&format!("length: {total} ({})", human_bytes(total)));
            self.progress = Some(Progress::resumed(
                Some(total),
                self.received,
                Instant::now(),
            ));
        }
        if self.announced.is_none() {
            self.announced = Some(self.growing.announce(
                self.part.clone(),
                self.copy.dest.clone(),
                self.copy.sha256.clone(),
                total,
                self.sink.written(),
            ));
        }
    }

    async fn deliver(&mut self, chunk: bytes::Bytes) -> Result<(), SourceError> {
        let n = chunk.len() as u64;
        for r in &self.rates {
            r.consume(n).await;
        }
        if !self.sink.send(chunk).await {
            return Err(SourceError::WriterStopped);
        }
        self.received += n;
        if let Some(line) = self
            .progress
            .as_mut()
            .and_then(|p| p.advance(n, Instant::now()))
        {
            self.log.line(&line);
        }
        Ok(())
    }
}

/// One source, from byte `rx.received` on.
async fn fetch(peer: &Peer, rx: &mut Receiving<'_>) -> Result<(), SourceError> {
    let copy = rx.copy;
    let stall = copy.stall;
    let within = |what: &'static str| move |_| failed(format!("no answer for {stall:?} ({what})"));
    let addr = tokio::net::lookup_host(&peer.addr)
        .await
        .map_err(failed)?
        .next()
        .ok_or_else(|| failed("no address"))?;
    let tcp = tokio::time::timeout(stall, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(within("connect"))?
        .map_err(failed)?;
    let ssl = pin::configuration(peer)
        .and_then(|c| c.into_ssl(""))
        .map_err(failed)?;
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).map_err(failed)?;
    tokio::time::timeout(stall, Pin::new(&mut tls).connect())
        .await
        .map_err(within("TLS handshake"))?
        .map_err(|e| {
            if pin::refused_certificate(tls.ssl()) {
                failed("it presented another certificate than its own")
            } else {
                failed(e)
            }
        })?;

    let offset = rx.received;
    let mut head = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\n{DISABLE_PROXY}: true\r\nIf-Range: {}\r\n",
        copy.path,
        peer.addr,
        copy.etag()
    );
    for (k, v) in &copy.credentials {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if offset > 0 {
        head.push_str(&format!("Range: bytes={offset}-\r\n"));
    }
    head.push_str("\r\n");
    tokio::time::timeout(stall, tls.write_all(head.as_bytes()))
        .await
        .map_err(within("request"))?
        .map_err(failed)?;

    let mut buf = vec![0u8; READ_SIZE];
    let mut raw = Vec::new();
    let (answer, head_len) = loop {
        let n = tokio::time::timeout(stall, tls.read(&mut buf))
            .await
            .map_err(within("answer"))?
            .map_err(failed)?;
        if n == 0 {
            return Err(failed("closed the connection before its answer"));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(parsed) = parse_head(&raw).map_err(failed)? {
            break parsed;
        }
        if raw.len() > MAX_HEAD {
            return Err(failed("an answer head too large"));
        }
    };
    let header = |name: &str| {
        answer
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let expected_status = if offset > 0 { 206 } else { 200 };
    if answer.status != expected_status {
        return Err(failed(format!("HTTP {} {}", answer.status, answer.reason)));
    }
    if header("ETag") != Some(copy.etag().as_str()) {
        return Err(failed("it holds other bytes under this name"));
    }
    if offset > 0
        && !header("Content-Range").is_some_and(|r| r.starts_with(&format!("bytes {offset}-")))
    {
        return Err(failed("a range other than the one asked for"));
    }
    let length: u64 = header("Content-Length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| failed("no Content-Length"))?;
    let end = offset + length;
    rx.length_known(end);

    // A TLS read yields one record (16 KiB) at most: up to READ_SIZE is gathered before it is
    // handed on, so the writer gets chunks of a download's size.
    let mut pending = BytesMut::with_capacity(READ_SIZE);
    pending.extend_from_slice(&raw[head_len..]);
    let mut closed = false;
    loop {
        let left = end - rx.received;
        let target = (READ_SIZE as u64).min(left) as usize;
        while !closed && pending.len() < target {
            pending.reserve(target - pending.len());
            let n = tokio::time::timeout(stall, tls.read_buf(&mut pending))
                .await
                .map_err(within("body"))?
                .map_err(failed)?;
            closed = n == 0;
        }
        if pending.len() as u64 > left {
            return Err(failed("more bytes than announced"));
        }
        if !pending.is_empty() {
            rx.deliver(pending.split().freeze()).await?;
        }
        if rx.received == end {
            return Ok(());
        }
        if closed {
            return Err(failed("the connection closed early"));
        }
    }
}
