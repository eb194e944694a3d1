//! `/nodes/{node}/storage[/{storage}[/status]]`: the storage list, index and status
//! (pve-storage `API2/Storage/Status.pm` index/diridx/read_status, spec/pve-api.md §7.1-7.2).

use serde_json::Value;

use super::replies::StorageStatus;
use super::router::{
    ApiMethod, Ctx, Params, Reply, Returns, Router, STORAGE_AUDIT, STORAGE_AUDIT_PRIVS,
};
use super::types::{self, NODE_PROP, STORAGE_PROP, optional};
use super::{ApiError, from_params};
use crate::pve::perl::split_list;
use crate::storage::{Storage, StorageConfig};

/// The storage with `id`, enabled and available on `node` (PVE's storage_check_enabled).
pub fn enabled_storage<'a>(
    cfg: &'a StorageConfig,
    id: &str,
    node: &str,
) -> Result<&'a Storage, ApiError> {
    let storage = cfg.storage(id)?;
    storage.check_enabled(node)?;
    Ok(storage)
}

params!(LIST_PARAMS => ListArgs {
    "node" node: String = NODE_PROP,
    "storage" storage: Option<String> =
        optional("Only list status for the specified storage.", &types::STORAGE_ID),
    "content" content: Option<String> =
        optional("Only list stores which support this content type.", &types::STRING),
    "enabled" enabled: Option<bool> =
        optional("Only list stores which are enabled.", &types::BOOLEAN),
    "format" format: Option<bool> =
        optional("Include information about formats.", &types::BOOLEAN),
});

pub static LIST: ApiMethod =
    ApiMethod::get("/nodes/{node}/storage", |ctx, p| Box::pin(list(ctx, p)))
        .describe("Get status for all datastores.")
        .params(&LIST_PARAMS)
        .returns(Returns::ArrayOf(&[
            "storage",
            "type",
            "content",
            "enabled",
            "active",
            "shared",
            "total",
            "used",
            "avail",
            "used_fraction",
        ]));

fn status_item(s: &Storage, with_id: bool) -> Value {
    let enabled = !s.disabled;
    // A disabled or inactive storage reports zeros, as PVE does.
    let st = enabled.then(|| s.status()).filter(|st| st.active);
    let active = st.is_some();
    let (total, used, avail) = st.map_or((0, 0, 0), |st| (st.total, st.used, st.avail));
    let item = StorageStatus {
        storage: with_id.then(|| s.id.clone()),
        kind: s.kind.clone(),
        content: s.content.iter().cloned().collect::<Vec<_>>().join(","),
        enabled,
        active,
        shared: s.shared,
        total,
        used,
        avail,
        used_fraction: (with_id && total > 0).then(|| used as f64 / total as f64),
    };
    serde_json::to_value(item).unwrap_or_default()
}

async fn list(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ListArgs = from_params(params)?;
    let cfg = ctx.state.storage_config()?;
    let wanted: Option<Vec<&str>> = args.content.as_deref().map(split_list);
    let items: Vec<Value> = cfg
        .storages
        .iter()
        .filter(|s| s.nodes.as_ref().is_none_or(|n| n.contains(ctx.node())))
        .filter(|s| args.storage.as_ref().is_none_or(|id| *id == s.id))
        .filter(|s| ctx.has(&format!("/storage/{}", s.id), STORAGE_AUDIT_PRIVS, true))
        .filter(|s| !(args.enabled == Some(true) && s.disabled))
        .filter(|s| {
            wanted
                .as_ref()
                .is_none_or(|w| !s.disabled && w.iter().any(|c| s.content.contains(*c)))
        })
        .map(|s| status_item(s, true))
        .collect();
    if args.storage.is_some() && items.is_empty() {
        return Err(ApiError::param("storage", "No such storage."));
    }
    Ok(Reply::Data(Value::Array(items)))
}

params!(ITEM_PARAMS => ItemArgs {
    "node" node: String = NODE_PROP,
    "storage" storage: String = STORAGE_PROP,
});

pub static INDEX: ApiMethod = ApiMethod::get("/nodes/{node}/storage/{storage}", |_, _| {
    Box::pin(async { Ok(super::ROUTER.index(INDEX.path, "subdir")) })
})
.describe("Directory index.")
.params(&ITEM_PARAMS)
.returns(Returns::ArrayOf(&["subdir"]))
.access(STORAGE_AUDIT);

pub static STATUS: ApiMethod =
    ApiMethod::get("/nodes/{node}/storage/{storage}/status", |ctx, p| {
        Box::pin(status(ctx, p))
    })
    .describe("Read storage status.")
    .params(&ITEM_PARAMS)
    .returns(Returns::Object(&[
        "type", "content", "enabled", "active", "shared", "total", "used", "avail",
    ]))
    .access(STORAGE_AUDIT);

async fn status(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ItemArgs = from_params(params)?;
    let cfg = ctx.state.storage_config()?;
    let s = cfg
        .get(&args.storage)
        .filter(|s| s.nodes.as_ref().is_none_or(|n| n.contains(ctx.node())))
        .ok_or_else(|| ApiError::param("storage", "No such storage."))?;
    Ok(Reply::Data(status_item(s, false)))
}

/// `/nodes/{node}/storage`.
pub static ROUTER: Router = Router::items(&[&LIST], "storage", &ITEM_ROUTER);

static ITEM_ROUTER: Router = Router {
    methods: &[&INDEX],
    subdirs: &[
        ("content", &super::content::ROUTER),
        ("download-url", &super::download_url::ROUTER),
        ("peer-copy", &super::peer_copy::ROUTER),
        ("status", &STATUS_ROUTER),
        ("upload", &super::upload::ROUTER),
        ("verify", &super::verify::ROUTER),
    ],
    ..Router::new()
};

static STATUS_ROUTER: Router = Router::leaf(&[&STATUS]);
