//! `GET`/`HEAD /files/{storage}/{volname}`: complete, verified volumes served read-only, for
//! installers and iPXE's `sanboot` (HEAD for the size, then Range reads). One range per
//! request (206, or 416 as RFC 9110 §15.5.17 says), If-Range, a strong ETag from the catalog's
//! sha256, Last-Modified. A public volume needs no credentials; a private one the API's token or
//! ticket with Datastore.Audit on its storage, or its owner. A volume without a fresh record, or
//! whose verification failed, is not served.

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::header::{self, HttpDate};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::stream;
use percent_encoding::percent_decode_str;

use super::dispatch::authenticate;
use crate::catalog::{self, Lookup, VolumeAccess};
use crate::download::{GrowingFile, GrowingState};
use crate::state::AppState;

const CHUNK: usize = 2 << 20;
/// How often a reader of a growing file looks for more.
const GROWING_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Marks a connection that came in on the plain-HTTP listener (`http-listen`).
#[derive(Clone, Copy)]
struct PlainListener;

pub fn on_connect(
    io: &dyn std::any::Any,
    ext: &mut actix_web::dev::Extensions,
    plain: Option<std::net::SocketAddr>,
) {
    let Some(plain) = plain else { return };
    if let Some(tcp) = io.downcast_ref::<actix_web::rt::net::TcpStream>()
        && tcp.local_addr().is_ok_and(|a| a == plain)
    {
        ext.insert(PlainListener);
    }
}

pub fn on_plain_listener(req: &HttpRequest) -> bool {
    req.conn_data::<PlainListener>().is_some()
}

/// Serves `req`, whose path starts with `/files/`.
pub async fn serve(req: &HttpRequest, state: &AppState, plain: bool) -> HttpResponse {
    match serve_inner(req, state, plain).await {
        Ok(resp) => resp,
        Err((status, text)) => plain_text(status, &text),
    }
}

type Refusal = (u16, String);

async fn serve_inner(
    req: &HttpRequest,
    state: &AppState,
    plain: bool,
) -> Result<HttpResponse, Refusal> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err((405, format!("method '{}' not allowed", req.method())));
    }
    let raw = req.uri().path().strip_prefix("/files/").unwrap_or_default();
    let path = percent_decode_str(raw).decode_utf8_lossy().into_owned();
    let not_found = || (404, "no such volume".to_owned());
    let (storage_id, volname) = path.split_once('/').ok_or_else(not_found)?;
    let cfg = state.storage_config().map_err(|e| (500, e.message))?;
    let storage = cfg.get(storage_id).ok_or_else(not_found)?;
    storage
        .check_enabled(&state.config().node)
        .map_err(|_| not_found())?;
    let file = storage.volume_path(volname).map_err(|_| not_found())?;
    if !file.exists()
        && let Some(growing) = state.engine().arriving(&file).await
    {
        return send_growing(req, state, storage_id, plain, growing).await;
    }
    let lookup_path = file.clone();
    let record = tokio::task::spawn_blocking(move || catalog::store::load(&lookup_path))
        .await
        .map_err(|e| (500, e.to_string()))?;
    let record = match record {
        Ok(Lookup::Fresh(r)) => r,
        Ok(_) => return Err((409, "the volume has no catalog record yet".into())),
        Err(_) => return Err(not_found()),
    };
    if record.failed() {
        return Err((409, "the volume failed its verification".into()));
    }
    if record.access != VolumeAccess::Public {
        if plain {
            return Err(not_found()); // the plain listener serves public volumes only
        }
        allowed(req, state, storage_id, record.source.user.as_deref())?;
    }
    let file = tokio::fs::File::open(&file)
        .await
        .map_err(|e| (404, e.to_string()))?
        .into_std()
        .await;
    let meta = file.metadata().map_err(|e| (500, e.to_string()))?;
    let modified = HttpDate::from(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)).to_string();
    send(req, file, meta.len(), &record.sha256, Some(modified), None)
}

/// A volume still on its way in from another node: its bytes are passed on as they arrive, to
/// a peer copying in a chain (download/growing.rs). It has no record yet, so no owner either.
async fn send_growing(
    req: &HttpRequest,
    state: &AppState,
    storage: &str,
    plain: bool,
    growing: Arc<GrowingFile>,
) -> Result<HttpResponse, Refusal> {
    if plain {
        return Err((404, "no such volume".into()));
    }
    allowed(req, state, storage, None)?;
    // Published meanwhile: the same bytes under the volume's own name.
    let file = match std::fs::File::open(&growing.part) {
        Ok(f) => f,
        Err(_) => std::fs::File::open(&growing.dest).map_err(|e| (404, e.to_string()))?,
    };
    let (size, sha256) = (growing.length, growing.sha256.clone());
    send(req, file, size, &sha256, None, Some(growing))
}

/// A private volume: the API's credentials with Datastore.Audit on the storage, or its owner.
fn allowed(
    req: &HttpRequest,
    state: &AppState,
    storage: &str,
    owner: Option<&str>,
) -> Result<(), Refusal> {
    let access = state.access().map_err(|e| (500, e.to_string()))?;
    let who =
        authenticate(req, state, &access, false).map_err(|reason| (401, reason.to_owned()))?;
    let owner = owner == Some(who.to_string().as_str());
    if owner
        || access.check(
            &who,
            &format!("/storage/{storage}"),
            &["Datastore.Audit"],
            true,
        )
    {
        Ok(())
    } else {
        Err((
            403,
            format!("Permission check failed (/storage/{storage}, Datastore.Audit)"),
        ))
    }
}

/// `size` bytes of `file` whose sha256 is `sha256`, or the range asked for; a growing file's
/// bytes as they arrive.
fn send(
    req: &HttpRequest,
    mut file: std::fs::File,
    size: u64,
    sha256: &str,
    modified: Option<String>,
    growing: Option<Arc<GrowingFile>>,
) -> Result<HttpResponse, Refusal> {
    let etag = format!("\"sha256-{sha256}\"");
    let header_value = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    // If-Range: the range only for the very version the client holds (a strong ETag, or the
    // exact date).
    let range_applies = header_value(header::IF_RANGE.as_str())
        .is_none_or(|v| v == etag || modified.as_deref() == Some(v));
    let range = header_value(header::RANGE.as_str())
        .filter(|_| range_applies)
        .map(|r| parse_range(r, size));
    let mut resp = match &range {
        Some(Range::Unsatisfiable) => {
            let mut r = HttpResponse::build(StatusCode::RANGE_NOT_SATISFIABLE);
            r.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            return Ok(r.finish());
        }
        Some(Range::Bytes(start, end)) => {
            let mut r = HttpResponse::build(StatusCode::PARTIAL_CONTENT);
            r.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")));
            r
        }
        Some(Range::Ignored) | None => HttpResponse::Ok(),
    };
    let (start, len) = match range {
        Some(Range::Bytes(start, end)) => (start, end - start + 1),
        _ => (0, size),
    };
    if let Some(modified) = modified {
        resp.insert_header((header::LAST_MODIFIED, modified));
    }
    resp.insert_header((header::ETAG, etag))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .no_chunking(len);
    if req.method() == Method::HEAD {
        // The length of the body a GET would get; actix sends no body for HEAD.
        return Ok(resp.streaming(stream::empty::<Result<bytes::Bytes, std::io::Error>>()));
    }
    // One blocking reader per response, a few chunks ahead of the connection: a read per
    // chunk through tokio's file would hop threads every time.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek};
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        while left > 0 {
            let mut want = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
            if let Some(g) = &growing {
                let pos = start + (len - left);
                match available(g, pos) {
                    Ok(0) => {
                        std::thread::sleep(GROWING_POLL);
                        continue;
                    }
                    Ok(n) => want = want.min(usize::try_from(n).unwrap_or(want)),
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            let mut buf = vec![0u8; want];
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(resp.streaming(body))
}

/// Bytes of a growing file readable at `pos`; an error once its copy failed (the reader must
/// not take what is there for the whole file).
fn available(g: &GrowingFile, pos: u64) -> std::io::Result<u64> {
    let written = g.written();
    if written > pos {
        return Ok(written - pos);
    }
    match g.state() {
        GrowingState::Failed => Err(std::io::Error::other("the copy being passed on failed")),
        _ => Ok(0),
    }
}

#[derive(Debug, PartialEq)]
enum Range {
    /// First and last byte, inclusive.
    Bytes(u64, u64),
    Unsatisfiable,
    /// Not one single byte range: the whole file is sent (RFC 9110 §14.2 lets a server ignore
    /// a Range it does not take).
    Ignored,
}

fn parse_range(value: &str, size: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Ignored;
    };
    if spec.contains(',') {
        return Range::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Ignored;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes
        (true, false) => match parsed(last) {
            Some(0) => Range::Unsatisfiable,
            Some(n) if size > 0 => Range::Bytes(size.saturating_sub(n), size - 1),
            Some(_) => Range::Unsatisfiable,
            None => Range::Ignored,
        },
        (false, _) => {
            let Some(start) = parsed(first) else {
                return Range::Ignored;
            };
            let end = if last.is_empty() {
                Some(u64::MAX)
            } else {
                parsed(last)
            };
            match end {
                None => Range::Ignored,
                Some(end) if end < start => Range::Ignored,
                Some(_) if start >= size => Range::Unsatisfiable,
                Some(end) => Range::Bytes(start, end.min(size - 1)),
            }
        }
        (true, true) => Range::Ignored,
    }
}

fn plain_text(status: u16, text: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_rfc_9110_reads_them() {
        assert_eq!(parse_range("bytes=0-99", 1000), Range::Bytes(0, 99));
        assert_eq!(
            parse_range("bytes=32768-34815", 1000000),
            Range::Bytes(32768, 34815)
        );
        assert_eq!(parse_range("bytes=900-", 1000), Range::Bytes(900, 999));
        assert_eq!(parse_range("bytes=900-5000", 1000), Range::Bytes(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Range::Bytes(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), Range::Bytes(0, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-9", 1000), Range::Ignored);
        assert_eq!(parse_range("bytes=9-5", 1000), Range::Ignored);
        assert_eq!(parse_range("items=0-5", 1000), Range::Ignored);
        assert_eq!(parse_range("bytes=x-5", 1000), Range::Ignored);
    }
}
