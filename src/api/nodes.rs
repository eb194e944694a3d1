//! `/version`, `/nodes`, `/nodes/{node}`, `/nodes/{node}/version` and
//! `/nodes/{node}/query-url-metadata` (pve-manager `API2.pm`, `API2/Nodes.pm`,
//! spec/pve-api.md §3, §6.5).

use serde_json::{Value, json};

use super::router::{ApiMethod, Ctx, NETWORK_ACCESS, Params, Reply, Returns, Router};
use super::types::{self, NODE_PROP, optional, required};
use super::{ApiError, from_params};
use crate::download::metadata;
use crate::schema::Property;

/// The PVE API level isolib speaks; clients parse it as major.minor.patch.
const PVE_VERSION: &str = "9.2.0";
const PVE_RELEASE: &str = "9.2";

fn version_data() -> Value {
    json!({
        "version": PVE_VERSION,
        "release": PVE_RELEASE,
        "repoid": repoid(),
    })
}

/// PVE's repoid is a commit id and its schema says `[0-9a-fA-F]{8,64}`, which clients generated
/// from the schema enforce. Ours is the first 16 hex digits of the sha256 of this build's name
/// and version: the same for one release, different for the next.
fn repoid() -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(concat!("isolib ", env!("CARGO_PKG_VERSION")));
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

static NODE_ONLY: [Property; 1] = [NODE_PROP];

pub static VERSION: ApiMethod = ApiMethod::get("/version", |_, _| {
    Box::pin(async { Ok(Reply::Data(version_data())) })
})
.describe("API version details.")
.returns(Returns::Object(&["version", "release", "repoid"]));

pub static NODE_VERSION: ApiMethod = ApiMethod::get("/nodes/{node}/version", |_, _| {
    Box::pin(async { Ok(Reply::Data(version_data())) })
})
.describe("API version details.")
.params(&NODE_ONLY)
.returns(Returns::Object(&["version", "release", "repoid"]));

pub static LIST: ApiMethod = ApiMethod::get("/nodes", |ctx, _| {
    Box::pin(async move {
        let node = ctx.node();
        Ok(Reply::Data(json!([{
            "node": node, "status": "online", "type": "node", "id": format!("node/{node}"),
        }])))
    })
})
.describe("Cluster node index.")
.returns(Returns::ArrayOf(&["node", "status", "type", "id"]));

pub static INDEX: ApiMethod = ApiMethod::get("/nodes/{node}", |_, _| {
    Box::pin(async { Ok(super::ROUTER.index(INDEX.path, "name")) })
})
.describe("Node index.")
.params(&NODE_ONLY)
.returns(Returns::ArrayOf(&["name"]));

params!(METADATA_PARAMS => MetadataArgs {
    "node" node: String = NODE_PROP,
    "url" url: String = required("The URL to query the metadata from.", &types::URL),
    "verify-certificates" verify_certificates: bool = optional(
        "If false, no SSL/TLS certificates will be verified.",
        &types::VERIFY_CERTIFICATES
    ),
});

pub static QUERY_URL_METADATA: ApiMethod =
    ApiMethod::get("/nodes/{node}/query-url-metadata", |ctx, p| {
        Box::pin(query_url_metadata(ctx, p))
    })
    .describe("Query metadata of an URL: file size, file name and mime type.")
    .params(&METADATA_PARAMS)
    .returns(Returns::Object(&["filename", "size", "mimetype"]))
    .access(NETWORK_ACCESS);

async fn query_url_metadata(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: MetadataArgs = from_params(params)?;
    let fetcher = ctx.state.engine().fetcher().map_err(ApiError::server)?;
    let meta = metadata::query(&fetcher, &args.url, args.verify_certificates)
        .await
        .map_err(ApiError::server)?;
    Ok(Reply::Data(
        serde_json::to_value(meta).map_err(ApiError::server)?,
    ))
}
/// `/version`.
pub static VERSION_ROUTER: Router = Router::leaf(&[&VERSION]);

/// `/nodes`.
pub static ROUTER: Router = Router::items(&[&LIST], "node", &NODE_ROUTER);

static NODE_ROUTER: Router = Router {
    methods: &[&INDEX],
    subdirs: &[
        ("aplinfo", &super::aplinfo::ROUTER),
        ("inventory", &super::inventory::ROUTER),
        ("query-url-metadata", &METADATA_ROUTER),
        ("storage", &super::storage::ROUTER),
        ("tasks", &super::tasks::ROUTER),
        ("version", &NODE_VERSION_ROUTER),
    ],
    ..Router::new()
};

static METADATA_ROUTER: Router = Router::leaf(&[&QUERY_URL_METADATA]);

static NODE_VERSION_ROUTER: Router = Router::leaf(&[&NODE_VERSION]);
