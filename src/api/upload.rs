//! `POST /nodes/{node}/storage/{storage}/upload` (pve-storage `API2/Storage/Status.pm` upload,
//! spec/pve-api.md §7.5): PVE's parameters, checks, texts and `imgcopy` task. Where PVE spools
//! the body to /var/tmp, copies it and hashes it again, the body streams into the storage's
//! staging directory, hashed on the way (http/upload.rs), and the task only checks and renames.
//! So the work splits in two: [`prepare`] runs PVE's synchronous checks once the file part
//! starts, [`start`] runs the task once the body is in.

use serde_json::Value;

use super::router::{Access, ApiMethod, Ctx, Params, Reply, Returns, Router};
use super::storage::enabled_storage;
use super::types::{self, NODE_PROP, STORAGE_PROP, optional};
use super::{ApiError, from_params};
use crate::catalog::{Origin, Source};
use crate::download::{self, Algorithm, Checksum, Finished};
use crate::library::intake::Intake;
use crate::schema::{Pattern, Schema, StringSchema};
use crate::storage::{check_download_filename, normalize_content_filename};

static TMPFILENAME_RE: Pattern = Pattern::new("^/var/tmp/pveupload-[0-9a-f]+$");
static TMPFILENAME: Schema = Schema::String(StringSchema {
    pattern: Some(&TMPFILENAME_RE),
    ..StringSchema::new()
});

params!(PARAMS => Args {
    "node" node: String = NODE_PROP,
    "storage" storage: String = STORAGE_PROP,
    "content" content: String = types::DOWNLOAD_CONTENT_PROP,
    "filename" filename: String = types::FILENAME_PROP,
    "checksum" checksum: Option<String> = types::CHECKSUM_PROP,
    "checksum-algorithm" checksum_algorithm: Option<String> = types::CHECKSUM_ALGORITHM_PROP,
    "tmpfilename" tmpfilename: Option<String> = optional(
        "The source file name. This parameter is usually set by the REST handler. You can only overwrite it when connecting to the trusted port on localhost.",
        &TMPFILENAME
    ),
});

pub static METHOD: ApiMethod = ApiMethod::post("/nodes/{node}/storage/{storage}/upload", |_, p| {
    Box::pin(without_file(p))
})
.describe("Upload templates, ISO images, OVAs and VM images.")
.params(&PARAMS)
.returns(Returns::String("UPID"))
.access(Access::all(
    "/storage/{storage}",
    &["Datastore.AllocateTemplate"],
))
.upload();

/// A request that brought no file part: PVE's handler finds no temporary file.
async fn without_file(params: Params) -> Result<Reply, ApiError> {
    let _: Args = from_params(params)?;
    Err(ApiError::server("missing temporary file name"))
}

/// An upload whose checks passed, waiting for its bytes.
pub struct Prepared {
    pub intake: Intake,
    /// The digest the user asked for, which the sink computes on the way.
    pub algorithm: Option<Algorithm>,
    checksum: Option<Checksum>,
    storage: String,
}

/// PVE's synchronous checks, in PVE's order, then the temp file in the staging directory,
/// returned open for the bytes.
pub fn prepare(ctx: &Ctx, params: Params) -> Result<(Prepared, std::fs::File), ApiError> {
    let args: Args = from_params(params)?;
    let cfg = ctx.state.storage_config()?;
    let storage = enabled_storage(&cfg, &args.storage, ctx.node())?;
    if !storage.is_file_based() {
        return Err(ApiError::server(format!(
            "can't upload to storage type '{}'",
            storage.kind
        )));
    }
    let filename = normalize_content_filename(&args.filename);
    let target = check_download_filename(&args.content, &filename)
        .map_err(|(k, m)| ApiError::param(k, m))?;
    if !storage.content.contains(&args.content) {
        return Err(ApiError::server(format!(
            "storage '{}' does not support '{}' content",
            storage.id, args.content
        )));
    }
    storage.activate()?;
    let checksum = match (args.checksum, args.checksum_algorithm.as_deref()) {
        (Some(expected), Some(alg)) => Algorithm::parse(alg).map(|algorithm| Checksum {
            algorithm,
            expected,
        }),
        _ => None,
    };
    let (intake, file) = Intake::create(
        storage,
        &args.content,
        &filename,
        &target,
        &download::new_tag(ctx.node()),
    )
    .map_err(ApiError::server)?;
    Ok((
        Prepared {
            intake,
            algorithm: checksum.as_ref().map(|c| c.algorithm),
            checksum,
            storage: storage.id.clone(),
        },
        file,
    ))
}

/// The `imgcopy` task over the received file: PVE's log lines, the checksum the sink
/// computed on the way, PVE's content check, then the record and the rename.
pub fn start(ctx: Ctx, prepared: Prepared, finished: Finished) -> Result<Reply, ApiError> {
    let node = ctx.node().to_owned();
    let user = ctx.task_user()?;
    let osinfo_dir = ctx.state.config().catalog.osinfo_dir.clone();
    let Prepared {
        intake,
        checksum,
        storage,
        algorithm: _,
    } = prepared;
    let task_user = user.clone();
    let upid = ctx
        .state
        .tasks()
        .spawn("imgcopy", "", &task_user, move |upid, log, _| async move {
            log.line(&format!(
                "starting file import from: {}",
                intake.temp().display()
            ));
            if checksum.is_some() {
                let checked = Intake::check_checksum(&finished, checksum.as_ref());
                log.line(match checked {
                    Ok(()) => "calculating checksum...OK, checksum verified",
                    // The front end expects the error alone on the last line.
                    Err(_) => "calculating checksum...",
                });
                checked.map_err(|e| e.to_string())?;
            }
            let mut check_log = |l: &str| log.line(l);
            let image = intake
                .check_content(&mut check_log)
                .await
                .map_err(|e| e.to_string())?;
            log.line(&format!("target node: {node}"));
            log.line(&format!("target file: {}", intake.dest.display()));
            log.line(&format!("file size is: {}", finished.observed.len));
            log.line(&format!(
                "renaming {} to {} (on storage '{storage}')",
                intake.temp().display(),
                intake.dest.display()
            ));
            let source = Source {
                origin: Origin::Upload,
                upid: Some(upid.to_string()),
                user: Some(user),
                time: chrono::Utc::now().timestamp(),
                ..Source::default()
            };
            // PVE's upload overwrites an existing volume; here it is replaced in one rename.
            intake
                .place(finished, image, source, checksum, osinfo_dir, true)
                .await
                .map_err(|e| format!("import failed: {e}"))?;
            log.line("finished file import successfully");
            Ok(())
        })
        .map_err(ApiError::server)?;
    Ok(Reply::Data(Value::String(upid.to_string())))
}

/// `/nodes/{node}/storage/{storage}/upload`.
pub static ROUTER: Router = Router::leaf(&[&METHOD]);
