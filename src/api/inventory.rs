//! `/nodes/{node}/inventory` (isolib): the library exported (GET, JSON or CSV) and imported
//! (POST, a task that makes every listed volume present with its sha256: missing ones are
//! downloaded through the normal download path and queue, a volume with other bytes is
//! reported and never overwritten).

use serde_json::Value;

use super::router::{ApiMethod, Ctx, Params, Reply, Returns, Router};
use super::types::{self, NODE_PROP, optional, required};
use super::{ApiError, from_params};
use crate::catalog::{self, Lookup};
use crate::download::{self, DownloadPlan};
use crate::library::inventory::{Entry, FORMAT_VERSION, Inventory, Step, decide, to_csv};
use crate::library::{Refetch, volumes};
use crate::schema::{Schema, StringSchema};

static FORMAT: Schema = Schema::String(StringSchema {
    enumeration: Some(&["json", "csv"]),
    ..StringSchema::new()
});

params!(EXPORT_PARAMS => ExportArgs {
    "node" node: String = NODE_PROP,
    "format" format: Option<String> = optional("json (default) or csv.", &FORMAT),
});

// Each storage is listed only for who may audit it, as the storage index does.
pub static EXPORT: ApiMethod =
    ApiMethod::get("/nodes/{node}/inventory", |ctx, p| Box::pin(export(ctx, p)))
        .describe("Every volume of every storage with its catalog record (isolib).")
        .params(&EXPORT_PARAMS)
        .returns(Returns::Object(&[
            "format-version",
            "node",
            "exported",
            "volumes",
        ]));

async fn export(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ExportArgs = from_params(params)?;
    let inventory = local(&ctx).await?;
    if args.format.as_deref() == Some("csv") {
        return Ok(Reply::Raw {
            content_type: "text/csv; charset=utf-8",
            headers: Vec::new(),
            body: to_csv(&inventory).into_bytes(),
        });
    }
    Ok(Reply::Data(
        serde_json::to_value(inventory).map_err(ApiError::server)?,
    ))
}

/// This node's volumes on the storages the caller may audit.
pub(super) async fn local(ctx: &Ctx) -> Result<Inventory, ApiError> {
    let cfg = ctx.state.storage_config()?;
    let node = ctx.node().to_owned();
    let visible: Vec<_> = cfg
        .storages
        .iter()
        .filter(|s| s.check_enabled(&node).is_ok() && s.is_file_based())
        .filter(|s| {
            ctx.has(
                &format!("/storage/{}", s.id),
                super::router::STORAGE_AUDIT_PRIVS,
                true,
            )
        })
        .cloned()
        .collect();
    super::blocking(move || Inventory {
        format_version: FORMAT_VERSION,
        node,
        exported: chrono::Utc::now().timestamp(),
        volumes: visible
            .iter()
            .flat_map(|s| volumes(s, None))
            .map(|v| Entry::of(&v))
            .collect(),
    })
    .await
}

params!(IMPORT_PARAMS => ImportArgs {
    "node" node: String = NODE_PROP,
    "inventory" inventory: String =
        required("An inventory as the export writes it (JSON).", &types::STRING),
    "dry-run" dry_run: Option<bool> =
        optional("Only say what would be done.", &types::BOOLEAN),
});

// Every storage it writes to is checked as download-url checks it.
pub static IMPORT: ApiMethod =
    ApiMethod::post("/nodes/{node}/inventory", |ctx, p| Box::pin(import(ctx, p)))
        .describe("Make the volumes of an inventory present here, with their sha256 (isolib).")
        .params(&IMPORT_PARAMS)
        .returns(Returns::String("UPID"));

async fn import(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ImportArgs = from_params(params)?;
    let inventory: Inventory = serde_json::from_str(&args.inventory)
        .map_err(|e| ApiError::param("inventory", format!("not an inventory: {e}")))?;
    if inventory.format_version != FORMAT_VERSION {
        return Err(ApiError::param(
            "inventory",
            format!(
                "format version {} is not {FORMAT_VERSION}",
                inventory.format_version
            ),
        ));
    }
    let node = ctx.node().to_owned();
    let network = ctx.has_network_access();
    for entry in &inventory.volumes {
        let path = format!("/storage/{}", entry.storage);
        if !ctx.has(&path, &["Datastore.AllocateTemplate"], false) || !network {
            return Err(ApiError::permission(Some(&format!(
                "{path}, Datastore.AllocateTemplate and network access"
            ))));
        }
    }
    let dry_run = args.dry_run.unwrap_or(false);
    let cfg = ctx.state.storage_config()?;
    let engine = ctx.state.engine().clone();
    let osinfo_dir = ctx.state.config().catalog.osinfo_dir.clone();
    let retry = ctx.state.config().retry.clone();
    let user = ctx.task_user()?;
    let upid = ctx
        .state
        .tasks()
        .spawn("invimport", "", &user.clone(), move |upid, log, cancel| async move {
            let (mut present, mut fetched, mut trouble) = (0, 0, 0);
            for entry in inventory.volumes {
                if cancel.is_cancelled() {
                    return Err("interrupted by signal".into());
                }
                let (c, n, d) = (cfg.clone(), node.clone(), osinfo_dir.clone());
                let e = entry.clone();
                let step = tokio::task::spawn_blocking(move || decide(&e, &c, &n, &d))
                    .await
                    .map_err(|e| e.to_string())?;
                let volid = &entry.volid;
                match step {
                    Step::Present => {
                        present += 1;
                        log.line(&format!("{volid}: present"));
                    }
                    Step::Conflict { has } => {
                        trouble += 1;
                        log.line(&format!(
                            "{volid}: conflict - it holds sha256 '{has}', the inventory says '{}'; left as it is",
                            entry.sha256.as_deref().unwrap_or_default()
                        ));
                    }
                    Step::Skip(why) => {
                        trouble += 1;
                        log.line(&format!("{volid}: skipped - {why}"));
                    }
                    Step::Fetch { url } if dry_run => {
                        log.line(&format!("{volid}: would download {url}"));
                    }
                    Step::Fetch { url } => {
                        log.line(&format!("{volid}: downloading {url}"));
                        let plan = match plan(&entry, url, &cfg, &node, &retry, &user) {
                            Ok(p) => p,
                            Err(e) => {
                                trouble += 1;
                                log.line(&format!("{volid}: failed - {e}"));
                                continue;
                            }
                        };
                        match engine.run(&plan, &upid.to_string(), &log, &cancel).await {
                            Ok(()) => {
                                fetched += 1;
                                keep_attributes(&entry, plan.dest).await;
                                log.line(&format!("{volid}: downloaded and verified"));
                            }
                            Err(e) => {
                                trouble += 1;
                                log.line(&format!("{volid}: failed - {e}"));
                            }
                        }
                    }
                }
            }
            log.line(&format!(
                "{present} present, {fetched} downloaded, {trouble} not as the inventory says"
            ));
            if trouble > 0 {
                return Err(format!(
                    "inventory import incomplete: {trouble} volume(s) not as the inventory says"
                ));
            }
            Ok(())
        })
        .map_err(ApiError::server)?;
    Ok(Reply::Data(Value::String(upid.to_string())))
}

/// The download of a missing volume, its stored bytes required to have the inventory's sha256.
fn plan(
    entry: &Entry,
    url: String,
    cfg: &crate::storage::StorageConfig,
    node: &str,
    retry: &download::RetryPolicy,
    user: &str,
) -> Result<DownloadPlan, crate::storage::StorageError> {
    let storage = cfg.storage(&entry.storage)?;
    let dest = storage.volume_path(entry.volname())?;
    std::fs::create_dir_all(storage.get_subdir(&entry.content)?).ok();
    Refetch {
        storage,
        content: &entry.content,
        dest,
        url,
        compression: entry.source.as_ref().and_then(|s| s.compression.clone()),
        sha256: entry.sha256.clone().unwrap_or_default(),
        replace: false,
    }
    .plan(node, retry, user)
}

/// The notes and protection the inventory carries, onto the new volume's record.
async fn keep_attributes(entry: &Entry, dest: std::path::PathBuf) {
    if entry.notes.is_none() && !entry.protected {
        return;
    }
    let (notes, protected) = (entry.notes.clone(), entry.protected);
    let done = tokio::task::spawn_blocking(move || match catalog::store::load(&dest) {
        Ok(Lookup::Fresh(mut r)) => {
            r.notes = notes;
            r.protected = protected;
            catalog::store::save(&dest, &r)
        }
        _ => Ok(()),
    })
    .await;
    if let Ok(Err(e)) = done {
        tracing::warn!("unable to keep the notes of {}: {e}", entry.volid);
    }
}

/// `/nodes/{node}/inventory`.
pub static ROUTER: Router = Router::leaf(&[&EXPORT, &IMPORT]);
