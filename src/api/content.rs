//! `/nodes/{node}/storage/{storage}/content[/{volume}]`: listing and deleting images
//! (pve-storage `API2/Storage/Content.pm` index/delete, spec/pve-api.md §7.3-7.4).

use std::time::Duration;

use serde_json::Value;

use super::router::{Access, ApiMethod, Ctx, Params, Reply, Returns, Router};
use super::storage::enabled_storage;
use super::types::{self, NODE_PROP, STORAGE_PROP, optional, required};
use super::{ApiError, from_params};
use crate::pve::ids::parse_volume_id;
use crate::schema::{ObjectSchema, Schema};
use crate::storage::StorageError;

params!(LIST_PARAMS => ListArgs {
    "node" node: String = NODE_PROP,
    "storage" storage: String = STORAGE_PROP,
    "content" content: Option<String> =
        optional("Only list content of this type.", &types::CONTENT_TYPE),
    "vmid" vmid: Option<i64> = optional("Only list images for this VM", &types::INTEGER),
});

pub static LIST: ApiMethod = ApiMethod {
    method: "GET",
    path: "/nodes/{node}/storage/{storage}/content",
    description: "List storage content.",
    parameters: &ObjectSchema {
        properties: &LIST_PARAMS,
        additional_properties: false,
    },
    returns: Returns::ArrayOf(&["volid", "format", "size", "ctime", "content"]),
    access: Access::Perm {
        path: "/storage/{storage}",
        privs: &["Datastore.Audit", "Datastore.AllocateSpace"],
        any: true,
    },
    allow_token: true,
    handler: |ctx, p| Box::pin(list(ctx, p)),
};

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

static DELAY: Schema = Schema::Integer {
    minimum: Some(1),
    maximum: Some(30),
    default: None,
};

params!(DELETE_PARAMS => DeleteArgs {
    "node" node: String = NODE_PROP,
    "storage" storage: Option<String> =
        optional("The storage identifier.", &types::STORAGE_ID),
    "volume" volume: String = required("Volume identifier", &types::STRING),
    "delay" delay: Option<u64> = optional(
        "Time to wait for the task to finish. We return 'null' if the task finish within that time.",
        &DELAY
    ),
});

pub static DELETE: ApiMethod = ApiMethod {
    method: "DELETE",
    path: "/nodes/{node}/storage/{storage}/content/{volume}",
    description: "Delete volume",
    parameters: &ObjectSchema {
        properties: &DELETE_PARAMS,
        additional_properties: false,
    },
    returns: Returns::OrNull(&Returns::String("UPID")),
    access: Access::Perm {
        path: "/storage/{storage}",
        privs: &["Datastore.Allocate"],
        any: false,
    },
    allow_token: true,
    handler: |ctx, p| Box::pin(delete(ctx, p)),
};

async fn delete(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: DeleteArgs = from_params(params)?;
    // A full volid or a bare volname; bpg's provider sends both (clients-and-plugin.md §C.3).
    let (storage_id, volname) = match parse_volume_id(&args.volume) {
        Some((sid, name)) => {
            if let Some(path_sid) = &args.storage
                && *path_sid != sid
            {
                return Err(ApiError::param(
                    "volume",
                    format!("storage ID mismatch ({sid} != {path_sid})\n"),
                ));
            }
            (sid, name)
        }
        None => match args.storage {
            Some(sid) => (sid, args.volume.clone()),
            None => {
                return Err(StorageError::VolumeId(args.volume).into());
            }
        },
    };
    let cfg = ctx.state.storage_config()?;
    let storage = enabled_storage(&cfg, &storage_id, ctx.node())?;
    let path = storage.volume_path(&volname)?;
    let volid = format!("{storage_id}:{volname}");
    let upid = ctx
        .state
        .tasks()
        .spawn(
            "imgdel",
            &storage_id,
            &ctx.auth()?.to_string(),
            move |_, log, _| async move {
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        log.line(&format!("disk image '{}' does not exist", path.display()));
                    }
                    Err(e) => return Err(format!("unable to remove '{}': {e}", path.display())),
                }
                log.line(&format!("Removed volume '{volid}'"));
                Ok(())
            },
        )
        .map_err(ApiError::server)?;
    if let Some(delay) = args.delay {
        let tasks = ctx.state.tasks();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(delay);
        while tasks.is_running(&upid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !tasks.is_running(&upid) {
            let status = tasks.exit_status(&upid);
            return if status == "OK" {
                Ok(Reply::Data(Value::Null))
            } else {
                Err(ApiError::server(status))
            };
        }
    }
    Ok(Reply::Data(Value::String(upid.to_string())))
}

/// `/nodes/{node}/storage/{storage}/content`.
pub static ROUTER: Router = Router::items(&[&LIST], "volume", &VOLUME_ROUTER);

static VOLUME_ROUTER: Router = Router::leaf(&[&DELETE]);
