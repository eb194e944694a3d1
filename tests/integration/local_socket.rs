//! The local Unix socket: the same API, with the peer's uid from the kernel as its identity.

use std::process::Command;

use crate::util;
use crate::util::Daemon;

const VERSION: &[u8] = b"GET /api2/json/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[test]
fn own_uid_peer_is_root_at_pam_without_credentials() {
    let d = Daemon::start();
    let r = d.raw_unix(VERSION);
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert!(r.json()["data"]["version"].is_string());

    // A task started over the socket runs as root@pam, which the UPID records.
    let body = "content=iso&filename=a.iso&url=http://127.0.0.1:9/a.iso";
    let r = d.raw_unix(
        format!(
            "POST /api2/json/nodes/localhost/storage/local/download-url HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status_line, "HTTP/1.1 200 OK", "{:?}", r.body);
    let upid = r.json()["data"].as_str().expect("upid").to_string();
    assert!(upid.ends_with(":root@pam:"), "{upid}");

    // Over TCP the same request without credentials is refused.
    assert_eq!(d.raw(VERSION).status_line, "HTTP/1.1 401 No ticket");
}

#[test]
fn other_uids_are_refused() {
    if !nix_is_root() {
        eprintln!("skipped: needs root to connect as another uid");
        return;
    }
    let d = Daemon::start();
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg("--unix-socket")
        .arg(d.socket_path())
        .arg("http://x/api2/json/version")
        .output()
        .expect("setpriv curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_is_not_taken_over() {
    let mut d = Daemon::start();
    d.kill9();
    assert!(d.socket_path().exists(), "kill -9 leaves the socket file");
    d.restart();
    assert_eq!(d.raw_unix(VERSION).status_line, "HTTP/1.1 200 OK");

    let second = Command::new(env!("CARGO_BIN_EXE_isolib"))
        .args(["serve", "--tls", "false", "--listen", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(d.dir.path().join("second"))
        .arg("--socket")
        .arg(d.socket_path())
        .output()
        .expect("second daemon");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "another daemon is listening on socket '{}'",
            d.socket_path().display()
        )),
        "{stderr}"
    );
    assert_eq!(d.raw_unix(VERSION).status_line, "HTTP/1.1 200 OK");

    assert!(d.terminate().success());
    assert!(!d.socket_path().exists(), "a clean stop removes the socket");
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The PVE shim names the PVE task it downloads for; the daemon's task is that task's user's
/// and its log names PVE's UPID first. Only root on the socket may say so.
#[test]
fn a_pve_task_header_makes_the_task_its_users() {
    let d = Daemon::start();
    let pve = "UPID:pvenode:0003E820:00922AFB:67F2299C:download:a.iso:alice@pve:";
    let body = "content=iso&filename=a.iso&url=http://127.0.0.1:9/a.iso";
    let request = |header: &str| {
        format!(
            "POST /api2/json/nodes/localhost/storage/local/download-url HTTP/1.1\r\nHost: x\r\n\
             {header}Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };

    let r = d.raw_unix(request(&format!("X-Isolib-PVE-Task: {pve}\r\n")).as_bytes());
    assert_eq!(r.status_line, "HTTP/1.1 200 OK", "{:?}", r.body);
    let upid = r.json()["data"].as_str().expect("upid").to_string();
    assert!(upid.ends_with(":download:a.iso:alice@pve:"), "{upid}");
    d.wait(&upid);
    let lines = d.log_lines(&upid);
    assert_eq!(
        lines.first(),
        Some(&format!("PVE task: {pve}")),
        "{lines:?}"
    );

    // PVE's error answer: the status, and the message (also the status line's reason).
    let refused = |r: util::Response, status: u16, message: &str| {
        assert_eq!(r.status_line, format!("HTTP/1.1 {status} {message}"));
        assert_eq!(r.json()["message"], format!("{message}\n"));
    };
    refused(
        d.raw_unix(request("X-Isolib-PVE-Task: UPID:nonsense\r\n").as_bytes()),
        400,
        "header 'X-Isolib-PVE-Task': unable to parse worker upid 'UPID:nonsense'",
    );

    // Over TCP, even with the superuser's token, nobody may name another user.
    refused(
        d.raw(
            request(&format!(
                "Authorization: PVEAPIToken={}={}\r\nX-Isolib-PVE-Task: {pve}\r\n",
                util::TOKEN_ID,
                util::TOKEN_SECRET
            ))
            .as_bytes(),
        ),
        403,
        "Permission check failed (header 'X-Isolib-PVE-Task' is only accepted from root on the local socket)",
    );
    let tasks = d.get_json("/nodes/localhost/tasks?source=all");
    let users: Vec<&str> = tasks["data"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["user"].as_str())
        .collect();
    assert_eq!(
        users,
        ["alice@pve"],
        "only the accepted request made a task"
    );
}
