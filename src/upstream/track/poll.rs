//! Polling a track: fetch its announcement (conditionally, with the validators of the last
//! answer), find the newest release, and when it is newer than the newest held, download it
//! through the normal path in a task and apply retention there. A poll that changes nothing
//! leaves no task behind, only its time (and an error, if it had one) in the track's state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::discover::{self, Found};
use super::{Entry, Held, version};
use crate::download::{ContentCheck, DownloadPlan, LogSink};
use crate::state::AppState;
use crate::tasks::{TaskLog, Upid};
use crate::upstream::{self, Fetched, Validators};

/// The UPID type of a track's task.
pub const TASK_TYPE: &str = "isolibtrack";

/// One poll of a track at a time: a poll holds its track's lock until the task it started
/// ends, so a second poll cannot start the same download again.
#[derive(Default)]
pub struct Tracker {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Tracker {
    fn lock(&self, name: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(name.to_owned()).or_default().clone()
        };
        lock.try_lock_owned().ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Track(#[from] super::TrackError),
    #[error("track '{0}' is being polled already")]
    Busy(String),
    #[error("{0}")]
    Task(String),
}

/// What the announcement says now.
enum Look {
    /// 304, and nothing is pending from an earlier poll.
    Unchanged,
    Latest {
        found: Found,
        validators: Validators,
    },
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `isolib track check`: the whole poll in a task, whatever it finds, so its log says what
/// happened.
pub fn check_now(state: &AppState, name: &str, user: &str) -> Result<Upid, PollError> {
    let entry = super::load(&state.config().state_dir, name)?;
    let guard = state
        .tracker()
        .lock(name)
        .ok_or_else(|| PollError::Busy(name.to_owned()))?;
    let st = state.clone();
    state
        .tasks()
        .spawn(TASK_TYPE, name, user, move |upid, log, cancel| async move {
            let _guard = guard;
            let mut entry = entry;
            log.line(&format!("checking {}", entry.track.url));
            match look(&st, &entry).await {
                Err(e) => {
                    entry.state.error = Some(e.clone());
                    entry.state.last_poll = Some(now());
                    save(&st, &entry);
                    Err(e)
                }
                Ok(Look::Unchanged) => {
                    log.line("not modified since the last poll");
                    entry.state.last_poll = Some(now());
                    entry.state.error = None;
                    save(&st, &entry);
                    Ok(())
                }
                Ok(Look::Latest { found, validators }) => {
                    apply(&st, entry, found, validators, &upid, &log, &cancel).await
                }
            }
        })
        .map_err(|e| PollError::Task(e.to_string()))
}

/// A scheduled poll: a task only when there is something to download.
async fn poll(state: &AppState, entry: Entry) {
    let name = entry.track.name.clone();
    let Some(guard) = state.tracker().lock(&name) else {
        return;
    };
    let mut entry = entry;
    let (found, validators) = match look(state, &entry).await {
        Ok(Look::Latest { found, validators }) if is_newer(&entry, &found) => (found, validators),
        outcome => {
            entry.state.last_poll = Some(now());
            match outcome {
                Err(e) => {
                    tracing::warn!("track '{name}': {e}");
                    entry.state.error = Some(e);
                }
                Ok(Look::Latest { found, validators }) => {
                    entry.state.error = None;
                    entry.state.latest = Some(found.release);
                    entry.state.etag = validators.etag;
                    entry.state.last_modified = validators.last_modified;
                }
                Ok(Look::Unchanged) => entry.state.error = None,
            }
            save(state, &entry);
            return;
        }
    };
    let st = state.clone();
    let spawned = state.tasks().spawn(
        TASK_TYPE,
        &name,
        "root@pam",
        move |upid, log, cancel| async move {
            let _guard = guard;
            log.line(&format!("checking {}", entry.track.url));
            apply(&st, entry, found, validators, &upid, &log, &cancel).await
        },
    );
    if let Err(e) = spawned {
        tracing::warn!("track '{name}': {e}");
    }
}

/// Polls every track whose interval has passed, every few seconds, for as long as the daemon
/// runs.
pub async fn run(state: AppState) {
    loop {
        let dir = state.config().state_dir.clone();
        let due: Vec<Entry> = tokio::task::spawn_blocking(move || super::load_all(&dir))
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                e.state
                    .last_poll
                    .is_none_or(|t| now() >= t.saturating_add(e.track.interval as i64))
            })
            .collect();
        for entry in due {
            poll(&state, entry).await;
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

fn is_newer(entry: &Entry, found: &Found) -> bool {
    entry
        .state
        .current()
        .is_none_or(|held| version::compare(&found.release.version, &held.version).is_gt())
}

async fn look(state: &AppState, entry: &Entry) -> Result<Look, String> {
    let fetcher = state.engine().fetcher().map_err(|e| e.to_string())?;
    // A release seen but not held (its download failed) is looked for again in full.
    let pending = entry
        .state
        .latest
        .as_ref()
        .is_some_and(|l| entry.state.current().is_none_or(|h| h.version != l.version));
    let known = if pending {
        Validators::default()
    } else {
        Validators {
            etag: entry.state.etag.clone(),
            last_modified: entry.state.last_modified.clone(),
        }
    };
    match upstream::fetch_if_changed(&fetcher, true, &entry.track.url, &known)
        .await
        .map_err(|e| e.to_string())?
    {
        Fetched::NotModified => Ok(Look::Unchanged),
        Fetched::Body {
            body,
            final_url,
            validators,
        } => {
            let text = String::from_utf8_lossy(&body);
            let found = discover::latest(
                &text,
                &final_url,
                entry.track.pattern.as_deref(),
                entry.track.feed,
            )
            .map_err(|e| e.to_string())?;
            Ok(Look::Latest { found, validators })
        }
    }
}

fn save(state: &AppState, entry: &Entry) {
    if let Err(e) = super::save(&state.config().state_dir, entry) {
        tracing::warn!("{e}");
    }
}

/// In the task: download `found` when it is newer than what is held, then retention.
async fn apply(
    state: &AppState,
    mut entry: Entry,
    found: Found,
    validators: Validators,
    upid: &Upid,
    log: &TaskLog,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let release = found.release.clone();
    log.line(&format!(
        "newest release: {} ({})",
        release.version, release.name
    ));
    entry.state.latest = Some(release.clone());
    entry.state.last_poll = Some(now());
    entry.state.task = Some(upid.to_string());
    let result = if is_newer(&entry, &found) {
        fetch(state, &mut entry, found, upid, log, cancel).await
    } else {
        log.line("already held");
        Ok(())
    };
    match &result {
        Ok(()) => {
            entry.state.error = None;
            // Validators are kept only once the release they announce is dealt with.
            entry.state.etag = validators.etag;
            entry.state.last_modified = validators.last_modified;
        }
        Err(e) => entry.state.error = Some(e.clone()),
    }
    let retained = match (&result, entry.track.keep) {
        (Ok(()), Some(keep)) => retain(state, &mut entry, keep as usize, log),
        _ => Ok(()),
    };
    save(state, &entry);
    result.and(retained)
}

async fn fetch(
    state: &AppState,
    entry: &mut Entry,
    found: Found,
    upid: &Upid,
    log: &TaskLog,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let track = &entry.track;
    let cfg = state.storage_config().map_err(|e| e.message)?;
    let storage = cfg.storage(&track.storage).map_err(|e| e.to_string())?;
    storage
        .check_enabled(&state.config().node)
        .map_err(|e| e.to_string())?;
    storage.activate().map_err(|e| e.to_string())?;
    let volname = format!("{}/{}", track.content, found.release.name);
    let volid = format!("{}:{volname}", track.storage);
    let dest = storage.volume_path(&volname).map_err(|e| e.to_string())?;
    let held = Held {
        version: found.release.version.clone(),
        volid: volid.clone(),
    };
    if dest.exists() {
        log.line(&format!("{volid} is there already"));
        hold(entry, held);
        return Ok(());
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("unable to create directory '{}': {e}", dir.display()))?;
    }
    let staging_dir = storage
        .staging_dir(&track.content)
        .ok_or_else(|| crate::storage::StorageError::NoPath.to_string())?;
    let import_ext = (track.content == "import")
        .then(|| dest.extension().and_then(|e| e.to_str()))
        .flatten();
    let mut plan = DownloadPlan {
        check: ContentCheck::for_download(&track.content, import_ext),
        retry: state.config().retry.clone(),
        ..DownloadPlan::new(
            found.release.url.clone(),
            dest.clone(),
            staging_dir,
            &track.content,
            &state.config().node,
            "root@pam".into(),
        )
    };
    let engine = state.engine().clone();
    match found.checksum {
        Some(sum) => {
            if let Some(k) = &track.keyring {
                return Err(format!(
                    "keyring '{k}' was given, but the feed carries no signature to check"
                ));
            }
            plan.checksum = Some(sum);
            plan.checksum_required = true;
        }
        None if found.from_index => {
            if let Some(k) = &track.keyring {
                return Err(format!(
                    "keyring '{k}' was given, but '{}' is a directory index, not a checksum file",
                    track.url
                ));
            }
            log.line("no checksum file: the image is recorded by its sha256 only");
        }
        None => {
            let signature = match &track.keyring {
                Some(name) => Some(upstream::SignatureCheck {
                    url: track.signature_url.clone(),
                    keyring: upstream::openpgp::Keyring::load(&state.config().keyrings, name)
                        .map_err(|e| e.to_string())?,
                }),
                None => None,
            };
            upstream::SumsRequest {
                url: track.url.clone(),
                signature,
                target: found.release.name.clone(),
                min: state.config().min_checksum_algorithm,
            }
            .apply(&engine, &mut plan, log)
            .await?;
        }
    }
    engine
        .run(&plan, &upid.to_string(), log as &dyn LogSink, cancel)
        .await
        .map_err(|e| e.to_string())?;
    entry.state.last_change = Some(now());
    hold(entry, held);
    Ok(())
}

/// Adds a release to those held, newest first.
fn hold(entry: &mut Entry, held: Held) {
    let list = &mut entry.state.held;
    list.retain(|h| h.volid != held.volid);
    list.push(held);
    list.sort_by(|a, b| version::compare(&b.version, &a.version));
}

/// Keeps the newest `keep` releases; an older one goes unless something holds it.
fn retain(state: &AppState, entry: &mut Entry, keep: usize, log: &TaskLog) -> Result<(), String> {
    let cfg = state.storage_config().map_err(|e| e.message)?;
    let pve_dir = state.config().pve_dir.as_deref();
    let boot = crate::boot::book::load(&crate::boot::book::path(state.config()))
        .map_err(|e| e.to_string())?;
    let mut still = Vec::new();
    let mut failed = None;
    for (i, held) in std::mem::take(&mut entry.state.held)
        .into_iter()
        .enumerate()
    {
        if i < keep {
            still.push(held);
            continue;
        }
        let path = crate::pve::ids::parse_volume_id(&held.volid)
            .and_then(|(sid, volname)| cfg.storage(&sid).ok()?.volume_path(&volname).ok());
        let Some(path) = path.filter(|p| p.exists()) else {
            log.line(&format!("{} is gone already", held.volid));
            continue;
        };
        if let Some(why) = crate::library::retention::held_by(&held.volid, &path, pve_dir, &boot) {
            log.line(&format!("keeping {} ({why})", held.volid));
            still.push(held);
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                if let Err(e) = crate::catalog::store::remove(&path) {
                    tracing::warn!("{}: {e}", path.display());
                }
                log.line(&format!(
                    "removed {} (older than the newest {keep})",
                    held.volid
                ));
            }
            Err(e) => {
                let msg = format!("unable to remove '{}': {e}", path.display());
                log.line(&msg);
                failed = Some(msg);
                still.push(held);
            }
        }
    }
    entry.state.held = still;
    failed.map_or(Ok(()), Err)
}
