//! `/storage` and `/storage/{storage}`: the storage configuration index and one storage's
//! configuration (pve-storage `API2/Storage/Config.pm` index and read). Ansible's
//! `proxmox_storage_info` reads these.

use serde_json::Value;

use super::router::{
    ApiMethod, Ctx, Params, Reply, Returns, Router, STORAGE_ALLOCATE, STORAGE_AUDIT_PRIVS,
};
use super::types::{STORAGE_PROP, optional};
use super::{ApiError, from_params};
use crate::schema::{Schema, StringSchema};
use crate::storage::TYPE_NAMES;

static STORAGE_TYPE: Schema = Schema::String(StringSchema {
    enumeration: Some(TYPE_NAMES),
    ..StringSchema::new()
});

params!(LIST_PARAMS => ListArgs {
    "type" kind: Option<String> =
        optional("Only list storage of specific type", &STORAGE_TYPE),
});

// PVE's `user => 'all'`: each entry is filtered by the caller's privileges.
pub static LIST: ApiMethod = ApiMethod::get("/storage", |ctx, p| Box::pin(list(ctx, p)))
    .describe("Storage index.")
    .params(&LIST_PARAMS)
    .returns(Returns::ArrayOf(&["storage"]));

async fn list(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ListArgs = from_params(params)?;
    let cfg = ctx.state.storage_config()?;
    // PVE's storage_ids: sorted by ID.
    let mut storages: Vec<_> = cfg.storages.iter().collect();
    storages.sort_by(|a, b| a.id.cmp(&b.id));
    let items: Vec<Value> = storages
        .into_iter()
        .filter(|s| ctx.has(&format!("/storage/{}", s.id), STORAGE_AUDIT_PRIVS, true))
        .filter(|s| args.kind.as_ref().is_none_or(|k| *k == s.kind))
        .map(|s| s.api_config(&cfg.digest))
        .collect();
    Ok(Reply::Data(Value::Array(items)))
}

params!(READ_PARAMS => ReadArgs {
    "storage" storage: String = STORAGE_PROP,
});

pub static READ: ApiMethod = ApiMethod::get("/storage/{storage}", |ctx, p| Box::pin(read(ctx, p)))
    .describe("Read storage configuration.")
    .params(&READ_PARAMS)
    .returns(Returns::Object(&[]))
    .access(STORAGE_ALLOCATE);

async fn read(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ReadArgs = from_params(params)?;
    let cfg = ctx.state.storage_config()?;
    let storage = cfg.storage(&args.storage)?;
    Ok(Reply::Data(storage.api_config(&cfg.digest)))
}

/// `/storage`.
pub static ROUTER: Router = Router::items(&[&LIST], "storage", &ITEM_ROUTER);

static ITEM_ROUTER: Router = Router::leaf(&[&READ]);
