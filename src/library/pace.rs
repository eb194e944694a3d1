//! A reader's speed limit for background work: after each chunk, sleep until the bytes read so
//! far took at least as long as the rate allows, so the VMs on the same disks don't notice.

use std::time::{Duration, Instant};

pub struct Pacer {
    /// Bytes per second; `None`: as fast as the disk goes.
    rate: Option<u64>,
    start: Instant,
    bytes: u64,
}

impl Pacer {
    pub fn new(rate: Option<u64>) -> Pacer {
        Pacer {
            rate,
            start: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` more bytes; blocks the thread while ahead of the rate.
    pub fn pace(&mut self, n: u64) {
        self.bytes += n;
        if let Some(wait) = self.ahead_by(self.start.elapsed()) {
            std::thread::sleep(wait);
        }
    }

    /// How far ahead of the rate the bytes are after `elapsed`.
    fn ahead_by(&self, elapsed: Duration) -> Option<Duration> {
        let rate = self.rate.filter(|r| *r > 0)?;
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        due.checked_sub(elapsed).filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_only_while_ahead_of_the_rate() {
        let mut p = Pacer::new(Some(1000));
        p.bytes = 500;
        assert_eq!(
            p.ahead_by(Duration::from_millis(100)),
            Some(Duration::from_millis(400))
        );
        assert_eq!(p.ahead_by(Duration::from_millis(600)), None);
        let unlimited = Pacer {
            bytes: 1 << 40,
            ..Pacer::new(None)
        };
        assert_eq!(unlimited.ahead_by(Duration::ZERO), None);
    }
}
