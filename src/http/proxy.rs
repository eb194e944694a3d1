//! `/nodes/<other>/...`: the request is another node's, so it goes to that node's daemon
//! (`cluster::forward`) once authenticated here, and its answer comes back as it was. A request
//! that was forwarded already is never passed on again.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use crate::api::ApiError;
use crate::cluster::forward::{self, CLIENT_IP, DISABLE_PROXY, Request};
use crate::state::AppState;

/// Besides the credentials (`forward::CREDENTIAL_HEADERS`), the caller's headers the peer
/// needs to judge the request as this node would, and the content type of its body.
const PASSED_ON: &[&str] = &["content-type", "accept", "x-isolib-pve-task"];

/// The caller's headers that go with a request passed on.
pub fn credentials(req: &HttpRequest) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .filter(|(k, _)| {
            forward::CREDENTIAL_HEADERS.contains(&k.as_str()) || PASSED_ON.contains(&k.as_str())
        })
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// `None` when `node` is not a peer this daemon knows (the caller then answers as PVE does
/// for an unknown node).
pub async fn to_peer(
    req: &HttpRequest,
    state: &AppState,
    node: &str,
    body: &[u8],
) -> Option<Result<HttpResponse, ApiError>> {
    if req.headers().contains_key(DISABLE_PROXY) {
        return Some(Err(ApiError::server("proxy loop detected")));
    }
    let peer = match state.config().peer(node) {
        Ok(Some(p)) => p,
        Ok(None) => return None,
        Err(e) => return Some(Err(ApiError::server(e))),
    };
    let mut headers = credentials(req);
    headers.push((DISABLE_PROXY.into(), "true".into()));
    if let Some(ip) = req.peer_addr().map(|a| a.ip().to_string()) {
        headers.push((CLIENT_IP.into(), ip));
    }
    let request = Request {
        method: req.method().as_str().to_owned(),
        target: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
        headers,
        body: body.to_vec(),
    };
    tracing::debug!(
        "{} {} -> node {} ({})",
        request.method,
        request.target,
        peer.name,
        peer.addr
    );
    let answer = tokio::task::spawn_blocking(move || forward::forward(&peer, &request)).await;
    Some(match answer {
        Ok(Ok(a)) => {
            let mut resp = HttpResponse::build(
                StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY),
            );
            for (k, v) in &a.headers {
                if k.eq_ignore_ascii_case("content-type") {
                    resp.insert_header(("Content-Type", v.as_str()));
                }
            }
            let mut resp = resp.body(a.body);
            super::format::set_reason(&mut resp, &a.reason);
            Ok(resp)
        }
        Ok(Err(e)) => Err(ApiError::server(e)),
        Err(e) => Err(ApiError::server(e)),
    })
}
