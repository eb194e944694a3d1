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
mod tests;
