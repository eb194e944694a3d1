//! Following a task to its end, as the web UI's task viewer does (spec §8 step 3): poll the
//! status and the new log lines, print them, and stop the task on Ctrl-C.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::api::{self, LogLine};
use super::conn::Connection;
use super::error::ClientError;
use super::progress::Display;

/// The web UI polls once a second too.
const POLL: Duration = Duration::from_secs(1);
/// After a stop, how many polls to wait for the task's final line.
const STOP_POLLS: u32 = 20;

/// Installs the Ctrl-C handler. Done before the task is started, so a Ctrl-C that comes
/// while the request is on its way still stops the task.
pub fn interrupt_handler() -> Result<Signal, ClientError> {
    signal(SignalKind::interrupt()).map_err(ClientError::Signal)
}

/// PVE clients count `OK` and `WARNINGS: n` as success (spec §4.2).
pub fn is_success(exitstatus: &str) -> bool {
    exitstatus == "OK" || exitstatus.starts_with("WARNINGS")
}

/// Prints the task's log as it grows and returns its exit status once it stopped. On Ctrl-C
/// the task is stopped (DELETE) and the result is `Interrupted`.
pub async fn follow(
    conn: &Connection,
    upid: &str,
    interrupt: &mut Signal,
    show_bar: bool,
) -> Result<String, ClientError> {
    let mut task = Follower {
        conn,
        upid,
        seen: 0,
        display: Display::new(show_bar),
    };
    let finished = {
        let run = async {
            loop {
                if let Some(status) = task.poll().await? {
                    return Ok(status);
                }
                tokio::time::sleep(POLL).await;
            }
        };
        tokio::select! {
            r = run => Some(r),
            _ = interrupt.recv() => None,
        }
    };
    task.display.finish();
    match finished {
        Some(r) => r,
        None => task.stop(interrupt).await,
    }
}

struct Follower<'a> {
    conn: &'a Connection,
    upid: &'a str,
    /// Log lines printed so far.
    seen: u64,
    display: Display,
}

impl Follower<'_> {
    /// Status first, then the log: once the status says stopped, the log read after it is
    /// complete.
    async fn poll(&mut self) -> Result<Option<String>, ClientError> {
        let status = api::task_status(self.conn, self.upid).await?;
        let lines = api::task_log(self.conn, self.upid, self.seen).await?;
        for line in new_lines(lines, self.seen) {
            self.display.line(&line.t).map_err(ClientError::Output)?;
            self.seen = line.n;
        }
        Ok((!status.is_running()).then(|| {
            status
                .exitstatus
                .unwrap_or_else(|| "unexpected status".to_string())
        }))
    }

    async fn stop(mut self, interrupt: &mut Signal) -> Result<String, ClientError> {
        let upid = self.upid.to_string();
        eprintln!("interrupted: stopping task {upid}");
        if let Err(e) = api::stop_task(self.conn, &upid).await {
            return Err(ClientError::NotStopped {
                upid,
                reason: e.to_string(),
            });
        }
        // Show how the task ended; a second Ctrl-C stops waiting for that.
        let wait = async {
            for _ in 0..STOP_POLLS {
                match self.poll().await {
                    Ok(None) => tokio::time::sleep(POLL / 2).await,
                    Ok(Some(_)) | Err(_) => break,
                }
            }
        };
        tokio::select! {
            () = wait => {}
            _ = interrupt.recv() => {}
        }
        self.display.finish();
        Err(ClientError::Interrupted { upid })
    }
}

/// Lines not printed yet. PVE answers an empty log with one line `no content` (spec §4.6),
/// which is no line of the task: a running task's log may be empty, a finished one never is.
fn new_lines(lines: Vec<LogLine>, seen: u64) -> impl Iterator<Item = LogLine> {
    let placeholder =
        seen == 0 && lines.len() == 1 && lines[0].n == 1 && lines[0].t == "no content";
    lines
        .into_iter()
        .filter(move |l| !placeholder && l.n > seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u64, t: &str) -> LogLine {
        LogLine { n, t: t.into() }
    }

    #[test]
    fn empty_log_placeholder_is_skipped() {
        assert_eq!(new_lines(vec![line(1, "no content")], 0).count(), 0);
        let got: Vec<u64> = new_lines(vec![line(3, "a"), line(4, "b")], 3)
            .map(|l| l.n)
            .collect();
        assert_eq!(got, [4]);
    }

    #[test]
    fn success_statuses() {
        assert!(is_success("OK"));
        assert!(is_success("WARNINGS: 2"));
        assert!(!is_success("checksum mismatch: got 'a' != expect 'b'"));
        assert!(!is_success("unexpected status"));
    }
}
