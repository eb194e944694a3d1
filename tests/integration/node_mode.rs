//! PVE node mode: the daemon reads PVE's own files from `pve-dir`, follows their changes without
//! a restart, and never writes them.

use std::path::Path;
use std::process::Command;

use crate::util;
use crate::util::{Daemon, NODE, TOKEN_ID, TOKEN_SECRET};

/// A stand-in for /etc/pve: storage.cfg without `local`, user.cfg and priv/token.cfg.
fn pve_dir(root: &Path) -> std::path::PathBuf {
    let pve = root.join("pve");
    std::fs::create_dir_all(pve.join("priv")).expect("mkdir");
    std::fs::write(
        pve.join("storage.cfg"),
        format!(
            "isolib: isos\n\tpath {}\n\tcontent iso,vztmpl,import\n",
            root.join("isos").display()
        ),
    )
    .expect("storage.cfg");
    std::fs::write(
        pve.join("user.cfg"),
        "user:root@pam:1:0:::root@localhost:::\ntoken:root@pam!packer:0:0::\n",
    )
    .expect("user.cfg");
    std::fs::write(
        pve.join("priv/token.cfg"),
        format!("{TOKEN_ID} {TOKEN_SECRET}\n"),
    )
    .expect("token.cfg");
    pve
}

/// Starts a download into storage `isos` with the token from priv/token.cfg; returns the UPID.
fn post_download(d: &Daemon, url: &str, filename: &str) -> String {
    let body = format!("content=iso&filename={filename}&url={url}");
    let r = d.raw(
        format!(
            "POST /api2/json/nodes/{NODE}/storage/isos/download-url HTTP/1.1\r\nHost: x\r\n\
             Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    r.json()["data"].as_str().expect("upid").to_string()
}

fn storage_ids(d: &Daemon) -> Vec<String> {
    let list = d.get_json(&format!("/nodes/{NODE}/storage"));
    let mut ids: Vec<String> = list["data"]
        .as_array()
        .expect("storage list")
        .iter()
        .map(|s| s["storage"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn reads_pve_files_and_follows_their_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pve = pve_dir(dir.path());
    let before = snapshot(&pve);
    let d = Daemon::start_bare(dir, &["--pve-dir", &pve.display().to_string()]);

    // The token comes from priv/token.cfg; `local` is there as on every PVE node.
    assert_eq!(storage_ids(&d), ["isos", "local"]);

    post_download(&d, "http://127.0.0.1:9/a.iso", "a.iso");

    // A storage added by another node shows up without a restart.
    let cfg = pve.join("storage.cfg");
    let mut text = std::fs::read_to_string(&cfg).expect("read");
    text.push_str("\ndir: more\n\tpath /srv/more-isos\n\tcontent iso\n");
    std::fs::write(&cfg, &text).expect("write");
    assert_eq!(storage_ids(&d), ["isos", "local", "more"]);

    // A revoked token stops working at once.
    std::fs::write(pve.join("priv/token.cfg"), "").expect("write");
    let r = d.raw(
        format!(
            "GET /api2/json/version HTTP/1.1\r\nHost: x\r\n\
             Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status_line, "HTTP/1.1 401 Authentication failed!");

    // Nothing in PVE's directory was written but by the test itself.
    let mut expected = before;
    expected.insert("storage.cfg".into(), text);
    expected.insert("priv/token.cfg".into(), String::new());
    assert_eq!(snapshot(&pve), expected);
}

/// datacenter.cfg's `http_proxy` carries downloads, and a changed one is used by the next
/// download without a restart.
#[test]
fn datacenter_http_proxy_is_followed_without_restart() {
    let (first, first_seen) = util::recording_origin(b"via first".to_vec());
    let (second, second_seen) = util::recording_origin(b"via second".to_vec());
    let dir = tempfile::tempdir().expect("tempdir");
    let pve = pve_dir(dir.path());
    let dc = pve.join("datacenter.cfg");
    std::fs::write(
        &dc,
        format!("keyboard: en-us\nhttp_proxy: http://127.0.0.1:{first}/\n"),
    )
    .expect("datacenter.cfg");
    let isos = dir.path().join("isos/template/iso");
    let d = Daemon::start_bare(dir, &["--pve-dir", &pve.display().to_string()]);

    // .invalid never resolves: only a proxy can answer these.
    let upid = post_download(&d, "http://mirror.example.invalid/one.iso", "one.iso");
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(
        std::fs::read(isos.join("one.iso")).expect("one.iso"),
        b"via first"
    );

    std::fs::write(&dc, format!("http_proxy: http://127.0.0.1:{second}/\n")).expect("write");
    let upid = post_download(&d, "http://mirror.example.invalid/two.iso", "two.iso");
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(
        std::fs::read(isos.join("two.iso")).expect("two.iso"),
        b"via second"
    );

    assert_eq!(
        first_seen.lock().expect("lock").as_slice(),
        ["GET http://mirror.example.invalid/one.iso HTTP/1.1"]
    );
    assert_eq!(
        second_seen.lock().expect("lock").as_slice(),
        ["GET http://mirror.example.invalid/two.iso HTTP/1.1"]
    );
}

#[test]
fn token_add_refuses_to_write_pve_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pve = pve_dir(dir.path());
    let before = snapshot(&pve);
    let out = Command::new(env!("CARGO_BIN_EXE_isolib"))
        .args(["token", "add", "ci@pve!build", "--pve-dir"])
        .arg(&pve)
        .output()
        .expect("isolib token add");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "isolib: '{}' holds PVE's own files, which isolib never writes: on a PVE node use `pveum user token add`",
            pve.display()
        )
    );
    assert_eq!(snapshot(&pve), before);
}

/// Every file under `dir` with its content.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, String> {
    util::files_under(dir)
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(&name)).expect("read");
            (name, text)
        })
        .collect()
}
