//! pve-common's `PVE::Tools::run_command` as PVE's checks use it: the command line it logs
//! (String::ShellQuote), how output reaches outfunc/errfunc line by line, and the reason it
//! gives for a failed command (`exit code N`, `got signal N`, `got timeout`).

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::perl::{errno_text, truthy};

/// What `run_command` would have handed to outfunc/errfunc, plus its failure reason (the part
/// after `command '…' failed: `), if any.
#[derive(Debug)]
pub struct Captured {
    pub stdout_lines: Vec<String>,
    pub stderr_lines: Vec<String>,
    pub failure: Option<String>,
}

/// Runs a command the way PVE's `run_command` does for the content checks: `LC_ALL=C`, stdin closed,
/// both pipes read to EOF, then waited for, all under the optional timeout. The child is
/// killed on timeout and on drop, so cancelling the surrounding task never leaks it.
pub async fn run_captured(program: &str, args: &[String], timeout: Option<Duration>) -> Captured {
    tracing::debug!(command = %cmd_to_string(program, args), ?timeout, "running");
    let spawned = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            // Close to what IPC::Open3 reports for a failed exec.
            let reason = format!(
                "open3: exec of {program} {} failed: {}",
                args.join(" "),
                errno_text(&e)
            );
            tracing::debug!(%reason, "spawn failed");
            return Captured {
                stdout_lines: Vec::new(),
                stderr_lines: Vec::new(),
                failure: Some(reason),
            };
        }
    };

    let mut out_buf = Vec::new();
    let mut err_buf = Vec::new();
    let (Some(mut out_pipe), Some(mut err_pipe)) = (child.stdout.take(), child.stderr.take())
    else {
        // Cannot happen with Stdio::piped(); treat it like a read error.
        return Captured {
            stdout_lines: Vec::new(),
            stderr_lines: Vec::new(),
            failure: Some("missing child pipes".to_string()),
        };
    };

    // The buffers live outside the future so output collected before a timeout survives it,
    // as with Perl, which keeps what outfunc/errfunc already saw.
    let run = async {
        let (o, e) = tokio::join!(
            out_pipe.read_to_end(&mut out_buf),
            err_pipe.read_to_end(&mut err_buf)
        );
        o?;
        e?;
        child.wait().await
    };
    let result: Option<io::Result<ExitStatus>> = match timeout {
        Some(d) => tokio::time::timeout(d, run).await.ok(),
        None => Some(run.await),
    };

    let (failure, complete) = match result {
        None => {
            // Perl kills with SIGKILL on timeout; an unterminated trailing line is lost there
            // because the final flush is skipped.
            let _ = child.start_kill();
            let _ = child.wait().await;
            (Some("got timeout".to_string()), false)
        }
        Some(Err(e)) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            (Some(errno_text(&e)), false)
        }
        Some(Ok(status)) => (exit_failure(status), true),
    };
    tracing::debug!(?failure, "command finished");
    Captured {
        stdout_lines: split_perl_lines(&out_buf, complete),
        stderr_lines: split_perl_lines(&err_buf, complete),
        failure,
    }
}

/// run_command's reason text for a non-successful exit.
pub fn exit_failure(status: ExitStatus) -> Option<String> {
    if let Some(sig) = status.signal() {
        Some(format!("got signal {sig}"))
    } else {
        match status.code() {
            Some(0) | None => None,
            Some(code) => Some(format!("exit code {code}")),
        }
    }
}

/// Splits output the way run_command feeds outfunc/errfunc: a line ends at `\n`, `\r\n`, `\r`
/// or a run of backspaces. The unterminated rest is only passed on when the command ran to
/// completion, and only if it is Perl-true (not empty, not "0").
fn split_perl_lines(buf: &[u8], include_rest: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < buf.len() {
        let end = i;
        let next = match buf[i] {
            b'\n' => i + 1,
            b'\r' if buf.get(i + 1) == Some(&b'\n') => i + 2,
            b'\r' => i + 1,
            0x08 => {
                let mut j = i;
                while buf.get(j) == Some(&0x08) {
                    j += 1;
                }
                j
            }
            _ => {
                i += 1;
                continue;
            }
        };
        lines.push(String::from_utf8_lossy(&buf[start..end]).into_owned());
        start = next;
        i = next;
    }
    if include_rest {
        let rest = String::from_utf8_lossy(&buf[start..]).into_owned();
        if truthy(&rest) {
            lines.push(rest);
        }
    }
    lines
}

/// run_command's `$cmdstr`: every argument through String::ShellQuote, joined by spaces.
pub fn cmd_to_string(program: &str, args: &[String]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// String::ShellQuote::shell_quote for a single argument. Since PVE quotes each argument on its
/// own, any argument containing `=` counts as "first word" and gets quoted
/// (`'--output=json'`), as in real PVE task logs.
fn shell_quote(arg: &str) -> String {
    if arg.is_empty() {
        return "''".to_string();
    }
    let arg = arg.replace('\0', "");
    let safe = |c: char| c.is_ascii_alphanumeric() || "_!%+,-./:=@^".contains(c);
    if !arg.contains('=') && arg.chars().all(safe) {
        return arg;
    }
    let mut escaped = arg.replace('\'', "'\\''");
    // ShellQuote turns runs of two or more escaped quotes into one double-quoted block.
    escaped = collapse_escaped_quotes(&escaped);
    let mut quoted = format!("'{escaped}'");
    if let Some(s) = quoted.strip_prefix("''") {
        quoted = s.to_string();
    }
    if let Some(s) = quoted.strip_suffix("''") {
        quoted = s.to_string();
    }
    quoted
}

/// `s|((?:'\\''){2,})|q{'"} . (q{'} x (length($1) / 4)) . q{"'}|ge` from String::ShellQuote.
fn collapse_escaped_quotes(s: &str) -> String {
    const UNIT: &str = "'\\''";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(UNIT) {
        out.push_str(&rest[..pos]);
        let mut n = 0;
        let mut tail = &rest[pos..];
        while let Some(t) = tail.strip_prefix(UNIT) {
            n += 1;
            tail = t;
        }
        if n >= 2 {
            out.push_str("'\"");
            out.push_str(&"'".repeat(n));
            out.push_str("\"'");
        } else {
            out.push_str(UNIT);
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_line_splitting() {
        assert_eq!(
            split_perl_lines(b"a\nb\r\nc\rd\x08\x08e\n\nf", true),
            vec!["a", "b", "c", "d", "e", "", "f"]
        );
        assert_eq!(split_perl_lines(b"a\npartial", false), vec!["a"]);
        assert!(split_perl_lines(b"0", true).is_empty());
    }

    #[test]
    fn shell_quoting_matches_string_shellquote() {
        assert_eq!(shell_quote("/usr/bin/qemu-img"), "/usr/bin/qemu-img");
        assert_eq!(shell_quote("--output=json"), "'--output=json'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("'x"), "\\''x'");
        assert_eq!(shell_quote("a''b"), "'a'\"''\"'b'");
    }

    #[tokio::test]
    async fn timeout_kills_and_drops_partial_line() {
        let args = [
            "-c".to_string(),
            "printf 'line\\npartial'; sleep 5".to_string(),
        ];
        let started = std::time::Instant::now();
        let out = run_captured("sh", &args, Some(Duration::from_millis(300))).await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(out.failure.as_deref(), Some("got timeout"));
        assert_eq!(out.stdout_lines, vec!["line"]);
    }

    #[tokio::test]
    async fn spawn_failure_is_query_failure_reason() {
        let out = run_captured("/nonexistent/qemu-img", &["info".to_string()], None).await;
        assert_eq!(
            out.failure.as_deref(),
            Some("open3: exec of /nonexistent/qemu-img info failed: No such file or directory")
        );
    }
}
