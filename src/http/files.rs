//! `GET`/`HEAD /files/{storage}/{volname}`: complete, verified volumes served read-only, for
//! installers and iPXE's `sanboot` (HEAD for the size, then Range reads). One range per
//! request (206, or 416 as RFC 9110 §15.5.17 says), If-Range, a strong ETag from the catalog's
//! sha256, Last-Modified. A public volume needs no credentials; a private one the API's token or
//! ticket with Datastore.Audit on its storage, or its owner. A volume without a fresh record, or
//! whose verification failed, is not served. What is sent is decided here for both listeners;
//! the API's sends it through actix (`response`), the plain one with sendfile (plain.rs).

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HttpDate};
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

/// A request for a volume, whichever listener it came through.
pub struct FileRequest<'a> {
    pub method: &'a str,
    /// The path as sent, `/files/...` percent-encoded.
    pub path: &'a str,
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

/// What is sent: the status, the head's headers and `Content-Length`, then the body, if any.
pub struct Served {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub length: u64,
    /// Nothing for HEAD or a 416.
    pub body: Option<FileBody>,
}

/// `len` bytes of `file` from `start`; a growing file's as they arrive.
pub struct FileBody {
    pub file: std::fs::File,
    pub start: u64,
    pub len: u64,
    pub growing: Option<Arc<GrowingFile>>,
}

/// A refusal: the status and its text.
pub type Refusal = (u16, String);

/// Serves `req` on the API's listener, whose path starts with `/files/`: a private volume is
/// served to the API's credentials.
pub async fn serve(req: &HttpRequest, state: &AppState) -> HttpResponse {
    let header = |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    let file_req = FileRequest {
        method: req.method().as_str(),
        path: req.uri().path(),
        range: header(header::RANGE),
        if_range: header(header::IF_RANGE),
    };
    let authorize = |storage: &str, owner: Option<&str>| allowed(req, state, storage, owner);
    match answer(&file_req, state, Some(&authorize)).await {
        Ok(served) => response(served),
        Err((status, text)) => plain_text(status, &text),
    }
}

/// What `req` gets on the plain listener: public volumes only.
pub async fn answer_public(req: &FileRequest<'_>, state: &AppState) -> Result<Served, Refusal> {
    answer::<fn(&str, Option<&str>) -> Result<(), Refusal>>(req, state, None).await
}

/// What `req` gets; a private volume (or one still arriving) if `authorize(storage, owner)`
/// lets the caller have it, never without `authorize`.
async fn answer<A>(
    req: &FileRequest<'_>,
    state: &AppState,
    authorize: Option<&A>,
) -> Result<Served, Refusal>
where
    A: Fn(&str, Option<&str>) -> Result<(), Refusal>,
{
    if req.method != "GET" && req.method != "HEAD" {
        return Err((405, format!("method '{}' not allowed", req.method)));
    }
    let raw = req.path.strip_prefix("/files/").unwrap_or_default();
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
        // A volume on its way in from another node, passed on to a peer (download/growing.rs).
        // It has no record yet, so no owner either.
        let authorize = authorize.ok_or_else(not_found)?;
        authorize(storage_id, None)?;
        let opened = match std::fs::File::open(&growing.part) {
            Ok(f) => f,
            // Published meanwhile: the same bytes under the volume's own name.
            Err(_) => std::fs::File::open(&growing.dest).map_err(|e| (404, e.to_string()))?,
        };
        let (size, sha256) = (growing.length, growing.sha256.clone());
        return Ok(ranged(req, opened, size, &sha256, None, Some(growing)));
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
        // The plain listener serves public volumes only.
        let authorize = authorize.ok_or_else(not_found)?;
        authorize(storage_id, record.source.user.as_deref())?;
    }
    let opened = std::fs::File::open(&file).map_err(|e| (404, e.to_string()))?;
    let meta = opened.metadata().map_err(|e| (500, e.to_string()))?;
    let modified = HttpDate::from(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)).to_string();
    Ok(ranged(
        req,
        opened,
        meta.len(),
        &record.sha256,
        Some(modified),
        None,
    ))
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

/// `size` bytes of `file` whose sha256 is `sha256`, or the range asked for.
fn ranged(
    req: &FileRequest<'_>,
    file: std::fs::File,
    size: u64,
    sha256: &str,
    modified: Option<String>,
    growing: Option<Arc<GrowingFile>>,
) -> Served {
    let etag = format!("\"sha256-{sha256}\"");
    // If-Range: the range only for the very version the client holds (a strong ETag, or the
    // exact date).
    let range_applies = req
        .if_range
        .is_none_or(|v| v == etag || modified.as_deref() == Some(v));
    let range = req
        .range
        .filter(|_| range_applies)
        .map(|r| parse_range(r, size));
    let (status, start, len) = match range {
        Some(Range::Unsatisfiable) => {
            return Served {
                status: 416,
                headers: vec![("Content-Range", format!("bytes */{size}"))],
                length: 0,
                body: None,
            };
        }
        Some(Range::Bytes(start, end)) => (206, start, end - start + 1),
        Some(Range::Ignored) | None => (200, 0, size),
    };
    let mut headers = Vec::new();
    if status == 206 {
        headers.push((
            "Content-Range",
            format!("bytes {start}-{}/{size}", start + len - 1),
        ));
    }
    if let Some(modified) = modified {
        headers.push(("Last-Modified", modified));
    }
    headers.extend([
        ("ETag", etag),
        ("Accept-Ranges", "bytes".to_owned()),
        ("Content-Type", "application/octet-stream".to_owned()),
    ]);
    Served {
        status,
        headers,
        length: len,
        // A HEAD gets the length of the body a GET would get, and no body.
        body: (req.method != "HEAD").then_some(FileBody {
            file,
            start,
            len,
            growing,
        }),
    }
}

/// `served` as actix sends it: the body read on one blocking thread, a few chunks ahead of the
/// connection (a read per chunk through tokio's file would hop threads every time).
fn response(served: Served) -> HttpResponse {
    let mut resp = HttpResponse::build(
        StatusCode::from_u16(served.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    for (k, v) in served.headers {
        resp.insert_header((k, v));
    }
    resp.no_chunking(served.length);
    let Some(FileBody {
        mut file,
        start,
        len,
        growing,
    }) = served.body
    else {
        return resp.streaming(stream::empty::<Result<bytes::Bytes, std::io::Error>>());
    };
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
    resp.streaming(body)
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
