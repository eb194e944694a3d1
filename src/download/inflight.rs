//! One transfer per target (architecture invariant 5). The first request for a target leads;
//! an identical request arriving meanwhile (same URL and decompression, no conflicting
//! checksum) joins it and shares its outcome, so a Packer build that re-sends its request after
//! the client's 60 s timeout costs nothing (clients-and-plugin.md §E.1). A different request for
//! the same target waits, then goes on: it meets the finished file and gets PVE's existing-file
//! outcome. PVE itself has no lock here and lets the last rename win.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::Checksum;

/// What makes two requests for one target the same transfer.
#[derive(Clone, Debug)]
pub struct RequestKey {
    pub url: String,
    pub compression: Option<String>,
    pub checksum: Option<Checksum>,
    pub verify_certificates: bool,
}

impl RequestKey {
    /// `self` (a newcomer) can share `running`'s outcome: same source and decoding, any
    /// checksum it asks for is the one the running transfer verifies, and bytes fetched without
    /// checking the origin's certificate reach only requests that allow that or check a digest.
    fn joins(&self, running: &RequestKey) -> bool {
        self.url == running.url
            && self.compression == running.compression
            && Needs {
                verified: self.verify_certificates,
                checksum: self.checksum.is_some(),
            }
            .met_by(running.verify_certificates)
            && match (&self.checksum, &running.checksum) {
                (None, _) => true,
                (Some(mine), Some(theirs)) => {
                    mine.algorithm == theirs.algorithm && mine.matches(&theirs.expected)
                }
                (Some(_), None) => false,
            }
    }
}

/// What a request asks of bytes it did not fetch itself.
pub struct Needs {
    /// The origin's certificate was to be checked.
    pub verified: bool,
    /// A checksum will check the bytes, however they came.
    pub checksum: bool,
}

impl Needs {
    /// Bytes fetched with (`fetched_verified`) or without checking the certificate will do.
    pub fn met_by(&self, fetched_verified: bool) -> bool {
        fetched_verified || !self.verified || self.checksum
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Ok,
    Failed(String),
    /// The leader was stopped or dropped: its outcome says nothing about the waiters' requests.
    Abandoned,
}

struct Running {
    key: RequestKey,
    task: String,
    done: watch::Receiver<Option<Outcome>>,
    /// The tag of the staging files this transfer writes, once it has chosen them.
    staging_tag: Option<String>,
}

#[derive(Clone, Default)]
pub struct Inflight(Arc<Mutex<HashMap<PathBuf, Running>>>);

pub enum Entry {
    /// This request does the transfer; finish the guard with its outcome.
    Lead(LeadGuard),
    /// An identical transfer runs in `task`: wait for it and share its outcome.
    Join { task: String, done: Waiter },
    /// Another transfer for this target runs in `task`: wait, then enter again.
    Wait { task: String, done: Waiter },
}

pub struct Waiter(watch::Receiver<Option<Outcome>>);

impl Waiter {
    pub async fn outcome(mut self) -> Outcome {
        match self.0.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Outcome::Abandoned),
            Err(_) => Outcome::Abandoned,
        }
    }
}

pub struct LeadGuard {
    map: Inflight,
    target: PathBuf,
    tx: watch::Sender<Option<Outcome>>,
    finished: bool,
}

impl LeadGuard {
    /// Marks the staging files tagged `tag` as this transfer's, before any of them is
    /// written, so the collector of partial downloads keeps its hands off them.
    pub fn own_staging(&self, tag: &str) {
        if let Some(r) = self.map.lock().get_mut(&self.target) {
            r.staging_tag = Some(tag.to_string());
        }
    }

    pub fn finish(mut self, outcome: Outcome) {
        self.release(outcome);
    }

    fn release(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.map.lock().remove(&self.target);
        let _ = self.tx.send(Some(outcome));
    }
}

impl Drop for LeadGuard {
    fn drop(&mut self) {
        self.release(Outcome::Abandoned);
    }
}

impl Inflight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Running>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The source of the transfer to `target` that is running, if any.
    pub fn running(&self, target: &Path) -> Option<String> {
        self.lock().get(target).map(|r| r.key.url.clone())
    }

    pub fn enter(&self, target: &Path, key: &RequestKey, task: &str) -> Entry {
        let mut map = self.lock();
        if let Some(r) = map.get(target) {
            let done = Waiter(r.done.clone());
            let task = r.task.clone();
            return if key.joins(&r.key) {
                Entry::Join { task, done }
            } else {
                Entry::Wait { task, done }
            };
        }
        let (tx, rx) = watch::channel(None);
        map.insert(
            target.to_path_buf(),
            Running {
                key: key.clone(),
                task: task.to_string(),
                done: rx,
                staging_tag: None,
            },
        );
        Entry::Lead(LeadGuard {
            map: self.clone(),
            target: target.to_path_buf(),
            tx,
            finished: false,
        })
    }
}

impl Inflight {
    /// Runs `f` unless a running transfer owns `target` or the staging files tagged `tag`.
    /// The map stays locked while `f` runs, so no transfer can take those over meanwhile.
    pub fn unless_owned<R>(
        &self,
        target: Option<&Path>,
        tag: &str,
        f: impl FnOnce() -> R,
    ) -> Option<R> {
        let map = self.lock();
        let owned = target.is_some_and(|t| map.contains_key(t))
            || map.values().any(|r| r.staging_tag.as_deref() == Some(tag));
        (!owned).then(f)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Algorithm;
    use super::*;

    fn key(url: &str, sum: Option<&str>) -> RequestKey {
        RequestKey {
            url: url.into(),
            compression: None,
            checksum: sum.map(|s| Checksum {
                algorithm: Algorithm::Sha256,
                expected: s.into(),
            }),
            verify_certificates: true,
        }
    }

    #[test]
    fn join_rules() {
        let unverified = |k: RequestKey| RequestKey {
            verify_certificates: false,
            ..k
        };
        assert!(unverified(key("u", None)).joins(&key("u", None)));
        assert!(!key("u", None).joins(&unverified(key("u", None))));
        assert!(key("u", Some("ab")).joins(&unverified(key("u", Some("ab")))));
        assert!(key("u", None).joins(&key("u", Some("ab"))));
        assert!(key("u", Some("AB")).joins(&key("u", Some("ab"))));
        assert!(!key("u", Some("ab")).joins(&key("u", Some("cd"))));
        assert!(!key("u", Some("ab")).joins(&key("u", None)));
        assert!(!key("v", None).joins(&key("u", None)));
    }

    #[tokio::test]
    async fn lead_join_wait_and_release() {
        let f = Inflight::default();
        let t = Path::new("/x/a.iso");
        let Entry::Lead(lead) = f.enter(t, &key("u", Some("ab")), "T1") else {
            panic!("first request leads");
        };
        let Entry::Join { task, done: joined } = f.enter(t, &key("u", None), "T2") else {
            panic!("identical request joins");
        };
        assert_eq!(task, "T1");
        let Entry::Wait { done: waited, .. } = f.enter(t, &key("other", None), "T3") else {
            panic!("different request waits");
        };
        lead.finish(Outcome::Failed("boom".into()));
        assert_eq!(joined.outcome().await, Outcome::Failed("boom".into()));
        assert_eq!(waited.outcome().await, Outcome::Failed("boom".into()));
        assert!(matches!(f.enter(t, &key("u", None), "T4"), Entry::Lead(_)));
    }

    #[tokio::test]
    async fn dropped_leader_is_abandoned() {
        let f = Inflight::default();
        let t = Path::new("/x/b.iso");
        let lead = f.enter(t, &key("u", None), "T1");
        let Entry::Join { done, .. } = f.enter(t, &key("u", None), "T2") else {
            panic!("joins");
        };
        drop(lead);
        assert_eq!(done.outcome().await, Outcome::Abandoned);
    }
}
