//! `POST /nodes/{node}/storage/{storage}/peer-copy` (isolib): a task on this node that copies a
//! volume from other nodes holding it, checked against the sha256 they recorded
//! (download/peer_copy.rs). `ensure` and download-url's `nodes` ask each node for it.

use serde_json::Value;

use super::router::{Access, ApiMethod, Ctx, Params, Reply, Returns, Router};
use super::storage::enabled_storage;
use super::types::{self, NODE_PROP, STORAGE_PROP, optional, required};
use super::{ApiError, from_params};
use crate::download::{PeerCopy, new_tag};
use crate::state::AppState;
use crate::storage::{StorageError, parse_volname};

params!(PARAMS => Args {
    "node" node: String = NODE_PROP,
    "storage" storage: String = STORAGE_PROP,
    "volume" volume: String = required("The volume: a volume ID or a name on this storage.", &types::STRING),
    "sha256" sha256: String = required("The sha256 the volume's bytes must have.", &types::SHA256),
    "sources" sources: String = required("The nodes to copy from, the preferred first.", &types::NODE_LIST),
    "identity" identity: Option<String> = optional(
        "The identity of the sources' storage: when this node's storage has it too, it is the same directory and nothing is copied.",
        &types::STRING
    ),
});

pub static METHOD: ApiMethod =
    ApiMethod::post("/nodes/{node}/storage/{storage}/peer-copy", |ctx, p| {
        Box::pin(peer_copy(ctx, p))
    })
    .describe("Copy a volume from other nodes that hold it, checked against its sha256 (isolib).")
    .params(&PARAMS)
    .returns(Returns::String("UPID"))
    .access(COPY_ACCESS);

/// A copy writes a volume, as download-url does.
pub const COPY_ACCESS: Access = Access::all("/storage/{storage}", &["Datastore.AllocateTemplate"]);

async fn peer_copy(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: Args = from_params(params)?;
    let (_, volname) = super::volume::real_volume_id(Some(&args.storage), &args.volume)?;
    let sources: Vec<String> = crate::pve::perl::split_list(&args.sources)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let copy = plan(
        &ctx.state,
        &args.storage,
        &volname,
        &args.sha256,
        &sources,
        args.identity.as_deref(),
        &ctx.task_user()?,
    )?;
    let upid = spawn(&ctx.state, copy, &ctx.task_user()?)?;
    Ok(Reply::Data(Value::String(upid)))
}

/// Starts the task that runs `copy`.
pub(super) fn spawn(state: &AppState, copy: PeerCopy, user: &str) -> Result<String, ApiError> {
    let engine = state.engine().clone();
    let id = task_id(&copy.volid);
    let upid = state
        .tasks()
        .spawn(
            "isolibcopy",
            &id,
            user,
            move |upid, log, cancel| async move {
                engine
                    .copy_from_peers(&copy, &upid.to_string(), &log, &cancel)
                    .await
                    .map_err(|e| e.to_string())
            },
        )
        .map_err(ApiError::server)?;
    Ok(upid.to_string())
}

/// A task's id for a volume: its file name, as download-url's (a '/' would cut the UPID's path).
pub(super) fn task_id(volid: &str) -> String {
    let name = volid.rsplit(['/', ':']).next().unwrap_or(volid);
    super::download_url::encode_text(name)
}

/// The copy of `storage:volname` to this node from `sources` (this node itself left out),
/// whose storage has `identity`.
pub(super) fn plan(
    state: &AppState,
    storage: &str,
    volname: &str,
    sha256: &str,
    sources: &[String],
    identity: Option<&str>,
    user: &str,
) -> Result<PeerCopy, ApiError> {
    let config = state.config();
    let cfg = state.storage_config()?;
    let storage = enabled_storage(&cfg, storage, &config.node)?;
    let vol = parse_volname(volname)?;
    storage.activate()?;
    let dest = storage.volume_path(volname)?;
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            ApiError::server(format!(
                "unable to create directory '{}': {e}",
                dir.display()
            ))
        })?;
    }
    let peers = sources
        .iter()
        .filter(|n| **n != config.node)
        .map(|name| match config.peer(name) {
            Ok(Some(peer)) => Ok(peer),
            Ok(None) => Err(ApiError::param(
                "sources",
                format!("no such cluster node '{name}'"),
            )),
            Err(e) => Err(ApiError::param("sources", e.to_string())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let same_storage = match identity {
        Some(theirs) => identity_of(storage)? == theirs,
        None => false,
    };
    Ok(PeerCopy {
        same_storage,
        volid: format!("{}:{volname}", storage.id),
        path: format!("/files/{}/{volname}", storage.id),
        dest,
        staging_dir: storage
            .staging_dir(&vol.vtype)
            .ok_or(StorageError::NoPath)?,
        content: vol.vtype,
        sha256: sha256.to_owned(),
        sources: peers,
        credentials: state
            .tickets()
            .node_credentials()
            .map_err(ApiError::server)?,
        task_tag: new_tag(&config.node),
        user: user.to_owned(),
        stall: config.retry.stall_timeout,
        rounds: config.retry.retries + 1,
        backoff: config.retry.backoff,
    })
}

/// The identity of `storage`'s directory (made on first use).
pub(super) fn identity_of(storage: &crate::storage::Storage) -> Result<String, ApiError> {
    let root = storage.path.as_ref().ok_or(StorageError::NoPath)?;
    crate::storage::identity::of(root).map_err(|e| {
        ApiError::server(format!(
            "unable to read the identity of '{}': {e}",
            root.display()
        ))
    })
}

/// `/nodes/{node}/storage/{storage}/peer-copy`.
pub static ROUTER: Router = Router::leaf(&[&METHOD]);
