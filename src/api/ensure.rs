//! `POST /cluster/isolib/ensure` (isolib): a volume present and verified on the nodes named,
//! each copied from nodes that hold it (peer-copy.rs), never fetched from its origin again. One
//! task on the node that was asked reports every node's outcome. download-url's `nodes` ends
//! the same way once its one fetch from the origin is in.

use futures_util::future::join_all;
use serde_json::Value;

use super::router::{Access, ApiMethod, Ctx, Params, Reply, Returns};
use super::types::{self, required};
use super::{ApiError, from_params};
use crate::cluster::forward;
use crate::download::LogSink;
use crate::state::AppState;
use crate::tasks::TaskLog;

params!(PARAMS => Args {
    "volume" volume: String = required("The volume ID.", &types::STRING),
    "nodes" nodes: String = required(NODES_TEXT, &types::NODE_LIST),
});

pub const NODES_TEXT: &str =
    "The nodes that must hold the volume (a list), or 'all' for every node of the cluster.";

pub static METHOD: ApiMethod = ApiMethod::post("/cluster/isolib/ensure", |ctx, p| {
    Box::pin(ensure(ctx, p))
})
.describe(
    "Make a volume present and verified on nodes, copied from the nodes that hold it (isolib). Needs Datastore.AllocateTemplate on the volume's storage.",
)
.params(&PARAMS)
.returns(Returns::String("UPID"))
.access(Access::Authenticated);

async fn ensure(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: Args = from_params(params)?;
    let (storage, volname) = super::volume::real_volume_id(None, &args.volume)?;
    let path = format!("/storage/{storage}");
    if !ctx.has(&path, &["Datastore.AllocateTemplate"], false) {
        return Err(ApiError::permission(Some(&format!(
            "{path}, Datastore.AllocateTemplate"
        ))));
    }
    let targets = nodes(&ctx.state, &args.nodes)?;
    let volid = format!("{storage}:{volname}");
    let rows = super::cluster_inventory::rows(&ctx).await?;
    let row = rows
        .iter()
        .find(|r| r.volid == volid)
        .ok_or_else(|| ApiError::param("volume", format!("no node holds '{volid}'")))?;
    let sha256 = row
        .sha256
        .clone()
        .ok_or_else(|| ApiError::param("volume", format!("no node has a record of '{volid}'")))?;
    // This node first: the nearest source for itself and the one the caller chose.
    let mut holders: Vec<String> = row.holders().map(str::to_owned).collect();
    holders.sort_by_key(|n| *n != ctx.node());
    if holders.is_empty() {
        return Err(ApiError::param(
            "volume",
            format!("no node holds '{volid}' intact"),
        ));
    }
    let spread = Spread {
        state: ctx.state.clone(),
        credentials: ctx.peer_credentials()?,
        storage,
        volname,
        sha256,
        holders,
        targets,
        user: ctx.task_user()?,
    };
    let user = spread.user.clone();
    let upid =
        ctx.state
            .tasks()
            .spawn(
                "isolibensure",
                &super::peer_copy::task_id(&volid),
                &user,
                move |upid, log, cancel| async move {
                    spread.run(&upid.to_string(), &log, &cancel).await
                },
            )
            .map_err(ApiError::server)?;
    Ok(Reply::Data(Value::String(upid.to_string())))
}

/// The nodes a `nodes` value names: `all`, or a list of this node (also as `localhost`, as in
/// PVE's paths) and its peers.
pub(super) fn nodes(state: &AppState, text: &str) -> Result<Vec<String>, ApiError> {
    let config = state.config();
    let peers = config
        .peer_names()
        .map_err(|e| ApiError::param("nodes", e.to_string()))?;
    if text == "all" {
        return Ok(std::iter::once(config.node.clone()).chain(peers).collect());
    }
    let mut out: Vec<String> = Vec::new();
    for name in crate::pve::perl::split_list(text) {
        let name = if name == "localhost" {
            config.node.as_str()
        } else {
            name
        };
        if name != config.node && !peers.iter().any(|p| p == name) {
            return Err(ApiError::param(
                "nodes",
                format!("no such cluster node '{name}'"),
            ));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// One volume made present on `targets` from `holders`.
pub(super) struct Spread {
    pub state: AppState,
    /// The caller's, for the requests to the other nodes: each checks them itself.
    pub credentials: Vec<(String, String)>,
    pub storage: String,
    pub volname: String,
    pub sha256: String,
    /// The nodes that hold it, the preferred source first.
    pub holders: Vec<String>,
    pub targets: Vec<String>,
    pub user: String,
}

impl Spread {
    pub async fn run(
        &self,
        upid: &str,
        log: &TaskLog,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<(), String> {
        let volid = format!("{}:{}", self.storage, self.volname);
        let shared = self
            .state
            .storage_config()
            .ok()
            .and_then(|c| c.get(&self.storage).map(|s| s.shared))
            .unwrap_or(false);
        if shared {
            log.line(&format!(
                "storage '{}' is shared: every node sees the same '{volid}'",
                self.storage
            ));
            return Ok(());
        }
        let wanted: Vec<&String> = self
            .targets
            .iter()
            .filter(|t| !self.holders.contains(t))
            .collect();
        for t in self.targets.iter().filter(|t| self.holders.contains(t)) {
            log.line(&format!("node '{t}': holds '{volid}' already"));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // A chain: each node copies from the one before it, which passes on what it receives
        // (download/growing.rs), and falls back to the holders; so the nodes fill at the speed
        // of one transfer. The other nodes' copies start one after another in that order, this
        // node's own (if it is one) last.
        let local = &self.state.config().node;
        let mut chain: Vec<&String> = wanted.iter().copied().filter(|t| *t != local).collect();
        chain.extend(wanted.iter().copied().filter(|t| *t == local));
        log.line(&format!(
            "copying '{volid}' (sha256 {}) from {} along {}",
            self.sha256,
            quoted(self.holders.iter().map(String::as_str)),
            chain
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(" -> "),
        ));
        let sources = |i: usize| -> Vec<String> {
            i.checked_sub(1)
                .map(|p| chain[p].clone())
                .into_iter()
                .chain(self.holders.iter().cloned())
                .collect()
        };
        // Nodes that see this node's very directory (the same identity) need no copy.
        let identity = match self.holders.contains(local) {
            true => self.local_identity().ok(),
            false => None,
        };
        let mut started = Vec::new();
        for (i, t) in chain.iter().enumerate() {
            started.push(if *t == local {
                Ok(None)
            } else {
                self.start_remote(t, &sources(i), identity.as_deref())
                    .await
                    .map(Some)
            });
        }
        let results = join_all(chain.iter().zip(started).enumerate().map(|(i, (t, s))| {
            let sources = sources(i);
            async move {
                match s? {
                    Some(task) => self.follow_remote(t, &task, log, cancel).await,
                    None => self.copy_here(&sources, upid, log, cancel).await,
                }
            }
        }))
        .await;
        let mut failed = Vec::new();
        for (t, r) in chain.iter().zip(results) {
            match r {
                Ok(()) => log.line(&format!("node '{t}': OK")),
                Err(e) => {
                    log.line(&format!("node '{t}': {e}"));
                    failed.push(t.as_str());
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "copy failed on {} of {} nodes ({})",
                failed.len(),
                wanted.len(),
                quoted(failed.into_iter())
            ))
        }
    }

    /// This node's own copy, in this task (its lines marked with its name).
    async fn copy_here(
        &self,
        sources: &[String],
        upid: &str,
        log: &TaskLog,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<(), String> {
        let node = &self.state.config().node;
        let copy = super::peer_copy::plan(
            &self.state,
            &self.storage,
            &self.volname,
            &self.sha256,
            sources,
            None,
            &self.user,
        )
        .map_err(|e| e.to_string())?;
        self.state
            .engine()
            .copy_from_peers(&copy, upid, &Prefixed { log, node }, cancel)
            .await
            .map_err(|e| e.to_string())
    }

    fn peer(&self, node: &str) -> Result<crate::cluster::peers::Peer, String> {
        self.state
            .config()
            .peer(node)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no such cluster node '{node}'"))
    }

    fn local_identity(&self) -> Result<String, ApiError> {
        let cfg = self.state.storage_config()?;
        let storage = cfg
            .get(&self.storage)
            .ok_or_else(|| ApiError::param("storage", "No such storage."))?;
        super::peer_copy::identity_of(storage)
    }

    /// Starts `node`'s copy task; its UPID.
    async fn start_remote(
        &self,
        node: &str,
        sources: &[String],
        identity: Option<&str>,
    ) -> Result<String, String> {
        let mut form = vec![
            ("volume", format!("{}:{}", self.storage, self.volname)),
            ("sha256", self.sha256.clone()),
            ("sources", sources.join(",")),
        ];
        if let Some(id) = identity {
            form.push(("identity", id.to_owned()));
        }
        let form = serde_urlencoded::to_string(form).map_err(|e| e.to_string())?;
        let task = forward::call(
            self.peer(node)?,
            &self.credentials,
            "POST",
            &format!("/nodes/{node}/storage/{}/peer-copy", self.storage),
            Some(form),
        )
        .await?;
        Ok(task.as_str().ok_or("no task")?.to_owned())
    }

    /// Waits for `node`'s copy task `task` to end; stops it when this task is stopped.
    async fn follow_remote(
        &self,
        node: &str,
        task: &str,
        log: &TaskLog,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<(), String> {
        log.line(&format!("node '{node}': task {task}"));
        let status_path = format!("/nodes/{node}/tasks/{task}/status");
        let patience = self.state.config().retry.stall_timeout * 2;
        let mut answered = std::time::Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                () = cancel.cancelled() => {
                    let stop = format!("/nodes/{node}/tasks/{task}");
                    let _ = forward::call(self.peer(node)?, &self.credentials, "DELETE", &stop, None).await;
                    return Err("interrupted".into());
                }
            }
            // A node that does not answer for a while may come back; its task runs on.
            let status = match forward::call(
                self.peer(node)?,
                &self.credentials,
                "GET",
                &status_path,
                None,
            )
            .await
            {
                Ok(status) => status,
                Err(e) if answered.elapsed() > patience => {
                    return Err(format!("no answer about task {task}: {e}"));
                }
                Err(_) => continue,
            };
            answered = std::time::Instant::now();
            if status["status"] == "stopped" {
                return match status["exitstatus"].as_str() {
                    Some("OK") => Ok(()),
                    other => Err(other.unwrap_or("unknown end").to_owned()),
                };
            }
        }
    }
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A copy's lines in the ensure task, each naming the node it runs for.
struct Prefixed<'a> {
    log: &'a TaskLog,
    node: &'a str,
}

impl LogSink for Prefixed<'_> {
    fn line(&self, text: &str) {
        self.log.line(&format!("node '{}': {text}", self.node));
    }
}
