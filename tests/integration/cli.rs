//! The command line as a user meets it: `isolib token add` and `isolib serve` on the embedded
//! default (no config at all).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::util;
use crate::util::{Daemon, NODE};

fn isolib() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isolib"))
}

fn is_lower_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// A daemon that goes away with the test, even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The embedded default's certificate is self-signed.
fn insecure_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

fn get(d: &Daemon, path: &str, auth: &str) -> util::Response {
    d.raw(
        format!("GET /api2/json{path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n")
            .as_bytes(),
    )
}

#[test]
fn token_add_writes_pve_lines_and_the_token_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("local")).expect("mkdir");
    std::fs::write(
        root.join("storage.cfg"),
        format!(
            "dir: local\n\tpath {}\n\tcontent iso\n",
            root.join("local").display()
        ),
    )
    .expect("storage.cfg");
    let out = isolib()
        .args([
            "token",
            "add",
            "ci@pve!build",
            "--role",
            "PVEDatastoreAdmin",
            "--path",
            "/storage/local",
        ])
        .args(["--privsep", "0"])
        .arg("--user-cfg")
        .arg(root.join("user.cfg"))
        .arg("--token-cfg")
        .arg(root.join("token.cfg"))
        .output()
        .expect("run token add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(is_lower_uuid(&secret), "{secret}");
    let user_cfg = std::fs::read_to_string(root.join("user.cfg")).expect("user.cfg");
    assert!(user_cfg.contains("user:ci@pve:1:0:"), "{user_cfg}");
    assert!(user_cfg.contains("token:ci@pve!build:0:0:"), "{user_cfg}");
    assert!(
        user_cfg.contains("acl:1:/storage/local:ci@pve:PVEDatastoreAdmin:"),
        "{user_cfg}"
    );
    let token_cfg = root.join("token.cfg");
    assert_eq!(
        std::fs::read_to_string(&token_cfg).expect("token.cfg"),
        format!("ci@pve!build {secret}\n")
    );
    assert_eq!(
        std::fs::metadata(&token_cfg)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let d = Daemon::start_in(dir);
    let auth = format!("PVEAPIToken=ci@pve!build={secret}");
    let r = get(&d, &format!("/nodes/{NODE}/storage/local/content"), &auth);
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    // The role grants the storage but nothing on / or the node: download-url is refused.
    let r = d.post_download_raw(
        &auth,
        "content=iso&filename=x.iso&url=http%3A%2F%2F127.0.0.1%2Fx.iso",
    );
    assert_eq!(r.status_line, "HTTP/1.1 403 Permission check failed");
    let r = get(
        &d,
        "/version",
        &format!("PVEAPIToken=ci@pve!build={}", "0".repeat(36)),
    );
    assert_eq!(r.status_line, "HTTP/1.1 401 Authentication failed!");
}

#[test]
fn token_add_refuses_an_existing_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let add = || {
        isolib()
            .args(["token", "add", "ci@pve!dup"])
            .arg("--user-cfg")
            .arg(dir.path().join("user.cfg"))
            .arg("--token-cfg")
            .arg(dir.path().join("token.cfg"))
            .output()
            .expect("run")
    };
    assert!(add().status.success());
    let second = add();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).starts_with("isolib: "));
}

/// `isolib serve` with nothing else but a port: HTTPS, storage `local` under ./isolib-data
/// with iso,vztmpl,import, and an admin token whose header is printed on the first start only.
#[tokio::test]
async fn embedded_default_serves_https_with_a_bootstrap_token() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let port = util::free_port();
    let start = || {
        isolib()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(cwd.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map(KillOnDrop)
            .expect("spawn")
    };
    let mut child = start();
    let stdout = child.stdout.take().expect("stdout");
    let header = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("Authorization: ").map(str::to_string))
        .expect("header printed");
    assert!(
        header.starts_with("PVEAPIToken=root@pam!isolib="),
        "{header}"
    );
    util::wait_for_port(port);

    let data = cwd.path().join("isolib-data");
    let token_cfg = data.join("token.cfg");
    assert_eq!(
        std::fs::metadata(&token_cfg)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let client = insecure_client();
    let storages: serde_json::Value = client
        .get(format!(
            "https://127.0.0.1:{port}/api2/json/nodes/localhost/storage"
        ))
        .header("Authorization", &header)
        .send()
        .await
        .expect("https request")
        .json()
        .await
        .expect("json");
    let local = &storages["data"][0];
    assert_eq!(local["storage"], "local");
    assert_eq!(local["type"], "dir");
    let mut content: Vec<&str> = local["content"]
        .as_str()
        .expect("content")
        .split(',')
        .collect();
    content.sort();
    assert_eq!(content, ["import", "iso", "vztmpl"]);
    let _ = child.kill();
    let _ = child.wait();

    // Second start: the token exists, nothing is printed, the same header still works.
    let mut child = start();
    let printed: Vec<String> = {
        util::wait_for_port(port);
        // A new client: the old one's pooled connection went with the first daemon.
        let client = insecure_client();
        let status = client
            .get(format!("https://127.0.0.1:{port}/api2/json/version"))
            .header("Authorization", &header)
            .send()
            .await
            .expect("https request")
            .status();
        assert_eq!(status, 200);
        let _ = child.kill();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect()
    };
    let _ = child.wait();
    assert!(
        printed.iter().all(|l| !l.contains("PVEAPIToken")),
        "{printed:?}"
    );
}
