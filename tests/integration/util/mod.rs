//! Test harness: the real `isolib` binary on a free 127.0.0.1 port with a temp state dir, a
//! tiny origin that serves fixed bytes, and raw HTTP/1.1 exchanges so a test can replay a
//! client's exact request bytes and assert the exact bytes it depends on.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub const TOKEN_ID: &str = "root@pam!packer";
pub const TOKEN_SECRET: &str = "0b5a6f8e-2c1d-4e3f-9a8b-7c6d5e4f3a2b";
pub const NODE: &str = "testnode";

pub struct Daemon {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
    args: Vec<String>,
}

/// A temp dir with storage `local` (iso, vztmpl, import) and the superuser token.
pub fn default_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let store = root.join("local");
    std::fs::create_dir_all(&store).expect("mkdir");
    std::fs::write(
        root.join("storage.cfg"),
        format!(
            "dir: local\n\tpath {}\n\tcontent iso,vztmpl,import\n",
            store.display()
        ),
    )
    .expect("storage.cfg");
    std::fs::write(
        root.join("user.cfg"),
        "user:root@pam:1:0:::root@localhost:::\ntoken:root@pam!packer:0:0::\n",
    )
    .expect("user.cfg");
    std::fs::write(
        root.join("token.cfg"),
        format!("{TOKEN_ID} {TOKEN_SECRET}\n"),
    )
    .expect("token.cfg");
    dir
}

/// `isolib serve` under `wrapper` on `127.0.0.1:port`, plain HTTP, node [`NODE`]. Port 0
/// lets the kernel pick one: the daemon says which (see [`spawn_args`]).
fn serve_args(wrapper: &[&str], port: u16) -> Vec<String> {
    let mut args: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
    args.push(env!("CARGO_BIN_EXE_isolib").to_string());
    args.extend(
        [
            "serve",
            "--node",
            NODE,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls",
            "false",
        ]
        .map(str::to_string),
    );
    args
}

/// Starts the daemon and waits until it says it listens, on which port (its log lines
/// `listening on http://127.0.0.1:<port>/api2/json`, then `listening on unix:<path>`, the
/// last listener it opens). Asking the daemon rather than probing the port means no other
/// test's server on a reused port is taken for it.
fn spawn_args(args: &[String]) -> (Child, u16) {
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isolib");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads the log to its end, so the daemon never blocks on a full pipe.
    thread::spawn(move || {
        let mut port = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            port = port.or_else(|| listening_port(&line));
            if let Some(p) = port
                && line.contains("listening on unix:")
            {
                let _ = tx.send(p);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(port) => (child, port),
        Err(_) => {
            let _ = child.kill();
            panic!("daemon did not start: {:?}", child.wait());
        }
    }
}

fn listening_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("listening on http")?..];
    let addr = rest.split("://").nth(1)?.split('/').next()?;
    addr.rsplit(':').next()?.parse().ok()
}

/// Signals the children of `pid` (a daemon under a wrapper), then `pid`.
fn signal_tree(pid: u32, signal: &str) {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children
        .split_whitespace()
        .chain([pid.to_string().as_str()])
    {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), c])
            .status();
    }
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "daemon did not start on port {port}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Daemon {
    /// Plain HTTP (TLS is covered by the Python suite): these tests are about request and
    /// response bytes.
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// `start` with extra `serve` flags.
    pub fn start_with(extra: &[&str]) -> Daemon {
        Daemon::spawn(default_dir(), extra)
    }

    /// Runs the daemon on the `storage.cfg`, `user.cfg` and `token.cfg` in `dir`.
    pub fn start_in(dir: tempfile::TempDir) -> Daemon {
        Daemon::spawn(dir, &[])
    }

    fn spawn(dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        Daemon::spawn_wrapped(dir, &[], extra)
    }

    /// Runs the daemon with a state dir in `dir` and only the `extra` config flags, so the
    /// defaults (node mode's PVE files, for one) decide the rest.
    pub fn start_bare(dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        let mut args = serve_args(&[], 0);
        args.extend(["--auth-fail-delay", "0"].map(str::to_string));
        args.push("--state-dir".into());
        args.push(dir.path().join("state").display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        Daemon::launch(dir, args)
    }

    /// Runs the daemon under `wrapper` (e.g. strace and its flags).
    pub fn spawn_wrapped(dir: tempfile::TempDir, wrapper: &[&str], extra: &[&str]) -> Daemon {
        let root = dir.path();
        let mut args = serve_args(wrapper, 0);
        if !extra.contains(&"--auth-fail-delay") {
            args.extend(["--auth-fail-delay", "0"].map(str::to_string));
        }
        for (flag, file) in [
            ("--state-dir", "state"),
            ("--storage-cfg", "storage.cfg"),
            ("--user-cfg", "user.cfg"),
            ("--token-cfg", "token.cfg"),
        ] {
            args.push(flag.to_string());
            args.push(root.join(file).display().to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Daemon::launch(dir, args)
    }

    /// Runs the daemon in a user and mount namespace of its own (no root needed), with a tmpfs
    /// of `size` (mount's notation, e.g. "2m") on `mount_point`, which must exist. The test
    /// sees the daemon's files through [`Daemon::in_namespace`].
    pub fn spawn_on_tmpfs(dir: tempfile::TempDir, mount_point: &Path, size: &str) -> Daemon {
        let options = format!("size={size}");
        let mount_point = mount_point.display().to_string();
        Daemon::spawn_wrapped(
            dir,
            &[
                "unshare",
                "-rm",
                "sh",
                "-c",
                "mount -t tmpfs -o \"$1\" tmpfs \"$0\" && shift && exec \"$@\"",
                &mount_point,
                &options,
            ],
            &[],
        )
    }

    /// `path` as the daemon of [`Daemon::spawn_on_tmpfs`] sees it.
    pub fn in_namespace(&self, path: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.pid(), path.display()))
    }

    fn launch(dir: tempfile::TempDir, mut args: Vec<String>) -> Daemon {
        let (child, port) = spawn_args(&args);
        // A restart listens on the same port again.
        for a in &mut args {
            if a == "127.0.0.1:0" {
                *a = format!("127.0.0.1:{port}");
            }
        }
        Daemon {
            port,
            dir,
            child,
            args,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (the process and what it started), as a power cut or the OOM killer would.
    pub fn kill9(&mut self) {
        signal_tree(self.child.id(), "KILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, as systemd stops a service; returns once it exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal_tree(self.child.id(), "TERM");
        self.child.wait().expect("wait")
    }

    /// Starts again on the same state, config and port.
    pub fn restart(&mut self) {
        let (child, port) = spawn_args(&self.args);
        assert_eq!(port, self.port, "restarted on its port");
        self.child = child;
    }

    /// The local socket (the default one, under the state dir).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("state").join("isolib.sock")
    }

    /// Sends `request` as is over the local socket and returns the response.
    pub fn raw_unix(&self, request: &[u8]) -> Response {
        let mut s = std::os::unix::net::UnixStream::connect(self.socket_path()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(request).expect("send");
        Response::read(&mut s)
    }

    pub fn storage_path(&self) -> PathBuf {
        self.dir.path().join("local")
    }

    /// Where the storage stages its downloads (`<path>/.isolib-partial`).
    pub fn staging_path(&self) -> PathBuf {
        self.storage_path().join(".isolib-partial")
    }

    /// Sends `request` as is and returns the response.
    pub fn raw(&self, request: &[u8]) -> Response {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(request).expect("send");
        Response::read(&mut s)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        signal_tree(self.child.id(), "KILL");
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// One response from `s`, leaving the connection open.
    pub fn read(s: &mut impl Read) -> Response {
        let mut r = BufReader::new(s);
        let mut status_line = String::new();
        r.read_line(&mut status_line).expect("status line");
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("header");
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').expect("header line");
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().expect("length"))
            .unwrap_or(0);
        let mut body = vec![0; len];
        r.read_exact(&mut body).expect("body");
        Response {
            status_line: status_line.trim_end().to_string(),
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// Reads a request's head up to its blank line, byte by byte so that nothing of a body is
/// consumed; what arrived when the client stops early.
pub fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An origin that answers every GET with `body` (HTTP/1.0, closes after each response).
pub fn origin(body: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let body = body.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let head = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            });
        }
    });
    port
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every file under `dir`, relative to it, sorted; a volume's catalog record
/// (`.isolib-catalog/<name>.json` beside it) counts as part of the volume, so it is left out
/// while its volume is there and listed when it is an orphan.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if !is_record_of_a_volume(&p) {
                out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn is_record_of_a_volume(path: &Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let name = name.to_string_lossy();
    match (dir.file_name(), dir.parent(), name.strip_suffix(".json")) {
        (Some(d), Some(volumes), Some(volume)) if d == ".isolib-catalog" => {
            volumes.join(volume).is_file()
        }
        _ => false,
    }
}

/// Every file and directory under `dir`, relative to it, sorted; directories end in `/`.
pub fn entries_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
            if p.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Polls `done` until it holds; fails the test after a minute (a hang, not a slow machine).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// An origin that sends `body` in `chunk`-sized pieces with `pause` between them and counts
/// the GETs it answered.
pub fn slow_origin(
    body: Vec<u8>,
    chunk: usize,
    pause: Duration,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let port = listener.local_addr().expect("addr").port();
    let gets = Arc::new(AtomicUsize::new(0));
    let counter = gets.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let body = body.clone();
            let counter = counter.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                counter.fetch_add(1, Ordering::SeqCst);
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = conn.write_all(head.as_bytes());
                for piece in body.chunks(chunk) {
                    if conn.write_all(piece).is_err() {
                        return;
                    }
                    thread::sleep(pause);
                }
            });
        }
    });
    (port, gets)
}

impl Daemon {
    /// POSTs a form body to download-url on storage `local` with the superuser token.
    pub fn post_download_raw(&self, auth: &str, body: &str) -> Response {
        self.raw(
            format!(
                "POST /api2/json/nodes/{NODE}/storage/local/download-url HTTP/1.1\r\nHost: x\r\n\
                 Authorization: {auth}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    }

    pub fn post_download(&self, body: &str) -> String {
        let r = self.post_download_raw(&format!("PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}"), body);
        assert_eq!(
            r.status_line,
            "HTTP/1.1 200 OK",
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["data"].as_str().expect("upid").to_string()
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.raw(
            format!(
                "GET /api2/json{path} HTTP/1.1\r\nHost: x\r\n\
                 Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n\r\n"
            )
            .as_bytes(),
        );
        r.json()
    }

    /// Waits for the task to stop and returns its exit status.
    pub fn wait(&self, upid: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.get_json(&format!("/nodes/{NODE}/tasks/{upid}/status"));
            if let Some(e) = s["data"]["exitstatus"].as_str() {
                return e.to_string();
            }
            assert!(Instant::now() < deadline, "task {upid} did not finish");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// DELETE on the task, as `pvesh delete /nodes/<node>/tasks/<upid>` stops it.
    pub fn stop_task(&self, upid: &str) -> Response {
        self.raw(
            format!(
                "DELETE /api2/json/nodes/{NODE}/tasks/{upid} HTTP/1.1\r\nHost: x\r\n\
                 Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n\r\n"
            )
            .as_bytes(),
        )
    }

    pub fn log_lines(&self, upid: &str) -> Vec<String> {
        self.get_json(&format!("/nodes/{NODE}/tasks/{upid}/log?limit=0"))["data"]
            .as_array()
            .expect("log lines")
            .iter()
            .map(|l| l["t"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// What the fault origin does with one request (scripted per test, one step per request; the
/// last step repeats).
#[derive(Clone, Debug)]
pub enum Step {
    /// Honour `Range` (206 from the asked offset) unless `If-Range` differs from `etag`; send
    /// only `limit` body bytes, then close, when given.
    Serve {
        etag: &'static str,
        limit: Option<usize>,
    },
    /// Like `Serve`, but after `n` body bytes the connection is reset (RST), not closed.
    Reset { etag: &'static str, n: usize },
    /// Always the whole body with 200, whatever `Range` says.
    IgnoreRange,
    /// This status with an empty body (and `Retry-After: 1`).
    Status(u16),
    /// This status with an empty body and `Retry-After: <secs>`, or no `Retry-After` at all.
    Busy {
        status: u16,
        retry_after: Option<u64>,
    },
    /// The whole body with 200 and `Transfer-Encoding: chunked`, `chunk` bytes per chunk: no
    /// length up front, so only the bytes themselves can trip a limit.
    Chunked { chunk: usize },
    /// Like `Serve` without limit, but only `n` body bytes go out until `gate` opens; the
    /// rest follows then. Lets a test hold a transfer mid-body for as long as it needs.
    Gated {
        etag: &'static str,
        n: usize,
        gate: Gate,
    },
    /// Send `n` bytes, then nothing while keeping the connection open for `secs`.
    Stall { n: usize, secs: u64 },
    /// Like `Serve` without limit, but `extra` bytes follow the announced body before the
    /// close: a body longer than its `Content-Length`. Head, body and extra go out in one
    /// write, so for a response smaller than the socket's send buffer (16 KiB by default)
    /// the kernel holds every extra byte before the reader can close, and the count
    /// (announced body plus `extra`) is exact.
    LongBody { etag: &'static str, extra: usize },
    /// Like `Serve` without limit, but `chunk` bytes at a time with `pause` after each, so a
    /// test can act while the transfer runs.
    Trickle {
        etag: &'static str,
        chunk: usize,
        pause: Duration,
    },
}

/// A latch a test opens once (see `Step::Gated`).
#[derive(Clone, Debug, Default)]
pub struct Gate(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn open(&self) {
        let (lock, cv) = &*self.0;
        *lock.lock().expect("lock") = true;
        cv.notify_all();
    }

    fn wait(&self) {
        let (lock, cv) = &*self.0;
        let mut open = lock.lock().expect("lock");
        while !*open {
            open = cv.wait(open).expect("lock");
        }
    }
}

/// What the fault origin did, in order: `get <i>` when request `i` arrived (its head read),
/// `rest <i>` just before a gated request `i` sends the bytes after its gate. The daemon
/// cannot have all of request `i`'s body before `rest <i>`, so an event after it happened
/// after that transfer could have ended.
pub type Events = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Everything a fault origin shares with its test.
pub struct FaultOrigin {
    pub port: u16,
    pub seen: Seen,
    pub served: Served,
    pub events: Events,
}

/// The request lines the fault origin saw: `Range` and `If-Range` values ("" when absent).
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// Body bytes the fault origin wrote per request, in the order of `Seen`.
pub type Served = std::sync::Arc<std::sync::Mutex<Vec<usize>>>;

pub fn fault_origin(body: Vec<u8>, script: Vec<Step>) -> (u16, Seen) {
    let (port, seen, _) = fault_origin_counted(body, script);
    (port, seen)
}

/// `fault_origin` that also counts the body bytes it served per request.
pub fn fault_origin_counted(body: Vec<u8>, script: Vec<Step>) -> (u16, Seen, Served) {
    let o = fault_origin_traced(body, script);
    (o.port, o.seen, o.served)
}

/// `fault_origin_counted` that also records the order of what happened (see `Events`).
pub fn fault_origin_traced(body: Vec<u8>, script: Vec<Step>) -> FaultOrigin {
    use std::sync::{Arc, Mutex};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let port = listener.local_addr().expect("addr").port();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let served: Served = Arc::new(Mutex::new(Vec::new()));
    let events: Events = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let counts = served.clone();
    let trace = events.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let head = read_head(&mut conn);
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                    .unwrap_or_default()
            };
            let (range, if_range) = (header("range"), header("if-range"));
            let (step, index) = {
                let mut s = log.lock().expect("lock");
                s.push((range.clone(), if_range.clone()));
                trace
                    .lock()
                    .expect("lock")
                    .push(format!("get {}", s.len() - 1));
                counts.lock().expect("lock").push(0);
                let step = script
                    .get(s.len() - 1)
                    .or(script.last())
                    .cloned()
                    .expect("script");
                (step, s.len() - 1)
            };
            let body = body.clone();
            let counts = counts.clone();
            let trace = trace.clone();
            thread::spawn(move || {
                let count = |n: usize| counts.lock().expect("lock")[index] += n;
                // The start `Range` asks for, unless `If-Range` names another version.
                let start_for = |etag: &str| -> usize {
                    range
                        .strip_prefix("bytes=")
                        .and_then(|r| r.strip_suffix('-'))
                        .and_then(|r| r.parse().ok())
                        .filter(|_| if_range.is_empty() || if_range == etag)
                        .unwrap_or(0)
                };
                let head_for = |start: usize, etag: &str| {
                    if start > 0 {
                        (
                            "206 Partial Content",
                            format!(
                                "Content-Range: bytes {start}-{}/{}\r\nETag: {etag}\r\n",
                                body.len() - 1,
                                body.len()
                            ),
                        )
                    } else {
                        ("200 OK", format!("ETag: {etag}\r\n"))
                    }
                };
                let send = |conn: &mut TcpStream, status: &str, extra: String, data: &[u8]| {
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
                        data.len()
                    );
                    let _ = conn.write_all(head.as_bytes());
                };
                // Sends the head of an answer from where `Range` asks (200 or 206) and returns
                // that offset.
                let open = |conn: &mut TcpStream, etag: &str| -> usize {
                    let start = start_for(etag);
                    let (status, extra) = head_for(start, etag);
                    send(conn, status, extra, &body[start..]);
                    start
                };
                // Writes `data` and counts it as served, unless the client has gone.
                let write = |conn: &mut TcpStream, data: &[u8]| -> bool {
                    let ok = conn.write_all(data).is_ok();
                    if ok {
                        count(data.len());
                    }
                    ok
                };
                match step {
                    Step::Serve { etag, limit } => {
                        let rest = &body[open(&mut conn, etag)..];
                        write(
                            &mut conn,
                            &rest[..limit.unwrap_or(rest.len()).min(rest.len())],
                        );
                    }
                    Step::Reset { etag, n } => {
                        let rest = &body[open(&mut conn, etag)..];
                        write(&mut conn, &rest[..n.min(rest.len())]);
                        // Give the bytes time to leave before the reset discards what is queued.
                        thread::sleep(Duration::from_millis(200));
                        reset(conn);
                    }
                    Step::Trickle { etag, chunk, pause } => {
                        let rest = &body[open(&mut conn, etag)..];
                        for piece in rest.chunks(chunk) {
                            if !write(&mut conn, piece) {
                                return;
                            }
                            thread::sleep(pause);
                        }
                    }
                    Step::IgnoreRange => {
                        send(&mut conn, "200 OK", String::new(), &body);
                        write(&mut conn, &body);
                    }
                    Step::Status(code) => {
                        send(
                            &mut conn,
                            &format!("{code} Busy"),
                            "Retry-After: 1\r\n".into(),
                            b"",
                        );
                    }
                    Step::Busy {
                        status,
                        retry_after,
                    } => {
                        let extra = retry_after
                            .map(|secs| format!("Retry-After: {secs}\r\n"))
                            .unwrap_or_default();
                        send(&mut conn, &format!("{status} Busy"), extra, b"");
                    }
                    Step::Chunked { chunk } => {
                        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
                                    Connection: close\r\n\r\n";
                        if conn.write_all(head.as_bytes()).is_err() {
                            return;
                        }
                        for piece in body.chunks(chunk) {
                            let mut out = format!("{:x}\r\n", piece.len()).into_bytes();
                            out.extend_from_slice(piece);
                            out.extend_from_slice(b"\r\n");
                            if conn.write_all(&out).is_err() {
                                return;
                            }
                            count(piece.len());
                        }
                        let _ = conn.write_all(b"0\r\n\r\n");
                    }
                    Step::Gated { etag, n, gate } => {
                        let rest = &body[open(&mut conn, etag)..];
                        let n = n.min(rest.len());
                        if !write(&mut conn, &rest[..n]) {
                            return;
                        }
                        gate.wait();
                        trace.lock().expect("lock").push(format!("rest {index}"));
                        write(&mut conn, &rest[n..]);
                    }
                    Step::Stall { n, secs } => {
                        send(&mut conn, "200 OK", String::new(), &body);
                        write(&mut conn, &body[..n]);
                        thread::sleep(Duration::from_secs(secs));
                    }
                    Step::LongBody { etag, extra } => {
                        let start = start_for(etag);
                        let rest = &body[start..];
                        let (status, more) = head_for(start, etag);
                        let mut out = format!(
                            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{more}\r\n",
                            rest.len()
                        )
                        .into_bytes();
                        out.extend_from_slice(rest);
                        out.extend(std::iter::repeat_n(b'X', extra));
                        if conn.write_all(&out).is_ok() {
                            count(rest.len() + extra);
                        }
                    }
                }
            });
        }
    });
    FaultOrigin {
        port,
        seen,
        served,
        events,
    }
}

/// An origin (or forward proxy: it answers absolute-form requests too) that records each
/// request line and answers with `body`.
pub fn recording_origin(body: Vec<u8>) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::sync::{Arc, Mutex};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut line = String::new();
            let _ = BufReader::new(&mut conn).read_line(&mut line);
            log.lock().expect("lock").push(line.trim_end().to_string());
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    (port, seen)
}

/// An HTTPS origin with a certificate for 127.0.0.1 signed by a fresh CA; returns the port and
/// the CA's PEM.
pub fn tls_origin(body: Vec<u8>) -> (u16, Vec<u8>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509, X509NameBuilder};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
    let key = || PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
    let name = |cn: &str| {
        let mut n = X509NameBuilder::new().expect("name");
        n.append_entry_by_text("CN", cn).expect("cn");
        n.build()
    };
    let (ca_key, srv_key) = (key(), key());
    let build = |subject: &str, pubkey: &PKey<openssl::pkey::Private>, ca: bool| {
        let mut x = X509::builder().expect("x509");
        x.set_version(2).expect("version");
        let serial = BigNum::from_u32(if ca { 1 } else { 2 })
            .and_then(|b| b.to_asn1_integer())
            .expect("serial");
        x.set_serial_number(&serial).expect("serial");
        x.set_subject_name(&name(subject)).expect("subject");
        x.set_issuer_name(&name("isolib test CA")).expect("issuer");
        x.set_pubkey(pubkey).expect("pubkey");
        let (nb, na) = (
            Asn1Time::days_from_now(0).expect("t"),
            Asn1Time::days_from_now(2).expect("t"),
        );
        x.set_not_before(&nb).expect("nb");
        x.set_not_after(&na).expect("na");
        if ca {
            x.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
                .expect("ext");
        } else {
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .build(&x.x509v3_context(None, None))
                .expect("san");
            x.append_extension(san).expect("ext");
        }
        x.sign(&ca_key, MessageDigest::sha256()).expect("sign");
        x.build()
    };
    let ca = build("isolib test CA", &ca_key, true);
    let cert = build("127.0.0.1", &srv_key, false);
    (serve_tls(&srv_key, &cert, body), ca.to_pem().expect("pem"))
}

/// An HTTPS origin whose certificate for 127.0.0.1 is its own issuer, signed with its own key:
/// no CA anywhere vouches for it.
pub fn self_signed_tls_origin(body: Vec<u8>) -> u16 {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509, X509NameBuilder};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "127.0.0.1").expect("cn");
    let name = name.build();
    let mut x = X509::builder().expect("x509");
    x.set_version(2).expect("version");
    let serial = BigNum::from_u32(1)
        .and_then(|b| b.to_asn1_integer())
        .expect("serial");
    x.set_serial_number(&serial).expect("serial");
    x.set_subject_name(&name).expect("subject");
    x.set_issuer_name(&name).expect("issuer");
    x.set_pubkey(&key).expect("pubkey");
    let (nb, na) = (
        Asn1Time::days_from_now(0).expect("t"),
        Asn1Time::days_from_now(2).expect("t"),
    );
    x.set_not_before(&nb).expect("nb");
    x.set_not_after(&na).expect("na");
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&x.x509v3_context(None, None))
        .expect("san");
    x.append_extension(san).expect("ext");
    x.sign(&key, MessageDigest::sha256()).expect("sign");
    let cert = x.build();
    assert_eq!(
        cert.issued(&cert),
        openssl::x509::X509VerifyResult::OK,
        "the certificate is its own issuer"
    );
    serve_tls(&key, &cert, body)
}

/// Serves `body` over TLS with `cert` on a free port, to every request, until the test ends.
fn serve_tls(
    key: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
    cert: &openssl::x509::X509Ref,
    body: Vec<u8>,
) -> u16 {
    use openssl::ssl::{SslAcceptor, SslMethod};
    let mut acceptor =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).expect("acceptor");
    acceptor.set_private_key(key).expect("key");
    acceptor.set_certificate(cert).expect("cert");
    let acceptor = std::sync::Arc::new(acceptor.build());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (acceptor, body) = (acceptor.clone(), body.clone());
            thread::spawn(move || {
                let Ok(mut tls) = acceptor.accept(conn) else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf);
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = tls.write_all(head.as_bytes());
                let _ = tls.write_all(&body);
                let _ = tls.shutdown();
            });
        }
    });
    port
}

/// An origin that answers each request by its request line, with `respond(port, line)`, and
/// records the lines.
fn line_origin(respond: impl Fn(u16, &str) -> Vec<u8> + Send + 'static) -> (u16, Lines) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let port = listener.local_addr().expect("addr").port();
    let seen: Lines = Default::default();
    let log = seen.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut line = String::new();
            let _ = BufReader::new(&mut conn).read_line(&mut line);
            let line = line.trim_end().to_string();
            log.lock().expect("lock").push(line.clone());
            let _ = conn.write_all(&respond(port, &line));
        }
    });
    (port, seen)
}

fn redirect_to(location: &str) -> Vec<u8> {
    format!("HTTP/1.0 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

/// An origin that redirects every request to itself.
pub fn redirect_loop_origin() -> u16 {
    line_origin(|port, _| redirect_to(&format!("http://127.0.0.1:{port}/loop.iso"))).0
}

/// The request lines an origin saw.
pub type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// An origin that answers `GET /hop/<n>` with a redirect to `/hop/<n-1>`, and `/hop/0` with
/// `body`; it records each request line.
pub fn redirect_chain_origin(body: Vec<u8>) -> (u16, Lines) {
    line_origin(move |_, line| {
        let hop: u32 = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.strip_prefix("/hop/"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if hop > 0 {
            return redirect_to(&format!("/hop/{}", hop - 1));
        }
        let mut resp =
            format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        resp.extend_from_slice(&body);
        resp
    })
}

/// An origin that redirects every request to `location`; it records each request line.
pub fn redirect_origin(location: String) -> (u16, Lines) {
    line_origin(move |_, _| redirect_to(&location))
}

/// Closes `conn` with a TCP reset instead of a FIN: linger on, with a timeout of zero.
fn reset(conn: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a pointer to a live `linger` of the given size.
    let rc = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
    drop(conn);
}
