use super::*;
use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};

/// Returns false, printing a SKIPPED line, when a tool the fixtures need (qemu-img, tar, sh)
/// is missing, so the test can return early. cargo hides that line for passing tests, so
/// ISOLIB_REQUIRE_QEMU_IMG=1 turns every such skip into a failure instead.
fn have_tool(tool: &str) -> bool {
    let found = if tool.starts_with('/') {
        Path::new(tool).exists()
    } else {
        StdCommand::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if !found {
        assert!(
            std::env::var_os("ISOLIB_REQUIRE_QEMU_IMG").is_none(),
            "{tool} is required but missing"
        );
        eprintln!("SKIPPED: {tool} not installed; content_check test not run");
    }
    found
}

macro_rules! require {
        ($($tool:expr),+) => {
            if !($(have_tool($tool))&&+) {
                return;
            }
        };
    }

fn sh(program: &str, args: &[&str]) {
    let out = StdCommand::new(program)
        .args(args)
        .output()
        .expect("spawn fixture command");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn qemu_img_create(args: &[&str]) {
    let mut all = vec!["create"];
    all.extend_from_slice(args);
    sh(QEMU_IMG, &all);
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

async fn check_err(check: ContentCheck, path: &Path) -> String {
    match verify(&check, path).await {
        Ok(_) => panic!("{check:?} on {} unexpectedly passed", path.display()),
        Err(e) => e.to_string(),
    }
}

async fn check_with_log(check: ContentCheck, path: &Path) -> (Result<(), String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut log = |l: &str| lines.push(l.to_string());
    let res = verify_with_log(&check, path, &mut log)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    (res, lines)
}

fn raw_file(dir: &Path, name: &str, len: u64) -> PathBuf {
    let path = dir.join(name);
    let f = std::fs::File::create(&path).expect("create raw file");
    f.set_len(len).expect("size raw file");
    path
}

#[test]
fn for_download_mapping() {
    assert_eq!(ContentCheck::for_download("iso", None), ContentCheck::Iso);
    assert_eq!(
        ContentCheck::for_download("vztmpl", None),
        ContentCheck::None
    );
    assert_eq!(
        ContentCheck::for_download("import", Some("ova")),
        ContentCheck::Ova
    );
    for (ext, fmt) in [
        ("qcow2", ImageFormat::Qcow2),
        ("raw", ImageFormat::Raw),
        ("vmdk", ImageFormat::Vmdk),
    ] {
        assert_eq!(
            ContentCheck::for_download("import", Some(ext)),
            ContentCheck::Image(fmt)
        );
    }
    assert_eq!(
        ContentCheck::for_download("import", Some("QCOW2")),
        ContentCheck::None
    );
    assert_eq!(
        ContentCheck::for_download("import", None),
        ContentCheck::None
    );
}

#[tokio::test]
async fn none_passes_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("does-not-exist");
    assert!(verify(&ContentCheck::None, &missing).await.is_ok());
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not an image").expect("write");
    assert!(verify(&ContentCheck::None, &junk).await.is_ok());
}

#[tokio::test]
async fn iso_plain_raw_passes() {
    require!(QEMU_IMG);
    let dir = tempfile::tempdir().expect("tempdir");
    let iso = dir.path().join("debian.iso.tmp_dwnl.1234");
    let mut data = vec![0u8; 64 * 1024];
    data[0x8001..0x8006].copy_from_slice(b"CD001");
    std::fs::write(&iso, &data).expect("write iso");
    let (res, log) = check_with_log(ContentCheck::Iso, &iso).await;
    assert_eq!(res, Ok(()));
    assert!(log.is_empty(), "{log:?}");
}

#[tokio::test]
async fn an_import_image_reports_its_format_and_virtual_size() {
    require!(QEMU_IMG);
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("disk.qcow2");
    qemu_img_create(&["-f", "qcow2", &p(&image), "3M"]);
    let info = verify(&ContentCheck::Image(ImageFormat::Qcow2), &image)
        .await
        .expect("a good image");
    assert_eq!(
        info,
        Some(ImageInfo {
            format: "qcow2".into(),
            virtual_size: Some(3 << 20),
        })
    );
    // An iso's check says nothing about images.
    assert_eq!(verify(&ContentCheck::None, &image).await.ok(), Some(None));
}

#[tokio::test]
async fn qcow2_with_backing_file_fails() {
    require!(QEMU_IMG);
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base.qcow2");
    let child = dir.path().join("child.qcow2");
    qemu_img_create(&["-f", "qcow2", &p(&base), "1M"]);
    qemu_img_create(&["-f", "qcow2", "-b", &p(&base), "-F", "qcow2", &p(&child)]);
    let want = format!(
        "backing file not allowed for untrusted image '{}'!",
        p(&child)
    );
    assert_eq!(check_err(ContentCheck::Iso, &child).await, want);
    assert_eq!(
        check_err(ContentCheck::Image(ImageFormat::Qcow2), &child).await,
        want
    );
    // The backing file does not even need to exist: qemu-img info does not open it.
    std::fs::remove_file(&base).expect("rm base");
    assert_eq!(check_err(ContentCheck::Iso, &child).await, want);
}

#[tokio::test]
async fn qcow2_with_external_data_file_fails() {
    require!(QEMU_IMG);
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("df.qcow2");
    let data = dir.path().join("df.data");
    qemu_img_create(&[
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", p(&data)),
        &p(&img),
        "1M",
    ]);
    let want = format!("{}: 'data-file' references are not allowed!", p(&img));
    assert_eq!(check_err(ContentCheck::Iso, &img).await, want);
    assert_eq!(
        check_err(ContentCheck::Image(ImageFormat::Qcow2), &img).await,
        want
    );
}

#[tokio::test]
async fn multi_extent_vmdk_fails() {
    require!(QEMU_IMG);
    let dir = tempfile::tempdir().expect("tempdir");
    // Split sparse (two 2 GiB extents for 3G) and flat (descriptor + one extent file, i.e.
    // two child nodes) are both refused.
    let split = dir.path().join("split.vmdk");
    qemu_img_create(&[
        "-f",
        "vmdk",
        "-o",
        "subformat=twoGbMaxExtentSparse",
        &p(&split),
        "3G",
    ]);
    let flat = dir.path().join("flat.vmdk");
    qemu_img_create(&[
        "-f",
        "vmdk",
        "-o",
        "subformat=monolithicFlat",
        &p(&flat),
        "1M",
    ]);
    // A descriptor written by hand whose one extent is a host file: qemu-img before 8.0
    // reports a single extent and no children for it.
    let host = dir.path().join("host.vmdk");
    std::fs::write(
        &host,
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n\
             createType=\"monolithicFlat\"\nRW 1 FLAT \"/etc/passwd\" 0\n",
    )
    .expect("write descriptor");
    for img in [&split, &flat, &host] {
        let want = format!("{}: multiple children or extents are not allowed!", p(img));
        assert_eq!(check_err(ContentCheck::Iso, img).await, want);
        assert_eq!(
            check_err(ContentCheck::Image(ImageFormat::Vmdk), img).await,
            want
        );
    }
}

#[tokio::test]
async fn plain_images_pass_their_format() {
    require!(QEMU_IMG);
    let dir = tempfile::tempdir().expect("tempdir");
    let vmdk = dir.path().join("ok.vmdk");
    qemu_img_create(&["-f", "vmdk", &p(&vmdk), "1M"]);
    let qcow2 = dir.path().join("ok.qcow2");
    qemu_img_create(&["-f", "qcow2", &p(&qcow2), "1M"]);
    let raw = raw_file(dir.path(), "ok.raw", 1024 * 1024);
    for (check, path) in [
        (ContentCheck::Image(ImageFormat::Vmdk), &vmdk),
        (ContentCheck::Image(ImageFormat::Qcow2), &qcow2),
        (ContentCheck::Image(ImageFormat::Raw), &raw),
        // PVE only compares what `-f raw` reports, so a qcow2 named .raw is accepted.
        (ContentCheck::Image(ImageFormat::Raw), &qcow2),
        (ContentCheck::Iso, &qcow2),
    ] {
        let (res, log) = check_with_log(check, path).await;
        assert_eq!(res, Ok(()), "{check:?} {}", path.display());
        assert!(log.is_empty(), "{log:?}");
    }
}

#[tokio::test]
async fn wrong_format_reports_qemu_img_stderr() {
    require!(QEMU_IMG);
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = raw_file(dir.path(), "fake.qcow2", 1024 * 1024);
    let (res, log) = check_with_log(ContentCheck::Image(ImageFormat::Qcow2), &raw).await;
    assert_eq!(
        res,
        Err(format!(
            "qemu-img: Could not open '{}': Image is not in qcow2 format",
            p(&raw)
        ))
    );
    assert_eq!(
        log,
        vec![format!(
            "command '/usr/bin/qemu-img info '--output=json' {} -f qcow2' failed: exit code 1",
            p(&raw)
        )]
    );
}

#[tokio::test]
async fn missing_path_and_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("gone.iso");
    assert_eq!(
        check_err(ContentCheck::Iso, &missing).await,
        format!("failed to stat '{}'", p(&missing))
    );
    let link = dir.path().join("link.iso");
    std::os::unix::fs::symlink(&missing, &link).expect("symlink");
    assert_eq!(
        check_err(ContentCheck::Image(ImageFormat::Raw), &link).await,
        format!("failed to stat '{}' - dangling symlink?", p(&link))
    );
    assert_eq!(
        check_err(ContentCheck::Image(ImageFormat::Raw), dir.path()).await,
        format!(
            "expected format 'raw', but '{}' is a directory",
            p(dir.path())
        )
    );
    // Auto-detect treats a directory as a subvol and accepts it, like PVE.
    assert!(verify(&ContentCheck::Iso, dir.path()).await.is_ok());
}

#[tokio::test]
async fn ova_checks() {
    require!(TAR);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("vm.ovf"), b"<Envelope/>").expect("write ovf");
    std::fs::write(src.join("disk1.vmdk"), b"disk").expect("write disk");

    let good = dir.path().join("good.ova");
    sh(
        TAR,
        &[
            "-c",
            "-f",
            &p(&good),
            "-C",
            &p(&src),
            "vm.ovf",
            "disk1.vmdk",
        ],
    );
    assert!(verify(&ContentCheck::Ova, &good).await.is_ok());

    let no_ovf = dir.path().join("no-ovf.ova");
    sh(
        TAR,
        &["-c", "-f", &p(&no_ovf), "-C", &p(&src), "disk1.vmdk"],
    );
    assert_eq!(
        check_err(ContentCheck::Ova, &no_ovf).await,
        "ova archive has no .ovf file inside"
    );

    let junk = dir.path().join("junk.ova");
    std::fs::write(&junk, b"this is not a tar archive").expect("write junk");
    let (res, log) = check_with_log(ContentCheck::Ova, &junk).await;
    assert_eq!(
        res,
        Err(format!(
            "command 'tar -t -f {}' failed: exit code 2",
            p(&junk)
        ))
    );
    assert_eq!(
        log.first().map(String::as_str),
        Some("tar: This does not look like a tar archive")
    );
}

#[test]
fn untrusted_json_rules() {
    let path = "/x";
    let base = |extra: &str| {
        format!(r#"{{"virtual-size": 1024, "actual-size": 0, "format": "raw"{extra}}}"#)
    };
    assert!(evaluate_info(path, &base(""), Some(ImageFormat::Raw)).is_ok());
    // Perl-false backing names do not count as a backing file.
    assert!(evaluate_info(path, &base(r#", "backing-filename": "0""#), None).is_ok());
    let err = |json: &str, fmt| match evaluate_info(path, json, fmt) {
        Ok(_) => panic!("{json} passed"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err(&base(r#", "backing-filename": "b.qcow2""#), None),
        "backing file not allowed for untrusted image '/x'!"
    );
    assert_eq!(
        err(&base(""), Some(ImageFormat::Qcow2)),
        "qemu-img bug: queried format does not match format in result 'qcow2 ne raw'"
    );
    assert_eq!(
        err(r#"{"actual-size": 0, "format": "raw"}"#, None),
        "size '' not an integer"
    );
    assert_eq!(
        err(
            r#"{"virtual-size": 1, "actual-size": -1, "format": "raw"}"#,
            None
        ),
        "used '' not an integer"
    );
    assert_eq!(
        err(
            r#"{"virtual-size": 1, "actual-size": 1, "format": "r w"}"#,
            None
        ),
        "format '' includes whitespace"
    );
    assert!(
        err("not json", None)
            .starts_with("could not parse qemu-img info command output for '/x' - ")
    );
    // The data-file check runs before the backing-file check.
    let both = base(
        r#", "backing-filename": "b", "format-specific": {"type": "qcow2", "data": {"data-file": "d"}}"#,
    );
    assert_eq!(
        err(&both, None),
        "/x: 'data-file' references are not allowed!"
    );
}
