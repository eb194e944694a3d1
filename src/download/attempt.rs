//! Retries and resume: a transient failure (connection reset, stall, truncated body, 5xx, 429)
//! is retried with bounded backoff, continuing with `Range` + `If-Range` from the bytes already
//! received. The hash and decode state live in the sink, which survives the retry, so the
//! result is the same as one clean transfer. An origin that ignores the range, or whose
//! validator changed, starts over from zero, and the log says so.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, HeaderMap, LAST_MODIFIED, RETRY_AFTER};

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// A body that delivers no byte for this long counts as a failed attempt.
    pub stall_timeout: Duration,
    /// First backoff; it doubles per retry up to `MAX_BACKOFF`.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            stall_timeout: Duration::from_secs(60),
            backoff: Duration::from_secs(1),
        }
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A Retry-After longer than this is not waited for in full.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl RetryPolicy {
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
            .min(MAX_BACKOFF);
        retry_after.map_or(exp, |r| r.min(MAX_RETRY_AFTER))
    }
}

/// Statuses worth another attempt: the origin is busy or briefly broken.
pub fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// Only whole seconds; an HTTP date is rare for downloads and falls back to backoff.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// What `If-Range` may carry: a strong ETag, else Last-Modified.
pub fn validator(headers: &HeaderMap) -> Option<String> {
    let etag = headers.get(ETAG).and_then(|v| v.to_str().ok());
    match etag {
        Some(e) if !e.starts_with("W/") => Some(e.to_string()),
        _ => headers
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

/// The first byte position of `Content-Range: bytes START-END/TOTAL`.
pub fn range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// The length in `Content-Range: bytes */LENGTH`, the answer to an unsatisfiable range.
pub fn unsatisfied_length(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes */")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, None), Duration::from_secs(1));
        assert_eq!(p.delay(3, None), Duration::from_secs(4));
        assert_eq!(p.delay(10, None), MAX_BACKOFF);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(p.delay(1, Some(Duration::from_secs(3600))), MAX_RETRY_AFTER);
    }

    #[test]
    fn headers() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/200"));
        h.insert(ETAG, HeaderValue::from_static("W/\"weak\""));
        h.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Mon, 23 Nov 2026 10:00:00 GMT"),
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        assert_eq!(range_start(&h), Some(100));
        assert_eq!(unsatisfied_length(&h), None);
        assert_eq!(
            validator(&h).as_deref(),
            Some("Mon, 23 Nov 2026 10:00:00 GMT")
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(5)));
        h.insert(ETAG, HeaderValue::from_static("\"strong\""));
        assert_eq!(validator(&h).as_deref(), Some("\"strong\""));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes */200"));
        assert_eq!(unsatisfied_length(&h), Some(200));
        assert_eq!(range_start(&h), None);
        assert!(is_transient(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_transient(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_transient(StatusCode::NOT_FOUND));
    }
}
