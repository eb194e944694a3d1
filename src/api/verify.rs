//! `POST /nodes/{node}/storage/{storage}/verify`: a task that re-reads volumes and compares
//! them with their records, as Proxmox Backup Server's verify does for its snapshots; with
//! `repair`, a failed volume is fetched again from its recorded source when that still yields
//! the recorded bytes, and replaced atomically.

use serde_json::Value;

use super::router::{ApiMethod, Ctx, Params, Reply, Returns, Router, STORAGE_AUDIT};
use super::storage::enabled_storage;
use super::types::{self, NODE_PROP, STORAGE_PROP, optional};
use super::{ApiError, from_params};
use crate::catalog::{self, Lookup};
use crate::download::{self, Engine, LogSink};
use crate::library::check::{Reading, Verdict, check};
use crate::library::{Refetch, Volume, volumes};
use crate::storage::{Storage, parse_volname};
use crate::tasks::TaskLog;

params!(PARAMS => Args {
    "node" node: String = NODE_PROP,
    "storage" storage: String = STORAGE_PROP,
    "volume" volume: Option<String> =
        optional("Only this volume (a volume ID or a name on this storage).", &types::STRING),
    "repair" repair: Option<bool> = optional(
        "Fetch a failed volume again from its recorded source, if that still yields the recorded sha256.",
        &types::BOOLEAN
    ),
});

pub static METHOD: ApiMethod =
    ApiMethod::post("/nodes/{node}/storage/{storage}/verify", |ctx, p| {
        Box::pin(verify(ctx, p))
    })
    .describe("Verify volumes against their catalog records (isolib).")
    .params(&PARAMS)
    .returns(Returns::String("UPID"))
    .access(STORAGE_AUDIT);

async fn verify(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: Args = from_params(params)?;
    let repair = args.repair.unwrap_or(false);
    // Repairing writes a volume, as a download does.
    let storage_path = format!("/storage/{}", args.storage);
    if repair && !ctx.has(&storage_path, &["Datastore.AllocateTemplate"], false) {
        return Err(ApiError::permission(Some(&format!(
            "{storage_path}, Datastore.AllocateTemplate"
        ))));
    }
    let cfg = ctx.state.storage_config()?;
    let storage = enabled_storage(&cfg, &args.storage, ctx.node())?.clone();
    storage.activate()?;
    let only = match &args.volume {
        Some(v) => {
            let (_, volname) = super::volume::real_volume_id(Some(&storage.id), v)?;
            let vol = parse_volname(&volname)?;
            Some(Volume {
                volid: format!("{}:{volname}", storage.id),
                storage: storage.id.clone(),
                path: storage.volume_path(&volname)?,
                content: vol.vtype,
                volname,
            })
        }
        None => None,
    };
    let job = Job {
        storage,
        engine: ctx.state.engine().clone(),
        osinfo_dir: ctx.state.config().catalog.osinfo_dir.clone(),
        retry: ctx.state.config().retry.clone(),
        node: ctx.node().to_owned(),
        user: ctx.task_user()?,
        repair,
    };
    let upid = ctx
        .state
        .tasks()
        .spawn(
            "verify",
            &args.storage,
            &ctx.task_user()?,
            move |upid, log, cancel| async move {
                let upid = upid.to_string();
                let all = match only {
                    Some(v) => vec![v],
                    None => {
                        let storage = job.storage.clone();
                        tokio::task::spawn_blocking(move || volumes(&storage, None))
                            .await
                            .map_err(|e| e.to_string())?
                    }
                };
                let mut failed = 0;
                for volume in &all {
                    if cancel.is_cancelled() {
                        return Err("interrupted by signal".into());
                    }
                    if !job.one(volume, &upid, &log, &cancel).await {
                        failed += 1;
                    }
                }
                if failed > 0 {
                    return Err(format!(
                        "verification failed for {failed} of {} volumes",
                        all.len()
                    ));
                }
                Ok(())
            },
        )
        .map_err(ApiError::server)?;
    Ok(Reply::Data(Value::String(upid.to_string())))
}

/// What a verify task needs after the request is gone.
struct Job {
    storage: Storage,
    engine: Engine,
    osinfo_dir: std::path::PathBuf,
    retry: download::RetryPolicy,
    node: String,
    user: String,
    repair: bool,
}

impl Job {
    /// Checks one volume (and repairs it when asked); false when it is left failed.
    async fn one(
        &self,
        volume: &Volume,
        upid: &str,
        log: &TaskLog,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let (path, content, osinfo_dir, task) = (
            volume.path.clone(),
            volume.content.clone(),
            self.osinfo_dir.clone(),
            upid.to_owned(),
        );
        let verdict = tokio::task::spawn_blocking(move || {
            let reading = Reading {
                content: &content,
                osinfo_dir: &osinfo_dir,
                rate: None,
            };
            check(&path, &reading, Some(&task))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        let why = match verdict {
            Ok(Verdict::Ok) => {
                log.line(&format!("{}: OK", volume.volid));
                return true;
            }
            Ok(Verdict::Recorded) => {
                log.line(&format!(
                    "{}: OK (had no record of this file; recorded now)",
                    volume.volid
                ));
                return true;
            }
            Ok(Verdict::Failed(why)) => why,
            Err(e) => format!("cannot be read: {e}"),
        };
        log.line(&format!("{}: FAILED - {why}", volume.volid));
        if !self.repair {
            return false;
        }
        match self.repair(volume, upid, log, cancel).await {
            Ok(()) => {
                log.line(&format!("{}: repaired", volume.volid));
                true
            }
            Err(e) => {
                log.line(&format!("{}: repair failed - {e}", volume.volid));
                false
            }
        }
    }

    /// Fetches the recorded bytes again through the download engine, into the volume's place.
    async fn repair(
        &self,
        volume: &Volume,
        upid: &str,
        log: &dyn LogSink,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<(), String> {
        let path = volume.path.clone();
        let record = tokio::task::spawn_blocking(move || catalog::store::load(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let Lookup::Fresh(record) = record else {
            return Err("the volume has no record to repair it by".into());
        };
        let Some(url) = record.source.url.clone() else {
            return Err("the record names no source to fetch it from".into());
        };
        log.line(&format!("repairing {} from {url}", volume.volid));
        let plan = Refetch {
            storage: &self.storage,
            content: &volume.content,
            dest: volume.path.clone(),
            url,
            compression: record.source.compression.clone(),
            sha256: record.sha256.clone(),
            replace: true,
        }
        .plan(&self.node, &self.retry, &self.user)
        .map_err(|e| e.to_string())?;
        self.engine
            .run(&plan, upid, log, cancel)
            .await
            .map_err(|e| e.to_string())
    }
}

/// `/nodes/{node}/storage/{storage}/verify`.
pub static ROUTER: Router = Router::leaf(&[&METHOD]);
