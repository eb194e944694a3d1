//! Who writes a target: one task among this daemon's (the others join the same request or wait
//! for a different one), then one daemon among those that share the storage (a lock file in
//! its staging directory), then a transfer slot (`max-transfers`). A target that is already
//! there is met, not written, unless it is to be replaced.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::inflight::{Entry, LeadGuard, Outcome, RequestKey};
use super::writer_lock::{Attempt, WriterLock};
use super::{DownloadError, DownloadPlan, Engine, LogSink};
use crate::catalog::{self, Lookup};

/// What a task asks to become the one writer of.
pub(super) struct Want<'a> {
    pub dest: &'a Path,
    pub staging_dir: &'a Path,
    pub key: RequestKey,
    /// The file there is to be replaced, not met.
    pub replace: bool,
    /// The line that ends a task whose work another did.
    pub finished: String,
    /// Whether the file another daemon wrote meanwhile is what this request asks for.
    pub same_request: &'a (dyn Fn() -> bool + Sync),
}

/// The right to write a target: the lead among this daemon's tasks, a transfer slot, and the
/// lock among daemons.
pub(super) struct Claim {
    pub lead: LeadGuard,
    slot: tokio::sync::OwnedSemaphorePermit,
    _lock: Option<WriterLock>,
}

impl Claim {
    /// Ends the transfer: the slot and the lock are free, whoever joined learns how it ended.
    pub(super) fn release(self, result: &Result<(), DownloadError>) {
        drop(self.slot);
        self.lead.finish(match result {
            Ok(()) => Outcome::Ok,
            Err(DownloadError::Interrupted) => Outcome::Abandoned,
            Err(e) => Outcome::Failed(e.to_string()),
        });
    }
}

/// The file at `plan.dest` came from the same request: its record names the same URL and
/// decompression (a shared storage's other writer did this request's work).
pub(super) fn same_source(plan: &DownloadPlan) -> bool {
    matches!(
        catalog::store::load(&plan.dest),
        Ok(Lookup::Fresh(r)) if r.source.url.as_deref() == Some(plan.url.as_str())
            && r.source.compression == plan.compression.clone().filter(|c| !c.is_empty())
    )
}

impl Engine {
    /// Makes this task the one writer of `want.dest`, among this daemon's tasks and then among
    /// the daemons that share its storage, and gives it a transfer slot. `None` when the work
    /// is done without it: it joined a running transfer of the same request, or another daemon
    /// wrote what this request asks for while this one waited.
    pub(super) async fn claim(
        &self,
        want: Want<'_>,
        task: &str,
        log: &dyn LogSink,
        cancel: &CancellationToken,
    ) -> Result<Option<Claim>, DownloadError> {
        let lead = loop {
            let (done, joined) = match self.inflight.enter(want.dest, &want.key, task) {
                Entry::Lead(guard) => break guard,
                Entry::Join { task, done } => {
                    log.line(&format!(
                        "task {task} is downloading the same file; joining it"
                    ));
                    (done, true)
                }
                Entry::Wait { task, done } => {
                    log.line(&format!(
                        "waiting for task {task}, which is downloading to the same file"
                    ));
                    (done, false)
                }
            };
            let outcome = tokio::select! {
                o = done.outcome() => o,
                _ = cancel.cancelled() => return Err(DownloadError::Interrupted),
            };
            match (joined, outcome) {
                (true, Outcome::Ok) => {
                    log.line(&want.finished);
                    return Ok(None);
                }
                (true, Outcome::Failed(text)) => return Err(DownloadError::Joined(text)),
                // A stopped leader says nothing about this request; a different request goes
                // on once the target is free and meets whatever is there now.
                _ => continue,
            }
        };
        // A target that is there is met, not written (unless replaced): nothing to lock.
        if want.dest.is_file() && !want.replace {
            let slot = self.slot(log, cancel).await?;
            return Ok(Some(Claim {
                lead,
                slot,
                _lock: None,
            }));
        }
        let lock_path = WriterLock::path(want.staging_dir, want.dest);
        let mut waited = false;
        let lock = loop {
            let (path, holder) = (lock_path.clone(), format!("task {task}"));
            let attempt =
                tokio::task::spawn_blocking(move || WriterLock::try_acquire(&path, &holder))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
                    .map_err(|source| DownloadError::CreateTemp {
                        path: lock_path.clone(),
                        source,
                    })?;
            match attempt {
                Attempt::Locked(lock) => break lock,
                Attempt::Held { by } => {
                    if !waited {
                        log.line(&format!(
                            "waiting for {by}, which is writing the same file on a storage this node shares"
                        ));
                        waited = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        () = cancel.cancelled() => return Err(DownloadError::Interrupted),
                    }
                }
            }
        };
        // Written by another daemon since this task looked (whether or not it had to wait).
        if !want.replace && want.dest.is_file() && (want.same_request)() {
            log.line(&want.finished);
            lead.finish(Outcome::Ok);
            return Ok(None);
        }
        let slot = self.slot(log, cancel).await?;
        Ok(Some(Claim {
            lead,
            slot,
            _lock: Some(lock),
        }))
    }

    async fn slot(
        &self,
        log: &dyn LogSink,
        cancel: &CancellationToken,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, DownloadError> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        log.line(&format!(
            "waiting for a free transfer slot ({} transfers running, max-transfers)",
            self.limits.max_transfers
        ));
        tokio::select! {
            s = self.slots.clone().acquire_owned() => s.map_err(|_| DownloadError::Interrupted),
            _ = cancel.cancelled() => Err(DownloadError::Interrupted),
        }
    }
}
