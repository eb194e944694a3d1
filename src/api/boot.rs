//! `/cluster/isolib/boot/configs` and `/cluster/isolib/boot/hosts` (isolib): the boot configs
//! and the hosts that boot an image with one (the pxemanager seed). Configs may hold
//! passwords, so reading needs `Sys.Audit` on `/` and changing `Sys.Modify`, as PVE guards its
//! cluster-wide settings. Every change is checked by `boot::validate` before it is written.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::router::{Access, ApiMethod, Ctx, Params, Reply, Returns, Router};
use super::types::{self, optional, required};
use super::{ApiError, from_params};
use crate::boot::book::{self, Book, BootConfig, FORMATS, Firmware, Host};
use crate::boot::{ipxe, validate};
use crate::catalog::{self, Lookup, Record};
use crate::schema::{Schema, StringSchema};

const AUDIT: Access = Access::all("/", &["Sys.Audit"]);
const MODIFY: Access = Access::all("/", &["Sys.Modify"]);

static FORMAT: Schema = Schema::String(StringSchema {
    enumeration: Some(FORMATS),
    ..StringSchema::new()
});
static FIRMWARE: Schema = Schema::String(StringSchema {
    enumeration: Some(&["bios", "uefi"]),
    ..StringSchema::new()
});

const NAME_PROP: crate::schema::Property = required("Its name.", &types::ITEM_NAME);
const CONFIG_FIELDS: &[&str] = &["name", "format", "files", "description"];
const HOST_FIELDS: &[&str] = &["name", "mac", "ip", "image", "config", "firmware"];

params!(ITEM_PARAMS => ItemArgs {
    "name" name: String = NAME_PROP,
});

// --- configs ---------------------------------------------------------------------------------

pub static CONFIG_LIST: ApiMethod = ApiMethod::get("/cluster/isolib/boot/configs", |ctx, p| {
    Box::pin(config_list(ctx, p))
})
.describe("Boot configs (isolib).")
.returns(Returns::ArrayOf(CONFIG_FIELDS))
.access(AUDIT);

async fn config_list(ctx: Ctx, _: Params) -> Result<Reply, ApiError> {
    let book = load(&ctx).await?;
    Ok(Reply::Data(Value::Array(
        book.configs
            .iter()
            .map(|(n, c)| config_json(n, c))
            .collect(),
    )))
}

params!(CONFIG_CREATE_PARAMS => ConfigCreateArgs {
    "name" name: String = NAME_PROP,
    "format" format: String = required("What reads it.", &FORMAT),
    "files" files: String = required(
        "Its files, as a JSON object of file name to content.",
        &types::STRING
    ),
    "description" description: Option<String> = optional("A description.", &types::STRING),
});

pub static CONFIG_CREATE: ApiMethod = ApiMethod::post("/cluster/isolib/boot/configs", |ctx, p| {
    Box::pin(config_create(ctx, p))
})
.describe("Create a boot config (isolib).")
.params(&CONFIG_CREATE_PARAMS)
.access(MODIFY);

async fn config_create(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ConfigCreateArgs = from_params(params)?;
    let config = BootConfig {
        format: args.format,
        files: files(&args.files)?,
        description: args.description.unwrap_or_default(),
    };
    change(&ctx, move |book| {
        if book.configs.contains_key(&args.name) {
            return Err(ApiError::param(
                "name",
                format!("boot config '{}' already exists", args.name),
            ));
        }
        book.configs.insert(args.name, config);
        Ok(())
    })
    .await
}

pub static CONFIG_READ: ApiMethod =
    ApiMethod::get("/cluster/isolib/boot/configs/{name}", |ctx, p| {
        Box::pin(config_read(ctx, p))
    })
    .describe("A boot config (isolib).")
    .params(&ITEM_PARAMS)
    .returns(Returns::Object(CONFIG_FIELDS))
    .access(AUDIT);

async fn config_read(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ItemArgs = from_params(params)?;
    let book = load(&ctx).await?;
    let config = book
        .configs
        .get(&args.name)
        .ok_or_else(|| no_config(&args.name))?;
    Ok(Reply::Data(config_json(&args.name, config)))
}

params!(CONFIG_UPDATE_PARAMS => ConfigUpdateArgs {
    "name" name: String = NAME_PROP,
    "format" format: Option<String> = optional("What reads it.", &FORMAT),
    "files" files: Option<String> = optional(
        "Its files, as a JSON object of file name to content.",
        &types::STRING
    ),
    "description" description: Option<String> = optional("A description.", &types::STRING),
});

pub static CONFIG_UPDATE: ApiMethod =
    ApiMethod::put("/cluster/isolib/boot/configs/{name}", |ctx, p| {
        Box::pin(config_update(ctx, p))
    })
    .describe("Change a boot config (isolib).")
    .params(&CONFIG_UPDATE_PARAMS)
    .access(MODIFY);

async fn config_update(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ConfigUpdateArgs = from_params(params)?;
    let new_files = args.files.as_deref().map(files).transpose()?;
    change(&ctx, move |book| {
        let config = book
            .configs
            .get_mut(&args.name)
            .ok_or_else(|| no_config(&args.name))?;
        if let Some(f) = args.format {
            config.format = f;
        }
        if let Some(f) = new_files {
            config.files = f;
        }
        if let Some(d) = args.description {
            config.description = d;
        }
        Ok(())
    })
    .await
}

pub static CONFIG_DELETE: ApiMethod =
    ApiMethod::delete("/cluster/isolib/boot/configs/{name}", |ctx, p| {
        Box::pin(config_delete(ctx, p))
    })
    .describe("Delete a boot config no host uses (isolib).")
    .params(&ITEM_PARAMS)
    .access(MODIFY);

async fn config_delete(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ItemArgs = from_params(params)?;
    change(&ctx, move |book| {
        if !book.configs.contains_key(&args.name) {
            return Err(no_config(&args.name));
        }
        validate::config_unused(book, &args.name).map_err(bad)?;
        book.configs.remove(&args.name);
        Ok(())
    })
    .await
}

fn files(json: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let files: BTreeMap<String, String> = serde_json::from_str(json).map_err(|e| {
        ApiError::param(
            "files",
            format!("not a JSON object of file name to content: {e}"),
        )
    })?;
    if files.is_empty() {
        return Err(ApiError::param("files", "a boot config needs a file"));
    }
    if let Some(bad) = files
        .keys()
        .find(|n| n.is_empty() || n.contains('/') || n.starts_with('.'))
    {
        return Err(ApiError::param(
            "files",
            format!("'{bad}' is not a file name"),
        ));
    }
    Ok(files)
}

fn config_json(name: &str, c: &BootConfig) -> Value {
    json!({"name": name, "format": c.format, "files": c.files, "description": c.description})
}

fn no_config(name: &str) -> ApiError {
    ApiError::new(404, format!("boot config '{name}' does not exist\n"))
}

// --- hosts -----------------------------------------------------------------------------------

pub static HOST_LIST: ApiMethod = ApiMethod::get("/cluster/isolib/boot/hosts", |ctx, p| {
    Box::pin(host_list(ctx, p))
})
.describe("Hosts that boot over the network: host, MAC, image, config (isolib).")
.returns(Returns::ArrayOf(HOST_FIELDS))
.access(AUDIT);

async fn host_list(ctx: Ctx, _: Params) -> Result<Reply, ApiError> {
    let book = load(&ctx).await?;
    Ok(Reply::Data(Value::Array(
        book.hosts.iter().map(|(n, h)| host_json(n, h)).collect(),
    )))
}

params!(HOST_CREATE_PARAMS => HostCreateArgs {
    "name" name: String = NAME_PROP,
    "mac" mac: String = required("Its MAC address.", &types::STRING),
    "ip" ip: Option<String> = optional(
        "Its IP address: /boot/config knows it by it.",
        &types::STRING
    ),
    "image" image: Option<String> = optional(
        "The volume it boots, or 'localboot'.",
        &types::STRING
    ),
    "config" config: Option<String> = optional("Its boot config.", &types::STRING),
    "firmware" firmware: Option<String> = optional("bios or uefi, when known.", &FIRMWARE),
});

pub static HOST_CREATE: ApiMethod = ApiMethod::post("/cluster/isolib/boot/hosts", |ctx, p| {
    Box::pin(host_create(ctx, p))
})
.describe("Add a host (isolib).")
.params(&HOST_CREATE_PARAMS)
.access(MODIFY);

async fn host_create(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: HostCreateArgs = from_params(params)?;
    let host = Host {
        mac: ipxe::normalize_mac(&args.mac)
            .ok_or_else(|| ApiError::param("mac", "not a MAC address"))?,
        ip: args.ip.as_deref().map(ip).transpose()?.flatten(),
        image: args.image.as_deref().map(image).transpose()?.flatten(),
        config: args.config.filter(|c| !c.is_empty()),
        firmware: args.firmware.as_deref().and_then(Firmware::parse),
    };
    let record = image_record(&ctx, &host).await?;
    change(&ctx, move |book| {
        if book.hosts.contains_key(&args.name) {
            return Err(ApiError::param(
                "name",
                format!("host '{}' already exists", args.name),
            ));
        }
        validate::host(book, &args.name, &host, record.as_ref()).map_err(bad)?;
        book.hosts.insert(args.name, host);
        Ok(())
    })
    .await
}

pub static HOST_READ: ApiMethod = ApiMethod::get("/cluster/isolib/boot/hosts/{name}", |ctx, p| {
    Box::pin(host_read(ctx, p))
})
.describe("A host (isolib).")
.params(&ITEM_PARAMS)
.returns(Returns::Object(HOST_FIELDS))
.access(AUDIT);

async fn host_read(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ItemArgs = from_params(params)?;
    let book = load(&ctx).await?;
    let host = book
        .hosts
        .get(&args.name)
        .ok_or_else(|| no_host(&args.name))?;
    Ok(Reply::Data(host_json(&args.name, host)))
}

params!(HOST_UPDATE_PARAMS => HostUpdateArgs {
    "name" name: String = NAME_PROP,
    "mac" mac: Option<String> = optional("Its MAC address.", &types::STRING),
    "ip" ip: Option<String> = optional("Its IP address; empty: none.", &types::STRING),
    "image" image: Option<String> = optional(
        "The volume it boots, or 'localboot'; empty: none.",
        &types::STRING
    ),
    "config" config: Option<String> = optional("Its boot config; empty: none.", &types::STRING),
    "firmware" firmware: Option<String> = optional("bios or uefi.", &FIRMWARE),
});

pub static HOST_UPDATE: ApiMethod =
    ApiMethod::put("/cluster/isolib/boot/hosts/{name}", |ctx, p| {
        Box::pin(host_update(ctx, p))
    })
    .describe("Change a host: its image, its config (isolib).")
    .params(&HOST_UPDATE_PARAMS)
    .access(MODIFY);

async fn host_update(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: HostUpdateArgs = from_params(params)?;
    let current = load(&ctx).await?;
    let mut host = current
        .hosts
        .get(&args.name)
        .cloned()
        .ok_or_else(|| no_host(&args.name))?;
    if let Some(m) = &args.mac {
        host.mac =
            ipxe::normalize_mac(m).ok_or_else(|| ApiError::param("mac", "not a MAC address"))?;
    }
    if let Some(i) = &args.ip {
        host.ip = ip(i)?;
    }
    if let Some(i) = &args.image {
        host.image = image(i)?;
    }
    if let Some(c) = args.config {
        host.config = Some(c).filter(|c| !c.is_empty());
    }
    if let Some(f) = args.firmware.as_deref() {
        host.firmware = Firmware::parse(f);
    }
    let record = image_record(&ctx, &host).await?;
    change(&ctx, move |book| {
        if !book.hosts.contains_key(&args.name) {
            return Err(no_host(&args.name));
        }
        validate::host(book, &args.name, &host, record.as_ref()).map_err(bad)?;
        book.hosts.insert(args.name, host);
        Ok(())
    })
    .await
}

pub static HOST_DELETE: ApiMethod =
    ApiMethod::delete("/cluster/isolib/boot/hosts/{name}", |ctx, p| {
        Box::pin(host_delete(ctx, p))
    })
    .describe("Remove a host (isolib).")
    .params(&ITEM_PARAMS)
    .access(MODIFY);

async fn host_delete(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ItemArgs = from_params(params)?;
    change(&ctx, move |book| {
        book.hosts
            .remove(&args.name)
            .map(|_| ())
            .ok_or_else(|| no_host(&args.name))
    })
    .await
}

fn ip(text: &str) -> Result<Option<std::net::IpAddr>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| ApiError::param("ip", "not an IP address"))
}

fn image(text: &str) -> Result<Option<String>, ApiError> {
    validate::image_param(text).map_err(bad)
}

/// The record of the volume `host` boots; a volume that is not there is the caller's error.
async fn image_record(ctx: &Ctx, host: &Host) -> Result<Option<Record>, ApiError> {
    let Some(volid) = host.volume() else {
        return Ok(None);
    };
    let missing = || ApiError::param("image", format!("volume '{volid}' does not exist"));
    let (sid, volname) = crate::pve::ids::parse_volume_id(volid).ok_or_else(missing)?;
    let cfg = ctx.state.storage_config()?;
    let storage = cfg.get(&sid).ok_or_else(missing)?;
    let vol = crate::storage::parse_volname(&volname).map_err(|_| missing())?;
    if vol.vtype != "iso" {
        return Err(ApiError::param(
            "image",
            format!("volume '{volid}' is not an ISO image"),
        ));
    }
    let path = storage.volume_path(&volname).map_err(|_| missing())?;
    if !path.exists() {
        return Err(missing());
    }
    let lookup = super::blocking(move || catalog::store::load(&path)).await?;
    Ok(match lookup {
        Ok(Lookup::Fresh(r)) => Some(r),
        _ => None,
    })
}

fn host_json(name: &str, h: &Host) -> Value {
    json!({
        "name": name, "mac": h.mac, "ip": h.ip, "image": h.image, "config": h.config,
        "firmware": h.firmware.map(Firmware::name),
    })
}

fn no_host(name: &str) -> ApiError {
    ApiError::new(404, format!("host '{name}' does not exist\n"))
}

// --- the book ------------------------------------------------------------------------------

fn bad(e: validate::Invalid) -> ApiError {
    ApiError::param(e.field, e.text)
}

pub(super) async fn load(ctx: &Ctx) -> Result<Book, ApiError> {
    let path = book::path(ctx.state.config());
    super::blocking(move || book::load(&path))
        .await?
        .map_err(ApiError::server)
}

/// Applies `f` to the stored book and writes it back, unless `f` refuses.
async fn change(
    ctx: &Ctx,
    f: impl FnOnce(&mut Book) -> Result<(), ApiError> + Send + 'static,
) -> Result<Reply, ApiError> {
    let state = ctx.state.clone();
    super::blocking(move || book::update(state.config(), f))
        .await?
        .map_err(ApiError::server)??;
    Ok(Reply::Data(Value::Null))
}

/// `/cluster/isolib/boot`.
pub static ROUTER: Router = Router {
    subdirs: &[("configs", &CONFIGS), ("hosts", &HOSTS)],
    ..Router::new()
};

static CONFIGS: Router = Router::items(&[&CONFIG_LIST, &CONFIG_CREATE], "name", &CONFIG_ITEM);
static CONFIG_ITEM: Router = Router::leaf(&[&CONFIG_READ, &CONFIG_UPDATE, &CONFIG_DELETE]);
static HOSTS: Router = Router::items(&[&HOST_LIST, &HOST_CREATE], "name", &HOST_ITEM);
static HOST_ITEM: Router = Router::leaf(&[&HOST_READ, &HOST_UPDATE, &HOST_DELETE]);
