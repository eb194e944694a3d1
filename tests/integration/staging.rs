//! Where partial downloads live. A temp file reaches its name by a rename, which cannot cross
//! mounts, so a content directory mounted on its own (an NFS share or a bind mount on
//! `template/iso`) stages its downloads in a hidden `.isolib-partial` inside it; otherwise they
//! stage under the storage's path, outside every content directory.

use std::path::Path;

use crate::util;
use crate::util::{Daemon, Step};

/// Downloads into `iso_dir`, a mount of its own in the daemon's namespace, and checks that the
/// temp file was staged inside it: the task ends OK, the staging dir there is empty, the
/// storage's own one was never made, and the listing shows the file alone.
fn download_stages_inside(d: &Daemon, iso_dir: &Path) {
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

    let iso = d.in_namespace(iso_dir);
    assert_eq!(std::fs::read(iso.join("m.iso")).expect("file"), data);
    // The record lives with the volume, on the content directory's own mount.
    assert_eq!(
        util::entries_under(&iso),
        [
            ".isolib-catalog/",
            ".isolib-catalog/m.iso.json",
            ".isolib-partial/",
            "m.iso"
        ]
    );
    assert_eq!(
        util::entries_under(&iso.join(".isolib-partial")),
        Vec::<String>::new()
    );
    let own = d.in_namespace(&d.storage_path()).join(".isolib-partial");
    assert!(!own.exists());
    let listed: Vec<String> = d.get_json("/nodes/testnode/storage/local/content")["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v["volid"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(listed, ["local:iso/m.iso"]);
}

#[test]
fn a_content_directory_on_its_own_filesystem_stages_inside_it() {
    let dir = util::default_dir();
    let iso_dir = dir.path().join("local/template/iso");
    std::fs::create_dir_all(&iso_dir).expect("mkdir");
    let d = Daemon::spawn_on_tmpfs(dir, &iso_dir, "8m");
    download_stages_inside(&d, &iso_dir);
}

/// The same filesystem mounted twice still refuses a rename between the two mounts (EXDEV), so
/// the device number alone cannot tell where to stage.
#[test]
fn a_bind_mounted_content_directory_stages_inside_it() {
    let dir = util::default_dir();
    let iso_dir = dir.path().join("local/template/iso");
    let shared = dir.path().join("shared-isos");
    for d in [&iso_dir, &shared] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let d = Daemon::spawn_wrapped(
        dir,
        &[
            "unshare",
            "-rm",
            "sh",
            "-c",
            "mount --bind \"$0\" \"$1\" && shift && exec \"$@\"",
            &shared.display().to_string(),
            &iso_dir.display().to_string(),
        ],
        &[],
    );
    download_stages_inside(&d, &iso_dir);
    // Through the bind mount, the file and its record are in the shared directory.
    assert_eq!(
        util::entries_under(&shared),
        [
            ".isolib-catalog/",
            ".isolib-catalog/m.iso.json",
            ".isolib-partial/",
            "m.iso"
        ]
    );
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
    assert_eq!(
        util::entries_under(&store.join("template/iso")),
        [".isolib-catalog/", ".isolib-catalog/p.iso.json", "p.iso"]
    );
    assert_eq!(
        util::entries_under(&store.join(".isolib-partial")),
        Vec::<String>::new()
    );
    assert!(store.join(".isolib-partial").is_dir());
}

/// A partial with no state is garbage; the collection at start finds it in every place the
/// storage may have staged in, whatever is mounted there today.
#[test]
fn collection_covers_the_content_directories_staging_dirs_too() {
    let dir = util::default_dir();
    let store = dir.path().join("local");
    let places = [
        store.join(".isolib-partial"),
        store.join("template/iso/.isolib-partial"),
        store.join("import/.isolib-partial"),
    ];
    let garbage = format!("x.iso.{}-{}.part", util::NODE, "0123456789abcdef".repeat(2));
    for place in &places {
        std::fs::create_dir_all(place).expect("mkdir");
        std::fs::write(place.join(&garbage), b"left by a crash").expect("write");
        // Not a partial of this node's naming: never touched.
        std::fs::write(place.join("notes.txt"), b"mine").expect("write");
    }
    let d = Daemon::start_in(dir);
    for place in &places {
        assert_eq!(
            util::entries_under(place),
            ["notes.txt"],
            "{}",
            place.display()
        );
    }
    drop(d);
}
