//! Asking the origin: one request (with `Range` and `If-Range` when going on from bytes already
//! in), and what a failed request or an error status means for the next attempt. A single
//! transfer (transfer.rs) and each connection of a segmented one (segmented.rs) ask this way.

use reqwest::Response;

use super::error::describe_reqwest;
use super::fetch::Fetcher;
use super::retry;
use super::url_policy::PolicyError;
use super::{DownloadError, DownloadPlan};

/// How one attempt ended, when it did not deliver the whole body.
pub(super) enum Failure {
    /// Worth another attempt; `after` is the origin's Retry-After.
    Transient {
        reason: String,
        after: Option<std::time::Duration>,
    },
    /// An answer to a segment's request that is not a range of the version being fetched.
    Unusable(String),
    /// The writer stopped taking bytes; finishing the sink says why.
    WriterGone,
    Fatal(DownloadError),
}

impl Failure {
    pub(super) fn transient(reason: String) -> Failure {
        Failure::Transient {
            reason,
            after: None,
        }
    }
}

/// Sends the plan's request to `url` (the plan's, or where it led), with `Range` (and
/// `If-Range` when there is a validator).
pub(super) async fn send_with_range(
    fetcher: &Fetcher,
    plan: &DownloadPlan,
    url: &str,
    range: Option<(&str, Option<&str>)>,
) -> Result<Response, Failure> {
    let mut req = fetcher
        .download(plan.verify_certificates, url)
        .map_err(|e| Failure::Fatal(DownloadError::Policy(e)))?;
    if let Some((range, validator)) = range {
        req = req.header(reqwest::header::RANGE, range);
        if let Some(v) = validator {
            req = req.header(reqwest::header::IF_RANGE, v);
        }
    }
    // An origin that accepts and then says nothing is a stall like one that stops mid-body.
    let stall = plan.retry.stall_timeout;
    let Ok(sent) = tokio::time::timeout(stall, req.send()).await else {
        return Err(Failure::transient(format!(
            "no response received for {}s",
            stall.as_secs()
        )));
    };
    // Refused connections, unknown hosts, failed TLS handshakes and redirect loops do not
    // heal by waiting (wget gives up on them too); timeouts and drops may.
    sent.map_err(|e| {
        if let Some(p) = PolicyError::find(&e) {
            return Failure::Fatal(DownloadError::Policy(p.clone()));
        }
        let reason = describe_reqwest(&e);
        if (e.is_connect() && !e.is_timeout()) || e.is_redirect() {
            Failure::Fatal(DownloadError::Transfer(reason))
        } else {
            Failure::transient(reason)
        }
    })
}

/// An error status: worth another attempt when the origin is busy, else the end.
pub(super) fn status_failure(resp: &Response) -> Failure {
    let status = resp.status();
    let reason = status.canonical_reason().unwrap_or("");
    if retry::is_transient(status) {
        Failure::Transient {
            reason: format!("HTTP {} {reason}", status.as_u16()),
            after: retry::retry_after(resp.headers()),
        }
    } else {
        Failure::Fatal(DownloadError::Http {
            status: status.as_u16(),
            reason: reason.to_string(),
        })
    }
}

/// The origin (or something between) reset the connection rather than closing it.
pub(super) fn is_reset(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionReset;
        }
        source = s.source();
    }
    false
}
