//! Bandwidth limits: a pacing limiter that delays the reader so the average rate stays under
//! the limit. One per transfer (`bwlimit`) and one shared by all (`bwlimit-total`); a transfer
//! waits for both. Reading slower lets TCP flow control slow the origin down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Bytes that may pass at once before pacing starts, so short bursts are not chopped up.
const BURST: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct RateLimit(Arc<Inner>);

struct Inner {
    bytes_per_sec: u64,
    /// The moment the bytes let through so far are "paid for".
    paid_until: Mutex<Option<Instant>>,
}

impl RateLimit {
    pub fn new(bytes_per_sec: u64) -> RateLimit {
        RateLimit(Arc::new(Inner {
            bytes_per_sec: bytes_per_sec.max(1),
            paid_until: Mutex::new(None),
        }))
    }

    /// Accounts for `n` bytes and waits until they fit the rate.
    pub async fn consume(&self, n: u64) {
        let cost = Duration::from_secs_f64(n as f64 / self.0.bytes_per_sec as f64);
        let now = Instant::now();
        // Credit never reaches back further than BURST: an idle limiter does not save up.
        let floor = now.checked_sub(BURST).unwrap_or(now);
        let due = {
            let mut paid = self.0.paid_until.lock().unwrap_or_else(|e| e.into_inner());
            let until = paid.map_or(floor, |p| p.max(floor)) + cost;
            *paid = Some(until);
            until
        };
        if due > now {
            tokio::time::sleep_until(due).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate() {
        let limit = RateLimit::new(1000);
        let start = Instant::now();
        for _ in 0..10 {
            limit.consume(500).await;
        }
        // 5000 bytes at 1000 B/s: 5 s, less the burst allowance.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(4700), "{took:?}");
        assert!(took <= Duration::from_millis(5000), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn small_amounts_pass_at_once() {
        let limit = RateLimit::new(1_000_000);
        let start = Instant::now();
        limit.consume(1000).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
