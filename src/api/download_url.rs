//! `POST /nodes/{node}/storage/{storage}/download-url` (pve-storage `Status.pm` download_url,
//! spec/pve-api.md §1). Everything PVE checks before it forks the worker is checked here, in
//! PVE's order, and fails the HTTP request; everything after is the task's.

use serde_json::Value;

use super::router::{Access, ApiMethod, Ctx, NETWORK_ACCESS, Params, Reply, Returns, Router};
use super::types::{self, NODE_PROP, STORAGE_PROP, optional, required};
use super::{ApiError, from_params};
use crate::download::{Algorithm, Checksum, ContentCheck, DownloadPlan};
use crate::schema::Property;
use crate::storage::{
    DownloadTarget, StorageError, check_download_filename, normalize_content_filename,
};

params!(PARAMS => Args {
    "node" node: String = NODE_PROP,
    "storage" storage: String = STORAGE_PROP,
    "url" url: String = required("The URL to download the file from.", &types::URL),
    "content" content: String = types::DOWNLOAD_CONTENT_PROP,
    "filename" filename: String = types::FILENAME_PROP,
    "checksum" checksum: Option<String> = types::CHECKSUM_PROP,
    "checksum-algorithm" checksum_algorithm: Option<String> = types::CHECKSUM_ALGORITHM_PROP,
    // PVE's enum for this is undefined (spec §1.1): any string passes and a bad value fails in
    // the task with "no decompression method found".
    "compression" compression: Option<String> = optional(
        "Decompress the downloaded file using the specified compression algorithm (gz, lzo, zst, bz2, xz).",
        &types::STRING
    ),
    "verify-certificates" verify_certificates: bool = optional(
        "If false, no SSL/TLS certificates will be verified.",
        &types::VERIFY_CERTIFICATES
    ),
    "checksum-url" checksum_url: Option<String> = optional(
        "isolib: a checksum file (SHA256SUMS, CHECKSUM, <name>.sha256 ...) to take the checksum from: the entry of 'filename', else of the URL's last path segment. Not together with 'checksum'.",
        &types::URL
    ),
    "signature-url" signature_url: Option<String> = Property {
        requires: Some("keyring"),
        ..optional(
            "isolib: a detached OpenPGP signature over the checksum file.",
            &types::URL
        )
    },
    "keyring" keyring: Option<String> = Property {
        requires: Some("checksum-url"),
        ..optional(
            "isolib: the keyring (a file <name>.pgp in the daemon's 'keyrings' directory) whose keys must have signed the checksum file, with 'signature-url' or inside it (cleartext).",
            &KEYRING_NAME
        )
    },
    "nodes" nodes: Option<String> = optional(
        "isolib: also make the file present on these nodes (a list, or 'all'), each copied from a node that holds it: one fetch from the origin for the whole cluster.",
        &types::NODE_LIST
    ),
    "connections" connections: Option<u32> = optional(
        "isolib: connections this download may use at once, each fetching a segment, when the origin answers ranges (default: the daemon's 'connections' setting, 1 unless set).",
        &CONNECTIONS
    ),
});

static CONNECTIONS: crate::schema::Schema = crate::schema::Schema::Integer {
    minimum: Some(1),
    maximum: Some(16),
    default: None,
};

static KEYRING_NAME_RE: crate::schema::Pattern =
    crate::schema::Pattern::new("^[A-Za-z0-9][A-Za-z0-9._-]*$");
static KEYRING_NAME: crate::schema::Schema =
    crate::schema::Schema::String(crate::schema::StringSchema {
        pattern: Some(&KEYRING_NAME_RE),
        max_length: Some(64),
        ..crate::schema::StringSchema::new()
    });

pub static METHOD: ApiMethod =
    ApiMethod::post("/nodes/{node}/storage/{storage}/download-url", |ctx, p| {
        Box::pin(download_url(ctx, p))
    })
    .describe("Download templates, ISO images, OVAs and VM images by using an URL.")
    .params(&PARAMS)
    .returns(Returns::String("UPID"))
    .access(Access::And(&[
        Access::all("/storage/{storage}", &["Datastore.AllocateTemplate"]),
        NETWORK_ACCESS,
    ]));

async fn download_url(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: Args = from_params(params)?;
    let cfg = ctx.state.storage_config()?;
    let storage = super::storage::enabled_storage(&cfg, &args.storage, ctx.node())?;
    storage.check_download(&args.content)?;
    let filename = normalize_content_filename(&args.filename);
    let target = check_download_filename(&args.content, &filename)
        .map_err(|(k, m)| ApiError::param(k, m))?;
    storage.activate()?;
    let dir = storage.get_subdir(&args.content)?;
    std::fs::create_dir_all(&dir).map_err(|e| {
        ApiError::server(format!(
            "unable to create directory '{}': {e}",
            dir.display()
        ))
    })?;

    let import_ext = match &target {
        DownloadTarget::Import { ext } => Some(ext.as_str()),
        DownloadTarget::Iso | DownloadTarget::Vztmpl => None,
    };
    let check = ContentCheck::for_download(&args.content, import_ext);
    if args.checksum_url.is_some() && args.checksum.is_some() {
        return Err(ApiError::param(
            "checksum-url",
            "not allowed together with 'checksum'",
        ));
    }
    // PVE asks for a hash whenever `checksum` was sent, but only hands over a non-empty one.
    let checksum_required = args.checksum.is_some();
    let checksum = match (
        args.checksum.filter(|c| !c.is_empty()),
        args.checksum_algorithm,
    ) {
        (Some(expected), Some(alg)) => Algorithm::parse(&alg).map(|algorithm| Checksum {
            algorithm,
            expected,
        }),
        _ => None,
    };
    let staging_dir = storage
        .staging_dir(&args.content)
        .ok_or(StorageError::NoPath)?;
    let mut plan = DownloadPlan {
        checksum,
        checksum_required,
        compression: args.compression,
        verify_certificates: args.verify_certificates,
        check,
        retry: ctx.state.config().retry.clone(),
        connections: args.connections,
        ..DownloadPlan::new(
            args.url,
            dir.join(&filename),
            staging_dir,
            &args.content,
            ctx.node(),
            ctx.task_user()?,
        )
    };

    let spread = match &args.nodes {
        Some(text) => Some(super::ensure::Spread {
            state: ctx.state.clone(),
            credentials: ctx.peer_credentials()?,
            storage: storage.id.clone(),
            volname: format!("{}/{filename}", args.content),
            // Known once the file is in.
            sha256: String::new(),
            holders: vec![ctx.node().to_owned()],
            targets: super::ensure::nodes(&ctx.state, text)?,
            user: ctx.task_user()?,
        }),
        None => None,
    };
    let engine = ctx.state.engine().clone();
    let pve_task = ctx.pve_task.as_ref().map(ToString::to_string);
    // A keyring that is not there fails the request, not the task.
    let signature = match args.keyring {
        Some(name) => Some(crate::upstream::SignatureCheck {
            url: args.signature_url,
            keyring: crate::upstream::openpgp::Keyring::load(&ctx.state.config().keyrings, &name)
                .map_err(|e| ApiError::param("keyring", e.to_string()))?,
        }),
        None => None,
    };
    let sums = args.checksum_url.map(|url| crate::upstream::SumsRequest {
        url,
        signature,
        target: filename.clone(),
        min: ctx.state.config().min_checksum_algorithm,
    });
    let upid = ctx
        .state
        .tasks()
        .spawn(
            "download",
            &encode_text(&filename),
            &ctx.task_user()?,
            move |upid, log, cancel| async move {
                if let Some(pve_task) = pve_task {
                    log.line(&format!("{PVE_TASK_LINE}{pve_task}"));
                }
                if let Some(sums) = sums {
                    sums.apply(&engine, &mut plan, &log).await?;
                }
                engine
                    .run(&plan, &upid.to_string(), &log, &cancel)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(mut spread) = spread else {
                    return Ok(());
                };
                spread.sha256 = crate::download::volume_sha256(&plan.dest)
                    .await
                    .map_err(|e| format!("unable to read '{}': {e}", plan.dest.display()))?;
                spread.run(&upid.to_string(), &log, &cancel).await
            },
        )
        .map_err(ApiError::server)?;
    Ok(Reply::Data(Value::String(upid.to_string())))
}

/// How the first line of a task made for a PVE task names it, so an operator can go from the
/// daemon's log to PVE's.
pub const PVE_TASK_LINE: &str = "PVE task: ";

/// pve-common `encode_text`: the task id may not hold ':' and friends.
pub(super) fn encode_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if !(0x20..0x7f).contains(&b) || b == b'%' || b == b':' {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// `/nodes/{node}/storage/{storage}/download-url`.
pub static ROUTER: Router = Router::leaf(&[&METHOD]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_text_escapes_like_pve() {
        assert_eq!(encode_text("debian-12.iso"), "debian-12.iso");
        assert_eq!(encode_text("a:b%c"), "a%3Ab%25c");
    }
}
