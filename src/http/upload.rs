//! The multipart body of PVE's upload method, streamed (pve-http-server `AnyEvent.pm`
//! file_upload_multipart, spec/pve-api.md §7.5): the form fields `content`,
//! `checksum-algorithm` and `checksum` before the file, whose part must be named `filename`
//! and whose `filename="..."` names the volume. PVE spools the file to /var/tmp first; here
//! the checks run as soon as the file part starts, and its bytes go straight into the
//! storage's staging directory through the download engine's sink (hashed, ISO-probed,
//! memory bounded). A body that breaks off leaves nothing behind.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::StreamExt;

use super::format::{self, Format};
use crate::api::router::{ApiMethod, Ctx, Reply};
use crate::api::{ApiError, upload};
use crate::download::Sink;
use crate::schema::{RawParams, RawValue, validate};

/// The form fields PVE takes from an upload body; any other is ignored.
const FIELDS: [&str; 3] = ["content", "checksum-algorithm", "checksum"];

/// Chunks between the connection and the parser.
const DEPTH: usize = 8;

/// What is read and dropped of a body after the parser stopped early (a refusal), so the
/// client reads the answer instead of a reset; a bigger rest is cut off.
const DRAIN_LIMIT: u64 = 64 << 20;

/// Receives the upload of `req` for `method` by `ctx`'s caller, whose permission was checked;
/// `params` holds the query and path parameters.
pub async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    ctx: Ctx,
    fmt: Format,
    method: &ApiMethod,
    params: RawParams,
    path_params: &BTreeMap<String, String>,
) -> HttpResponse {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .ok()
        .filter(|_| content_type.trim_start().starts_with("multipart/form-data"));
    let idle = ctx.state.config().clients.timeout;
    // The parser wants a `Send` stream and actix's payload is not: a channel joins them.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(DEPTH);
    let pump = pump(payload, tx, idle);
    let result = match boundary {
        None => {
            drop(rx);
            pump.await;
            Err(Failure::Plain(
                501,
                format!("upload 'Content-Type '{content_type}' not implemented"),
            ))
        }
        Some(_) if params.contains_key("tmpfilename") => {
            drop(rx);
            pump.await;
            Err(Failure::Plain(
                501,
                "'tmpfilename' query parameter is not allowed for file uploads".into(),
            ))
        }
        Some(boundary) => {
            let body = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            let parse = parse(
                multer::Multipart::new(body, boundary),
                ctx,
                method,
                params,
                path_params,
            );
            tokio::join!(pump, parse).1
        }
    };
    let mut resp = match result {
        Ok(reply) => format::reply(fmt, reply),
        Err(Failure::Api(e)) => format::error(fmt, &e),
        Err(Failure::Plain(status, text)) => format::plain_error(status, &text),
    };
    // Like PVE, an upload connection is not kept: what is left of the body is not read.
    resp.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    resp
}

enum Failure {
    Api(ApiError),
    /// PVE's HTTP-level errors: a status and a text, no JSON envelope.
    Plain(u16, String),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::Api(e)
    }
}

/// Moves the body into the channel until it ends, breaks off or stays silent for `idle`; the
/// parser sees the end of the channel as the end of the body. Once the parser is done, up to
/// [`DRAIN_LIMIT`] more is read and dropped.
async fn pump(
    mut payload: web::Payload,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    idle: Duration,
) {
    let mut drained = 0u64;
    loop {
        let item = match tokio::time::timeout(idle, payload.next()).await {
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timeout reading request body",
            )),
            Ok(None) => return,
            Ok(Some(chunk)) => chunk.map_err(std::io::Error::other),
        };
        match item {
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Ok(chunk) if tx.is_closed() => {
                drained += chunk.len() as u64;
                if drained > DRAIN_LIMIT {
                    return;
                }
            }
            Ok(chunk) => {
                // A send that fails means the parser just stopped: the chunk is drained.
                let _ = tx.send(Ok(chunk)).await;
            }
        }
    }
}

async fn parse(
    mut body: multer::Multipart<'_>,
    ctx: Ctx,
    method: &ApiMethod,
    mut params: RawParams,
    path_params: &BTreeMap<String, String>,
) -> Result<Reply, Failure> {
    let broken = |e: multer::Error| Failure::Plain(501, format!("upload failed: {e}"));
    loop {
        let Some(mut field) = body.next_field().await.map_err(broken)? else {
            // No file part: PVE's handler has no file to import.
            let validated = validate(&method.parameters, &with_path(params, path_params)?)
                .map_err(ApiError::params)?;
            return Ok((method.handler)(ctx, validated).await?);
        };
        let name = field.name().unwrap_or_default().to_owned();
        let Some(filename) = field.file_name().map(|f| f.trim().to_owned()) else {
            if FIELDS.contains(&name.as_str()) {
                let value = field.text().await.map_err(broken)?;
                params.insert(name, RawValue::Str(value.trim().to_owned()));
            }
            continue;
        };
        if name != "filename" {
            return Err(Failure::Plain(
                501,
                format!("wrong field name '{name}' for file upload, expected 'filename'"),
            ));
        }
        params.insert("filename".into(), RawValue::Str(filename));
        let validated = validate(&method.parameters, &with_path(params, path_params)?)
            .map_err(ApiError::params)?;
        let (prepared, file) = upload::prepare(&ctx, validated)?;
        let iso = prepared.intake.content == "iso";
        let sink = Sink::start(file, prepared.algorithm, None, iso)
            .map_err(|e| Failure::Plain(501, format!("write to temporary file failed - {e}")))?;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if !sink.send(chunk).await {
                        break; // the writer failed; finish says why
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    sink.abort().await;
                    return Err(broken(e));
                }
            }
        }
        let finished = sink
            .finish()
            .await
            .map_err(|e| Failure::Plain(501, format!("write to temporary file failed - {e}")))?;
        return Ok(upload::start(ctx, prepared, finished)?);
    }
}

/// The path parameters over the others, which may repeat them but not contradict them.
fn with_path(
    mut params: RawParams,
    path_params: &BTreeMap<String, String>,
) -> Result<RawParams, ApiError> {
    super::dispatch::add_path_params(&mut params, path_params)?;
    Ok(params)
}
