//! The connection to the daemon: the local Unix socket (no credentials: the daemon maps the
//! peer's uid) or `--url` with an API token, and the PVE JSON envelope on both (spec §5.4,
//! §5.5, §6.2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ClientError, root_cause};
use crate::config::RawConfig;

/// The packaged daemon's socket; the embedded default puts it into its state dir.
pub const SYSTEM_SOCKET: &str = "/run/isolib/isolib.sock";
pub const EMBEDDED_SOCKET: &str = "./isolib-data/isolib.sock";
pub const TOKEN_ENV: &str = "ISOLIB_TOKEN";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Every call is a short one (task status, one log page, a listing); stopping a task waits
/// up to 5 s on the daemon's side.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How to reach the daemon; shared by every client subcommand.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Unix socket of the local daemon [default: /run/isolib/isolib.sock if it exists, else
    /// ./isolib-data/isolib.sock]
    #[arg(long, value_name = "PATH", conflicts_with = "daemon_url")]
    pub socket: Option<PathBuf>,
    /// The local daemon's config file: its socket and node name are taken from it
    #[arg(long, value_name = "FILE", conflicts_with_all = ["socket", "daemon_url"])]
    pub config: Option<PathBuf>,
    /// Daemon URL, e.g. https://host:8016 (instead of the local socket; needs a token)
    // Its own id: `download` has a positional URL too.
    #[arg(long = "url", id = "daemon_url", value_name = "URL")]
    pub url: Option<String>,
    /// API token for --url: USER@REALM!NAME=SECRET [default: $ISOLIB_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// PEM file with CA certificates to trust for --url, besides the system's
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Don't verify the daemon's TLS certificate (--url)
    #[arg(long)]
    pub insecure: bool,
    /// Node name in API paths [default: the --config file's node, else localhost]
    #[arg(long)]
    pub node: Option<String>,
}

/// Where requests go, decided from the arguments before any I/O.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Socket(PathBuf),
    Url { base: String, auth: String },
}

impl Target {
    /// `env_token` is `$ISOLIB_TOKEN`; `system_socket_exists` says whether the packaged
    /// daemon's socket is there.
    /// `daemon` is the `--config` file's content.
    pub fn resolve(
        args: &ConnectArgs,
        daemon: Option<&RawConfig>,
        env_token: Option<String>,
        system_socket_exists: bool,
    ) -> Result<Target, ClientError> {
        let Some(url) = &args.url else {
            let from_config = daemon.map(RawConfig::socket_path);
            let path = args.socket.clone().or(from_config).unwrap_or_else(|| {
                PathBuf::from(if system_socket_exists {
                    SYSTEM_SOCKET
                } else {
                    EMBEDDED_SOCKET
                })
            });
            return Ok(Target::Socket(path));
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| ClientError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ClientError::Url {
                url: url.clone(),
                reason: "expected http(s)://HOST[:PORT]".into(),
            });
        }
        let token = args
            .token
            .clone()
            .or(env_token.filter(|t| !t.is_empty()))
            .ok_or(ClientError::NoToken)?;
        let trimmed = url.trim_end_matches('/');
        // A URL behind a reverse proxy may carry a path prefix; `/api2/json` may be given too.
        let base = if trimmed.ends_with("/api2/json") {
            trimmed.to_string()
        } else {
            format!("{trimmed}/api2/json")
        };
        Ok(Target::Url {
            base,
            auth: token_header(&token)?,
        })
    }
}

/// `Authorization` value for a token `USER@REALM!NAME=SECRET` (a leading `PVEAPIToken=` is
/// accepted). PVE splits at the last `=` and has no `:` form (spec §6.2).
pub fn token_header(token: &str) -> Result<String, ClientError> {
    let token = token.trim();
    let token = token.strip_prefix("PVEAPIToken=").unwrap_or(token);
    let (id, secret) = token.rsplit_once('=').ok_or(ClientError::Token)?;
    let (user, name) = id.split_once('!').ok_or(ClientError::Token)?;
    let well_formed = user
        .split_once('@')
        .is_some_and(|(u, realm)| !u.is_empty() && !realm.is_empty() && !u.contains([':', '/']))
        && !name.is_empty()
        && !secret.is_empty()
        && !token.chars().any(char::is_whitespace);
    if !well_formed {
        return Err(ClientError::Token);
    }
    Ok(format!("PVEAPIToken={id}={secret}"))
}

/// Characters escaped in a path segment. `/` stays: a volume id's volname runs to the end of
/// the path (spec §5.1), and no other parameter can contain one.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

/// `{"data": ..., "total": ...}`.
#[derive(Deserialize)]
pub struct Envelope<T> {
    pub data: T,
    #[serde(default)]
    pub total: Option<u64>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Option<BTreeMap<String, serde_json::Value>>,
}

pub struct Connection {
    http: reqwest::Client,
    base: String,
    auth: Option<String>,
    node: String,
    /// The socket path or URL, for error messages.
    shown: String,
}

impl Connection {
    pub fn open(args: &ConnectArgs) -> Result<Connection, ClientError> {
        let daemon = args.config.as_deref().map(RawConfig::load).transpose()?;
        let target = Target::resolve(
            args,
            daemon.as_ref(),
            std::env::var(TOKEN_ENV).ok(),
            Path::new(SYSTEM_SOCKET).exists(),
        )?;
        let builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // HTTP/2 has no reason phrase, and a 401 carries its message only there.
            .http1_only()
            .user_agent(concat!("isolib-client/", env!("CARGO_PKG_VERSION")));
        let (builder, base, auth, shown) = match target {
            Target::Socket(path) => {
                let shown = format!("socket {}", path.display());
                (
                    builder.unix_socket(path),
                    // Host and scheme only fill the request line: the socket is the peer.
                    "http://localhost/api2/json".to_string(),
                    None,
                    shown,
                )
            }
            Target::Url { base, auth } => {
                let mut b = builder
                    .tls_danger_accept_invalid_certs(args.insecure)
                    .tls_danger_accept_invalid_hostnames(args.insecure);
                if let Some(path) = &args.ca_file {
                    let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
                        path: path.clone(),
                        source,
                    })?;
                    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                        ClientError::CaParse {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    b = b.tls_certs_merge(certs);
                }
                let shown = base.trim_end_matches("/api2/json").to_string();
                (b, base, Some(auth), shown)
            }
        };
        Ok(Connection {
            http: builder.build().map_err(ClientError::Setup)?,
            base,
            auth,
            node: args
                .node
                .clone()
                .or_else(|| daemon.and_then(|d| d.node))
                .unwrap_or_else(|| "localhost".to_string()),
            shown,
        })
    }

    /// `/nodes/{node}` with the node escaped, the prefix of every call here.
    pub fn node_path(&self) -> String {
        format!("/nodes/{}", segment(&self.node))
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Envelope<T>, ClientError> {
        let mut url = self.url(path);
        if !query.is_empty() {
            let q = serde_urlencoded::to_string(query).map_err(|e| ClientError::Encode {
                what: format!("GET {path}"),
                reason: e.to_string(),
            })?;
            url = format!("{url}?{q}");
        }
        self.send(self.http.get(url), "GET", path).await
    }

    /// A GET whose answer is not JSON (an inventory as CSV): its body as text.
    pub async fn get_text(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<String, ClientError> {
        let q = serde_urlencoded::to_string(query).map_err(|e| ClientError::Encode {
            what: format!("GET {path}"),
            reason: e.to_string(),
        })?;
        let req = self.http.get(format!("{}?{q}", self.url(path)));
        let body = self.send_raw(req, "GET", path).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// POST with a form body, as the web UI and proxmoxer send it (spec §8).
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<Envelope<T>, ClientError> {
        self.send_form(reqwest::Method::POST, path, form).await
    }

    /// PUT with a form body, as POST.
    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<Envelope<T>, ClientError> {
        self.send_form(reqwest::Method::PUT, path, form).await
    }

    async fn send_form<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<Envelope<T>, ClientError> {
        let name = method.as_str().to_owned();
        let body = serde_urlencoded::to_string(form).map_err(|e| ClientError::Encode {
            what: format!("{name} {path}"),
            reason: e.to_string(),
        })?;
        let req = self
            .http
            .request(method, self.url(path))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        self.send(req, &name, path).await
    }

    pub async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Envelope<T>, ClientError> {
        let req = self.http.delete(self.url(path));
        self.send(req, "DELETE", path).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        method: &str,
        path: &str,
    ) -> Result<Envelope<T>, ClientError> {
        let body = self.send_raw(req, method, path).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            what: format!("{method} {path}"),
            reason: e.to_string(),
        })
    }

    /// Sends `req` with the credentials; the body of a success, or the API's error.
    async fn send_raw(
        &self,
        mut req: reqwest::RequestBuilder,
        method: &str,
        path: &str,
    ) -> Result<bytes::Bytes, ClientError> {
        if let Some(auth) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        tracing::debug!("{method} {path}");
        let resp = req.send().await.map_err(|e| self.connect_error(&e))?;
        let status = resp.status();
        let reason = reason_phrase(&resp);
        let body = resp.bytes().await.map_err(|e| self.connect_error(&e))?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &reason, &body).into());
        }
        Ok(body)
    }

    fn connect_error(&self, e: &reqwest::Error) -> ClientError {
        let mut reason = root_cause(e);
        // The embedded default's certificate is self-signed: say what to do about it.
        if self.auth.is_some() && reason.contains("certificate verify failed") {
            reason.push_str(" (trust the daemon's certificate with --ca-file, or skip the check with --insecure)");
        }
        ClientError::Connect {
            target: self.shown.clone(),
            reason,
        }
    }
}

/// PVE puts its message into the reason phrase; reqwest only offers the canonical one, hyper
/// keeps the real one when it differs.
fn reason_phrase(resp: &reqwest::Response) -> String {
    resp.extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .or_else(|| resp.status().canonical_reason().map(str::to_string))
        .unwrap_or_default()
}

/// The JSON body's `message` is complete (the reason phrase is only its first line); 401s
/// and the HTTP layer's own errors have no JSON body, so the reason phrase is all there is.
pub fn api_error(status: u16, reason: &str, body: &[u8]) -> ApiError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = parsed
        .message
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| reason.to_string());
    let errors = parsed
        .errors
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    ApiError {
        status,
        message,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ConnectArgs {
        ConnectArgs::default()
    }

    #[test]
    fn socket_default_depends_on_the_system_socket() {
        assert_eq!(
            Target::resolve(&args(), None, None, true).unwrap(),
            Target::Socket(SYSTEM_SOCKET.into())
        );
        assert_eq!(
            Target::resolve(&args(), None, Some("ignored".into()), false).unwrap(),
            Target::Socket(EMBEDDED_SOCKET.into())
        );
        let a = ConnectArgs {
            socket: Some("/tmp/s.sock".into()),
            ..args()
        };
        assert_eq!(
            Target::resolve(&a, None, None, true).unwrap(),
            Target::Socket("/tmp/s.sock".into())
        );
    }

    #[test]
    fn url_needs_a_token_from_flag_or_env() {
        let a = ConnectArgs {
            url: Some("https://pve:8016/".into()),
            ..args()
        };
        assert!(matches!(
            Target::resolve(&a, None, None, false),
            Err(ClientError::NoToken)
        ));
        assert_eq!(
            Target::resolve(&a, None, Some("root@pam!ci=s-e-c".into()), false).unwrap(),
            Target::Url {
                base: "https://pve:8016/api2/json".into(),
                auth: "PVEAPIToken=root@pam!ci=s-e-c".into()
            }
        );
        let a = ConnectArgs {
            url: Some("http://h/api2/json".into()),
            token: Some("PVEAPIToken=a@pve!x=1".into()),
            ..args()
        };
        assert_eq!(
            Target::resolve(&a, None, Some("env@pam!y=2".into()), false).unwrap(),
            Target::Url {
                base: "http://h/api2/json".into(),
                auth: "PVEAPIToken=a@pve!x=1".into()
            }
        );
        let a = ConnectArgs {
            url: Some("ftp://h".into()),
            token: Some("a@pve!x=1".into()),
            ..args()
        };
        assert!(matches!(
            Target::resolve(&a, None, None, false),
            Err(ClientError::Url { .. })
        ));
    }

    #[test]
    fn token_forms() {
        assert_eq!(
            token_header("root@pam!isolib=ab=cd").unwrap(),
            "PVEAPIToken=root@pam!isolib=ab=cd"
        );
        for bad in [
            "root@pam!isolib",
            "root@pam!isolib=",
            "root!x=1",
            "root@pam=1",
            "@pam!x=1",
            "root@pam!x:1",
            "root@pam!=1",
        ] {
            assert!(
                matches!(token_header(bad), Err(ClientError::Token)),
                "{bad}"
            );
        }
    }

    #[test]
    fn error_body_or_reason_phrase() {
        let e = api_error(
            400,
            "Parameter verification failed.",
            br#"{"data":null,"errors":{"filename":"wrong file extension"},"message":"Parameter verification failed.\n"}"#,
        );
        assert_eq!(
            e.to_string(),
            "400 Parameter verification failed.\nfilename: wrong file extension"
        );
        let e = api_error(401, "Authentication failed!", b"");
        assert_eq!(e.to_string(), "401 Authentication failed!");
    }

    #[test]
    fn segments_keep_volid_and_upid_readable() {
        assert_eq!(segment("local:iso/a b.iso"), "local:iso/a%20b.iso");
        assert_eq!(
            segment("UPID:n:0000:0000:0000:download:x.iso:root@pam!t:"),
            "UPID:n:0000:0000:0000:download:x.iso:root@pam!t:"
        );
    }
}
