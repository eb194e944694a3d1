//! url-allow / url-deny keep the daemon away from addresses the operator forbids, whichever
//! way the URL names them: an address literal, a name that resolves there, a redirect; for
//! download-url (a task error, no file, no request to the origin) and query-url-metadata (a
//! 500). Also max-redirects. All origins listen on 127.0.0.1, which `localhost` resolves to.

use crate::util;
use crate::util::{Daemon, NODE, Response, TOKEN_ID, TOKEN_SECRET};

fn encode(url: &str) -> String {
    url.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn download(d: &Daemon, url: &str, name: &str) -> String {
    let upid = d.post_download(&format!("content=iso&filename={name}&url={}", encode(url)));
    d.wait(&upid)
}

fn metadata(d: &Daemon, url: &str) -> Response {
    d.raw(
        format!(
            "GET /api2/json/nodes/{NODE}/query-url-metadata?url={} HTTP/1.1\r\nHost: x\r\n\
             Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n\r\n",
            encode(url)
        )
        .as_bytes(),
    )
}

fn requests(seen: &util::Lines) -> Vec<String> {
    seen.lock().expect("lock").clone()
}

fn nothing_stored(d: &Daemon) {
    assert_eq!(util::files_under(&d.storage_path()), Vec::<String>::new());
}

#[test]
fn denied_network_fails_the_task_before_any_request() {
    let (origin, seen) = util::recording_origin(b"secret".to_vec());
    let d = Daemon::start_with(&["--url-deny", "net:127.0.0.0/8,net:::1"]);
    let url = format!("http://127.0.0.1:{origin}/a.iso");
    assert_eq!(
        download(&d, &url, "a.iso"),
        format!(
            "download failed: URL '{url}' is not allowed: address 127.0.0.1 is in denied network 127.0.0.0/8"
        )
    );
    // The same address written other ways: the URL parser and the policy agree on it.
    for other in [
        format!("http://2130706433:{origin}/a.iso"),
        format!("http://[::ffff:127.0.0.1]:{origin}/a.iso"),
    ] {
        let exit = download(&d, &other, "a.iso");
        assert!(
            exit.ends_with("is not allowed: address 127.0.0.1 is in denied network 127.0.0.0/8"),
            "{other}: {exit}"
        );
    }
    assert_eq!(
        download(&d, &format!("http://[::1]:{origin}/a.iso"), "a.iso"),
        format!(
            "download failed: URL 'http://[::1]:{origin}/a.iso' is not allowed: address ::1 is in denied network ::1/128"
        )
    );
    assert_eq!(requests(&seen), Vec::<String>::new());
    nothing_stored(&d);
}

#[test]
fn name_whose_addresses_are_all_denied_fails_in_the_resolver() {
    let (origin, seen) = util::recording_origin(b"secret".to_vec());
    let d = Daemon::start_with(&["--url-deny", "net:127.0.0.0/8", "--url-deny", "net:::1"]);
    let exit = download(&d, &format!("http://localhost:{origin}/b.iso"), "b.iso");
    assert!(
        exit.starts_with("download failed: host 'localhost' is not allowed: address ")
            && exit.contains("address 127.0.0.1 is in denied network 127.0.0.0/8"),
        "{exit}"
    );
    assert_eq!(requests(&seen), Vec::<String>::new());
    nothing_stored(&d);
}

#[test]
fn denied_addresses_of_a_name_are_skipped_when_others_are_allowed() {
    let (origin, seen) = util::recording_origin(b"via 127.0.0.1".to_vec());
    // localhost may also resolve to ::1, where nothing listens; only 127.0.0.1 is left.
    let d = Daemon::start_with(&["--url-deny", "net:::1"]);
    assert_eq!(
        download(&d, &format!("http://localhost:{origin}/c.iso"), "c.iso"),
        "OK"
    );
    assert_eq!(requests(&seen), ["GET /c.iso HTTP/1.1"]);
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/c.iso")).expect("file"),
        b"via 127.0.0.1"
    );
}

#[test]
fn host_rules_match_the_name_in_the_url() {
    let (origin, seen) = util::recording_origin(b"x".to_vec());
    let d = Daemon::start_with(&["--url-deny", "host:localhost"]);
    let url = format!("http://LocalHost.:{origin}/d.iso");
    assert_eq!(
        download(&d, &url, "d.iso"),
        format!(
            "download failed: URL '{url}' is not allowed: host 'localhost' matches denied host 'localhost'"
        )
    );
    assert_eq!(requests(&seen), Vec::<String>::new());
    nothing_stored(&d);
}

#[test]
fn redirect_to_a_denied_host_is_not_followed() {
    let (target, target_seen) = util::recording_origin(b"internal".to_vec());
    let location = format!("http://localhost:{target}/internal.iso");
    let (origin, origin_seen) = util::redirect_origin(location.clone());
    let d = Daemon::start_with(&["--url-deny", "host:localhost"]);
    assert_eq!(
        download(&d, &format!("http://127.0.0.1:{origin}/e.iso"), "e.iso"),
        format!(
            "download failed: redirect to '{location}' is not allowed: host 'localhost' matches denied host 'localhost'"
        )
    );
    assert_eq!(requests(&origin_seen), ["GET /e.iso HTTP/1.1"]);
    assert_eq!(requests(&target_seen), Vec::<String>::new());
    nothing_stored(&d);
}

#[test]
fn redirect_to_a_denied_address_is_not_followed() {
    let (target, target_seen) = util::recording_origin(b"internal".to_vec());
    let location = format!("http://[::1]:{target}/internal.iso");
    let (origin, origin_seen) = util::redirect_origin(location.clone());
    // localhost passes (its 127.0.0.1 is allowed), the address in the redirect does not.
    let d = Daemon::start_with(&["--url-deny", "net:::1"]);
    assert_eq!(
        download(&d, &format!("http://localhost:{origin}/f.iso"), "f.iso"),
        format!(
            "download failed: redirect to '{location}' is not allowed: address ::1 is in denied network ::1/128"
        )
    );
    assert_eq!(requests(&origin_seen), ["GET /f.iso HTTP/1.1"]);
    assert_eq!(requests(&target_seen), Vec::<String>::new());
}

#[test]
fn allow_lists_let_only_their_matches_through() {
    let (origin, seen) = util::recording_origin(b"allowed".to_vec());
    let url = format!("http://127.0.0.1:{origin}/g.iso");

    let d = Daemon::start_with(&["--url-allow", "net:127.0.0.0/8"]);
    assert_eq!(download(&d, &url, "g.iso"), "OK");
    // A name passes with its allowed address; its ::1, if any, is not in the list.
    assert_eq!(
        download(&d, &format!("http://localhost:{origin}/g2.iso"), "g2.iso"),
        "OK"
    );
    drop(d);

    let d = Daemon::start_with(&["--url-allow", "net:10.0.0.0/8"]);
    assert_eq!(
        download(&d, &url, "g.iso"),
        format!(
            "download failed: URL '{url}' is not allowed: address 127.0.0.1 is not in an allowed network"
        )
    );
    drop(d);

    // Host rules name hosts; an address is none of them.
    let d = Daemon::start_with(&["--url-allow", "host:*.debian.org"]);
    assert_eq!(
        download(&d, &url, "g.iso"),
        format!(
            "download failed: URL '{url}' is not allowed: host '127.0.0.1' is not one of the allowed hosts"
        )
    );
    drop(d);

    let d = Daemon::start_with(&["--url-allow", "scheme:https"]);
    assert_eq!(
        download(&d, &url, "g.iso"),
        format!(
            "download failed: URL '{url}' is not allowed: scheme 'http' is not one of the allowed schemes"
        )
    );
    nothing_stored(&d);
    assert_eq!(
        requests(&seen),
        ["GET /g.iso HTTP/1.1", "GET /g2.iso HTTP/1.1"]
    );
}

#[test]
fn query_url_metadata_is_refused_too() {
    let (origin, seen) = util::recording_origin(b"x".to_vec());
    let d = Daemon::start_with(&["--url-deny", "net:127.0.0.0/8,net:::1"]);

    let url = format!("http://127.0.0.1:{origin}/m.iso");
    let text =
        format!("URL '{url}' is not allowed: address 127.0.0.1 is in denied network 127.0.0.0/8");
    let r = metadata(&d, &url);
    assert_eq!(r.status_line, format!("HTTP/1.1 500 {text}"));
    assert_eq!(r.json()["message"], format!("{text}\n"));

    let r = metadata(&d, &format!("http://localhost:{origin}/m.iso"));
    assert!(
        r.status_line
            .starts_with("HTTP/1.1 500 host 'localhost' is not allowed: address "),
        "{}",
        r.status_line
    );
    assert_eq!(requests(&seen), Vec::<String>::new());

    drop(d);

    let d = Daemon::start_with(&["--url-deny", "host:localhost"]);
    let location = format!("http://localhost:{origin}/m.iso");
    let (redirecting, redirect_seen) = util::redirect_origin(location.clone());
    let r = metadata(&d, &format!("http://127.0.0.1:{redirecting}/m.iso"));
    assert_eq!(
        r.status_line,
        format!(
            "HTTP/1.1 500 redirect to '{location}' is not allowed: host 'localhost' matches denied host 'localhost'"
        )
    );
    assert_eq!(requests(&redirect_seen), ["HEAD /m.iso HTTP/1.1"]);
    assert_eq!(requests(&seen), Vec::<String>::new());
}

#[test]
fn max_redirects_bounds_the_chain() {
    let (origin, seen) = util::redirect_chain_origin(b"end of chain".to_vec());
    let url = format!("http://127.0.0.1:{origin}/hop/3");

    let d = Daemon::start_with(&["--max-redirects", "2"]);
    assert_eq!(
        download(&d, &url, "h.iso"),
        "download failed: too many redirects"
    );
    assert_eq!(
        requests(&seen),
        [
            "GET /hop/3 HTTP/1.1",
            "GET /hop/2 HTTP/1.1",
            "GET /hop/1 HTTP/1.1"
        ]
    );
    nothing_stored(&d);
    drop(d);

    let d = Daemon::start_with(&["--max-redirects", "3"]);
    assert_eq!(download(&d, &url, "h.iso"), "OK");
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/h.iso")).expect("file"),
        b"end of chain"
    );
    assert_eq!(requests(&seen).len(), 3 + 4);
}

#[test]
fn bad_rules_stop_the_daemon_at_start() {
    let dir = util::default_dir();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_isolib"))
        .args(["serve", "--tls", "false", "--listen", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--url-deny", "net:10.0.0.1/8"])
        .output()
        .expect("run isolib");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "invalid url-deny 'net:10.0.0.1/8': host bits are set; the network is 10.0.0.0/8"
        ),
        "{stderr}"
    );
}

#[test]
fn through_a_proxy_urls_are_judged_but_the_proxy_resolves_names() {
    let (proxy, seen) = util::recording_origin(b"via proxy".to_vec());
    let d = Daemon::start_with(&[
        "--http-proxy",
        &format!("http://127.0.0.1:{proxy}/"),
        "--url-deny",
        "net:127.0.0.0/8,host:*.internal.invalid",
    ]);
    // The proxy itself is on a denied network: it is the operator's own setting. The name is
    // the proxy's to resolve (.invalid never resolves here).
    assert_eq!(
        download(&d, "http://mirror.example.invalid/p.iso", "p.iso"),
        "OK"
    );
    assert_eq!(
        download(&d, "http://127.0.0.2/p2.iso", "p2.iso"),
        "download failed: URL 'http://127.0.0.2/p2.iso' is not allowed: address 127.0.0.2 is in denied network 127.0.0.0/8"
    );
    assert_eq!(
        download(&d, "http://db.internal.invalid/p3.iso", "p3.iso"),
        "download failed: URL 'http://db.internal.invalid/p3.iso' is not allowed: host 'db.internal.invalid' matches denied host '*.internal.invalid'"
    );
    assert_eq!(
        requests(&seen),
        ["GET http://mirror.example.invalid/p.iso HTTP/1.1"]
    );
}

/// An origin that answers every request with `body` and records each request's head.
fn head_recording_origin(body: &'static [u8]) -> (u16, util::Lines) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let port = listener.local_addr().expect("addr").port();
    let seen = util::Lines::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let head = util::read_head(&mut conn);
            log.lock().expect("lock").push(head);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut conn, answer.as_bytes());
            let _ = std::io::Write::write_all(&mut conn, body);
        }
    });
    (port, seen)
}

/// `http://user:secret@host/` is fetched with those credentials, and shown nowhere: not in the
/// task's exit status (which every Sys.Audit holder lists), its log, or an API error.
#[test]
fn credentials_in_a_url_are_used_but_never_shown() {
    let d = Daemon::start_with(&["--url-deny", "net:127.0.0.2/32"]);
    let denied = "http://user:s3cr3t@127.0.0.2:9/x.iso";
    assert_eq!(
        download(&d, denied, "x.iso"),
        "download failed: URL 'http://***@127.0.0.2:9/x.iso' is not allowed: address 127.0.0.2 is in denied network 127.0.0.2/32"
    );
    let r = metadata(&d, denied);
    assert_eq!(
        r.json()["message"],
        "URL 'http://***@127.0.0.2:9/x.iso' is not allowed: address 127.0.0.2 is in denied network 127.0.0.2/32\n"
    );
    assert!(!r.status_line.contains("s3cr3t"), "{}", r.status_line);

    let (port, seen) = head_recording_origin(b"iso bytes");
    let upid = d.post_download(&format!(
        "content=iso&filename=ok.iso&url={}",
        encode(&format!("http://user:s3cr3t@127.0.0.1:{port}/ok.iso"))
    ));
    assert_eq!(d.wait(&upid), "OK");
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/ok.iso")).expect("landed"),
        b"iso bytes"
    );
    // Basic auth with user:s3cr3t, as wget sends it.
    let heads = seen.lock().expect("lock").clone();
    assert!(
        heads.iter().any(
            |h| h.contains("\r\nauthorization: Basic dXNlcjpzM2NyM3Q=\r\n")
                || h.contains("\r\nAuthorization: Basic dXNlcjpzM2NyM3Q=\r\n")
        ),
        "{heads:?}"
    );
    let lines = d.log_lines(&upid);
    assert_eq!(
        lines.first().map(String::as_str),
        Some(
            format!(
                "downloading http://***@127.0.0.1:{port}/ok.iso to {}",
                d.storage_path().join("template/iso/ok.iso").display()
            )
            .as_str()
        )
    );

    let tasks = d.get_json(&format!("/nodes/{NODE}/tasks?source=all&limit=100"));
    let all = tasks.to_string();
    assert!(all.contains("***@127.0.0.2:9"), "{all}");
    for upid in tasks["data"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["upid"].as_str())
    {
        let log = d.log_lines(upid).join("\n");
        assert!(!log.contains("s3cr3t"), "{log}");
    }
    assert!(!all.contains("s3cr3t"), "{all}");
}
