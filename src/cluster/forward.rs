//! A request for another node, passed on to that node's daemon as pveproxy passes it
//! (pve-http-server's `proxy_request`): the caller's credentials as they came, `PVEDisableProxy`
//! so the peer never passes it on again, `PVEClientIP`, over TLS that accepts nothing but the
//! peer's own certificate (pin.rs), 30 s for the answer. The answer goes back as the peer gave
//! it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::peers::Peer;

/// PVE's proxy timeout.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Answers of the API are small; a bigger one is not passed on.
const MAX_ANSWER: usize = 64 << 20;

/// The header that marks a forwarded request (PVE's name).
pub const DISABLE_PROXY: &str = "PVEDisableProxy";
pub const CLIENT_IP: &str = "PVEClientIP";
/// The headers that carry a caller's credentials (lower case): a token, a ticket cookie and its
/// CSRF token, passed on as they came.
pub const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "csrfpreventiontoken"];

pub struct Request {
    pub method: String,
    /// Path and query, as the caller sent them.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// PVE puts its error text in the reason phrase.
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("unable to connect to node '{node}' ({addr}): {reason}")]
    Connect {
        node: String,
        addr: String,
        reason: String,
    },
    #[error("node '{0}' presented another certificate than its own")]
    Certificate(String),
    #[error("node '{node}' answered badly: {reason}")]
    Answer { node: String, reason: String },
}

/// Sends `req` to `peer` and reads its whole answer (blocking: run it off the runtime).
pub fn forward(peer: &Peer, req: &Request) -> Result<Answer, ForwardError> {
    let connect_err = |reason: String| ForwardError::Connect {
        node: peer.name.clone(),
        addr: peer.addr.clone(),
        reason,
    };
    let addr = peer
        .addr
        .to_socket_addrs()
        .map_err(|e| connect_err(e.to_string()))?
        .next()
        .ok_or_else(|| connect_err("no address".into()))?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| connect_err(e.to_string()))?;
    tcp.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| connect_err(e.to_string()))?;

    let config = super::pin::configuration(peer).map_err(|e| connect_err(e.to_string()))?;
    let mut tls = config.connect("", tcp).map_err(|e| match e {
        openssl::ssl::HandshakeError::Failure(m) if super::pin::refused_certificate(m.ssl()) => {
            ForwardError::Certificate(peer.name.clone())
        }
        other => connect_err(other.to_string()),
    })?;

    // HTTP/1.0 with `Connection: close`: the answer ends with the connection, never chunked.
    let mut head = format!(
        "{} {} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        req.method,
        req.target,
        peer.addr,
        req.body.len()
    );
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let answer_err = |reason: String| ForwardError::Answer {
        node: peer.name.clone(),
        reason,
    };
    tls.write_all(head.as_bytes())
        .and_then(|()| tls.write_all(&req.body))
        .and_then(|()| tls.flush())
        .map_err(|e| connect_err(e.to_string()))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_ANSWER {
                    return Err(answer_err("too large".into()));
                }
            }
            // A peer that closes without TLS's close_notify has still said all it had.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(answer_err(e.to_string())),
        }
    }
    parse_answer(&raw).map_err(answer_err)
}

/// Calls `method` on `path` (below `/api2/json`) of `peer`'s API with `credentials` and an
/// optional form body; its `data`, or the status and reason PVE puts its error text in.
pub async fn call(
    peer: Peer,
    credentials: &[(String, String)],
    method: &str,
    path: &str,
    form: Option<String>,
) -> Result<serde_json::Value, String> {
    let mut headers = credentials.to_vec();
    headers.push((DISABLE_PROXY.into(), "true".into()));
    if form.is_some() {
        headers.push((
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
    }
    let req = Request {
        method: method.to_owned(),
        target: format!("/api2/json{path}"),
        headers,
        body: form.unwrap_or_default().into_bytes(),
    };
    let answer = tokio::task::spawn_blocking(move || forward(&peer, &req))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("HTTP {} {}", answer.status, answer.reason));
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
    Ok(v["data"].take())
}

fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let (mut answer, len) = parse_head(raw)?.ok_or("no end of head")?;
    answer.body = raw[len..].to_vec();
    Ok(answer)
}

/// The status line and headers at the start of `raw` (an answer without its body) and their
/// length; `None` while the head is not complete.
pub fn parse_head(raw: &[u8]) -> Result<Option<(Answer, usize)>, String> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "a head that is not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let status = parts
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line '{status_line}'"))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let answer = Answer {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    Ok(Some((answer, split + 4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_sent() {
        let a =
            parse_answer(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"data\":1}")
                .expect("answer");
        assert_eq!((a.status, a.reason.as_str()), (200, "OK"));
        assert_eq!(
            a.headers,
            [("Content-Type".to_owned(), "application/json".to_owned())]
        );
        assert_eq!(a.body, b"{\"data\":1}");
        assert!(parse_answer(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(parse_answer(b"garbage\r\n\r\n").is_err());
    }
}
