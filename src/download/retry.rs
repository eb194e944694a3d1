//! Retries: a transient failure (connection reset, stall, truncated body, 5xx, 429) is
//! retried with bounded backoff, or after the origin's `Retry-After`. What the next attempt
//! asks for is range.rs's business.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
