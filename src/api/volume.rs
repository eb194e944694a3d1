//! `/nodes/{node}/storage/{storage}/content/{volume}`: one volume's attributes, their update
//! and its removal (pve-storage `API2/Storage/Content.pm` info, updateattributes, delete;
//! spec/pve-api.md §7.4), plus what the catalog knows about it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::replies::VolumeInfo;
use super::router::{Access, ApiMethod, Ctx, Params, Reply, Returns, Router, STORAGE_ALLOCATE};
use super::storage::enabled_storage;
use super::types::{self, NODE_PROP, optional, required};
use super::{ApiError, blocking, from_params};
use crate::catalog::{self, Lookup, Record, VolumeAccess};
use crate::pve::ids::parse_volume_id;
use crate::schema::Schema;
use crate::storage::{StorageError, parse_volname};

/// PVE's check_volume_access for iso, vztmpl and import volumes: read access to the storage.
const READ_ACCESS: Access = Access::Perm {
    path: "/storage/{storage}",
    privs: &["Datastore.AllocateSpace", "Datastore.Audit"],
    any: true,
};

params!(INFO_PARAMS => InfoArgs {
    "node" node: String = NODE_PROP,
    "storage" storage: Option<String> = optional("The storage identifier.", &types::STORAGE_ID),
    "volume" volume: String = required("Volume identifier", &types::STRING),
});

pub static INFO: ApiMethod = ApiMethod::get(
    "/nodes/{node}/storage/{storage}/content/{volume}",
    |ctx, p| Box::pin(info(ctx, p)),
)
.describe("Get volume attributes")
.params(&INFO_PARAMS)
.returns(Returns::Object(&[
    "path",
    "size",
    "used",
    "format",
    "notes",
    "protected",
    "sha256",
    "checksum",
    "source",
    "iso",
    "os",
    "image",
    "template",
    "verification",
    "access",
    "boot-configs",
]))
.access(READ_ACCESS);

async fn info(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: InfoArgs = from_params(params)?;
    let (storage_id, volname) = real_volume_id(args.storage.as_deref(), &args.volume)?;
    let cfg = ctx.state.storage_config()?;
    let storage = cfg.storage(&storage_id)?;
    let path = storage.volume_path(&volname)?;
    let vol = parse_volname(&volname)?;
    let volid = format!("{storage_id}:{volname}");
    let attributes = storage.keeps_volume_attributes();
    let found = blocking(move || {
        let meta = std::fs::metadata(&path).ok();
        let lookup = catalog::store::load(&path).unwrap_or(Lookup::Missing);
        (path, meta, lookup)
    })
    .await?;
    let (path, Some(meta), lookup) = found else {
        return Err(ApiError::server(format!(
            "volume_size_info on '{volid}' failed - no format"
        )));
    };
    // What qemu-img reports for the format PVE's parse_volname names: raw for iso, vztmpl
    // and archives it does not check; an image's virtual size from the record or its header.
    let format = match vol.format.as_str() {
        "qcow2" | "vmdk" => vol.format.clone(),
        _ => "raw".to_owned(),
    };
    let fresh = match &lookup {
        Lookup::Fresh(r) => Some(r.clone()),
        _ => None,
    };
    let size = match format.as_str() {
        "raw" => Some(meta.len()),
        _ => fresh
            .as_ref()
            .and_then(|r| r.image.as_ref())
            .and_then(|i| i.virtual_size)
            .or_else(|| catalog::image_info(&path, "import").and_then(|i| i.virtual_size)),
    };
    let Some(size) = size.filter(|s| *s > 0) else {
        return Err(ApiError::server(format!("volume '{volid}' has size zero")));
    };
    let (notes, protected) = match (&lookup, attributes) {
        (Lookup::Fresh(r) | Lookup::Stale(r), true) => {
            (Some(r.notes.clone().unwrap_or_default()), Some(r.protected))
        }
        (Lookup::Missing, true) => (Some(String::new()), Some(false)),
        (_, false) => (None, None),
    };
    let info = VolumeInfo {
        path: path.display().to_string(),
        size,
        used: std::os::unix::fs::MetadataExt::blocks(&meta) * 512,
        format,
        notes,
        protected,
        ..VolumeInfo::default()
    };
    let info = match fresh {
        Some(record) => info.with_record(record),
        None => info,
    };
    Ok(Reply::Data(
        serde_json::to_value(info).map_err(ApiError::server)?,
    ))
}

params!(UPDATE_PARAMS => UpdateArgs {
    "node" node: String = NODE_PROP,
    "storage" storage: Option<String> = optional("The storage identifier.", &types::STORAGE_ID),
    "volume" volume: String = required("Volume identifier", &types::STRING),
    "notes" notes: Option<String> = optional("The new notes.", &types::STRING),
    "protected" protected: Option<bool> = optional(
        "Protection status. Currently only supported for backups.",
        &types::BOOLEAN
    ),
    "access" access: Option<String> = optional(
        "isolib: who may fetch the volume over HTTP (/files/): public, or private (the API's credentials with Datastore.Audit, or its owner). The owner or Datastore.Allocate changes it.",
        &ACCESS
    ),
    "boot-configs" boot_configs: Option<String> = optional(
        "isolib: the network boot configs that fit this image (a list; empty: none). The owner or Datastore.Allocate changes it.",
        &types::STRING
    ),
});

static ACCESS: Schema = Schema::String(crate::schema::StringSchema {
    enumeration: Some(&["public", "private"]),
    ..crate::schema::StringSchema::new()
});

pub static UPDATE: ApiMethod = ApiMethod::put(
    "/nodes/{node}/storage/{storage}/content/{volume}",
    |ctx, p| Box::pin(update(ctx, p)),
)
.describe("Update volume attributes")
.params(&UPDATE_PARAMS)
.access(READ_ACCESS);

async fn update(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: UpdateArgs = from_params(params)?;
    let (storage_id, volname) = real_volume_id(args.storage.as_deref(), &args.volume)?;
    let cfg = ctx.state.storage_config()?;
    let storage = cfg.storage(&storage_id)?;
    let path = storage.volume_path(&volname)?;
    if !storage.keeps_volume_attributes() {
        // DirPlugin's update_volume_attribute, attribute by attribute in PVE's order.
        if args.notes.is_some() {
            return Err(ApiError::server("only backups can have notes"));
        }
        if args.protected.is_some() {
            return Err(ApiError::server(
                "only backups support attribute 'protected'",
            ));
        }
    }
    let access = args.access.as_deref().and_then(VolumeAccess::parse);
    let boot_configs: Option<Vec<String>> = args.boot_configs.as_deref().map(|list| {
        crate::pve::perl::split_list(list)
            .into_iter()
            .map(str::to_owned)
            .collect()
    });
    if let Some(names) = &boot_configs {
        let book = super::boot::load(&ctx).await?;
        crate::boot::validate::boot_configs(&book, names)
            .map_err(|e| ApiError::param(e.field, e.text))?;
    }
    if args.notes.is_none()
        && args.protected.is_none()
        && access.is_none()
        && boot_configs.is_none()
    {
        return Ok(Reply::Data(Value::Null));
    }
    let caller = ctx.auth()?.to_string();
    let may_allocate = ctx.has(
        &format!("/storage/{storage_id}"),
        &["Datastore.Allocate"],
        false,
    );
    blocking(move || -> Result<(), ApiError> {
        let failed = |e: std::io::Error| {
            ApiError::server(format!("unable to update attributes of '{volname}': {e}"))
        };
        std::fs::metadata(&path).map_err(failed)?;
        // A volume not hashed yet gets a record that is stale from the start: the
        // attributes wait in it for the rebuild, which keeps them.
        let mut record = match catalog::store::load(&path).map_err(failed)? {
            Lookup::Fresh(r) | Lookup::Stale(r) => r,
            Lookup::Missing => Record::default(),
        };
        if access.is_some() || boot_configs.is_some() {
            let owner = record.source.user.as_deref() == Some(caller.as_str());
            if !owner && !may_allocate {
                return Err(ApiError::permission(Some(&format!(
                    "/storage/{storage_id}, Datastore.Allocate"
                ))));
            }
        }
        if let Some(access) = access {
            record.access = access;
        }
        if let Some(names) = boot_configs {
            record.boot_configs = names;
        }
        if let Some(notes) = args.notes {
            record.notes = Some(notes).filter(|n| !n.is_empty());
        }
        if let Some(protected) = args.protected {
            record.protected = protected;
        }
        catalog::store::save(&path, &record).map_err(failed)
    })
    .await??;
    Ok(Reply::Data(Value::Null))
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

pub static DELETE: ApiMethod = ApiMethod::delete(
    "/nodes/{node}/storage/{storage}/content/{volume}",
    |ctx, p| Box::pin(delete(ctx, p)),
)
.describe("Delete volume")
.params(&DELETE_PARAMS)
.returns(Returns::OrNull(&Returns::String("UPID")))
.access(STORAGE_ALLOCATE);

async fn delete(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: DeleteArgs = from_params(params)?;
    let (storage_id, volname) = real_volume_id(args.storage.as_deref(), &args.volume)?;
    let cfg = ctx.state.storage_config()?;
    let storage = enabled_storage(&cfg, &storage_id, ctx.node())?;
    let path = storage.volume_path(&volname)?;
    let volid = format!("{storage_id}:{volname}");
    let guarded = storage.keeps_volume_attributes();
    let task_id = storage_id.clone();
    let upid = ctx
        .state
        .tasks()
        .spawn(
            "imgdel",
            &task_id,
            &ctx.auth()?.to_string(),
            move |_, log, _| async move {
                // vdisk_free asks the plugin first.
                if guarded && is_protected(path.clone()).await {
                    return Err(format!(
                        "cannot remove protected volume '{volname}' on '{storage_id}'"
                    ));
                }
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        log.line(&format!("disk image '{}' does not exist", path.display()));
                    }
                    Err(e) => return Err(format!("unable to remove '{}': {e}", path.display())),
                }
                if let Err(e) = blocking(move || catalog::store::remove(&path)).await {
                    tracing::warn!("{}", e.message);
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

async fn is_protected(path: PathBuf) -> bool {
    blocking(move || match catalog::store::load(&path) {
        Ok(Lookup::Fresh(r) | Lookup::Stale(r)) => r.protected,
        _ => false,
    })
    .await
    .unwrap_or(false)
}

/// Content.pm's `real_volume_id`: a full volid (whose storage must be the path's) or a
/// volume name on the path's storage; bpg's provider sends both (clients-and-plugin.md §C.3).
pub(super) fn real_volume_id(
    storage: Option<&str>,
    volume: &str,
) -> Result<(String, String), ApiError> {
    if volume.contains(':') {
        let (sid, name) = parse_volume_id(volume).ok_or_else(|| {
            ApiError::param(
                "volume",
                format!("{}\n", StorageError::VolumeId(volume.to_owned())),
            )
        })?;
        if let Some(path_sid) = storage
            && path_sid != sid
        {
            return Err(ApiError::param(
                "volume",
                format!("storage ID mismatch ({sid} != {path_sid})\n"),
            ));
        }
        return Ok((sid, name));
    }
    match storage {
        Some(sid) => Ok((sid.to_owned(), volume.to_owned())),
        None => Err(ApiError::param(
            "volume",
            "no storage specified - incomplete volume ID",
        )),
    }
}

/// Runs file work off the async runtime.
/// `/nodes/{node}/storage/{storage}/content/{volume}`.
pub static ROUTER: Router = Router::leaf(&[&INFO, &UPDATE, &DELETE]);
