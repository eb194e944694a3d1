//! The error every handler returns. It says what went wrong in PVE's words; `http::format`
//! alone decides how that looks on the wire (spec/pve-api.md §5.5).

use std::collections::BTreeMap;
use std::fmt;

use crate::schema::ParamErrors;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    /// The full message, with the trailing newline PVE's `die "...\n"` leaves in it.
    pub message: String,
    pub errors: Option<BTreeMap<String, String>>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            errors: None,
        }
    }

    /// PVE's plain `die "<text>\n"` in a handler: HTTP 500.
    pub fn server(text: impl fmt::Display) -> Self {
        Self::new(500, format!("{text}\n"))
    }

    /// `raise_param_exc`: HTTP 400 with per-parameter texts.
    pub fn params(errors: ParamErrors) -> Self {
        ApiError {
            status: 400,
            message: "Parameter verification failed.\n".into(),
            errors: Some(errors.0),
        }
    }

    pub fn param(key: &str, text: impl Into<String>) -> Self {
        let mut e = ParamErrors::default();
        e.add(key, text);
        Self::params(e)
    }

    /// `raise_perm_exc`: "Permission check failed" with the failing leaf when there is one.
    pub fn permission(what: Option<&str>) -> Self {
        match what {
            Some(w) => Self::new(403, format!("Permission check failed ({w})\n")),
            None => Self::new(403, "Permission check failed\n"),
        }
    }

    pub fn not_implemented(method: &str, rel_path: &str) -> Self {
        Self::new(501, format!("Method '{method} {rel_path}' not implemented"))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message.trim_end_matches('\n'))
    }
}

impl std::error::Error for ApiError {}

/// A storage error where PVE dies with it: HTTP 500 with its text.
impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        ApiError::server(e)
    }
}
