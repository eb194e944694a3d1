//! Crash safety (architecture invariants 1 and 2): a daemon killed with SIGKILL mid-transfer
//! (mid-body, with a task queued for a transfer slot or joined to a running transfer, or during
//! the content check after the whole body) leaves no file under a listed name and reports the task stopped with an error after a
//! restart; asking for the same download again resumes it from the bytes on disk (or starts
//! over, and says why, when the origin's file changed or the download decompresses); partial
//! downloads nobody resumes are collected, at start and while running, never one a running
//! task owns; SIGTERM stops transfers cleanly; a client that hangs up does not stop its task
//! (PVE's tasks outlive their request); and the flush order fsync(file) → rename →
//! fsync(directory) is asserted on the real syscalls, not assumed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util;
use crate::util::{Daemon, Step};

const ETAG: &str = "\"v1\"";
const INTERRUPTED: &str = "task interrupted: the daemon stopped while it was running";

fn slow_body(origin: u16, name: &str) -> String {
    format!("content=iso&filename={name}&url=http%3A%2F%2F127.0.0.1%3A{origin}%2F{name}")
}

/// Waits until the transfer has written something to its temp file.
fn wait_for_partial(dir: &Path) -> PathBuf {
    wait_for(dir, |p| {
        p.extension().is_some_and(|e| e == "part") && p.metadata().is_ok_and(|m| m.len() > 0)
    })
}

/// Waits until a file in `dir` passes `ok`.
fn wait_for(dir: &Path, ok: impl Fn(&Path) -> bool) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| ok(p));
        if let Some(p) = found {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no such file appeared in {dir:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_state(path: &Path) -> serde_json::Value {
    std::fs::read(path)
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

/// The resume state next to a temp file.
fn state_of(part: &Path) -> PathBuf {
    part.with_extension("json")
}

fn task_log(d: &Daemon, upid: &str) -> String {
    let starttime = upid.split(':').nth(4).expect("starttime field");
    let sub = &starttime[starttime.len() - 1..];
    std::fs::read_to_string(d.dir.path().join("state/tasks").join(sub).join(upid))
        .expect("task log")
}

#[test]
fn sigkill_mid_transfer_then_restart_collects_what_is_past_the_grace() {
    // No grace: the partial is collected at start, as nothing can resume it.
    let mut d = Daemon::start_with(&["--partial-keep-hours", "0"]);
    let (origin, _) = util::slow_origin(vec![1u8; 3_000_000], 32 * 1024, Duration::from_millis(50));
    let upid = d.post_download(&slow_body(origin, "k.iso"));
    let part = wait_for_partial(&d.staging_path());
    d.kill9();
    assert!(
        part.exists(),
        "the crash left its temp file (the case under test)"
    );
    assert_eq!(
        util::files_under(&d.storage_path().join("template/iso")),
        Vec::<String>::new()
    );

    d.restart();
    assert_eq!(d.wait(&upid), INTERRUPTED);
    assert!(
        !part.exists(),
        "the orphaned temp file is collected at start"
    );
    assert_eq!(util::files_under(&d.storage_path()), Vec::<String>::new());
}

#[test]
fn sigterm_stops_transfers_and_leaves_nothing() {
    let mut d = Daemon::start();
    let (origin, _) = util::slow_origin(vec![2u8; 3_000_000], 32 * 1024, Duration::from_millis(50));
    let upid = d.post_download(&slow_body(origin, "t.iso"));
    wait_for_partial(&d.staging_path());
    assert!(d.terminate().success());
    assert_eq!(util::files_under(&d.storage_path()), Vec::<String>::new());
    assert!(
        task_log(&d, &upid).ends_with("TASK ERROR: download failed: received interrupt\n"),
        "{}",
        task_log(&d, &upid)
    );
}

/// One traced syscall: the trace lines where it starts and where its result shows, and its
/// text with the halves of a call strace split ("<unfinished ...>" / "<... resumed>") joined.
#[derive(Debug)]
struct Call {
    start: usize,
    end: usize,
    text: String,
}

/// The syscalls of an `strace -f` trace in the order they started. Another thread's call may
/// land between the halves of a split one, so the halves are paired by pid.
fn calls(trace: &str) -> Vec<Call> {
    let mut open = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (i, line) in trace.lines().enumerate() {
        let (pid, rest) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("no pid in {line:?}"));
        let rest = rest.trim_start();
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            open.insert(pid.to_string(), (i, head.to_string()));
        } else if rest.starts_with("<... ") {
            let (start, head) = open
                .remove(pid)
                .unwrap_or_else(|| panic!("resumed without a start: {line:?}"));
            let (_, tail) = rest
                .split_once(" resumed>")
                .unwrap_or_else(|| panic!("odd resumed line: {line:?}"));
            // strace pads a resumed call's result into a column.
            let tail = match tail.rsplit_once(" = ") {
                Some((args, result)) => format!("{} = {result}", args.trim_end()),
                None => tail.to_string(),
            };
            out.push(Call {
                start,
                end: i,
                text: format!("{head}{tail}"),
            });
        } else {
            out.push(Call {
                start: i,
                end: i,
                text: rest.to_string(),
            });
        }
    }
    out.sort_by_key(|c| c.start);
    out
}

#[test]
fn strace_calls_split_by_another_thread_are_paired_per_pid() {
    let trace = "7 fsync(3</d/a.part> <unfinished ...>\n\
                 8 rename(\"/d/a.part\", \"/d/a\" <unfinished ...>\n\
                 7 <... fsync resumed>)        = 0\n\
                 8 <... rename resumed>)       = 0\n\
                 8 +++ exited with 0 +++\n";
    let got: Vec<(usize, usize, String)> = calls(trace)
        .into_iter()
        .map(|c| (c.start, c.end, c.text))
        .collect();
    assert_eq!(
        got,
        [
            (0, 2, "fsync(3</d/a.part>) = 0".to_string()),
            (1, 3, "rename(\"/d/a.part\", \"/d/a\") = 0".to_string()),
        ]
    );
}

#[test]
fn flush_order_is_fsync_file_rename_fsync_directory() {
    let dir = util::default_dir();
    let trace = dir.path().join("syscalls.trace");
    let trace_arg = trace.display().to_string();
    let mut d = Daemon::spawn_wrapped(
        dir,
        &[
            "strace",
            "-f",
            "-qq",
            "-y",
            "-s",
            "0",
            "-e",
            "trace=write,writev,pwrite64,pwritev,pwritev2,fsync,fdatasync,rename,renameat,renameat2",
            "-o",
            &trace_arg,
        ],
        &[],
    );
    // Several MiB over a few seconds: the writer flushes its buffer more than once and the
    // periodic syncer may fdatasync between those writes, so only the last sync can count.
    let data = data(3_000_000);
    let (origin, _) = util::fault_origin(
        data.clone(),
        vec![Step::Trickle {
            etag: ETAG,
            chunk: 256 * 1024,
            pause: Duration::from_millis(250),
        }],
    );
    let upid = d.post_download(&format!(
        "content=iso&filename=s.iso&checksum-algorithm=sha256&checksum={}\
         &url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fs.iso",
        util::sha256_hex(&data)
    ));
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert!(d.terminate().success());

    let text = std::fs::read_to_string(&trace).expect("strace output");
    let calls = calls(&text);
    let dest_dir = d.storage_path().join("template/iso");
    let dest = dest_dir.join("s.iso").display().to_string();
    let on_part = |c: &&Call| c.text.contains("/s.iso.") && c.text.contains(".part>");
    let ok = |c: &&Call| c.text.ends_with("= 0");
    let rename = calls
        .iter()
        .filter(ok)
        .find(|c| {
            c.text.starts_with("rename")
                && c.text.contains(".part\"")
                && c.text.contains(&format!("\"{dest}\""))
        })
        .unwrap_or_else(|| panic!("no rename to {dest} in:\n{text}"));
    let last_write = calls
        .iter()
        .filter(on_part)
        .filter(|c| c.text.starts_with("write") || c.text.starts_with("pwrite"))
        .filter(|c| c.end < rename.start)
        .max_by_key(|c| c.end)
        .unwrap_or_else(|| panic!("no write to the temp file before the rename in:\n{text}"));
    let last_sync = calls
        .iter()
        .filter(on_part)
        .filter(ok)
        .filter(|c| c.text.starts_with("fsync(") || c.text.starts_with("fdatasync("))
        .filter(|c| c.end < rename.start)
        .max_by_key(|c| c.end)
        .unwrap_or_else(|| panic!("no sync of the temp file before the rename in:\n{text}"));
    assert!(
        last_sync.start > last_write.end,
        "the temp file's last sync ({last_sync:?}) must follow its last write ({last_write:?}):\n{text}"
    );
    let dir_sync = format!("<{}>) = 0", dest_dir.display());
    let dir_synced = calls.iter().any(|c| {
        c.start > rename.end && c.text.starts_with("fsync(") && c.text.ends_with(&dir_sync)
    });
    assert!(
        dir_synced,
        "fsync({}) must follow the rename ({rename:?}):\n{text}",
        dest_dir.display()
    );
}

fn data(len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect()
}

/// An origin for `body` whose first answer trickles (so a kill lands mid-transfer) and whose
/// later ones come at once with ETag `then`.
fn trickle_then(body: &[u8], then: &'static str) -> (u16, util::Seen, util::Served) {
    util::fault_origin_counted(
        body.to_vec(),
        vec![
            Step::Trickle {
                etag: ETAG,
                chunk: 64 * 1024,
                pause: Duration::from_millis(50),
            },
            Step::Serve {
                etag: then,
                limit: None,
            },
        ],
    )
}

fn request(origin: u16, sum: &str, extra: &str) -> String {
    format!(
        "content=iso&filename=r.iso&checksum-algorithm=sha256&checksum={sum}{extra}\
         &url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fr.iso"
    )
}

/// The N of the log's `resuming from N bytes already on disk`.
fn resumed_from(log: &[String]) -> Option<u64> {
    log.iter().find_map(|l| {
        l.strip_prefix("resuming from ")?
            .strip_suffix(" bytes already on disk")?
            .parse()
            .ok()
    })
}

/// Starts a trickling download, waits until the writer has synced bytes and recorded them
/// in the resume state, and kills the daemon. Returns the first task, the temp file, its
/// length after the kill and the state as it was.
fn kill_mid_transfer(d: &mut Daemon, body: &str) -> (String, PathBuf, u64, serde_json::Value) {
    let upid = d.post_download(body);
    let state = wait_for(&d.staging_path(), |p| {
        p.extension().is_some_and(|e| e == "json")
            && read_state(p)["synced"].as_u64().is_some_and(|n| n > 0)
    });
    d.kill9();
    let part = state.with_extension("part");
    let len = part.metadata().expect("the temp file is kept").len();
    (upid, part, len, read_state(&state))
}

#[test]
fn sigkill_then_the_same_request_resumes_from_the_bytes_on_disk() {
    let mut d = Daemon::start();
    let data = data(6_000_000);
    let sum = util::sha256_hex(&data);
    let (origin, seen, served) = trickle_then(&data, ETAG);
    let body = request(origin, &sum, "");
    let (first, part, on_disk, state) = kill_mid_transfer(&mut d, &body);

    // What the state file holds, as the README documents it.
    let target = d.storage_path().join("template/iso/r.iso");
    assert_eq!(state["format"], 1);
    assert_eq!(state["target"], target.display().to_string());
    assert_eq!(state["url"], format!("http://127.0.0.1:{origin}/r.iso"));
    assert_eq!(state["validator"], ETAG);
    assert_eq!(state["length"], data.len());
    assert_eq!(state["checksum-algorithm"], "sha256");
    assert_eq!(state["checksum"], sum);
    assert_eq!(state["compression"], serde_json::Value::Null);
    let synced = state["synced"].as_u64().expect("synced");
    assert!(synced <= on_disk && on_disk < data.len() as u64);

    d.restart();
    assert_eq!(d.wait(&first), INTERRUPTED);
    assert!(part.exists(), "kept for a resume within partial-keep-hours");
    let second = d.post_download(&body);
    assert_eq!(d.wait(&second), "OK", "{:?}", d.log_lines(&second));
    let log = d.log_lines(&second);
    // Same boot: what the kernel had when the daemon died is all there.
    let n = resumed_from(&log).unwrap_or_else(|| panic!("no resume line in {log:?}"));
    assert_eq!(n, on_disk, "{log:?}");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1], (format!("bytes={n}-"), ETAG.to_string()));
    assert_eq!(
        served.lock().expect("lock")[1] as u64,
        data.len() as u64 - n,
        "only the missing bytes travel again"
    );
    assert!(log.contains(&"calculating checksum...OK, checksum verified".to_string()));
    assert_eq!(
        util::sha256_hex(&std::fs::read(&target).expect("file")),
        sum
    );
    assert_eq!(util::files_under(&d.staging_path()), Vec::<String>::new());
}

#[test]
fn sigkill_then_a_changed_file_at_the_origin_restarts_from_zero() {
    let mut d = Daemon::start();
    let data = data(6_000_000);
    let sum = util::sha256_hex(&data);
    let (origin, seen, served) = trickle_then(&data, "\"v2\"");
    let body = request(origin, &sum, "");
    let (_, _, on_disk, _) = kill_mid_transfer(&mut d, &body);

    d.restart();
    let second = d.post_download(&body);
    assert_eq!(d.wait(&second), "OK", "{:?}", d.log_lines(&second));
    let log = d.log_lines(&second);
    assert_eq!(resumed_from(&log), Some(on_disk), "{log:?}");
    assert!(
        log.contains(&format!(
            "the file changed at the origin (validator \"v2\" instead of {ETAG}); restarting from zero"
        )),
        "{log:?}"
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen[1], (format!("bytes={on_disk}-"), ETAG.to_string()));
    assert_eq!(served.lock().expect("lock")[1], data.len());
    assert_eq!(
        util::sha256_hex(
            &std::fs::read(d.storage_path().join("template/iso/r.iso")).expect("file")
        ),
        sum
    );
    assert_eq!(util::files_under(&d.staging_path()), Vec::<String>::new());
}

#[test]
fn sigkill_then_a_decompressing_download_starts_over() {
    use std::io::Write;
    let mut d = Daemon::start();
    let data = data(4_000_000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&data).expect("gz");
    let gz = gz.finish().expect("gz");
    let (origin, seen, served) = trickle_then(&gz, ETAG);
    let body = request(origin, &util::sha256_hex(&gz), "&compression=gz");
    let first = d.post_download(&body);
    let part = wait_for_partial(&d.staging_path());
    d.kill9();
    assert!(part.exists());

    d.restart();
    assert_eq!(d.wait(&first), INTERRUPTED);
    let second = d.post_download(&body);
    assert_eq!(d.wait(&second), "OK", "{:?}", d.log_lines(&second));
    let log = d.log_lines(&second);
    assert!(
        log.contains(
            &"cannot resume a decompressing download from disk, starting over".to_string()
        ),
        "{log:?}"
    );
    assert_eq!(resumed_from(&log), None);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen[1],
        (String::new(), String::new()),
        "no Range: from zero"
    );
    assert_eq!(served.lock().expect("lock")[1], gz.len());
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/r.iso")).expect("file"),
        data
    );
    assert_eq!(util::files_under(&d.staging_path()), Vec::<String>::new());
}

#[test]
fn a_corrupted_resume_state_is_garbage_not_an_error() {
    let mut d = Daemon::start();
    let data = data(6_000_000);
    let sum = util::sha256_hex(&data);
    let (origin, seen, _) = trickle_then(&data, ETAG);
    let body = request(origin, &sum, "");
    let (first, part, _, _) = kill_mid_transfer(&mut d, &body);
    std::fs::write(state_of(&part), b"{\"format\": 1, \"target\": ").expect("corrupt");

    d.restart();
    assert_eq!(d.wait(&first), INTERRUPTED);
    assert!(
        !part.exists() && !state_of(&part).exists(),
        "collected at start: it can never be resumed"
    );
    let second = d.post_download(&body);
    assert_eq!(d.wait(&second), "OK", "{:?}", d.log_lines(&second));
    assert_eq!(resumed_from(&d.log_lines(&second)), None);
    assert_eq!(seen.lock().expect("lock")[1].0, "", "from zero");
    assert_eq!(util::files_under(&d.staging_path()), Vec::<String>::new());
}

#[test]
fn runtime_collection_takes_unowned_partials_and_never_a_running_one() {
    let d = Daemon::start_with(&[
        "--partial-keep-hours",
        "0",
        "--partial-collect-interval",
        "1",
    ]);
    let data = data(6_000_000);
    let sum = util::sha256_hex(&data);
    let (origin, _, _) = trickle_then(&data, ETAG);
    let upid = d.post_download(&request(origin, &sum, ""));
    let running = wait_for_partial(&d.staging_path());

    // Left by a crash (another target), and one whose state is unreadable.
    let dir = d.staging_path();
    let other = dir.join(format!("o.iso.{}-{}.part", util::NODE, "1".repeat(32)));
    std::fs::write(&other, b"partial").expect("write");
    std::fs::write(
        state_of(&other),
        serde_json::json!({
            "format": 1,
            "target": d.storage_path().join("template/iso/o.iso"),
            "url": "http://127.0.0.1:1/o.iso",
            "validator": ETAG,
            "length": 100,
            "synced": 7,
        })
        .to_string(),
    )
    .expect("write");
    let garbage = dir.join(format!("g.iso.{}-{}.part", util::NODE, "2".repeat(32)));
    std::fs::write(&garbage, b"partial").expect("write");
    std::fs::write(state_of(&garbage), b"not json").expect("write");
    let foreign = dir.join(format!("f.iso.othernode-{}.part", "3".repeat(32)));
    std::fs::write(&foreign, b"another node's").expect("write");

    let deadline = Instant::now() + Duration::from_secs(20);
    while [&other, &garbage]
        .iter()
        .any(|p| p.exists() || state_of(p).exists())
    {
        assert!(
            Instant::now() < deadline,
            "unowned partials were not collected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        running.exists() && state_of(&running).exists(),
        "a collection ran while the task owned its partial, and left it alone"
    );
    assert!(
        foreign.exists(),
        "another node's files are not ours to collect"
    );
    assert_eq!(d.wait(&upid), "OK", "{:?}", d.log_lines(&upid));
    assert_eq!(
        util::sha256_hex(
            &std::fs::read(d.storage_path().join("template/iso/r.iso")).expect("file")
        ),
        sum
    );
    std::fs::remove_file(&foreign).expect("rm");
    assert_eq!(util::files_under(&d.staging_path()), Vec::<String>::new());
}

/// The tasks of `d`, running or done (a task started by a request whose answer never arrived
/// has no other way to be found).
fn all_upids(d: &Daemon) -> Vec<String> {
    d.get_json(&format!("/nodes/{}/tasks?source=all", util::NODE))["data"]
        .as_array()
        .expect("task list")
        .iter()
        .map(|t| t["upid"].as_str().expect("upid").to_string())
        .collect()
}

fn raw_download_request(origin: u16) -> Vec<u8> {
    let body = slow_body(origin, "h.iso");
    format!(
        "POST /api2/json/nodes/{}/storage/local/download-url HTTP/1.1\r\nHost: x\r\n\
         Authorization: PVEAPIToken={}={}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        util::NODE,
        util::TOKEN_ID,
        util::TOKEN_SECRET,
        body.len()
    )
    .into_bytes()
}

/// Runs the hung-up request's task to its end and checks what PVE promises: a task does not
/// depend on the request that started it, so it ends OK with the whole file, one transfer,
/// and nothing left in staging.
fn assert_finished_alone(d: &Daemon, upid: &str, data: &[u8], seen: &util::Seen) {
    assert_eq!(d.wait(upid), "OK", "{:?}", d.log_lines(upid));
    assert_eq!(all_upids(d), [upid]);
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/h.iso")).expect("file"),
        data
    );
    assert_eq!(util::files_under(&d.storage_path()), ["template/iso/h.iso"]);
    assert_eq!(util::files_under(&d.staging_path()), Vec::<String>::new());
    assert_eq!(seen.lock().expect("lock").len(), 1, "origin GETs");
}

#[test]
fn a_client_that_hangs_up_after_the_answer_leaves_the_task_running() {
    use std::io::Write;
    let d = Daemon::start();
    let data = data(3_000_000);
    let (origin, seen, _) = trickle_then(&data, ETAG);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    s.write_all(&raw_download_request(origin)).expect("send");
    let answer = util::Response::read(&mut s);
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    // The connection is still open (keep-alive): the client is the one that ends it.
    drop(s);
    let upid = answer.json()["data"].as_str().expect("upid").to_string();
    // Its temp file is still there, so the transfer outlived the connection.
    wait_for_partial(&d.staging_path());
    assert_finished_alone(&d, &upid, &data, &seen);
}

#[test]
fn a_client_that_hangs_up_before_reading_the_answer_still_starts_the_task() {
    use std::io::Write;
    let d = Daemon::start();
    let data = data(3_000_000);
    let (origin, seen, _) = trickle_then(&data, ETAG);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    s.write_all(&raw_download_request(origin)).expect("send");
    // Gone without reading the answer, which may not even be written yet: actix lets a
    // request whose client closed its side run to its end (h1_allow_half_closed, on by
    // default), so the handler still starts the task.
    drop(s);
    wait_for_partial(&d.staging_path());
    let upids = all_upids(&d);
    assert_eq!(upids.len(), 1, "{upids:?}");
    assert_finished_alone(&d, &upids[0], &data, &seen);
}

/// An origin for `body` whose first answer sends the first `n` bytes and then holds the rest
/// for good, so that its count is exact when the daemon is killed; later answers come at once
/// (`Range` honoured).
fn gated_then_served(body: &[u8], n: usize) -> (u16, util::Seen, util::Served) {
    util::fault_origin_counted(
        body.to_vec(),
        vec![
            Step::Gated {
                etag: ETAG,
                n,
                gate: util::Gate::default(),
            },
            Step::Serve {
                etag: ETAG,
                limit: None,
            },
        ],
    )
}

/// The names of a temp file and its resume state, as a staging listing shows them.
fn part_and_state(part: &Path) -> Vec<String> {
    let name = |p: &Path| {
        p.file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned()
    };
    vec![name(&state_of(part)), name(part)]
}

/// The same two files as `part_and_state`, relative to the storage dir.
fn in_staging(part: &Path) -> Vec<String> {
    part_and_state(part)
        .into_iter()
        .map(|f| format!(".isolib-partial/{f}"))
        .collect()
}

/// Waits until the task's log holds `line`.
fn wait_for_line(d: &Daemon, upid: &str, line: &str) {
    util::wait_until(&format!("{line:?} in the log of {upid}"), || {
        d.log_lines(upid).iter().any(|l| l == line)
    });
}

#[test]
fn sigkill_while_a_task_is_queued_for_a_transfer_slot() {
    let mut d = Daemon::start_with(&["--max-transfers", "1"]);
    let data = data(6_000_000);
    // More than the writer's 1 MiB buffer, so bytes reach the temp file before the gate.
    let held = 3 << 20;
    let (origin, seen, served) = gated_then_served(&data, held);
    let first = d.post_download(&slow_body(origin, "a.iso"));
    let part = wait_for_partial(&d.staging_path());
    let second = d.post_download(&slow_body(origin, "b.iso"));
    wait_for_line(
        &d,
        &second,
        "waiting for a free transfer slot (1 transfers running, max-transfers)",
    );
    d.kill9();

    let name = part.file_name().expect("name").to_string_lossy();
    assert!(
        name.starts_with(&format!("a.iso.{}-", util::NODE)),
        "{name}"
    );
    d.restart();
    assert_eq!(d.wait(&first), INTERRUPTED, "{:?}", d.log_lines(&first));
    assert_eq!(d.wait(&second), INTERRUPTED, "{:?}", d.log_lines(&second));
    // The queued task never reached the origin nor created a staging file; the running
    // one's temp file and state are kept for a resume within partial-keep-hours.
    assert_eq!(
        util::entries_under(&d.staging_path()),
        part_and_state(&part)
    );
    assert_eq!(
        util::files_under(&d.storage_path()),
        in_staging(&part),
        "no file under a listed name"
    );
    assert_eq!(
        *seen.lock().expect("lock"),
        [(String::new(), String::new())],
        "one GET, for a.iso, from the start"
    );
    assert_eq!(*served.lock().expect("lock"), [held]);
}

#[test]
fn sigkill_while_a_request_has_joined_a_running_transfer() {
    let mut d = Daemon::start();
    let data = data(6_000_000);
    let sum = util::sha256_hex(&data);
    let (origin, seen, served) = gated_then_served(&data, 3 << 20);
    let body = request(origin, &sum, "");
    let first = d.post_download(&body);
    let part = wait_for_partial(&d.staging_path());
    let second = d.post_download(&body);
    wait_for_line(
        &d,
        &second,
        &format!("task {first} is downloading the same file; joining it"),
    );
    d.kill9();
    let on_disk = part.metadata().expect("the temp file is kept").len();
    assert!(0 < on_disk && on_disk < data.len() as u64, "{on_disk}");

    d.restart();
    assert_eq!(d.wait(&first), INTERRUPTED, "{:?}", d.log_lines(&first));
    assert_eq!(d.wait(&second), INTERRUPTED, "{:?}", d.log_lines(&second));
    assert_eq!(
        util::entries_under(&d.staging_path()),
        part_and_state(&part)
    );
    assert_eq!(util::files_under(&d.storage_path()), in_staging(&part));

    let third = d.post_download(&body);
    assert_eq!(d.wait(&third), "OK", "{:?}", d.log_lines(&third));
    let log = d.log_lines(&third);
    assert_eq!(resumed_from(&log), Some(on_disk), "{log:?}");
    assert_eq!(
        *seen.lock().expect("lock"),
        [
            (String::new(), String::new()),
            (format!("bytes={on_disk}-"), ETAG.to_string())
        ],
        "the joined request never asked the origin itself"
    );
    assert_eq!(
        served.lock().expect("lock")[1] as u64,
        data.len() as u64 - on_disk,
        "only the missing bytes travel again"
    );
    assert!(log.contains(&"calculating checksum...OK, checksum verified".to_string()));
    assert_eq!(
        std::fs::read(d.storage_path().join("template/iso/r.iso")).expect("file"),
        data
    );
    assert_eq!(util::files_under(&d.storage_path()), ["template/iso/r.iso"]);
    assert_eq!(util::entries_under(&d.staging_path()), Vec::<String>::new());
}

/// An OVA (a tar with an `.ovf` entry) of about `len` bytes, made by the system's tar.
fn ova(len: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("vm.ovf"), b"<Envelope/>").expect("write");
    std::fs::write(dir.path().join("disk.img"), data(len)).expect("write");
    let out = dir.path().join("vm.ova");
    let status = std::process::Command::new("/usr/bin/tar")
        .arg("-C")
        .arg(dir.path())
        .arg("-cf")
        .arg(&out)
        .args(["vm.ovf", "disk.img"])
        .status()
        .expect("tar");
    assert!(status.success());
    std::fs::read(&out).expect("ova")
}

/// A `tar` for the daemon's PATH (the OVA check runs `tar` through PATH, as PVE does): its
/// first run records its arguments in `marker` and then holds the content check until the
/// daemon that started it is gone; later runs are the system's tar.
fn holding_tar(bin: &Path, marker: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin).expect("mkdir");
    let script = bin.join("tar");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ -e '{m}' ]; then exec /usr/bin/tar \"$@\"; fi\n\
             echo \"$@\" > '{m}.tmp' && mv '{m}.tmp' '{m}'\n\
             while kill -0 \"$PPID\" 2>/dev/null; do sleep 0.1; done\n\
             exit 1\n",
            m = marker.display()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn sigkill_during_the_content_check_after_the_whole_body() {
    let dir = util::default_dir();
    let bin = dir.path().join("bin");
    let marker = dir.path().join("tar-started");
    holding_tar(&bin, &marker);
    let path = format!("PATH={}:/usr/bin:/bin", bin.display());
    let mut d = Daemon::spawn_wrapped(dir, &["env", &path], &[]);

    let data = ova(3_000_000);
    let sum = util::sha256_hex(&data);
    let (origin, seen, served) = util::fault_origin_counted(
        data.clone(),
        vec![Step::Serve {
            etag: ETAG,
            limit: None,
        }],
    );
    let body = format!(
        "content=import&filename=vm.ova&checksum-algorithm=sha256&checksum={sum}\
         &url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fvm.ova"
    );
    let first = d.post_download(&body);
    util::wait_until("the content check", || marker.exists());
    // The check runs on the temp file, which holds the whole body; the name is not there yet.
    let part = wait_for_partial(&d.staging_path());
    assert_eq!(
        std::fs::read_to_string(&marker).expect("marker"),
        format!("-t -f {}\n", part.display())
    );
    let target = d.storage_path().join("import/vm.ova");
    d.kill9();
    assert_eq!(std::fs::read(&part).expect("temp file"), data);
    assert!(!target.exists());

    d.restart();
    assert_eq!(d.wait(&first), INTERRUPTED, "{:?}", d.log_lines(&first));
    assert_eq!(
        util::entries_under(&d.staging_path()),
        part_and_state(&part)
    );
    assert_eq!(util::files_under(&d.storage_path()), in_staging(&part));

    let second = d.post_download(&body);
    assert_eq!(d.wait(&second), "OK", "{:?}", d.log_lines(&second));
    let log = d.log_lines(&second);
    // A range from the end would be unsatisfiable: the last byte is asked for again.
    let n = data.len() as u64 - 1;
    assert_eq!(resumed_from(&log), Some(n), "{log:?}");
    assert_eq!(
        *seen.lock().expect("lock"),
        [
            (String::new(), String::new()),
            (format!("bytes={n}-"), ETAG.to_string())
        ]
    );
    assert_eq!(*served.lock().expect("lock"), [data.len(), 1]);
    assert!(log.contains(&"calculating checksum...OK, checksum verified".to_string()));
    assert_eq!(std::fs::read(&target).expect("file"), data);
    assert_eq!(util::files_under(&d.storage_path()), ["import/vm.ova"]);
    assert_eq!(util::entries_under(&d.staging_path()), Vec::<String>::new());
}
