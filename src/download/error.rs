//! Every way a download task can end in failure. `Display` is the task's exit status text:
//! PVE's own words where PVE has them (spec/pve-api.md §1.6), and where PVE only relays wget or
//! a decompressor, a clear message of the same shape and prefix. README.md lists them all.

use std::io;
use std::path::PathBuf;

use super::content_check::ContentCheckError;
use super::url_policy::PolicyError;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("decompression not supported for {0}")]
    DecompressionNotSupported(String),
    #[error("no decompression method found")]
    NoDecompressionMethod,
    /// `checksum` was sent, but empty or without an algorithm (download_file_from_url's
    /// `hash_required`).
    #[error("checksum required but not specified")]
    ChecksumRequired,
    #[error("refusing to override existing file '{}'", .0.display())]
    RefuseOverride(PathBuf),
    #[error("unable to open '{}': {source}", .path.display())]
    ReadExisting { path: PathBuf, source: io::Error },
    #[error("checksum mismatch: got '{got}' != expect '{expected}', aborting")]
    ExistingMismatch { got: String, expected: String },
    #[error("download failed: HTTP {status} {reason}")]
    Http { status: u16, reason: String },
    #[error("download failed: {0}")]
    Transfer(String),
    /// The URL, a redirect or every address of a name is refused by url-allow / url-deny.
    #[error("download failed: {0}")]
    Policy(PolicyError),
    #[error(
        "download failed: not enough free space in '{}': {needed} bytes needed, {available} available",
        .dir.display()
    )]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("download failed: the file is larger than the limit of {limit} bytes (max-size)")]
    TooLarge { limit: u64 },
    #[error("download failed: received interrupt")]
    Interrupted,
    #[error("download failed: unable to create '{}': {source}", .path.display())]
    CreateTemp { path: PathBuf, source: io::Error },
    #[error("download failed: unable to write '{}': {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("command '{command} {}' failed: {reason}", .path.display())]
    Decompress {
        command: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("checksum mismatch: got '{got}' != expect '{expected}'")]
    ChecksumMismatch { got: String, expected: String },
    #[error("failed to verify file: {0}")]
    Verify(ContentCheckError),
    /// A repair's source no longer yields the bytes the catalog recorded.
    #[error(
        "the source no longer yields the recorded bytes: got sha256 '{got}' != expect '{expected}'"
    )]
    NotTheRecordedBytes { got: String, expected: String },
    #[error("unable to rename temporary file: {0}")]
    Rename(io::Error),
    /// The outcome of the identical transfer this request joined.
    #[error("{0}")]
    Joined(String),
}

/// reqwest's error chain reads "error sending request for url (...): ...: connection refused";
/// the innermost cause is what a user needs, like wget's last line. A cause that only repeats
/// its own source with more detail (native-tls adds why a certificate was refused) wins over
/// that source.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_redirect() {
        return "too many redirects".to_string();
    }
    if e.is_timeout() {
        return "timed out".to_string();
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let inner = s.to_string();
        if !msg.starts_with(&inner) {
            msg = inner;
        }
        source = s.source();
    }
    openssl_reason(&msg).unwrap_or(msg)
}

/// OpenSSL's "error:0A000086:SSL routines:FUNC:certificate verify failed:FILE:LINE: (detail)"
/// as "certificate verify failed (detail)": its codes and source lines help no user.
fn openssl_reason(msg: &str) -> Option<String> {
    let fields: Vec<&str> = msg.strip_prefix("error:")?.splitn(7, ':').collect();
    let [_code, _lib, _func, reason, _file, _line, rest] = fields.as_slice() else {
        return None;
    };
    // An error stack continues after ", "; its first entry is the reason that matters.
    let rest = rest.split(", error:").next().unwrap_or("");
    let detail = rest.split_once(" (").map(|(_, d)| format!(" ({d}"));
    Some(format!("{reason}{}", detail.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::openssl_reason;

    #[test]
    fn openssl_errors_read_as_their_reason() {
        let m = "error:0A000086:SSL routines:tls_post_process_server_certificate:\
                 certificate verify failed:../ssl/statem/statem_clnt.c:1889: (self-signed certificate)";
        assert_eq!(
            openssl_reason(m).as_deref(),
            Some("certificate verify failed (self-signed certificate)")
        );
        let m = "error:0A00010B:SSL routines:ssl3_get_record:wrong version number:\
                 ../ssl/record/ssl3_record.c:354:";
        assert_eq!(openssl_reason(m).as_deref(), Some("wrong version number"));
        assert_eq!(openssl_reason("connection refused"), None);
    }
}
