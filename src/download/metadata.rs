//! query-url-metadata: what PVE's HEAD request tells about a URL (pve-manager `Nodes.pm`,
//! spec/pve-api.md §3), plus one deliberate improvement: where the origin refuses HEAD
//! (403/405/501), a GET of the first byte answers instead (clients-and-plugin.md §E.3).

use reqwest::header::{
    CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, RANGE,
};
use reqwest::{Method, StatusCode};

use super::Fetcher;
use super::url_policy::PolicyError;
use crate::schema::Pattern;

static DISPOSITION_QUOTED: Pattern = Pattern::new(r#"filename="([^"]*)""#);
static DISPOSITION_BARE: Pattern = Pattern::new(r"filename=([^;]*)");
static URL_LAST_SEGMENT: Pattern = Pattern::new(r"^[^?]+/([^?/]*)(?:\?.*)?$");

#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UrlMetadata {
    pub filename: Option<String>,
    pub size: Option<u64>,
    pub mimetype: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetadataError {
    /// The status line of the HEAD answer, or LWP's synthetic "500 ..." for a transport failure.
    #[error("invalid server response: '{0}'")]
    Response(String),
    /// url-allow / url-deny refuse the URL, a redirect or every address of its host.
    #[error("{0}")]
    Policy(PolicyError),
}

pub async fn query(
    fetcher: &Fetcher,
    url: &str,
    verify_certificates: bool,
) -> Result<UrlMetadata, MetadataError> {
    let head = fetcher
        .metadata(verify_certificates, Method::HEAD, url)
        .map_err(MetadataError::Policy)?
        .send()
        .await
        .map_err(|e| transport_error(url, &e))?;
    let status = head.status();
    if status == StatusCode::OK {
        return Ok(describe(
            url,
            head.headers(),
            content_length(head.headers()),
        ));
    }
    let head_line = status_line(status);
    if !matches!(status.as_u16(), 403 | 405 | 501) {
        return Err(MetadataError::Response(head_line));
    }
    let get = fetcher
        .metadata(verify_certificates, Method::GET, url)
        .map_err(MetadataError::Policy)?
        .header(RANGE, "bytes=0-0")
        .send()
        .await
        .map_err(|e| match PolicyError::find(&e) {
            Some(p) => MetadataError::Policy(p.clone()),
            None => MetadataError::Response(head_line.clone()),
        })?;
    let size = match get.status() {
        StatusCode::PARTIAL_CONTENT => range_total(get.headers()),
        StatusCode::OK => content_length(get.headers()),
        _ => return Err(MetadataError::Response(head_line)),
    };
    // Dropping the response closes the connection; the body is never read.
    Ok(describe(url, get.headers(), size))
}

fn describe(url: &str, headers: &HeaderMap, size: Option<u64>) -> UrlMetadata {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
    };
    let filename = header(CONTENT_DISPOSITION)
        .and_then(|d| capture(&DISPOSITION_QUOTED, d).or_else(|| capture(&DISPOSITION_BARE, d)))
        .or_else(|| capture(&URL_LAST_SEGMENT, url))
        .filter(|f| !f.is_empty());
    let mimetype = header(CONTENT_TYPE)
        .map(|t| t.split(';').next().unwrap_or_default().to_string())
        .filter(|t| !t.is_empty());
    UrlMetadata {
        filename,
        size: size.filter(|s| *s > 0),
        mimetype,
    }
}

fn capture(p: &Pattern, text: &str) -> Option<String> {
    p.capture(text).map(str::to_string)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `Content-Range: bytes 0-0/<total>`
fn range_total(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    v.rsplit_once('/')?.1.trim().parse().ok()
}

fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_string()
}

fn transport_error(url: &str, e: &reqwest::Error) -> MetadataError {
    match PolicyError::find(e) {
        Some(p) => MetadataError::Policy(p.clone()),
        None => MetadataError::Response(transport_status(url, e)),
    }
}

fn transport_status(url: &str, e: &reqwest::Error) -> String {
    let reason = super::error::describe_reqwest(e);
    if e.is_connect() {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .unwrap_or_default();
        format!("500 Can't connect to {host} ({reason})")
    } else {
        format!("500 {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(kv: &[(reqwest::header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in kv {
            h.insert(k.clone(), HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn filename_from_url_without_query() {
        let m = describe("http://h/a/b/debian.iso?x=1", &HeaderMap::new(), Some(0));
        assert_eq!(
            m,
            UrlMetadata {
                filename: Some("debian.iso".into()),
                size: None,
                mimetype: None
            }
        );
        assert_eq!(
            describe("http://h/dir/", &HeaderMap::new(), None).filename,
            None
        );
    }

    #[test]
    fn disposition_and_mimetype() {
        let h = headers(&[
            (
                CONTENT_DISPOSITION,
                r#"attachment; filename="real name.iso""#,
            ),
            (CONTENT_TYPE, "application/x-iso9660-image; charset=binary"),
        ]);
        let m = describe("http://h/download?id=3", &h, Some(42));
        assert_eq!(m.filename.as_deref(), Some("real name.iso"));
        assert_eq!(m.mimetype.as_deref(), Some("application/x-iso9660-image"));
        assert_eq!(m.size, Some(42));
        let h = headers(&[(CONTENT_DISPOSITION, "attachment; filename=bare.iso; size=3")]);
        assert_eq!(
            describe("http://h/x", &h, None).filename.as_deref(),
            Some("bare.iso")
        );
    }

    #[test]
    fn content_range_total() {
        let h = headers(&[(CONTENT_RANGE, "bytes 0-0/2097152")]);
        assert_eq!(range_total(&h), Some(2097152));
    }
}
