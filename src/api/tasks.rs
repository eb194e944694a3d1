//! `/nodes/{node}/tasks[/{upid}[/log|/status]]`: list, index, status, log and stop
//! (pve-manager `API2/Tasks.pm`, spec/pve-api.md §4.3-4.7).

use crate::pve::perl::split_list;
use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use super::replies::{TaskFields, TaskListItem, TaskStatus};
use super::router::{ApiMethod, Ctx, Params, Reply, Returns, Router};
use super::types::{self, NODE_PROP, optional, required};
use super::{ApiError, from_params};
use crate::schema::{Schema, StringSchema};
use crate::tasks::{TaskEntry, Upid};

/// The fields of [`TaskFields`], then `$extra` (a test in `api` keeps them equal to what
/// the reply types serialize): a task list item's or status's field
/// names for the exported schema.
macro_rules! upid_fields {
    [$($extra:literal),*] => {
        &["upid", "node", "pid", "pstart", "starttime", "type", "id", "user", "tokenid", $($extra),*]
    };
}

/// PVE waits up to 5 s for a stopped worker before it gives up on it.
const STOP_GRACE: Duration = Duration::from_secs(5);

static SOURCE: Schema = Schema::String(StringSchema {
    enumeration: Some(&["archive", "active", "all"]),
    default: Some("archive"),
    ..StringSchema::new()
});

params!(LIST_PARAMS => ListArgs {
    "node" node: String = NODE_PROP,
    "start" start: u64 = optional("List tasks beginning from this offset.", &types::START),
    "limit" limit: u64 = optional("Only list this amount of tasks.", &types::LIMIT),
    "userfilter" userfilter: Option<String> =
        optional("Only list tasks from this user.", &types::STRING),
    "typefilter" typefilter: Option<String> = optional(
        "Only list tasks of this type (e.g., vzstart, vzdump).",
        &types::STRING
    ),
    "vmid" vmid: Option<i64> = optional("Only list tasks for this VM.", &types::INTEGER),
    "errors" errors: Option<bool> =
        optional("Only list tasks with a status of ERROR.", &types::BOOLEAN),
    "source" source: String = optional("List archived, active or all tasks.", &SOURCE),
    "since" since: Option<i64> =
        optional("Only list tasks since this UNIX epoch.", &types::INTEGER),
    "until" until: Option<i64> =
        optional("Only list tasks until this UNIX epoch.", &types::INTEGER),
    "statusfilter" statusfilter: Option<String> = optional(
        "List of Task States that should be returned (ok, error, warning, unknown).",
        &types::STRING
    ),
});

pub static LIST: ApiMethod = ApiMethod::get("/nodes/{node}/tasks", |ctx, p| Box::pin(list(ctx, p)))
    .describe("Read task list for one node (finished tasks).")
    .params(&LIST_PARAMS)
    .returns(Returns::ArrayOf(upid_fields!["endtime", "status", "saved"]));

/// PVE's status classes (`PVE::Tools::upid_normalize_status_type`).
fn status_class(status: &str) -> &'static str {
    if status == "OK" {
        "ok"
    } else if status.starts_with("WARNINGS") {
        "warning"
    } else if status.is_empty() || status == "unexpected status" {
        "unknown"
    } else {
        "error"
    }
}

/// A caller sees its own tasks; a user also those of its tokens (spec §4.3).
fn owns(ctx: &Ctx, upid: &Upid) -> bool {
    let Some(auth) = &ctx.auth else { return false };
    let me = auth.to_string();
    upid.user == me || (!auth.is_token() && upid.user_and_token().0 == me)
}

async fn list(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: ListArgs = from_params(params)?;
    let audit = ctx.has(&format!("/nodes/{}", ctx.node()), &["Sys.Audit"], false);
    let errors_only = args.errors == Some(true);
    let statuses: Option<Vec<String>> = args
        .statusfilter
        .filter(|_| !errors_only)
        .map(|s| split_list(&s).into_iter().map(str::to_lowercase).collect());
    let userfilter = args.userfilter.map(|u| u.to_lowercase());
    let want = |e: &TaskEntry| -> bool {
        let u = &e.upid;
        let status = e.end.as_ref().map(|(_, s)| s.as_str());
        match (args.source.as_str(), status) {
            ("archive", None) | ("active", Some(_)) => return false,
            _ => {}
        }
        (audit || owns(&ctx, u))
            && userfilter
                .as_ref()
                .is_none_or(|f| u.user.to_lowercase().contains(f))
            && args.typefilter.as_ref().is_none_or(|t| *t == u.kind)
            && args.vmid.is_none_or(|v| v.to_string() == u.id)
            && args.since.is_none_or(|s| u.starttime >= s)
            && args.until.is_none_or(|t| u.starttime <= t)
            && !(errors_only && status.is_some_and(|s| s == "OK"))
            && statuses
                .as_ref()
                .is_none_or(|f| status.is_some_and(|s| f.iter().any(|x| x == status_class(s))))
    };
    let matched: Vec<TaskEntry> = ctx.state.tasks().list().into_iter().filter(want).collect();
    let total = matched.len() as u64;
    let items = matched
        .into_iter()
        .skip(args.start as usize)
        .take(args.limit as usize)
        .map(|e| {
            let (endtime, status, saved) = match e.end {
                Some((end, status)) => (Some(end), status, None),
                None => (None, "RUNNING".to_string(), Some("0".to_string())),
            };
            TaskListItem {
                task: TaskFields::of(&e.upid),
                endtime,
                status,
                saved,
            }
        })
        .collect::<Vec<_>>();
    let items = serde_json::to_value(items).map_err(ApiError::server)?;
    Ok(Reply::Counted(items, total))
}

params!(UPID_PARAMS => UpidArgs {
    "node" node: String = NODE_PROP,
    "upid" upid: String = required("The task's unique ID.", &types::UPID),
});

/// Parses the UPID, checks the task exists and that the caller may see it: its owner, or
/// `priv` on `/nodes/<node>`.
fn task_for(ctx: &Ctx, upid: &str, privilege: &str) -> Result<Upid, ApiError> {
    let upid: Upid = upid
        .parse()
        .map_err(|_| ApiError::param("upid", "unable to parse worker upid"))?;
    if !ctx.state.tasks().log_path(&upid).is_file() {
        return Err(ApiError::param("upid", "no such task"));
    }
    may_see(ctx, &upid, privilege)?;
    Ok(upid)
}

/// A task's owner may see it; anyone else needs `privilege` on the node (spec §4.5).
fn may_see(ctx: &Ctx, upid: &Upid, privilege: &str) -> Result<(), ApiError> {
    let node_path = format!("/nodes/{}", ctx.node());
    if owns(ctx, upid) || ctx.has(&node_path, &[privilege], false) {
        Ok(())
    } else {
        Err(ApiError::permission(Some(&format!(
            "{node_path}, {privilege}"
        ))))
    }
}

pub static INDEX: ApiMethod = ApiMethod::get("/nodes/{node}/tasks/{upid}", |_, _| {
    Box::pin(async { Ok(super::ROUTER.index(INDEX.path, "name")) })
})
.describe("Task index.")
.params(&UPID_PARAMS)
.returns(Returns::ArrayOf(&["name"]));

pub static STATUS: ApiMethod = ApiMethod::get("/nodes/{node}/tasks/{upid}/status", |ctx, p| {
    Box::pin(status(ctx, p))
})
.describe("Read task status.")
.params(&UPID_PARAMS)
.returns(Returns::Object(upid_fields!["status", "exitstatus"]));

async fn status(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: UpidArgs = from_params(params)?;
    let upid = task_for(&ctx, &args.upid, "Sys.Audit")?;
    // No `exitstatus` key at all while running: the Go clients panic on null and fail on ""
    // (clients-and-plugin.md §B.2 item 2).
    let running = ctx.state.tasks().is_running(&upid);
    let reply = TaskStatus {
        task: TaskFields::of(&upid),
        status: if running { "running" } else { "stopped" }.into(),
        exitstatus: (!running).then(|| ctx.state.tasks().exit_status(&upid)),
    };
    Ok(Reply::Data(
        serde_json::to_value(reply).map_err(ApiError::server)?,
    ))
}

params!(LOG_PARAMS => LogArgs {
    "node" node: String = NODE_PROP,
    "upid" upid: String = required("The task's unique ID.", &types::UPID),
    // No schema defaults here: `download` may not be combined with a start or limit that was
    // sent, and a filled-in default would be indistinguishable from one.
    "start" start: Option<u64> = optional(
        "Start at this line when reading the tasklog (default 0)",
        &types::COUNT
    ),
    "limit" limit: Option<u64> = optional(
        "The amount of lines to read from the tasklog, 0 means all (default 50).",
        &types::COUNT
    ),
    "download" download: Option<bool> = optional(
        "Whether the tasklog file should be downloaded. This parameter can't be used in conjunction with other parameters",
        &types::BOOLEAN
    ),
});

pub static LOG: ApiMethod = ApiMethod::get("/nodes/{node}/tasks/{upid}/log", |ctx, p| {
    Box::pin(log(ctx, p))
})
.describe("Read task log.")
.params(&LOG_PARAMS)
.returns(Returns::ArrayOf(&["n", "t"]));

async fn log(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: LogArgs = from_params(params)?;
    let upid: Upid = args
        .upid
        .parse()
        .map_err(|_| ApiError::param("upid", "unable to parse worker upid"))?;
    // Unlike status, PVE's log does not require the log file to exist (spec §4.6).
    may_see(&ctx, &upid, "Sys.Audit")?;
    let path = ctx.state.tasks().log_path(&upid);
    if args.download == Some(true) {
        if args.start.is_some() || args.limit.is_some() {
            return Err(ApiError::server(
                "'download' cannot be used together with 'start' or 'limit' parameters",
            ));
        }
        return download_log(&upid, &path);
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            return Ok(Reply::Counted(
                json!([{"n": 1, "t": format!("unable to open file - {e}")}]),
                1,
            ));
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return Ok(Reply::Counted(json!([{"n": 1, "t": "no content"}]), 1));
    }
    let total = lines.len() as u64;
    let take = match args.limit.unwrap_or(50) {
        0 => usize::MAX,
        n => n as usize,
    };
    let items: Vec<Value> = lines
        .iter()
        .enumerate()
        .skip(args.start.unwrap_or(0) as usize)
        .take(take)
        .map(|(i, t)| json!({"n": i + 1, "t": t}))
        .collect();
    Ok(Reply::Counted(Value::Array(items), total))
}

fn download_log(upid: &Upid, path: &std::path::Path) -> Result<Reply, ApiError> {
    let data =
        std::fs::read(path).map_err(|e| ApiError::server(format!("unable to open file - {e}")))?;
    let stamp = chrono::DateTime::from_timestamp(upid.starttime, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let mut headers = vec![(
        "Content-Disposition",
        format!(
            "attachment; filename=\"task-{}-{}-{stamp}.log\"",
            upid.node, upid.kind
        ),
    )];
    let body = if data.len() > 1024 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let packed = gz
            .write_all(&data)
            .and_then(|_| gz.finish())
            .map_err(ApiError::server)?;
        headers.push(("Content-Encoding", "gzip".to_string()));
        packed
    } else {
        data
    };
    Ok(Reply::Raw {
        content_type: "text/plain",
        headers,
        body,
    })
}

pub static STOP: ApiMethod = ApiMethod::delete("/nodes/{node}/tasks/{upid}", |ctx, p| {
    Box::pin(stop(ctx, p))
})
.describe("Stop a task.")
.params(&UPID_PARAMS);

async fn stop(ctx: Ctx, params: Params) -> Result<Reply, ApiError> {
    let args: UpidArgs = from_params(params)?;
    let upid = task_for(&ctx, &args.upid, "Sys.Modify")?;
    ctx.state.tasks().stop(&upid, STOP_GRACE).await;
    Ok(Reply::Data(Value::Null))
}
/// `/nodes/{node}/tasks`.
pub static ROUTER: Router = Router::items(&[&LIST], "upid", &UPID_ROUTER);

static UPID_ROUTER: Router = Router {
    methods: &[&INDEX, &STOP],
    subdirs: &[("log", &LOG_ROUTER), ("status", &STATUS_ROUTER)],
    ..Router::new()
};

static LOG_ROUTER: Router = Router::leaf(&[&LOG]);

static STATUS_ROUTER: Router = Router::leaf(&[&STATUS]);
