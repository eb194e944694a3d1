//! `/cluster/isolib/tracks` (isolib): tracked releases, their definition and what the last
//! polls found; `POST .../{name}/check` polls one now in a task. Changing a track needs what
//! its polls do: `Datastore.Allocate` on its storage (retention removes volumes) and
//! download-url's network access on this node; seeing one, `Datastore.Audit` on its storage.

use serde_json::{Value, json};

use super::router::{ApiMethod, Ctx, Params, Reply, Returns, Router, STORAGE_AUDIT_PRIVS};
use super::types::{self, STORAGE_PROP, optional, required};
use super::{ApiError, from_params};
use crate::schema::{Schema, StringSchema};
use crate::upstream::track::{self, Entry, Feed, Track, TrackError, discover, poll};

static CONTENT: Schema = Schema::String(StringSchema {
    enumeration: Some(crate::pve::content::DOWNLOAD_CONTENT),
    default: Some("iso"),
    ..StringSchema::new()
});
static FEED: Schema = Schema::String(StringSchema {
    enumeration: Some(&["alpine", "fcos"]),
    ..StringSchema::new()
});
static KEEP: Schema = Schema::integer(Some(1), None);
static INTERVAL: Schema = Schema::integer(Some(10), Some(track::DEFAULT_INTERVAL as i64));

/// What a track is shown with, in the list and alone.
const FIELDS: &[&str] = &[
    "name",
    "storage",
    "content",
    "url",
    "current",
    "latest",
    "held",
    "last-poll",
    "last-change",
    "error",
    "task",
];

const NAME_PROP: crate::schema::Property = required("The track's name.", &types::ITEM_NAME);

pub static LIST: ApiMethod =
    ApiMethod::get("/cluster/isolib/tracks", |ctx, p| Box::pin(list(ctx, p)))
        .describe("Tracked releases (isolib).")
        .returns(Returns::ArrayOf(FIELDS));

async fn list(ctx: Ctx, _: Params) -> Result<Reply, ApiError> {
    let entries = load_all(&ctx).await?;
    Ok(Reply::Data(Value::Array(
        entries
            .iter()
            .filter(|e| may_see(&ctx, e))
            .map(to_json)
            .collect(),
    )))
}

params!(CREATE_PARAMS => CreateArgs {
    "name" name: String = NAME_PROP,
    "storage" storage: String = STORAGE_PROP,
    "content" content: String = optional("Content type of the images.", &CONTENT),
    "url" url: String = required(
        "Where releases are announced: a checksum file, a directory index, or a feed.",
        &types::URL
    ),
    "pattern" pattern: Option<String> = optional(
        "A regular expression matched against whole file names (Alpine: the flavor); its first group is the version.",
        &types::STRING
    ),
    "feed" feed: Option<String> = optional("A structured feed instead of a pattern.", &FEED),
    "signature-url" signature_url: Option<String> =
        optional("A detached signature of the checksum file.", &types::URL),
    "keyring" keyring: Option<String> = optional(
        "Check the checksum file's signature against this keyring.",
        &types::STRING
    ),
    "keep" keep: Option<u32> = optional("Keep this many releases (default: all).", &KEEP),
    "interval" interval: u64 = optional("Seconds between polls.", &INTERVAL),
});

pub static CREATE: ApiMethod =
    ApiMethod::post("/cluster/isolib/tracks", |ctx, p| Box::pin(create(ctx, p)))
        .describe("Track the releases of an image (isolib).")
        .params(&CREATE_PARAMS);

async fn create(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: CreateArgs = from_params(params)?;
    may_change(&ctx, &args.storage)?;
    let feed = args.feed.as_deref().and_then(Feed::parse);
    match (&args.pattern, feed) {
        (Some(p), _) => {
            discover::compile(p).map_err(|e| ApiError::param("pattern", e.to_string()))?;
        }
        (None, Some(Feed::Fcos)) => {}
        (None, _) => {
            return Err(ApiError::param(
                "pattern",
                "property is missing and it is not optional",
            ));
        }
    }
    if args.signature_url.is_some() && args.keyring.is_none() {
        return Err(ApiError::param(
            "keyring",
            "a signature is checked against a keyring: name one",
        ));
    }
    if let Some(k) = &args.keyring {
        crate::upstream::openpgp::Keyring::load(&ctx.state.config().keyrings, k)
            .map_err(|e| ApiError::param("keyring", e.to_string()))?;
    }
    let cfg = ctx.state.storage_config()?;
    let storage = cfg.storage(&args.storage)?;
    if !storage.content.contains(&args.content) {
        return Err(ApiError::param(
            "storage",
            format!(
                "storage '{}' does not support content type '{}'",
                args.storage, args.content
            ),
        ));
    }
    let t = Track {
        name: args.name,
        storage: args.storage,
        content: args.content,
        url: args.url,
        pattern: args.pattern,
        feed,
        signature_url: args.signature_url,
        keyring: args.keyring,
        keep: args.keep,
        interval: args.interval,
    };
    let dir = ctx.state.config().state_dir.clone();
    blocking(move || track::create(&dir, t)).await?;
    Ok(Reply::Data(Value::Null))
}

params!(ITEM_PARAMS => ItemArgs {
    "name" name: String = NAME_PROP,
});

pub static READ: ApiMethod = ApiMethod::get("/cluster/isolib/tracks/{name}", |ctx, p| {
    Box::pin(read(ctx, p))
})
.describe("A tracked release: its definition and what the last polls found (isolib).")
.params(&ITEM_PARAMS)
.returns(Returns::Object(FIELDS));

async fn read(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ItemArgs = from_params(params)?;
    let entry = load(&ctx, &args.name).await?;
    if !may_see(&ctx, &entry) {
        return Err(ApiError::permission(Some(&format!(
            "/storage/{}, {}",
            entry.track.storage,
            STORAGE_AUDIT_PRIVS.join("|")
        ))));
    }
    Ok(Reply::Data(to_json(&entry)))
}

pub static DELETE: ApiMethod = ApiMethod::delete("/cluster/isolib/tracks/{name}", |ctx, p| {
    Box::pin(delete(ctx, p))
})
.describe("Stop tracking; the volumes stay (isolib).")
.params(&ITEM_PARAMS);

async fn delete(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ItemArgs = from_params(params)?;
    let entry = load(&ctx, &args.name).await?;
    may_change(&ctx, &entry.track.storage)?;
    let dir = ctx.state.config().state_dir.clone();
    blocking(move || track::remove(&dir, &args.name)).await?;
    Ok(Reply::Data(Value::Null))
}

pub static CHECK: ApiMethod = ApiMethod::post("/cluster/isolib/tracks/{name}/check", |ctx, p| {
    Box::pin(check(ctx, p))
})
.describe("Poll a track now, in a task (isolib).")
.params(&ITEM_PARAMS)
.returns(Returns::String("UPID"));

async fn check(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ItemArgs = from_params(params)?;
    let entry = load(&ctx, &args.name).await?;
    may_change(&ctx, &entry.track.storage)?;
    let upid = poll::check_now(&ctx.state, &args.name, &ctx.task_user()?).map_err(|e| match e {
        poll::PollError::Track(t) => track_error(t),
        other => ApiError::server(other),
    })?;
    Ok(Reply::Data(Value::String(upid.to_string())))
}

fn may_see(ctx: &Ctx, e: &Entry) -> bool {
    ctx.has(
        &format!("/storage/{}", e.track.storage),
        STORAGE_AUDIT_PRIVS,
        true,
    )
}

fn may_change(ctx: &Ctx, storage: &str) -> Result<(), ApiError> {
    let path = format!("/storage/{storage}");
    if !ctx.has(&path, &["Datastore.Allocate"], false) || !ctx.has_network_access() {
        return Err(ApiError::permission(Some(&format!(
            "{path}, Datastore.Allocate and network access"
        ))));
    }
    Ok(())
}

fn track_error(e: TrackError) -> ApiError {
    match e {
        TrackError::Missing(_) => ApiError::new(404, e.to_string()),
        TrackError::Exists(_) => ApiError::param("name", e.to_string()),
        other => ApiError::server(other),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TrackError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::server)?
        .map_err(track_error)
}

async fn load(ctx: &Ctx, name: &str) -> Result<Entry, ApiError> {
    let dir = ctx.state.config().state_dir.clone();
    let name = name.to_owned();
    blocking(move || track::load(&dir, &name)).await
}

async fn load_all(ctx: &Ctx) -> Result<Vec<Entry>, ApiError> {
    let dir = ctx.state.config().state_dir.clone();
    blocking(move || Ok(track::load_all(&dir))).await
}

fn to_json(e: &Entry) -> Value {
    let mut v = serde_json::to_value(&e.track).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        let s = &e.state;
        m.insert("current".into(), json!(s.current()));
        m.insert("latest".into(), json!(s.latest));
        m.insert("held".into(), json!(s.held));
        m.insert("last-poll".into(), json!(s.last_poll));
        m.insert("last-change".into(), json!(s.last_change));
        m.insert("error".into(), json!(s.error));
        m.insert("task".into(), json!(s.task));
    }
    v
}

/// `/cluster/isolib/tracks`.
pub static ROUTER: Router = Router::items(&[&LIST, &CREATE], "name", &ITEM_ROUTER);

static ITEM_ROUTER: Router = Router {
    methods: &[&READ, &DELETE],
    subdirs: &[("check", &CHECK_ROUTER)],
    match_all: None,
};

static CHECK_ROUTER: Router = Router::leaf(&[&CHECK]);
