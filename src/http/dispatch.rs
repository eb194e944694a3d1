//! One request through PVE's pipeline, in PVE's order (spec/pve-api.md §5.3): URI and format,
//! authentication (before the route is even looked up), route lookup, parameter merge, token
//! allowed, permission, node, schema validation, handler, format. The only actix-facing code
//! besides `format`.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use percent_encoding::percent_decode_str;

use super::format::{self, Format};
use super::local_socket::SocketPeer;
use crate::api::router::{Access, ApiMethod, Ctx};
use crate::api::{ApiError, ROUTER};
use crate::auth::{AccessConfig, AuthId, extract_auth_value};
use crate::config::HeaderLimits;
use crate::schema::{RawParams, RawValue, validate};
use crate::state::AppState;
use crate::tasks::Upid;

/// The header the PVE shim names its PVE task in (see [`pve_task`]).
pub const PVE_TASK_HEADER: &str = "X-Isolib-PVE-Task";

pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let resp = dispatch(&req, payload, state.get_ref().clone()).await;
    let path = req.path();
    if path.starts_with("/files/") || path.starts_with("/boot/") {
        let range = req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok());
        let ip = req.peer_addr().map(|a| a.ip());
        log_request(
            req.method().as_str(),
            path,
            req.query_string(),
            range,
            ip,
            resp.status().as_u16(),
        );
    } else {
        tracing::debug!(method = %req.method(), path = %path, status = resp.status().as_u16());
    }
    resp
}

/// A request for a volume or a boot endpoint, logged with its range: what a booting machine
/// asked for, in order, is the trail to follow when one does not boot.
pub fn log_request(
    method: &str,
    path: &str,
    query: &str,
    range: Option<&str>,
    ip: Option<std::net::IpAddr>,
    status: u16,
) {
    tracing::info!(
        "{method} {path} {query} range {} from {}: {status}",
        range.unwrap_or("-"),
        ip.map_or_else(|| "-".into(), |ip| ip.to_string())
    );
}

async fn dispatch(req: &HttpRequest, payload: web::Payload, state: AppState) -> HttpResponse {
    if let Some(resp) = check_header_limits(req, state.config().headers) {
        return resp;
    }
    let raw_path = req.uri().path();
    if raw_path.starts_with("/files/") {
        return super::files::serve(req, &state).await;
    }
    if raw_path.starts_with("/boot/") {
        return super::boot::serve(req, &state).await;
    }
    let Some(rest) = raw_path.strip_prefix("/api2/") else {
        return format::plain_error(501, "no such uri");
    };
    let (fmt_name, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let rel_path = format!("/{}", percent_decode_str(tail).decode_utf8_lossy());
    if fmt_name.is_empty() {
        return format::plain_error(501, "no such uri");
    }
    let Some(fmt) = Format::parse(fmt_name) else {
        return format::plain_error(501, &format!("no formatter for uri {rel_path}, {fmt_name}"));
    };
    let method = req.method().as_str();
    if !matches!(method, "GET" | "POST" | "PUT" | "DELETE") {
        return format::plain_error(501, &format!("method '{method}' not available"));
    }
    if req
        .headers()
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return format::plain_error(501, "chunked transfer encoding not supported");
    }

    let access = match state.access() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("unable to load access control config: {e}");
            return format::error(
                fmt,
                &ApiError::server(format!("unable to load access control config: {e}")),
            );
        }
    };
    let route = ROUTER.find(method, &rel_path);
    // Like PVE, before authentication: a body too large for a known method is refused while
    // reading the head. PVE finds the method first, so an unknown one is still "not
    // implemented" (its body is never read), and its multipart upload streams past the limit.
    let max_body = state.config().max_body_size;
    // A multipart body for PVE's upload method streams into a file; any other body is a
    // request like all others, which finds no file.
    let upload = route.as_ref().is_some_and(|(m, _)| m.upload) && is_multipart(req);
    if route.is_some() && !upload && content_length(req).is_some_and(|n| n > max_body as u64) {
        return too_large();
    }
    // PVE lets a few URIs through without credentials (logging in); everything else is
    // authenticated before the route is even looked at.
    let public = route
        .as_ref()
        .is_some_and(|(m, _)| matches!(m.access, Access::World));
    let auth = if public {
        None
    } else {
        match authenticate(req, &state, &access, !upload) {
            Ok(a) => Some(a),
            Err(reason) => {
                // PVE delays every authentication failure to slow down guessing.
                tokio::time::sleep(state.config().auth_fail_delay).await;
                return format::unauthorized(reason);
            }
        }
    };
    let Some((api_method, path_params)) = route else {
        return format::error(fmt, &ApiError::not_implemented(method, &rel_path));
    };
    let pve_task = match pve_task(req) {
        Ok(t) => t,
        Err(e) => return format::error(fmt, &e),
    };
    let caller = Caller {
        auth,
        pve_task,
        access,
        credentials: super::proxy::credentials(req),
    };
    if upload && content_length(req).is_some_and(|n| n > 0) {
        return match receive_upload(req, payload, fmt, api_method, path_params, state, caller).await
        {
            Ok(resp) => resp,
            Err(e) => format::error(fmt, &e),
        };
    }
    let body = match read_body(payload, max_body, state.config().clients.timeout).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if matches!(method, "GET" | "DELETE") && !body.is_empty() {
        return format::plain_error(501, &format!("Unexpected content for method '{method}'"));
    }
    // Another node's request, authenticated here, judged there (pveproxy's proxyto).
    if let Some(node) = path_params.get("node")
        && !is_local(node, &state.config().node)
        && let Some(answer) = super::proxy::to_peer(req, &state, node, &body).await
    {
        return answer.unwrap_or_else(|e| format::error(fmt, &e));
    }
    match run(req, fmt, api_method, path_params, &body, state, caller).await {
        Ok(resp) => resp,
        Err(e) => format::error(fmt, &e),
    }
}

/// PVE checks an upload's permission while reading the head, before any of the body: so the
/// checks of [`run`] come first here, then the body streams (http/upload.rs).
async fn receive_upload(
    req: &HttpRequest,
    payload: web::Payload,
    fmt: Format,
    api_method: &'static ApiMethod,
    path_params: BTreeMap<String, String>,
    state: AppState,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let ctx = authorize(api_method, &path_params, state, caller)?;
    let mut query = RawParams::new();
    add_form(&mut query, req.query_string().as_bytes())?;
    query.remove("_dc");
    Ok(super::upload::receive(req, payload, ctx, fmt, api_method, query, &path_params).await)
}

/// Token allowed, permission, node: what every method checks before its parameters.
fn authorize(
    api_method: &ApiMethod,
    path_params: &BTreeMap<String, String>,
    state: AppState,
    Caller {
        auth,
        pve_task,
        access,
        credentials,
    }: Caller,
) -> Result<Ctx, ApiError> {
    if let Some(auth) = &auth {
        if auth.is_token() && !api_method.allow_token {
            return Err(ApiError::permission(Some(&format!(
                "URI '{}' not available with API token, need proper ticket.",
                api_method.path
            ))));
        }
        api_method.access.check(&access, auth, path_params)?;
    }
    if let Some(node) = path_params.get("node") {
        check_node(node, &state.config().node)?;
    }
    Ok(Ctx {
        state,
        auth,
        access,
        pve_task,
        credentials,
    })
}

/// Who a request is from, the PVE task it is made for, and the ACLs to judge it by.
struct Caller {
    auth: Option<AuthId>,
    pve_task: Option<Upid>,
    access: std::sync::Arc<AccessConfig>,
    credentials: Vec<(String, String)>,
}

async fn run(
    req: &HttpRequest,
    fmt: Format,
    api_method: &ApiMethod,
    path_params: BTreeMap<String, String>,
    body: &[u8],
    state: AppState,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let params = merge_params(req, body, &path_params)?;
    let ctx = authorize(api_method, &path_params, state, caller)?;
    let validated = validate(&api_method.parameters, &params).map_err(ApiError::params)?;
    Ok(format::reply(
        fmt,
        (api_method.handler)(ctx, validated).await?,
    ))
}

/// PVE stops reading a request whose header lines pass its limits, before anything else; isolib
/// answers 431 instead of leaving the client waiting. The texts are PVE's own (it only logs
/// them), with the key that sets the limit. Each field counts as `name: value`, like PVE's line.
fn check_header_limits(req: &HttpRequest, limits: HeaderLimits) -> Option<HttpResponse> {
    let headers = req.headers();
    if headers.len() > limits.max_count {
        return Some(format::plain_error(
            431,
            &format!(
                "too many http header lines (> {}, max-header-count)",
                limits.max_count
            ),
        ));
    }
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.len())
        .sum();
    if size > limits.max_size {
        return Some(format::plain_error(
            431,
            &format!(
                "http header too large (> {} bytes, max-header-size)",
                limits.max_size
            ),
        ));
    }
    None
}

/// A local-socket peer is who the kernel says it is; over TCP a ticket from the cookie, else a
/// ticket from `Authorization`, else an API token (spec §6.1). A ticket also needs its CSRF
/// token on everything but GET (§6.4); a token needs none.
/// `csrf`: whether a ticket needs its token; PVE's upload does without one.
pub(super) fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    access: &AccessConfig,
    csrf: bool,
) -> Result<AuthId, &'static str> {
    if let Some(peer) = req.conn_data::<SocketPeer>() {
        if peer.is_trusted() {
            return Ok(AuthId::root());
        }
        tracing::info!("refused local socket peer with uid {:?}", peer.uid);
        return Err("socket peer is not root");
    }
    let header_value = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let authorization = header_value(header::AUTHORIZATION.as_str());
    let ticket = header_value(header::COOKIE.as_str())
        .and_then(|c| extract_auth_value(c, "PVEAuthCookie"))
        .or_else(|| authorization.and_then(|a| extract_auth_value(a, "PVEAuthCookie")));
    let now = chrono::Utc::now().timestamp();
    if let Some(ticket) = ticket {
        let tickets = state.tickets();
        let user = tickets.verify(&ticket).map_err(|e| {
            tracing::info!("ticket authentication failed: {e}");
            "Authentication failed!"
        })?;
        access
            .check_user_enabled(&user.to_string(), now)
            .map_err(|e| {
                tracing::info!("ticket authentication failed: {e}");
                "Authentication failed!"
            })?;
        if csrf && req.method() != actix_web::http::Method::GET {
            let token = header_value("CSRFPreventionToken").unwrap_or("");
            tickets.verify_csrf(token, &user).map_err(|e| {
                tracing::info!("CSRF check for {user} failed: {e}");
                "Permission denied - invalid csrf token"
            })?;
        }
        return Ok(user);
    }
    let Some(token) = authorization.and_then(|a| extract_auth_value(a, "PVEAPIToken")) else {
        return Err("No ticket");
    };
    access.verify_api_token(&token, now).map_err(|e| {
        tracing::info!("API token authentication failed: {e}");
        "Authentication failed!"
    })
}

/// The PVE task the shim makes a request for (header [`PVE_TASK_HEADER`], PVE's UPID, whose
/// user becomes the daemon task's). Only root on the local socket may say so, since it names
/// another user; it grants nothing, as the request still runs with the peer's rights.
fn pve_task(req: &HttpRequest) -> Result<Option<Upid>, ApiError> {
    let Some(value) = req.headers().get(PVE_TASK_HEADER) else {
        return Ok(None);
    };
    if !req
        .conn_data::<SocketPeer>()
        .is_some_and(SocketPeer::is_trusted)
    {
        return Err(ApiError::permission(Some(&format!(
            "header '{PVE_TASK_HEADER}' is only accepted from root on the local socket"
        ))));
    }
    let text = value.to_str().unwrap_or_default();
    let upid: Upid = text.parse().map_err(|e: crate::tasks::UpidParseError| {
        ApiError::new(400, format!("header '{PVE_TASK_HEADER}': {e}\n"))
    })?;
    upid.user.parse::<AuthId>().map_err(|e| {
        ApiError::new(
            400,
            format!(
                "header '{PVE_TASK_HEADER}': invalid user '{}': {e}\n",
                upid.user
            ),
        )
    })?;
    Ok(Some(upid))
}

fn is_multipart(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// PVE's answer to a body over `$limit_max_post` (`max-body-size` here).
fn too_large() -> HttpResponse {
    format::plain_error(501, "for data too large")
}

/// Reads the body, which the announced length already allowed; a body that grows past `limit`
/// anyway (a lying or missing length) is refused as too large as well. A client silent for
/// `idle` (client-timeout) is dropped, as PVE drops idle clients: otherwise a partial body
/// holds its connection for ever.
async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    idle: std::time::Duration,
) -> Result<Vec<u8>, HttpResponse> {
    let mut body = Vec::new();
    loop {
        let Ok(next) = tokio::time::timeout(idle, payload.next()).await else {
            let mut resp = format::plain_error(408, "timeout reading request body");
            resp.head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            return Err(resp);
        };
        let Some(chunk) = next else { break };
        let chunk = chunk
            .map_err(|e| format::plain_error(400, &format!("unable to read request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Body (JSON object or form), then the query on top, `_dc` dropped, then the path parameters,
/// which may be repeated but not contradicted (spec §5.2).
fn merge_params(
    req: &HttpRequest,
    body: &[u8],
    path_params: &BTreeMap<String, String>,
) -> Result<RawParams, ApiError> {
    let mut params = RawParams::new();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !body.is_empty() {
        match mime.as_str() {
            "application/json" => {
                let value: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::new(400, format!("unable to parse JSON body: {e}\n")))?;
                let serde_json::Value::Object(map) = value else {
                    return Err(ApiError::new(400, "JSON body must be an object\n"));
                };
                params.extend(map.into_iter().map(|(k, v)| (k, RawValue::Json(v))));
            }
            "" | "application/x-www-form-urlencoded" => add_form(&mut params, body)?,
            other => {
                return Err(ApiError::new(
                    415,
                    format!("unsupported content type '{other}'\n"),
                ));
            }
        }
    }
    let mut query = RawParams::new();
    add_form(&mut query, req.query_string().as_bytes())?;
    params.extend(query);
    params.remove("_dc");
    add_path_params(&mut params, path_params)?;
    Ok(params)
}

/// The path parameters over `params`, which may repeat them but not contradict them.
pub(super) fn add_path_params(
    params: &mut RawParams,
    path_params: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    for (k, v) in path_params {
        match params.get(k) {
            None => {}
            Some(RawValue::Str(given)) if given == v => {}
            Some(RawValue::Json(serde_json::Value::String(given))) if given == v => {}
            Some(_) => {
                return Err(ApiError::param(
                    k,
                    "duplicate parameter (already defined in URI) with conflicting values!",
                ));
            }
        }
        params.insert(k.clone(), RawValue::Str(v.clone()));
    }
    Ok(())
}

/// Repeated keys become a list, which the type check then reports as an array.
fn add_form(params: &mut RawParams, data: &[u8]) -> Result<(), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(data)
        .map_err(|e| ApiError::new(400, format!("unable to parse form data: {e}\n")))?;
    for (k, v) in pairs {
        let entry = params.remove(&k);
        let value = match entry {
            None => RawValue::Str(v),
            Some(RawValue::Str(first)) => RawValue::List(vec![first, v]),
            Some(RawValue::List(mut l)) => {
                l.push(v);
                RawValue::List(l)
            }
            Some(RawValue::Json(_)) => RawValue::Str(v),
        };
        params.insert(k, value);
    }
    Ok(())
}

fn is_local(node: &str, local: &str) -> bool {
    node == local || node == "localhost"
}

/// A node that is neither this one nor a known peer: PVE fails the name lookup.
fn check_node(node: &str, local: &str) -> Result<(), ApiError> {
    if is_local(node, local) {
        return Ok(());
    }
    Err(ApiError::server(format!(
        "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
    )))
}
