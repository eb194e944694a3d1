//! Progress in a download task's log, and the bar that shows it.
//!
//! The daemon writes `downloaded 20.0 MiB of 100.0 MiB (20.0%), 10.0 MiB/s, ETA 8s` (or
//! `downloaded 3.0 MiB, 1.0 MiB/s` without a length) every couple of seconds, after a
//! `length: <bytes> (<human>)` line (src/download/progress.rs, src/download/mod.rs). A real
//! PVE node's wget writes `Length: <bytes> ...` and dot lines such as
//! ` 32768K ........ ........ ........ ........ 10% 41.0M 14s` (spec §1.6); both are read.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What one log line says about progress.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// The exact size announced before the transfer (also printed as a normal line).
    Length(u64),
    Progress(Progress),
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Bytes so far; from a human-readable size, so approximate.
    pub done: u64,
    pub total: Option<u64>,
    pub percent: Option<f64>,
    /// Rate and ETA as the daemon wrote them.
    pub detail: String,
}

pub fn classify(line: &str) -> LogEvent {
    if let Some(n) = length(line) {
        return LogEvent::Length(n);
    }
    match daemon_progress(line).or_else(|| wget_progress(line)) {
        Some(p) => LogEvent::Progress(p),
        None => LogEvent::Other,
    }
}

/// `length: 1048576 (1.0 MiB)` (daemon) or `Length: 663748608 (633M) [type]` (wget).
fn length(line: &str) -> Option<u64> {
    let rest = line
        .strip_prefix("length: ")
        .or_else(|| line.strip_prefix("Length: "))?;
    rest.split_whitespace().next()?.parse().ok()
}

fn daemon_progress(line: &str) -> Option<Progress> {
    let rest = line.strip_prefix("downloaded ")?;
    if let Some((done, tail)) = rest.split_once(" of ") {
        let (total, tail) = tail.split_once(" (")?;
        let (percent, detail) = tail.split_once("%), ")?;
        return Some(Progress {
            done: parse_size(done)?,
            total: Some(parse_size(total)?),
            percent: Some(percent.parse().ok()?),
            detail: detail.to_string(),
        });
    }
    // Both parts must be sizes, so the closing summary `downloaded X in T (R/s)` stays a
    // normal line.
    let (done, rate) = rest.split_once(", ")?;
    parse_size(rate.strip_suffix("/s")?)?;
    Some(Progress {
        done: parse_size(done)?,
        total: None,
        percent: None,
        detail: rate.to_string(),
    })
}

/// `<offset>K` then groups of dots (one dot per MiB with `--progress=dot:giga`), then an
/// optional percentage, rate and ETA.
fn wget_progress(line: &str) -> Option<Progress> {
    let mut words = line.split_whitespace();
    let offset: u64 = words.next()?.strip_suffix('K')?.parse().ok()?;
    let mut dots = 0u64;
    let mut rest = Vec::new();
    for w in words {
        if rest.is_empty() && !w.is_empty() && w.bytes().all(|b| b == b'.') {
            dots += w.len() as u64;
        } else {
            rest.push(w);
        }
    }
    if dots == 0 {
        return None;
    }
    let percent = rest
        .first()
        .and_then(|w| w.strip_suffix('%'))
        .and_then(|p| p.parse::<f64>().ok());
    let detail = if percent.is_some() {
        &rest[1..]
    } else {
        &rest[..]
    };
    Some(Progress {
        done: offset * 1024 + dots * (1 << 20),
        total: None,
        percent,
        detail: detail.join(" "),
    })
}

/// `512 B`, `1.5 KiB`, `20.0 MiB`, ... as the daemon's `human_bytes` writes them.
fn parse_size(s: &str) -> Option<u64> {
    let (num, unit) = s.trim().split_once(' ')?;
    let num: f64 = num.parse().ok()?;
    let scale = match unit {
        "B" => 1u64,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    Some((num * scale as f64) as u64)
}

/// Prints the log lines of a task on stdout and its progress as a bar on stderr; where
/// stderr is no terminal (a CI log, a pipe) progress lines are printed like the others.
pub struct Display {
    bar: Option<ProgressBar>,
    interactive: bool,
    length: Option<u64>,
}

impl Display {
    pub fn new(show_bar: bool) -> Display {
        Display {
            bar: None,
            interactive: show_bar && std::io::stderr().is_terminal(),
            length: None,
        }
    }

    /// Handles one log line; an error only comes from writing stdout.
    pub fn line(&mut self, line: &str) -> std::io::Result<()> {
        match classify(line) {
            LogEvent::Progress(p) if self.interactive => {
                self.progress(&p);
                Ok(())
            }
            LogEvent::Length(n) => {
                self.length = Some(n);
                self.print(line)
            }
            _ => self.print(line),
        }
    }

    fn progress(&mut self, p: &Progress) {
        let total = self.length.or(p.total);
        let bar = self.bar.get_or_insert_with(|| new_bar(total));
        let pos = match (p.percent, total) {
            // The percentage against the exact length is closer than the rounded size.
            (Some(pct), Some(t)) => ((t as f64) * pct / 100.0) as u64,
            _ => p.done,
        };
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(pos);
        bar.set_message(p.detail.clone());
    }

    fn print(&self, line: &str) -> std::io::Result<()> {
        use std::io::Write;
        let write = || {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}").and_then(|()| out.flush())
        };
        match &self.bar {
            // Lifts the bar off the screen, prints, then draws it again below the line.
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// Removes the bar; the daemon's summary line follows in the log anyway.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn new_bar(total: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{bar:40.cyan/blue} {bytes}/{total_bytes} ({percent}%) {msg}"
    } else {
        "{spinner} {bytes} {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    // The daemon reports every ~2 s; the tick keeps a spinner alive in between.
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_lines() {
        assert_eq!(
            classify("downloaded 20.0 MiB of 100.0 MiB (20.0%), 10.0 MiB/s, ETA 8s"),
            LogEvent::Progress(Progress {
                done: 20 << 20,
                total: Some(100 << 20),
                percent: Some(20.0),
                detail: "10.0 MiB/s, ETA 8s".into()
            })
        );
        assert_eq!(
            classify("downloaded 3.0 MiB, 1.0 MiB/s"),
            LogEvent::Progress(Progress {
                done: 3 << 20,
                total: None,
                percent: None,
                detail: "1.0 MiB/s".into()
            })
        );
        assert_eq!(
            classify("downloaded 512 B of 1.5 KiB (33.3%), 512 B/s"),
            LogEvent::Progress(Progress {
                done: 512,
                total: Some(1536),
                percent: Some(33.3),
                detail: "512 B/s".into()
            })
        );
        assert_eq!(
            classify("length: 1048576 (1.0 MiB)"),
            LogEvent::Length(1 << 20)
        );
    }

    #[test]
    fn other_lines_stay_lines() {
        for line in [
            "downloaded 3.0 MiB in 3s (1.0 MiB/s)",
            "length: unspecified",
            "downloading http://h/x.iso to /s/template/iso/x.iso",
            "calculating checksum...OK, checksum verified",
            "TASK OK",
            "TASK ERROR: checksum mismatch: got 'a' != expect 'b'",
            "download of 'http://h/x.iso' to '/s/x.iso' finished",
            "2024K is a size, not progress",
        ] {
            assert_eq!(classify(line), LogEvent::Other, "{line}");
        }
    }

    #[test]
    fn wget_lines() {
        assert_eq!(
            classify("Length: 663748608 (633M) [application/x-iso9660-image]"),
            LogEvent::Length(663748608)
        );
        assert_eq!(
            classify(" 32768K ........ ........ ........ ........ 10% 41.0M 14s"),
            LogEvent::Progress(Progress {
                done: (32768 << 10) + (32 << 20),
                total: None,
                percent: Some(10.0),
                detail: "41.0M 14s".into()
            })
        );
        assert_eq!(
            classify("     0K ........ ...    "),
            LogEvent::Progress(Progress {
                done: 11 << 20,
                total: None,
                percent: None,
                detail: String::new()
            })
        );
    }
}
