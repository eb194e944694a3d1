//! Errors of the client commands. `Display` is the whole message the user reads after
//! `isolib: `; `exit_code` picks the process status.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// An error answer of the API: HTTP status, PVE's message (the JSON `message`, else the reason
/// phrase, spec §5.5) and the per-parameter `errors` of a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: BTreeMap<String, String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // PVE's messages keep their trailing newline (and a format error embeds one).
        write!(f, "{} {}", self.status, self.message.trim_end())?;
        for (param, text) in &self.errors {
            write!(f, "\n{param}: {}", text.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid --url '{url}': {reason}")]
    Url { url: String, reason: String },
    #[error("--url needs an API token: give --token USER@REALM!NAME=SECRET or set ISOLIB_TOKEN")]
    NoToken,
    #[error("invalid API token: expected USER@REALM!NAME=SECRET")]
    Token,
    #[error("unable to read CA file '{}': {source}", .path.display())]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid CA file '{}': {source}", .path.display())]
    CaParse {
        path: PathBuf,
        source: reqwest::Error,
    },
    #[error(transparent)]
    DaemonConfig(#[from] crate::config::ConfigError),
    #[error("unable to set up the HTTP client: {0}")]
    Setup(#[source] reqwest::Error),
    #[error("unable to reach the daemon at {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("unable to encode the parameters of {what}: {reason}")]
    Encode { what: String, reason: String },
    #[error("unexpected answer to {what}: {reason}")]
    Decode { what: String, reason: String },
    #[error("cannot derive a file name from '{0}'; give --filename")]
    NoFilename(String),
    #[error("task failed: {status}")]
    TaskFailed { upid: String, status: String },
    #[error("interrupted; task {upid} was stopped")]
    Interrupted { upid: String },
    #[error("interrupted; unable to stop task {upid}: {reason}")]
    NotStopped { upid: String, reason: String },
    #[error("unable to read '{}': {source}", .path.display())]
    ReadFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("unable to install the Ctrl-C handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error("{failed} of {total} storages could not be listed")]
    Incomplete { failed: usize, total: usize },
    #[error("unable to write output: {0}")]
    Output(#[source] std::io::Error),
}

impl ClientError {
    /// 130 after Ctrl-C (the shell's convention for SIGINT), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Interrupted { .. } | ClientError::NotStopped { .. } => 130,
            _ => 1,
        }
    }
}

/// The innermost cause: reqwest's own text ("error sending request for url (...)") hides
/// what went wrong ("Connection refused", "No such file or directory").
pub fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_shows_status_message_and_params() {
        let e = ApiError {
            status: 400,
            message: "Parameter verification failed.\n".into(),
            errors: BTreeMap::from([
                ("filename".into(), "wrong file extension".into()),
                (
                    "content".into(),
                    "invalid format - invalid content type 'foo'\n".into(),
                ),
            ]),
        };
        assert_eq!(
            e.to_string(),
            "400 Parameter verification failed.\n\
             content: invalid format - invalid content type 'foo'\n\
             filename: wrong file extension"
        );
    }
}
