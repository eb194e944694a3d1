//! The client commands (`isolib download|ls|tasks|rm`) against the real daemon on a free
//! 127.0.0.1 port, with an origin of the test's own serving the file.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::util;
use crate::util::{Daemon, TOKEN_ID, TOKEN_SECRET};

fn isolib() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_isolib"));
    c.env_remove("ISOLIB_TOKEN");
    c
}

/// `isolib <args> --url <daemon>` with the superuser token from the environment.
fn client(d: &Daemon, args: &[&str]) -> Command {
    let mut c = isolib();
    c.args(args)
        .arg("--url")
        .arg(format!("http://127.0.0.1:{}", d.port))
        .env("ISOLIB_TOKEN", format!("{TOKEN_ID}={TOKEN_SECRET}"));
    c
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(mut c: Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run isolib");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

const BODY_LEN: usize = 300_000;

fn body() -> Vec<u8> {
    (0..BODY_LEN).map(|i| (i % 251) as u8).collect()
}

/// Downloads `test.iso` from a fresh origin into storage `local`; asserts it worked.
fn download_test_iso(d: &Daemon) -> Run {
    let port = util::origin(body());
    let url = format!("http://127.0.0.1:{port}/test.iso");
    let r = run(client(d, &["download", &url, "--storage", "local"]));
    assert_eq!(r.code, Some(0), "{r:?}");
    r
}

fn iso_path(d: &Daemon, name: &str) -> std::path::PathBuf {
    d.storage_path().join("template/iso").join(name)
}

#[test]
fn download_succeeds_and_the_file_is_there() {
    let d = Daemon::start();
    let r = download_test_iso(&d);
    assert_eq!(
        std::fs::read(iso_path(&d, "test.iso")).expect("downloaded file"),
        body()
    );
    // The file name came from the URL; the log is printed, ending in the task's own line.
    assert!(r.stderr.contains("filename: test.iso"), "{r:?}");
    assert!(r.stderr.contains("task UPID:"), "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("downloading http://127.0.0.1:"),
        "{r:?}"
    );
    assert!(lines.contains(&"length: 300000 (293.0 KiB)"), "{r:?}");
    assert_eq!(lines.last(), Some(&"TASK OK"), "{r:?}");
}

#[test]
fn checksum_mismatch_fails_with_the_task_error() {
    let d = Daemon::start();
    let port = util::origin(body());
    let url = format!("http://127.0.0.1:{port}/test.iso");
    let wrong = "0".repeat(64);
    let r = run(client(
        &d,
        &[
            "download",
            &url,
            "--storage",
            "local",
            "--checksum",
            &format!("sha256:{wrong}"),
        ],
    ));
    let error = format!(
        "checksum mismatch: got '{}' != expect '{wrong}'",
        util::sha256_hex(&body())
    );
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l == format!("TASK ERROR: {error}")),
        "{r:?}"
    );
    assert_eq!(
        r.stderr.lines().last(),
        Some(format!("isolib: task failed: {error}").as_str()),
        "{r:?}"
    );
    assert!(!iso_path(&d, "test.iso").exists());
}

#[test]
fn ls_lists_the_downloaded_volume() {
    let d = Daemon::start();
    let empty = run(client(&d, &["ls"]));
    assert_eq!(empty.code, Some(0), "{empty:?}");
    assert_eq!(empty.stdout, "VOLID  SIZE  FORMAT  OS  VERIFIED\n");
    download_test_iso(&d);
    let r = run(client(&d, &["ls", "--bytes"]));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout,
        "VOLID                 SIZE  FORMAT  OS  VERIFIED\nlocal:iso/test.iso  300000  iso     -   -\n"
    );
    let r = run(client(
        &d,
        &["ls", "--storage", "local", "--content", "vztmpl"],
    ));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "VOLID  SIZE  FORMAT  OS  VERIFIED\n");
}

#[test]
fn show_prints_the_record_and_verify_finds_a_corrupted_volume() {
    let d = Daemon::start();
    download_test_iso(&d);
    let r = run(client(&d, &["show", "local:iso/test.iso"]));
    assert_eq!(r.code, Some(0), "{r:?}");
    let shown: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(shown["sha256"], util::sha256_hex(&body()));
    assert_eq!(shown["source"]["origin"], "download");

    let r = run(client(&d, &["verify", "local:iso/test.iso"]));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.lines().any(|l| l == "local:iso/test.iso: OK"),
        "{r:?}"
    );

    // Other bytes of the same length, with the file's mtime kept.
    let path = iso_path(&d, "test.iso");
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut rotten = body();
    rotten[1000] ^= 0xff;
    std::fs::write(&path, &rotten).expect("write");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(mtime))
        .expect("mtime");
    let r = run(client(&d, &["verify", "--storage", "local"]));
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr
            .contains("task failed: verification failed for 1 of 1 volumes"),
        "{r:?}"
    );
    let r = run(client(&d, &["ls"]));
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("local:iso/test.iso") && l.ends_with("FAILED")),
        "{r:?}"
    );

    // The origin still serves the recorded bytes: a repair fetches them into place.
    let r = run(client(&d, &["verify", "local:iso/test.iso", "--repair"]));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l == "local:iso/test.iso: repaired"),
        "{r:?}"
    );
    assert_eq!(std::fs::read(&path).expect("repaired file"), body());
    let r = run(client(&d, &["ls"]));
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("local:iso/test.iso") && l.ends_with(" ok")),
        "{r:?}"
    );
}

#[test]
fn rm_removes_the_volume() {
    let d = Daemon::start();
    download_test_iso(&d);
    assert!(iso_path(&d, "test.iso").exists());
    let r = run(client(&d, &["rm", "local:iso/test.iso"]));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l == "Removed volume 'local:iso/test.iso'"),
        "{r:?}"
    );
    assert!(!iso_path(&d, "test.iso").exists());
    let r = run(client(&d, &["ls", "--storage", "local"]));
    assert_eq!(r.stdout, "VOLID  SIZE  FORMAT  OS  VERIFIED\n", "{r:?}");
}

#[test]
fn tasks_lists_the_download() {
    let d = Daemon::start();
    let dl = download_test_iso(&d);
    let upid = dl
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("task "))
        .expect("task line")
        .to_string();
    let r = run(client(&d, &["tasks", "--limit", "5"]));
    assert_eq!(r.code, Some(0), "{r:?}");
    let row = r
        .stdout
        .lines()
        .find(|l| l.contains(&upid))
        .unwrap_or_else(|| panic!("{upid} not listed: {r:?}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[2..], ["download", upid.as_str(), "OK"], "{row}");
    // --errors: the OK task is left out.
    let r = run(client(&d, &["tasks", "--errors"]));
    assert!(!r.stdout.contains(&upid), "{r:?}");
}

#[test]
fn unknown_storage_is_the_daemons_error() {
    let d = Daemon::start();
    let port = util::origin(body());
    let url = format!("http://127.0.0.1:{port}/test.iso");
    let r = run(client(&d, &["download", &url, "--storage", "nope"]));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        r.stderr.lines().last(),
        Some("isolib: 500 storage 'nope' does not exist"),
        "{r:?}"
    );
    let r = run(client(&d, &["ls", "--storage", "nope"]));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr
            .contains("isolib: 500 storage 'nope' does not exist"),
        "{r:?}"
    );
}

#[test]
fn parameter_errors_are_listed() {
    let d = Daemon::start();
    let port = util::origin(body());
    let url = format!("http://127.0.0.1:{port}/test.iso");
    let r = run(client(
        &d,
        &[
            "download",
            &url,
            "--storage",
            "local",
            "--filename",
            "x.txt",
        ],
    ));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.ends_with(
            "isolib: 400 Parameter verification failed.\nfilename: wrong file extension\n"
        ),
        "{r:?}"
    );
}

#[test]
fn a_wrong_token_is_refused() {
    let d = Daemon::start();
    let mut c = client(&d, &["ls"]);
    c.args([
        "--token",
        &format!("{TOKEN_ID}=00000000-0000-0000-0000-000000000000"),
    ]);
    let r = run(c);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.stderr, "isolib: 401 Authentication failed!\n");
}

#[test]
fn no_daemon_on_the_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("isolib.sock");
    let r = run({
        let mut c = isolib();
        c.args(["tasks", "--socket"]).arg(&sock);
        c
    });
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        r.stderr,
        format!(
            "isolib: unable to reach the daemon at socket {}: No such file or directory (os error 2)\n",
            sock.display()
        )
    );
}

#[test]
fn ctrl_c_stops_the_task() {
    let d = Daemon::start();
    // 1 KiB every 100 ms: minutes for the whole body, so the task is surely still running.
    let (port, _) = util::slow_origin(body(), 1024, Duration::from_millis(100));
    let url = format!("http://127.0.0.1:{port}/test.iso");
    let mut child = client(&d, &["download", &url, "--storage", "local"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut upid = None;
    let mut line = String::new();
    while stderr.read_line(&mut line).expect("read stderr") > 0 {
        if let Some(u) = line.trim_end().strip_prefix("task ") {
            upid = Some(u.to_string());
            break;
        }
        line.clear();
    }
    let upid = upid.expect("client printed its task");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("read stderr");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(
        rest.ends_with(&format!("isolib: interrupted; task {upid} was stopped\n")),
        "{rest}"
    );
    // The client stops the task over the API (DELETE), which cancels the transfer.
    assert_eq!(d.wait(&upid), "download failed: received interrupt");
    assert_eq!(util::files_under(&d.storage_path()), Vec::<String>::new());
    assert_eq!(util::files_under(&d.staging_path()), Vec::<String>::new());
}

/// A daemon that goes away with the test, even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The embedded default: HTTPS with a self-signed certificate and the token printed on first
/// start. The certificate is refused unless trusted (--ca-file) or not checked (--insecure).
#[test]
fn https_with_the_bootstrap_token() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let port = util::free_port();
    let mut daemon = isolib()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("spawn daemon");
    let stdout = daemon.0.stdout.take().expect("stdout");
    let token = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("Authorization: PVEAPIToken=")
                .map(str::to_string)
        })
        .expect("token printed");
    util::wait_for_port(port);
    let url = format!("https://127.0.0.1:{port}");
    let tasks = |extra: &[&str]| {
        let mut c = isolib();
        c.args(["tasks", "--url", &url])
            .args(extra)
            .env("ISOLIB_TOKEN", &token);
        run(c)
    };

    let r = tasks(&[]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr
            .starts_with(&format!("isolib: unable to reach the daemon at {url}: ")),
        "{r:?}"
    );
    assert!(r.stderr.contains("certificate verify failed"), "{r:?}");
    assert!(
        r.stderr
            .ends_with("with --ca-file, or skip the check with --insecure)\n"),
        "{r:?}"
    );

    let cert = cwd.path().join("isolib-data/tls/cert.pem");
    let ca = cert.display().to_string();
    for extra in [&["--ca-file", ca.as_str()][..], &["--insecure"][..]] {
        let r = tasks(extra);
        assert_eq!(r.code, Some(0), "{extra:?}: {r:?}");
        assert!(r.stdout.starts_with("START  TYPE  UPID  STATUS\n"), "{r:?}");
    }
}

/// The default transport: the local socket, with no credentials at all; the task runs as
/// root@pam, whom the kernel vouches for.
#[test]
fn the_local_socket_needs_no_credentials() {
    let d = Daemon::start();
    let port = util::origin(body());
    let url = format!("http://127.0.0.1:{port}/sock.iso");
    let mut c = isolib();
    c.args(["download", &url, "--storage", "local", "--socket"])
        .arg(d.socket_path());
    let r = run(c);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        std::fs::read(iso_path(&d, "sock.iso")).expect("downloaded file"),
        body()
    );
    let mut c = isolib();
    c.args(["tasks", "--socket"]).arg(d.socket_path());
    let r = run(c);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("download") && l.contains("root@pam") && l.contains("OK")),
        "{r:?}"
    );
}

/// A daemon on a non-default config: the client finds its socket and node in that file.
#[test]
fn the_client_reads_socket_and_node_from_the_daemons_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("custom.sock");
    let config = dir.path().join("isolib.toml");
    let write_config = |node: &str| {
        let text = format!(
            "socket = {:?}\nnode = {node:?}\n",
            socket.display().to_string()
        );
        std::fs::write(&config, text).expect("write config");
    };
    write_config(util::NODE);
    let config_arg = config.display().to_string();
    let d = Daemon::start_with(&["--config", &config_arg]);
    assert!(
        socket.exists(),
        "the daemon listens on the configured socket"
    );
    let local = |args: &[&str]| {
        let mut c = isolib();
        c.args(args).args(["--config", &config_arg]);
        run(c)
    };

    let port = util::origin(body());
    let url = format!("http://127.0.0.1:{port}/conf.iso");
    let r = local(&["download", &url, "--storage", "local"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        std::fs::read(iso_path(&d, "conf.iso")).expect("landed"),
        body()
    );
    let r = local(&["ls"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("local:iso/conf.iso"), "{r:?}");

    // The node name comes from the file too: one the daemon does not serve is refused by it.
    write_config("othernode");
    let r = local(&["ls"]);
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr.contains("hostname lookup 'othernode' failed"),
        "{r:?}"
    );

    // A file that cannot be read is named.
    let mut c = isolib();
    c.args(["ls", "--config", "/nonexistent/isolib.toml"]);
    let r = run(c);
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr
            .contains("unable to read config '/nonexistent/isolib.toml'"),
        "{r:?}"
    );
}
