//! The wire format of PVE's API server: `json` and `extjs` envelopes, the reason phrase that
//! carries the error text, PVE's response headers, and the bare 401 of the auth phase
//! (spec/pve-api.md §5.4, §5.5). Nothing else in the crate builds a response.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HttpDate};
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde_json::{Value, json};

use crate::api::ApiError;
use crate::api::router::Reply;
use crate::redact;

pub const CONTENT_TYPE_JSON: &str = "application/json;charset=UTF-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Extjs,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "json" => Some(Format::Json),
            "extjs" => Some(Format::Extjs),
            _ => None,
        }
    }
}

/// `{"data": ...}` (+ `total` when non-zero, + `success: 1` for extjs).
pub fn success(format: Format, data: Value, total: Option<u64>) -> HttpResponse {
    let mut body = json!({ "data": data });
    if let Some(t) = total.filter(|t| *t > 0) {
        body["total"] = json!(t);
    }
    if format == Format::Extjs {
        body["success"] = json!(1);
    }
    json_response(StatusCode::OK, None, &body)
}

/// A handler, validation or permission error. For extjs PVE answers 200 and carries the real
/// status inside; for json the status line and reason phrase carry it, because the Go client
/// Packer pins reads only `resp.Status` (clients-and-plugin.md §B.1).
/// A handler's reply in `format`.
pub fn reply(format: Format, reply: Reply) -> HttpResponse {
    match reply {
        Reply::Data(v) => success(format, v, None),
        Reply::Counted(v, total) => success(format, v, Some(total)),
        Reply::Raw {
            content_type,
            headers,
            body,
        } => raw(content_type, &headers, body),
    }
}

pub fn error(format: Format, err: &ApiError) -> HttpResponse {
    let message = redact::userinfo(&err.message);
    let mut body = json!({ "data": null, "message": message });
    if let Some(errors) = &err.errors {
        let errors: BTreeMap<&String, Cow<'_, str>> = errors
            .iter()
            .map(|(k, v)| (k, redact::userinfo(v)))
            .collect();
        body["errors"] = json!(errors);
    }
    match format {
        Format::Json => {
            let status =
                StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_response(status, Some(&message), &body)
        }
        Format::Extjs => {
            body["success"] = json!(0);
            body["status"] = json!(err.status);
            json_response(StatusCode::OK, None, &body)
        }
    }
}

/// The auth phase has no formatter in PVE: the text is only the reason phrase, the body empty.
pub fn unauthorized(reason: &str) -> HttpResponse {
    let mut resp = pve_headers(&mut HttpResponse::Unauthorized()).finish();
    set_reason(&mut resp, reason);
    resp
}

/// Errors of the HTTP layer itself (PVE's `error()`): the plain text is the body, no
/// Content-Type.
pub fn plain_error(status: u16, text: &str) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = pve_headers(&mut HttpResponse::build(status)).body(text.to_string());
    set_reason(&mut resp, text);
    resp
}

/// A raw body (task log download) with PVE's headers.
pub fn raw(content_type: &str, extra: &[(&str, String)], body: Vec<u8>) -> HttpResponse {
    let mut b = HttpResponse::Ok();
    pve_headers(&mut b).insert_header((header::CONTENT_TYPE, content_type.to_string()));
    for (k, v) in extra {
        b.insert_header((*k, v.clone()));
    }
    b.body(body)
}

fn json_response(status: StatusCode, message: Option<&str>, body: &Value) -> HttpResponse {
    let mut b = HttpResponse::build(status);
    pve_headers(&mut b).insert_header((header::CONTENT_TYPE, CONTENT_TYPE_JSON));
    let mut resp = b.body(body.to_string());
    if let Some(m) = message {
        set_reason(&mut resp, m);
    }
    resp
}

fn pve_headers(b: &mut HttpResponseBuilder) -> &mut HttpResponseBuilder {
    let now = HttpDate::from(SystemTime::now()).to_string();
    b.insert_header((header::SERVER, "pve-api-daemon/3.0"))
        .insert_header((header::EXPIRES, now))
        .insert_header((header::CACHE_CONTROL, "max-age=0"))
        .insert_header((header::PRAGMA, "no-cache"))
}

/// PVE closes the connection after every error response.
pub(super) fn set_reason(resp: &mut HttpResponse, message: &str) {
    if resp.status().as_u16() >= 400 {
        resp.head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    let first = message.split('\n').next().unwrap_or_default();
    if !first.is_empty() {
        resp.head_mut().reason = intern_reason(first);
    }
}

/// actix wants a `&'static str` reason phrase. Texts repeat (they are PVE's messages with a few
/// names in them), so they are interned in a bounded table; past the bound the standard phrase
/// is used rather than leaking memory per request.
fn intern_reason(text: &str) -> Option<&'static str> {
    const MAX_INTERNED: usize = 4096;
    if text.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    static TABLE: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut table = TABLE.get_or_init(Default::default).lock().ok()?;
    if let Some(s) = table.get(text) {
        return Some(s);
    }
    if table.len() >= MAX_INTERNED {
        return None;
    }
    let leaked: &'static str = Box::leak(text.to_string().into_boxed_str());
    table.insert(text.to_string(), leaked);
    Some(leaked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body_json(resp: HttpResponse) -> Value {
        let bytes = resp.into_body().try_into_bytes().expect("sized body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn json_error_uses_the_first_line_as_reason() {
        let resp = error(
            Format::Json,
            &ApiError::server("storage 'foo' does not exist"),
        );
        assert_eq!(resp.status(), 500);
        assert_eq!(resp.head().reason, Some("storage 'foo' does not exist"));
        assert_eq!(
            resp.headers().get("content-type").map(|v| v.as_bytes()),
            Some(CONTENT_TYPE_JSON.as_bytes())
        );
        let body = body_json(resp);
        assert_eq!(body["message"], "storage 'foo' does not exist\n");
        assert_eq!(body["data"], Value::Null);
    }

    #[test]
    fn extjs_error_is_200_with_status_inside() {
        let resp = error(
            Format::Extjs,
            &ApiError::param("filename", "wrong file extension"),
        );
        assert_eq!(resp.status(), 200);
        let body = body_json(resp);
        assert_eq!(body["success"], 0);
        assert_eq!(body["status"], 400);
        assert_eq!(body["errors"]["filename"], "wrong file extension");
    }

    #[test]
    fn total_only_when_non_zero() {
        assert!(
            body_json(success(Format::Json, json!([]), Some(0)))
                .get("total")
                .is_none()
        );
        assert_eq!(
            body_json(success(Format::Extjs, json!([]), Some(3)))["total"],
            3
        );
    }

    #[test]
    fn unauthorized_has_reason_and_empty_body() {
        let resp = unauthorized("No ticket");
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.head().reason, Some("No ticket"));
        assert!(resp.into_body().try_into_bytes().expect("sized").is_empty());
    }
}
