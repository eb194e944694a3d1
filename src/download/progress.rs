//! Progress lines for the task log: bytes, percent when the length is known, rate and ETA, at
//! most one line per interval. PVE's wget prints a dot line per 32 MiB, which on a slow link
//! means minutes of silence and on a fast one a flood; a fixed interval avoids both.

use std::time::{Duration, Instant};

pub const INTERVAL: Duration = Duration::from_secs(2);

pub struct Progress {
    total: Option<u64>,
    start: Instant,
    last: Instant,
    /// Bytes that were on disk before this run started (a resume from disk).
    base: u64,
    /// Bytes this run transferred; the rate counts only these.
    done: u64,
}

impl Progress {
    pub fn new(total: Option<u64>, now: Instant) -> Progress {
        Progress::resumed(total, 0, now)
    }

    /// Progress of a download that already has `base` bytes of `total` on disk.
    pub fn resumed(total: Option<u64>, base: u64, now: Instant) -> Progress {
        Progress {
            total,
            start: now,
            last: now,
            base,
            done: 0,
        }
    }

    /// Counts `n` more bytes; returns a line when the interval has passed since the last one.
    pub fn advance(&mut self, n: u64, now: Instant) -> Option<String> {
        self.done += n;
        if now.duration_since(self.last) < INTERVAL {
            return None;
        }
        self.last = now;
        Some(self.line(now))
    }

    fn rate(&self, now: Instant) -> f64 {
        let secs = now.duration_since(self.start).as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }

    fn line(&self, now: Instant) -> String {
        let rate = self.rate(now);
        let have = self.base + self.done;
        match self.total {
            Some(total) if total > 0 => {
                let pct = have as f64 * 100.0 / total as f64;
                let eta = if rate > 0.0 {
                    format!(
                        ", ETA {}",
                        human_duration(total.saturating_sub(have) as f64 / rate)
                    )
                } else {
                    String::new()
                };
                format!(
                    "downloaded {} of {} ({pct:.1}%), {}/s{eta}",
                    human_bytes(have),
                    human_bytes(total),
                    human_bytes(rate as u64)
                )
            }
            _ => format!(
                "downloaded {}, {}/s",
                human_bytes(have),
                human_bytes(rate as u64)
            ),
        }
    }

    /// The closing line: size, time and average rate.
    pub fn summary(&self, now: Instant) -> String {
        format!(
            "downloaded {} in {} ({}/s)",
            human_bytes(self.done),
            human_duration(now.duration_since(self.start).as_secs_f64()),
            human_bytes(self.rate(now) as u64)
        )
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn human_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_lines_with_percent_rate_and_eta() {
        let t0 = Instant::now();
        let mut p = Progress::new(Some(100 << 20), t0);
        assert_eq!(p.advance(10 << 20, t0 + Duration::from_secs(1)), None);
        let line = p
            .advance(10 << 20, t0 + Duration::from_secs(2))
            .expect("line after interval");
        assert_eq!(
            line,
            "downloaded 20.0 MiB of 100.0 MiB (20.0%), 10.0 MiB/s, ETA 8s"
        );
        assert_eq!(p.advance(1, t0 + Duration::from_secs(3)), None, "no flood");
    }

    #[test]
    fn resumed_progress_counts_the_bytes_on_disk_but_rates_only_new_ones() {
        let t0 = Instant::now();
        let mut p = Progress::resumed(Some(100 << 20), 50 << 20, t0);
        let line = p
            .advance(10 << 20, t0 + Duration::from_secs(2))
            .expect("line");
        assert_eq!(
            line,
            "downloaded 60.0 MiB of 100.0 MiB (60.0%), 5.0 MiB/s, ETA 8s"
        );
        assert_eq!(
            p.summary(t0 + Duration::from_secs(2)),
            "downloaded 10.0 MiB in 2s (5.0 MiB/s)"
        );
    }

    #[test]
    fn unknown_length() {
        let t0 = Instant::now();
        let mut p = Progress::new(None, t0);
        let line = p
            .advance(3 << 20, t0 + Duration::from_secs(3))
            .expect("line");
        assert_eq!(line, "downloaded 3.0 MiB, 1.0 MiB/s");
        assert_eq!(
            p.summary(t0 + Duration::from_secs(3)),
            "downloaded 3.0 MiB in 3s (1.0 MiB/s)"
        );
    }

    #[test]
    fn units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_duration(3725.0), "1h02m");
    }
}
