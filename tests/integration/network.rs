//! How the daemon reaches origins: the configured proxy for http (PVE's datacenter.cfg
//! `http_proxy`) and never an environment proxy; TLS verification on by default with a clear
//! error (for a certificate from an unknown CA and for a self-signed one), off with
//! `verify-certificates=0`, and extra CAs from `ca-file`.

use crate::util;
use crate::util::Daemon;

fn request(url: &str, name: &str, extra: &str) -> String {
    let url: String = url
        .bytes()
        .map(|b| match b {
            b':' => "%3A".to_string(),
            b'/' => "%2F".to_string(),
            _ => (b as char).to_string(),
        })
        .collect();
    format!("content=iso&filename={name}&url={url}{extra}")
}

#[test]
fn http_proxy_carries_downloads() {
    let (proxy, seen) = util::recording_origin(b"via proxy".to_vec());
    let d = Daemon::start_with(&["--http-proxy", &format!("http://127.0.0.1:{proxy}/")]);
    // .invalid never resolves: only the proxy can answer this.
    let upid = d.post_download(&request("http://mirror.example.invalid/p.iso", "p.iso", ""));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(
        seen.lock().expect("lock").as_slice(),
        ["GET http://mirror.example.invalid/p.iso HTTP/1.1"]
    );
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/p.iso")).expect("file"),
        b"via proxy"
    );
}

#[test]
fn environment_proxies_are_ignored() {
    let (proxy, proxied) = util::recording_origin(b"wrong".to_vec());
    let (origin, direct) = util::recording_origin(b"direct".to_vec());
    let proxy_url = format!("http://127.0.0.1:{proxy}/");
    // SAFETY: set before any thread of this test binary reads the environment for a child.
    let d = {
        let _guard = EnvGuard::set(&[
            ("http_proxy", &proxy_url),
            ("HTTP_PROXY", &proxy_url),
            ("ALL_PROXY", &proxy_url),
        ]);
        Daemon::start()
    };
    let upid = d.post_download(&request(
        &format!("http://127.0.0.1:{origin}/e.iso"),
        "e.iso",
        "",
    ));
    assert_eq!(d.wait(&upid), "OK");
    assert!(proxied.lock().expect("lock").is_empty());
    assert_eq!(
        direct.lock().expect("lock").as_slice(),
        ["GET /e.iso HTTP/1.1"]
    );
}

/// Environment variables for the next child process only; restored on drop.
struct EnvGuard(Vec<(String, Option<String>)>);

impl EnvGuard {
    fn set(vars: &[(&str, &str)]) -> EnvGuard {
        let old = vars
            .iter()
            .map(|(k, _)| (k.to_string(), std::env::var(k).ok()))
            .collect();
        for (k, v) in vars {
            // SAFETY: this test binary's tests that touch the environment run in this file
            // only, and the value is read by the child started while the guard lives.
            unsafe { std::env::set_var(k, v) };
        }
        EnvGuard(old)
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (k, v) in &self.0 {
            // SAFETY: as in `set`.
            unsafe {
                match v {
                    Some(v) => std::env::set_var(k, v),
                    None => std::env::remove_var(k),
                }
            }
        }
    }
}

#[test]
fn tls_verification_on_off_and_ca_file() {
    let (origin, ca_pem) = util::tls_origin(b"secure bytes".to_vec());
    let url = format!("https://127.0.0.1:{origin}/t.iso");

    let d = Daemon::start();
    let upid = d.post_download(&request(&url, "t.iso", ""));
    let exit = d.wait(&upid);
    assert_eq!(
        exit,
        "download failed: certificate verify failed (unable to get local issuer certificate)"
    );
    assert_eq!(util::files_under(&d.storage_path()), Vec::<String>::new());

    let upid = d.post_download(&request(&url, "t.iso", "&verify-certificates=0"));
    assert_eq!(d.wait(&upid), "OK");
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/t.iso")).expect("file"),
        b"secure bytes"
    );
    drop(d);

    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("ca");
    let d = Daemon::start_with(&["--ca-file", &ca_file.display().to_string()]);
    let upid = d.post_download(&request(&url, "t.iso", ""));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/t.iso")).expect("file"),
        b"secure bytes"
    );
}

#[test]
fn a_self_signed_origin_fails_verification_and_passes_without_it() {
    let served = b"self-signed bytes".to_vec();
    let origin = util::self_signed_tls_origin(served.clone());
    let url = format!("https://127.0.0.1:{origin}/s.iso");
    let d = Daemon::start();
    let staging = d.staging_path();

    let upid = d.post_download(&request(&url, "s.iso", ""));
    let exit = d.wait(&upid);
    // OpenSSL's reason and its verify result, without the build's error code and source line.
    assert_eq!(
        exit,
        "download failed: certificate verify failed (self-signed certificate)"
    );
    assert_eq!(
        d.log_lines(&upid).last(),
        Some(&format!("TASK ERROR: {exit}"))
    );
    assert_eq!(util::files_under(&d.storage_path()), Vec::<String>::new());
    assert_eq!(util::files_under(&staging), Vec::<String>::new());

    let upid = d.post_download(&request(&url, "s.iso", "&verify-certificates=0"));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/s.iso")).expect("file"),
        served
    );
    let listing = d.get_json(&format!("/nodes/{}/storage/local/content", util::NODE));
    let volumes: Vec<&str> = listing["data"]
        .as_array()
        .expect("content list")
        .iter()
        .map(|v| v["volid"].as_str().expect("volid"))
        .collect();
    assert_eq!(volumes, ["local:iso/s.iso"]);
    assert_eq!(util::files_under(&staging), Vec::<String>::new());
}
