//! The engine in-process: [`Engine::run`] against an origin task on 127.0.0.1 in the same
//! runtime, with its log lines in memory and tokio's clock paused, so backoff and stall
//! timeouts take no wall time and their durations are exact. What needs a real process
//! (kill -9, strace, signals) stays in tests/integration.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;

/// What the origin does with its n-th connection.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Silent,
    Body,
}

const BODY: &[u8] = b"the bytes of an image, served whole";

/// Serves `script` in order, one connection per entry; returns the port.
async fn origin(script: Vec<Answer>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        for answer in script {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let reply = match answer {
                    Answer::Status(code) => {
                        format!("HTTP/1.1 {code} Busy\r\nContent-Length: 0\r\n\r\n").into_bytes()
                    }
                    Answer::Silent => return std::future::pending().await,
                    Answer::Body => {
                        let mut r =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len())
                                .into_bytes();
                        r.extend_from_slice(BODY);
                        r
                    }
                };
                let _ = conn.write_all(&reply).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    port
}

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl LogSink for Lines {
    fn line(&self, text: &str) {
        self.0.lock().expect("lines").push(text.to_string());
    }
}

impl Lines {
    fn all(&self) -> Vec<String> {
        self.0.lock().expect("lines").clone()
    }
}

fn plan(dir: &Path, port: u16) -> DownloadPlan {
    DownloadPlan {
        retry: RetryPolicy {
            retries: 3,
            stall_timeout: Duration::from_secs(60),
            backoff: Duration::from_secs(1),
        },
        ..DownloadPlan::new(
            format!("http://127.0.0.1:{port}/t.tar.gz"),
            dir.join("t.tar.gz"),
            dir.join(".isolib-partial"),
            "vztmpl",
            "n1",
            "root@pam".into(),
        )
    }
}

/// Runs one download of the script's origin; returns the result, the log and the virtual time
/// it took.
async fn run(script: Vec<Answer>) -> (Result<(), String>, Vec<String>, Duration, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = origin(script).await;
    let engine = Engine::new(
        fetchers(FetchConfig::default(), None),
        Limits::default(),
        "n1",
        Duration::from_secs(3600),
    );
    let log = Arc::new(Lines::default());
    let started = tokio::time::Instant::now();
    let result = engine
        .run(
            &plan(dir.path(), port),
            "task",
            &*log,
            &CancellationToken::new(),
        )
        .await
        .map_err(|e| e.to_string());
    let took = started.elapsed();
    let mut files = Vec::new();
    for entry in walk(dir.path()) {
        let rel = entry
            .strip_prefix(dir.path())
            .expect("below")
            .display()
            .to_string();
        if rel == "t.tar.gz" {
            assert_eq!(std::fs::read(&entry).expect("read"), BODY);
            // The catalog record came with it, of this very file.
            let record = crate::catalog::store::load(&entry)
                .expect("load")
                .fresh()
                .expect("a fresh record");
            let mut whole = crate::catalog::Observer::new(false);
            whole.update(BODY);
            assert_eq!(record.sha256, whole.finish().sha256);
            assert_eq!(record.source.upid.as_deref(), Some("task"));
            assert_eq!(record.source.user.as_deref(), Some("root@pam"));
            assert!(
                record
                    .source
                    .final_url
                    .is_some_and(|u| u.ends_with("/t.tar.gz"))
            );
        }
        files.push(rel);
    }
    (result, log.all(), took, files)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn retries(log: &[String]) -> Vec<&str> {
    log.iter()
        .filter(|l| l.contains("; retry "))
        .map(String::as_str)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn busy_origin_is_retried_after_doubling_waits() {
    let (result, log, took, files) =
        run(vec![Answer::Status(503), Answer::Status(503), Answer::Body]).await;
    assert_eq!(result, Ok(()), "{log:?}");
    assert_eq!(
        retries(&log),
        [
            "transfer failed after 0 bytes: HTTP 503 Service Unavailable; retry 1 of 3 in 1s",
            "transfer failed after 0 bytes: HTTP 503 Service Unavailable; retry 2 of 3 in 2s",
        ]
    );
    assert_eq!(
        took,
        Duration::from_secs(3),
        "1 s, then 2 s of backoff: {log:?}"
    );
    assert_eq!(
        files,
        [".isolib-catalog/t.tar.gz.json", "t.tar.gz"],
        "the file, its record and nothing else"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_origin_counts_as_a_stall_after_stall_timeout() {
    let (result, log, took, files) = run(vec![Answer::Silent, Answer::Body]).await;
    assert_eq!(result, Ok(()), "{log:?}");
    assert_eq!(
        retries(&log),
        ["transfer failed after 0 bytes: no response received for 60s; retry 1 of 3 in 1s"]
    );
    assert_eq!(took, Duration::from_secs(61), "{log:?}");
    assert_eq!(files, [".isolib-catalog/t.tar.gz.json", "t.tar.gz"]);
}

#[tokio::test(start_paused = true)]
async fn retries_run_out_and_leave_nothing() {
    let (result, log, took, files) = run(vec![Answer::Status(503); 4]).await;
    assert_eq!(
        result,
        Err("download failed: HTTP 503 Service Unavailable".to_string())
    );
    assert_eq!(retries(&log).len(), 3, "{log:?}");
    assert_eq!(took, Duration::from_secs(1 + 2 + 4));
    assert!(files.is_empty(), "no file and no partial file: {files:?}");
}
