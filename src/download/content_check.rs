//! Content checks run on a downloaded temp file before it is renamed into place, mirroring what
//! PVE's `download-url` passes as `assert_file_validity`: for `iso` the untrusted
//! `file_size_info(tmp, undef, 'auto-detect', 1)` (pve-storage `PVE::Storage::assert_iso_content`
//! and `PVE::Storage::Plugin::file_size_info`), for an `import` `.ova` the `tar -t` listing check
//! (`assert_ova_contents` in `PVE/API2/Storage/Status.pm`), for `import` qcow2/raw/vmdk the
//! untrusted `file_size_info(tmp, 10, <format>, 1)`, and nothing for `vztmpl`. Error `Display`
//! texts are PVE's `die` messages without Perl's final newline; the caller adds the
//! `failed to verify file: ` prefix. Lines PVE would `warn` into the task log while checking
//! (failed command, qemu-img/tar stderr) are handed to a log callback.

use std::io;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::image_refs::{self, ExternalRef};
use crate::catalog::ImageInfo;
use crate::pve::perl::{errno_text, truthy, without_final_newline};
use crate::pve::run_command::{cmd_to_string, run_captured};

/// PVE calls qemu-img by absolute path (not via PATH), so we do the same.
const QEMU_IMG: &str = "/usr/bin/qemu-img";
/// PVE runs `tar` through PATH for the OVA check.
const TAR: &str = "tar";
/// `download-url` passes a 10 s timeout to `file_size_info` for import images; the ISO and OVA
/// checks run without one.
const IMPORT_IMAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which check a download gets, decided from `content` and (for `import`) the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCheck {
    /// `vztmpl` (and anything else): the file is renamed into place unchecked.
    None,
    /// `iso`: qemu-img info with format auto-detection, untrusted checks.
    Iso,
    /// `import` with `.ova`: the tar listing must contain a `*.ovf` entry.
    Ova,
    /// `import` with `.qcow2`/`.raw`/`.vmdk`: qemu-img info forced to that format.
    Image(ImageFormat),
}

/// Image format of an `import` download, taken from its (case-sensitive) extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Qcow2,
    Raw,
    Vmdk,
}

impl ImageFormat {
    /// The name qemu-img uses (`-f <name>`), identical to the extension.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
            ImageFormat::Vmdk => "vmdk",
        }
    }

    /// Maps an import extension (without the dot) to a format. Case-sensitive, because PVE's
    /// upload/download import regex is, so `QCOW2` never gets this far.
    pub fn from_import_ext(ext: &str) -> Option<ImageFormat> {
        match ext {
            "qcow2" => Some(ImageFormat::Qcow2),
            "raw" => Some(ImageFormat::Raw),
            "vmdk" => Some(ImageFormat::Vmdk),
            _ => None,
        }
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ContentCheck {
    /// `content` is the API `content` value; `import_ext` is the extension captured by the
    /// import filename check (`ova`, `qcow2`, `raw`, `vmdk`). Anything PVE would not check, or
    /// that the filename validation should already have rejected, maps to `None`.
    pub fn for_download(content: &str, import_ext: Option<&str>) -> ContentCheck {
        match content {
            "iso" => ContentCheck::Iso,
            "import" => match import_ext {
                Some("ova") => ContentCheck::Ova,
                Some(ext) => ImageFormat::from_import_ext(ext)
                    .map(ContentCheck::Image)
                    .unwrap_or(ContentCheck::None),
                None => ContentCheck::None,
            },
            _ => ContentCheck::None,
        }
    }
}

/// Perl's `-l` hint appended to the stat error.
fn dangling_suffix(dangling_symlink: &bool) -> &'static str {
    if *dangling_symlink {
        " - dangling symlink?"
    } else {
        ""
    }
}

/// A failed content check. `Display` is PVE's message exactly (minus the trailing newline);
/// paths are shown as given to [`verify`].
#[derive(Debug, thiserror::Error)]
pub enum ContentCheckError {
    /// `stat` failed (file_size_info, untrusted).
    #[error("failed to stat '{path}'{}", dangling_suffix(.dangling_symlink))]
    Stat {
        path: String,
        dangling_symlink: bool,
    },
    /// A directory where an image of a forced format was expected.
    #[error("expected format '{format}', but '{path}' is a directory")]
    IsDirectory { format: ImageFormat, path: String },
    /// qemu-img printed nothing on stdout but something on stderr: PVE dies with the stderr
    /// text itself (lines joined by `\n`), e.g.
    /// `qemu-img: Could not open '<tmp>': Image is not in qcow2 format`.
    #[error("{0}")]
    QemuImgStderr(String),
    /// qemu-img printed nothing at all (failed silently, could not be started, timed out).
    #[error("failed to query file information with qemu-img")]
    QueryFailed,
    /// stdout was not valid JSON. The reason is serde_json's text, not Perl JSON's.
    #[error("could not parse qemu-img info command output for '{path}' - {reason}")]
    Parse { path: String, reason: String },
    /// qcow2 with an external data file.
    #[error("{path}: 'data-file' references are not allowed!")]
    DataFile { path: String },
    /// vmdk with more than one child node or extent (split or flat vmdk).
    #[error("{path}: multiple children or extents are not allowed!")]
    MultipleExtents { path: String },
    /// The image's header could not be read after qemu-img had opened it.
    #[error("failed to read '{path}' - {reason}")]
    Read { path: String, reason: String },
    /// Any image with a backing file.
    #[error("backing file not allowed for untrusted image '{path}'!")]
    BackingFile { path: String },
    /// `virtual-size` is not a plain non-negative integer. PVE overwrites the value with the
    /// failed match before interpolating it, so the quotes are always empty.
    #[error("size '' not an integer")]
    SizeNotInteger,
    /// Same for `actual-size`.
    #[error("used '' not an integer")]
    UsedNotInteger,
    /// Same for `format` (empty or containing whitespace).
    #[error("format '' includes whitespace")]
    FormatWhitespace,
    /// qemu-img reported another format than the one forced with `-f`. PVE's die here has no
    /// trailing newline, so Perl appends ` at .../Plugin.pm line N.`; we leave that out.
    #[error("qemu-img bug: queried format does not match format in result '{expected} ne {got}'")]
    FormatMismatch { expected: ImageFormat, got: String },
    /// The OVA listing had no entry ending in `.ovf`.
    #[error("ova archive has no .ovf file inside")]
    NoOvf,
    /// `tar -t -f <tmp>` failed (run_command without errmsg), e.g.
    /// `command 'tar -t -f /x.ova.tmp_dwnl.1' failed: exit code 2`.
    #[error("command '{command}' failed: {reason}")]
    TarFailed { command: String, reason: String },
}

/// Runs the check and drops the task-log lines PVE would warn (they go to tracing at debug).
pub async fn verify(
    check: &ContentCheck,
    path: &Path,
) -> Result<Option<ImageInfo>, ContentCheckError> {
    let mut log = |line: &str| tracing::debug!(target: "content_check", "{line}");
    verify_with_log(check, path, &mut log).await
}

/// Runs the check; `log` receives, one line per call and in order, what PVE writes to the task
/// log during the check besides the final error: `command '…' failed: …` for a failed
/// qemu-img run, qemu-img stderr that came along with usable JSON, and tar's stderr.
/// An import image's format and virtual size come back for the catalog.
pub async fn verify_with_log(
    check: &ContentCheck,
    path: &Path,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<Option<ImageInfo>, ContentCheckError> {
    tracing::debug!(?check, path = %path.display(), "verifying downloaded file");
    let res = match check {
        ContentCheck::None => Ok(None),
        ContentCheck::Iso => file_size_info_untrusted(path, None, None, log)
            .await
            .map(|_| None),
        ContentCheck::Image(fmt) => {
            file_size_info_untrusted(path, Some(*fmt), Some(IMPORT_IMAGE_TIMEOUT), log)
                .await
                .map(Some)
        }
        ContentCheck::Ova => assert_ova_contents(path, log).await.map(|()| None),
    };
    match &res {
        Ok(_) => tracing::debug!(path = %path.display(), "content check passed"),
        Err(e) => tracing::debug!(path = %path.display(), error = %e, "content check failed"),
    }
    res
}

/// The untrusted branch of pve-storage's `file_size_info`; `format == None` is 'auto-detect'.
async fn file_size_info_untrusted(
    path: &Path,
    format: Option<ImageFormat>,
    timeout: Option<Duration>,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<ImageInfo, ContentCheckError> {
    let path_str = path.to_string_lossy().into_owned();

    let meta = match tokio::fs::metadata(path).await {
        Ok(m) => m,
        Err(_) => {
            // Like Perl's `-l` after a failed stat: a symlink whose target is gone.
            let dangling_symlink = tokio::fs::symlink_metadata(path)
                .await
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            return Err(ContentCheckError::Stat {
                path: path_str,
                dangling_symlink,
            });
        }
    };
    if meta.is_dir() {
        // PVE treats a directory as a 'subvol' image; only a forced format makes it an error.
        return match format {
            Some(format) => Err(ContentCheckError::IsDirectory {
                format,
                path: path_str,
            }),
            None => Ok(ImageInfo {
                format: "subvol".into(),
                virtual_size: None,
            }),
        };
    }

    // Same argument order as PVE (file before `-f`), so the logged command line matches.
    let mut args = vec![
        "info".to_string(),
        "--output=json".to_string(),
        path_str.clone(),
    ];
    if let Some(f) = format {
        args.push("-f".to_string());
        args.push(f.as_str().to_string());
    }
    let out = run_captured(QEMU_IMG, &args, timeout).await;
    if let Some(reason) = &out.failure {
        // PVE's eval around run_command only warns about the failure and carries on with
        // whatever output it collected.
        log(&format!(
            "command '{}' failed: {reason}",
            cmd_to_string(QEMU_IMG, &args)
        ));
    }

    // outfunc appends each line without its terminator; errfunc re-adds "\n" to each line.
    let json: String = out.stdout_lines.concat();
    let err_output: String = out.stderr_lines.iter().map(|l| format!("{l}\n")).collect();

    if truthy(&err_output) {
        if !truthy(&json) {
            let msg = err_output.strip_suffix('\n').unwrap_or(&err_output);
            return Err(ContentCheckError::QemuImgStderr(msg.to_string()));
        }
        for line in &out.stderr_lines {
            log(line);
        }
    }
    if !truthy(&json) {
        return Err(ContentCheckError::QueryFailed);
    }

    let opened = evaluate_info(&path_str, &json, format)?;
    refuse_external_refs(path, &path_str, &opened.format).await?;
    Ok(opened)
}

/// The same refusals as [`evaluate_info`], from the image's own header rather than from
/// qemu-img's report, which older qemu-img versions leave incomplete (see [`image_refs`]).
async fn refuse_external_refs(
    path: &Path,
    path_str: &str,
    opened_as: &str,
) -> Result<(), ContentCheckError> {
    let owned = path.to_path_buf();
    let head = tokio::task::spawn_blocking(move || image_refs::read_head(&owned))
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(|e| ContentCheckError::Read {
            path: path_str.to_string(),
            reason: errno_text(&e),
        })?;
    let path = path_str.to_string();
    match image_refs::find(opened_as, &head) {
        None => Ok(()),
        Some(ExternalRef::DataFile) => Err(ContentCheckError::DataFile { path }),
        Some(ExternalRef::Extents) => Err(ContentCheckError::MultipleExtents { path }),
        Some(ExternalRef::BackingFile) => Err(ContentCheckError::BackingFile { path }),
    }
}

/// The checks `file_size_info` applies to qemu-img's JSON when the image is untrusted, in
/// PVE's order. Returns the format qemu-img opened the image as, and its virtual size.
fn evaluate_info(
    path: &str,
    json: &str,
    format: Option<ImageFormat>,
) -> Result<ImageInfo, ContentCheckError> {
    let info: Value = serde_json::from_str(json).map_err(|e| ContentCheckError::Parse {
        path: path.to_string(),
        reason: e.to_string(),
    })?;

    if let Some(fs) = info.get("format-specific").filter(|v| perl_true(v)) {
        let ty = fs.get("type").and_then(Value::as_str);
        if ty == Some("qcow2") {
            if fs
                .get("data")
                .and_then(|d| d.get("data-file"))
                .is_some_and(perl_true)
            {
                return Err(ContentCheckError::DataFile {
                    path: path.to_string(),
                });
            }
        } else if ty == Some("vmdk") {
            // Perl would die on a missing array here. qemu-img before 8.0 emits no
            // `children`, which counts as empty; refuse_external_refs covers that gap.
            let len = |v: Option<&Value>| v.and_then(Value::as_array).map_or(0, Vec::len);
            let extents = len(fs.get("data").and_then(|d| d.get("extents")));
            let children = len(info.get("children"));
            if children > 1 || extents > 1 {
                return Err(ContentCheckError::MultipleExtents {
                    path: path.to_string(),
                });
            }
        }
    }

    if info.get("backing-filename").is_some_and(perl_true) {
        return Err(ContentCheckError::BackingFile {
            path: path.to_string(),
        });
    }

    let scalar = |key: &str| info.get(key).map(perl_str).unwrap_or_default();
    let virtual_size = scalar("virtual-size");
    if !perl_matches_all(&virtual_size, |c| c.is_ascii_digit()) {
        return Err(ContentCheckError::SizeNotInteger);
    }
    if !perl_matches_all(&scalar("actual-size"), |c| c.is_ascii_digit()) {
        return Err(ContentCheckError::UsedNotInteger);
    }
    let got = scalar("format");
    if !perl_matches_all(&got, |c| !c.is_whitespace()) {
        return Err(ContentCheckError::FormatWhitespace);
    }
    let got = got.strip_suffix('\n').unwrap_or(&got);
    if let Some(expected) = format
        && expected.as_str() != got
    {
        return Err(ContentCheckError::FormatMismatch {
            expected,
            got: got.to_string(),
        });
    }
    Ok(ImageInfo {
        format: got.to_string(),
        virtual_size: without_final_newline(&virtual_size).parse().ok(),
    })
}

/// `assert_ova_contents` from pve-storage's Status.pm: list the archive, look for `*.ovf`.
async fn assert_ova_contents(
    path: &Path,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<(), ContentCheckError> {
    let args = [
        "-t".to_string(),
        "-f".to_string(),
        path.to_string_lossy().into_owned(),
    ];
    let out = run_captured(TAR, &args, None).await;
    // PVE passes no errfunc, so tar's stderr goes straight to the task log.
    for line in &out.stderr_lines {
        log(line);
    }
    if let Some(reason) = out.failure {
        return Err(ContentCheckError::TarFailed {
            command: cmd_to_string(TAR, &args),
            reason,
        });
    }
    if out.stdout_lines.iter().any(|l| l.ends_with(".ovf")) {
        Ok(())
    } else {
        Err(ContentCheckError::NoOvf)
    }
}

/// Perl truthiness of a decoded JSON value (JSON booleans are objects that overload to 1/0).
fn perl_true(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => truthy(s),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// How Perl would stringify a decoded JSON scalar (close enough for the integer and string
/// values qemu-img emits; floats and references never pass PVE's checks either way).
fn perl_str(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `$s =~ /^(X+)$/` for a character class X: Perl's `$` also matches before one final newline.
fn perl_matches_all(s: &str, class: impl Fn(char) -> bool) -> bool {
    let s = without_final_newline(s);
    !s.is_empty() && s.chars().all(class)
}

#[cfg(test)]
mod tests {
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
}
