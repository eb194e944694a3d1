//! The plain-HTTP listener (`http-listen`): public volumes and the boot endpoints, for
//! installers and iPXE builds without a CA store. A small HTTP/1.1 server of its own rather than
//! actix's, for one reason: a volume's bytes go from the page cache to the socket with
//! sendfile(2), never through user space, which actix's responses cannot do. GET and HEAD,
//! requests one after another on a connection, and the API listener's limits: connections in
//! all and per address (counted together with it), the time to send a head, the header's size
//! and count. What is answered comes from files.rs and boot.rs, as on the API's listener.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use actix_web::http::StatusCode;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::boot::{self, BootRequest};
use super::conn_limit::ConnLimits;
use super::files::{self, FileBody, FileRequest, Served};
use crate::state::AppState;

/// The most bytes sent by one sendfile call; the loop goes on until the range is sent.
const SEND_CHUNK: usize = 8 << 20;

/// Accepts connections on `listener` until `stop`.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    limits: ConnLimits,
    stop: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("plain listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let counted = match limits.admit(peer.ip()) {
            Ok(c) => c,
            Err(which) => {
                tracing::warn!("closing connection from {}: {which} reached", peer.ip());
                continue;
            }
        };
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            let _counted = counted;
            tokio::select! {
                () = connection(tcp, peer, &state) => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// Why a connection ends before its next request.
enum Ended {
    /// The client closed it, or fell silent, between requests.
    Quietly,
    /// A head that breaks a rule: answered, then closed.
    Refused(u16, String),
}

async fn connection(mut tcp: TcpStream, peer: SocketAddr, state: &AppState) {
    let cfg = state.config();
    let timeout = cfg.clients.timeout;
    let mut buf = BytesMut::with_capacity(8 << 10);
    loop {
        let head_len =
            match tokio::time::timeout(timeout, read_head(&mut tcp, &mut buf, state)).await {
                Ok(Ok(n)) => n,
                Ok(Err(Ended::Refused(status, text))) => {
                    let _ = write_text(
                        &mut tcp,
                        status,
                        "text/plain; charset=utf-8",
                        &text,
                        false,
                        false,
                    )
                    .await;
                    return;
                }
                Ok(Err(Ended::Quietly)) | Err(_) => return,
            };
        let head = buf.split_to(head_len);
        let keep_alive = match handle(&mut tcp, &head, peer, state).await {
            Ok(keep) => keep,
            Err(e) => {
                tracing::debug!("plain listener: connection from {}: {e}", peer.ip());
                return;
            }
        };
        if !keep_alive {
            return;
        }
    }
}

/// Reads until `buf` starts with a whole head; its length.
async fn read_head(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    state: &AppState,
) -> Result<usize, Ended> {
    let limits = state.config().headers;
    // The request line and the headers; the header limit applies to the headers alone.
    let most = limits.max_size + (8 << 10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(end + 4);
        }
        if buf.len() > most {
            return Err(Ended::Refused(431, too_large(limits.max_size)));
        }
        match tcp.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(Ended::Quietly),
            Ok(_) => {}
        }
    }
}

fn too_large(max: usize) -> String {
    format!("http header too large (> {max} bytes, max-header-size)")
}

/// Answers one request; whether the connection stays open for the next.
async fn handle(
    tcp: &mut TcpStream,
    head: &[u8],
    peer: SocketAddr,
    state: &AppState,
) -> io::Result<bool> {
    let limits = state.config().headers;
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_count];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            let text = format!(
                "too many http header lines (> {}, max-header-count)",
                limits.max_count
            );
            write_text(tcp, 431, "text/plain; charset=utf-8", &text, false, false).await?;
            return Ok(false);
        }
        _ => {
            write_text(
                tcp,
                400,
                "text/plain; charset=utf-8",
                "bad request",
                false,
                false,
            )
            .await?;
            return Ok(false);
        }
    }
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let size: usize = parsed
        .headers
        .iter()
        .map(|h| h.name.len() + 2 + h.value.len())
        .sum();
    if size > limits.max_size {
        write_text(
            tcp,
            431,
            "text/plain; charset=utf-8",
            &too_large(limits.max_size),
            false,
            false,
        )
        .await?;
        return Ok(false);
    }
    let method = parsed.method.unwrap_or_default();
    let target = parsed.path.unwrap_or_default();
    let http11 = parsed.version == Some(1);
    let connection = header("Connection").map(str::to_ascii_lowercase);
    let keep_alive = if http11 {
        connection.as_deref() != Some("close")
    } else {
        connection.as_deref() == Some("keep-alive")
    };
    // GET and HEAD carry no body here; one that comes with a body is not read.
    if header("Content-Length").is_some_and(|v| v.trim() != "0")
        || header("Transfer-Encoding").is_some()
    {
        write_text(
            tcp,
            400,
            "text/plain; charset=utf-8",
            "a request body is not taken here",
            false,
            false,
        )
        .await?;
        return Ok(false);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let head_only = method == "HEAD";
    let status = if path.starts_with("/files/") {
        let req = FileRequest {
            method,
            path,
            range: header("Range"),
            if_range: header("If-Range"),
        };
        match files::answer_public(&req, state).await {
            Ok(served) => {
                let status = served.status;
                send(tcp, served, keep_alive, state.config().clients.timeout).await?;
                status
            }
            Err((status, text)) => {
                write_text(
                    tcp,
                    status,
                    "text/plain; charset=utf-8",
                    &format!("{text}\n"),
                    head_only,
                    keep_alive,
                )
                .await?;
                status
            }
        }
    } else if path.starts_with("/boot/") {
        let local = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let req = BootRequest {
            method,
            path,
            query,
            host: header("Host").unwrap_or(&local),
            peer: Some(peer.ip()),
            plain: true,
        };
        let t = boot::answer(&req, state).await;
        write_text(
            tcp,
            t.status,
            t.content_type,
            &t.body,
            head_only,
            keep_alive,
        )
        .await?;
        t.status
    } else {
        write_text(
            tcp,
            404,
            "text/plain; charset=utf-8",
            "not found\n",
            head_only,
            keep_alive,
        )
        .await?;
        tracing::debug!(method = %method, path = %path, status = 404);
        return Ok(keep_alive);
    };
    super::dispatch::log_request(
        method,
        path,
        query,
        header("Range"),
        Some(peer.ip()),
        status,
    );
    Ok(keep_alive)
}

fn status_line(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("HTTP/1.1 {status} {reason}\r\n")
}

fn head(status: u16, headers: &[(&str, String)], length: u64, keep_alive: bool) -> String {
    let mut head = status_line(status);
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {length}\r\n"));
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    head
}

async fn write_text(
    tcp: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = head(
        status,
        &[("Content-Type", content_type.to_owned())],
        body.len() as u64,
        keep_alive,
    );
    if !head_only {
        out.push_str(body);
    }
    tcp.write_all(out.as_bytes()).await
}

/// The head, then the file's bytes straight from the page cache to the socket.
async fn send(
    tcp: &mut TcpStream,
    served: Served,
    keep_alive: bool,
    timeout: Duration,
) -> io::Result<()> {
    tcp.write_all(head(served.status, &served.headers, served.length, keep_alive).as_bytes())
        .await?;
    let Some(FileBody {
        file, start, len, ..
    }) = served.body
    else {
        return Ok(());
    };
    let mut offset = i64::try_from(start).map_err(io::Error::other)?;
    let mut left = len;
    while left > 0 {
        // A client that stops reading for as long as it may take to send a head is let go.
        tokio::time::timeout(timeout, tcp.writable())
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        let count = usize::try_from(left).unwrap_or(SEND_CHUNK).min(SEND_CHUNK);
        let sent = tcp.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile64(tcp.as_fd(), file.as_fd(), Some(&mut offset), count)
                .map_err(io::Error::from)
        });
        match sent {
            // The file is shorter than it was a moment ago: the client gets a short body.
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
