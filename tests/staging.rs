//! Where partial downloads live. A temp file reaches its name by a rename, which cannot cross
//! filesystems, so a content directory mounted on its own (an NFS share on `template/iso`)
//! stages its downloads in a hidden `.isolib-partial` inside it; otherwise they stage under
//! the storage's path, outside every content directory.

mod util;

use std::path::Path;

use util::{Daemon, Step};

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_content_directory_on_its_own_filesystem_stages_inside_it() {
    let dir = util::default_dir();
    let iso_dir = dir.path().join("local/template/iso");
    std::fs::create_dir_all(&iso_dir).expect("mkdir");
    // A tmpfs on template/iso, in a user and mount namespace of the daemon's own.
    let d = Daemon::spawn_on_tmpfs(dir, &iso_dir, "8m");
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let (origin, seen) = util::fault_origin(
        data.clone(),
        vec![Step::Serve {
            etag: "\"s\"",
            limit: None,
        }],
    );
    let upid = d.post_download(&format!(
        "content=iso&filename=m.iso&checksum-algorithm=sha256&checksum={}\
         &url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fm.iso",
        util::sha256_hex(&data)
    ));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(seen.lock().expect("lock").len(), 1);

    let iso = d.in_namespace(&iso_dir);
    assert_eq!(std::fs::read(iso.join("m.iso")).expect("file"), data);
    // The staging dir sits in the mount and is empty; the storage's own one was never made.
    assert_eq!(entries(&iso), [".isolib-partial", "m.iso"]);
    assert_eq!(entries(&iso.join(".isolib-partial")), Vec::<String>::new());
    assert!(
        !d.in_namespace(&d.storage_path())
            .join(".isolib-partial")
            .exists()
    );
    let listed: Vec<String> = d.get_json("/nodes/testnode/storage/local/content")["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v["volid"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(listed, ["local:iso/m.iso"]);
}

#[test]
fn a_content_directory_on_the_storages_filesystem_stages_beside_it() {
    let d = Daemon::start();
    let data = b"same filesystem".to_vec();
    let origin = util::origin(data.clone());
    let upid = d.post_download(&format!(
        "content=iso&filename=p.iso&url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fp.iso"
    ));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    let store = d.storage_path();
    assert_eq!(entries(&store.join("template/iso")), ["p.iso"]);
    assert_eq!(
        entries(&store.join(".isolib-partial")),
        Vec::<String>::new()
    );
    assert!(store.join(".isolib-partial").is_dir());
}
