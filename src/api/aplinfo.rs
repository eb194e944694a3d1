//! `/nodes/{node}/aplinfo` (pve-manager `API2/Nodes.pm` aplinfo and apl_download): the appliance
//! index PVE's Templates button and Ansible's `proxmox_template` with `template:` read, and the
//! download of a template by name, checked against the index's sha512sum (else md5sum).

use serde_json::Value;

use super::router::{ApiMethod, Ctx, Params, Reply, Returns, Router};
use super::storage::enabled_storage;
use super::types::{self, NODE_PROP, required};
use super::{ApiError, from_params};
use crate::download::{Algorithm, Checksum, DownloadPlan};
use crate::schema::{Property, Schema, StringSchema};
use crate::upstream::aplinfo;

params!(LIST_PARAMS => ListArgs {
    "node" node: String = NODE_PROP,
});

pub static LIST: ApiMethod =
    ApiMethod::get("/nodes/{node}/aplinfo", |ctx, p| Box::pin(list(ctx, p)))
        .describe("Get list of appliances.")
        .params(&LIST_PARAMS)
        .returns(Returns::ArrayOf(&[]));

async fn list(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let _: ListArgs = from_params(params)?;
    let all = load(&ctx).await?;
    Ok(Reply::Data(Value::Array(
        all.values().map(aplinfo::to_json).collect(),
    )))
}

static TEMPLATE: Schema = Schema::String(StringSchema {
    max_length: Some(255),
    ..StringSchema::new()
});

params!(DOWNLOAD_PARAMS => DownloadArgs {
    "node" node: String = NODE_PROP,
    "storage" storage: String = Property {
        description: "The storage where the template will be stored",
        ..types::STORAGE_PROP
    },
    "template" template: String = required("The template which will downloaded", &TEMPLATE),
});

// PVE's check is on `/storage/{storage}` of the body's storage (below).
pub static DOWNLOAD: ApiMethod =
    ApiMethod::post("/nodes/{node}/aplinfo", |ctx, p| Box::pin(download(ctx, p)))
        .describe("Download appliance templates.")
        .params(&DOWNLOAD_PARAMS)
        .returns(Returns::String("UPID"));

async fn download(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: DownloadArgs = from_params(params)?;
    let path = format!("/storage/{}", args.storage);
    if !ctx.has(&path, &["Datastore.AllocateTemplate"], false) {
        return Err(ApiError::permission(Some(&format!(
            "{path}, Datastore.AllocateTemplate"
        ))));
    }
    let all = load(&ctx).await?;
    let Some(appliance) = all.get(&args.template) else {
        return Err(ApiError::param("template", "no such template"));
    };
    let cfg = ctx.state.storage_config()?;
    let storage = enabled_storage(&cfg, &args.storage, ctx.node())?;
    let kind = appliance
        .get("type")
        .map(String::as_str)
        .unwrap_or_default();
    if kind != "openvz" && kind != "lxc" {
        return Err(ApiError::server(format!("unknown template type '{kind}'")));
    }
    if !storage.content.contains("vztmpl") {
        return Err(ApiError::server(format!(
            "storage '{}' does not support templates",
            storage.id
        )));
    }
    storage.activate()?;
    let dir = storage.get_subdir("vztmpl")?;
    std::fs::create_dir_all(&dir).map_err(|e| {
        ApiError::server(format!(
            "unable to create directory '{}': {e}",
            dir.display()
        ))
    })?;
    // pve-common's download_file_from_url takes the sha512sum before the md5sum.
    let checksum = [("sha512sum", Algorithm::Sha512), ("md5sum", Algorithm::Md5)]
        .iter()
        .find_map(|(key, algorithm)| {
            appliance.get(*key).map(|hex| Checksum {
                algorithm: *algorithm,
                expected: hex.clone(),
            })
        });
    let staging_dir = storage
        .staging_dir("vztmpl")
        .ok_or(crate::storage::StorageError::NoPath)?;
    let plan = DownloadPlan {
        checksum,
        checksum_required: true,
        retry: ctx.state.config().retry.clone(),
        ..DownloadPlan::new(
            appliance["location"].clone(),
            dir.join(&args.template),
            staging_dir,
            "vztmpl",
            ctx.node(),
            ctx.task_user()?,
        )
    };
    let engine = ctx.state.engine().clone();
    let upid = ctx
        .state
        .tasks()
        .spawn(
            "download",
            &args.template,
            &ctx.task_user()?,
            move |upid, log, cancel| async move {
                engine
                    .run(&plan, &upid.to_string(), &log, &cancel)
                    .await
                    .map_err(|e| e.to_string())
            },
        )
        .map_err(ApiError::server)?;
    Ok(Reply::Data(Value::String(upid.to_string())))
}

async fn load(
    ctx: &Ctx,
) -> Result<std::collections::BTreeMap<String, aplinfo::Appliance>, ApiError> {
    let settings = ctx.state.config().aplinfo.clone();
    tokio::task::spawn_blocking(move || aplinfo::load(&settings.dir, &settings.sources))
        .await
        .map_err(ApiError::server)
}

/// `/nodes/{node}/aplinfo`.
pub static ROUTER: Router = Router::leaf(&[&LIST, &DOWNLOAD]);
