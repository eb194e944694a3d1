//! `/nodes/{node}/storage/{storage}/content`: the listing (pve-storage
//! `API2/Storage/Content.pm` index, spec/pve-api.md §7.3); one volume is `volume.rs`.

use serde_json::Value;

use super::router::{ApiMethod, Ctx, Params, Reply, Returns, Router, STORAGE_AUDIT};
use super::storage::enabled_storage;
use super::types::{self, NODE_PROP, STORAGE_PROP, optional};
use super::{ApiError, from_params};

params!(LIST_PARAMS => ListArgs {
    "node" node: String = NODE_PROP,
    "storage" storage: String = STORAGE_PROP,
    "content" content: Option<String> =
        optional("Only list content of this type.", &types::CONTENT_TYPE),
    "vmid" vmid: Option<i64> = optional("Only list images for this VM", &types::INTEGER),
});

pub static LIST: ApiMethod = ApiMethod::get("/nodes/{node}/storage/{storage}/content", |ctx, p| {
    Box::pin(list(ctx, p))
})
.describe("List storage content.")
.params(&LIST_PARAMS)
.returns(Returns::ArrayOf(&[
    "volid",
    "format",
    "size",
    "ctime",
    "content",
    "sha256",
    "os",
    "verification",
]))
.access(STORAGE_AUDIT);

async fn list(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ListArgs = from_params(params)?;
    let cfg = ctx.state.storage_config()?;
    let storage = enabled_storage(&cfg, &args.storage, ctx.node())?;
    storage.activate()?;
    // iso, vztmpl and import volumes belong to no VM.
    if args.vmid.is_some() {
        return Ok(Reply::Data(Value::Array(Vec::new())));
    }
    let items = storage
        .list_content(args.content.as_deref())
        .map_err(ApiError::server)?;
    Ok(Reply::Data(
        serde_json::to_value(items).map_err(ApiError::server)?,
    ))
}

/// `/nodes/{node}/storage/{storage}/content`.
pub static ROUTER: Router = Router::items(&[&LIST], "volume", &super::volume::ROUTER);
