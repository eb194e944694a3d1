//! Resuming over HTTP: a retry continues with `Range` + `If-Range` from the bytes already
//! received. The hash and decode state live in the sink, which survives the retry, so the
//! result is the same as one clean transfer. An origin that ignores the range, answers from the
//! wrong offset or with another version starts over from zero, and the log says why.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, HeaderMap, LAST_MODIFIED};

/// What `If-Range` may carry: a strong ETag, else Last-Modified.
pub fn validator(headers: &HeaderMap) -> Option<String> {
    let etag = headers.get(ETAG).and_then(|v| v.to_str().ok());
    match etag {
        Some(e) if !e.starts_with("W/") => Some(e.to_string()),
        _ => headers
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

/// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`).
#[derive(Debug, PartialEq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: Option<u64>,
}

pub fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    Some(ContentRange {
        start: start.trim().parse().ok()?,
        end: end.trim().parse().ok()?,
        total: total.trim().parse().ok(),
    })
}

/// The length in `Content-Range: bytes */LENGTH`, the answer to an unsatisfiable range.
pub fn unsatisfied_length(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes */")?.trim().parse().ok()
}

/// What an answer to a resume request (`Range: bytes=RECEIVED-`) means for the bytes in.
#[derive(Debug, PartialEq)]
pub enum Resume {
    /// The body continues them.
    Continue,
    /// They are the whole file already.
    Complete,
    /// The body is the whole file and replaces them; the line says why.
    Replace(String),
    /// The answer cannot be used: drop them and try again from zero, for this reason.
    Restart(String),
    /// Not a resume answer at all (an error status): judged like any answer.
    Status,
}

/// `received` bytes are in, of the version `validator` names and a file of `total` bytes as
/// far as known. A range of another version (an origin that ignores `If-Range` but honours
/// `Range`) would splice two files together, so it is refused like a range from elsewhere.
pub fn judge_resume(
    received: u64,
    validator: Option<&str>,
    total: Option<u64>,
    status: StatusCode,
    headers: &HeaderMap,
) -> Resume {
    let theirs = self::validator(headers);
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        // Asked from the end of a file whose length was never announced: `bytes */N` says
        // whether that end is the end of the file.
        return if unsatisfied_length(headers) == Some(received) {
            Resume::Complete
        } else {
            Resume::Restart(format!(
                "HTTP 416 for a range from byte {received}; restarting from zero"
            ))
        };
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let Some(range) = content_range(headers) else {
            return Resume::Restart(
                "origin answered 206 without a usable Content-Range; restarting from zero".into(),
            );
        };
        if let (Some(ours), Some(theirs)) = (validator, theirs.as_deref())
            && ours != theirs
        {
            return Resume::Restart(format!(
                "the origin sent a range of another version (validator {theirs} instead of {ours}); restarting from zero"
            ));
        }
        if let (Some(ours), Some(theirs)) = (total, range.total)
            && ours != theirs
        {
            return Resume::Restart(format!(
                "the origin sent a range of a file of {theirs} bytes instead of {ours}; restarting from zero"
            ));
        }
        if range.start == received {
            return Resume::Continue;
        }
        if range.start == 0 && range.total == Some(range.end + 1) {
            return Resume::Replace(
                "origin ignored the range request (HTTP 206 for the whole file); restarting from zero"
                    .into(),
            );
        }
        return Resume::Restart(format!(
            "origin answered with a range from byte {} instead of byte {received}; restarting from zero",
            range.start
        ));
    }
    if !status.is_success() {
        return Resume::Status;
    }
    // With `If-Range`, a full answer under another validator means another file; one without
    // a validator says nothing either way.
    Resume::Replace(match (validator, theirs) {
        (Some(ours), Some(theirs)) if ours != theirs => format!(
            "the file changed at the origin (validator {theirs} instead of {ours}); restarting from zero"
        ),
        _ => format!(
            "origin ignored the range request (HTTP {}); restarting from zero",
            status.as_u16()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::super::retry::{is_transient, retry_after};
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use std::time::Duration;

    #[test]
    fn headers() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/200"));
        h.insert(ETAG, HeaderValue::from_static("W/\"weak\""));
        h.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Mon, 23 Nov 2026 10:00:00 GMT"),
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        assert_eq!(
            content_range(&h),
            Some(ContentRange {
                start: 100,
                end: 199,
                total: Some(200)
            })
        );
        assert_eq!(unsatisfied_length(&h), None);
        assert_eq!(
            validator(&h).as_deref(),
            Some("Mon, 23 Nov 2026 10:00:00 GMT")
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(5)));
        h.insert(ETAG, HeaderValue::from_static("\"strong\""));
        assert_eq!(validator(&h).as_deref(), Some("\"strong\""));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes */200"));
        assert_eq!(unsatisfied_length(&h), Some(200));
        assert_eq!(content_range(&h), None);
        assert!(is_transient(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_transient(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_transient(StatusCode::NOT_FOUND));
    }

    #[test]
    fn resume_answers() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let judge = |status: u16, h: &HeaderMap| {
            judge_resume(
                100,
                Some("\"a\""),
                Some(200),
                StatusCode::from_u16(status).unwrap(),
                h,
            )
        };
        let ok = headers(&[("content-range", "bytes 100-199/200"), ("etag", "\"a\"")]);
        assert_eq!(judge(206, &ok), Resume::Continue);
        let other = headers(&[("content-range", "bytes 100-199/200"), ("etag", "\"b\"")]);
        assert!(matches!(judge(206, &other), Resume::Restart(r) if r.contains("another version")));
        let longer = headers(&[("content-range", "bytes 100-299/300")]);
        assert!(
            matches!(judge(206, &longer), Resume::Restart(r) if r.contains("300 bytes instead of 200"))
        );
        let whole = headers(&[("content-range", "bytes 0-199/200")]);
        assert!(matches!(judge(206, &whole), Resume::Replace(_)));
        let elsewhere = headers(&[("content-range", "bytes 50-199/200")]);
        assert!(
            matches!(judge(206, &elsewhere), Resume::Restart(r) if r.contains("from byte 50 instead of byte 100"))
        );
        assert!(matches!(judge(206, &headers(&[])), Resume::Restart(_)));
        assert!(
            matches!(judge(200, &other), Resume::Replace(r) if r.starts_with("the file changed"))
        );
        assert!(
            matches!(judge(200, &headers(&[])), Resume::Replace(r) if r.starts_with("origin ignored"))
        );
        assert_eq!(judge(503, &headers(&[])), Resume::Status);
        let end = headers(&[("content-range", "bytes */100")]);
        assert_eq!(judge(416, &end), Resume::Complete);
        let shorter = headers(&[("content-range", "bytes */90")]);
        assert!(
            matches!(judge(416, &shorter), Resume::Restart(r) if r == "HTTP 416 for a range from byte 100; restarting from zero")
        );
    }
}
