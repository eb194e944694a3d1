//! The daemon's configuration: TOML keys and `--<key>` flags share one definition
//! ([`RawConfig`]); flags win over the file, the file over the defaults. [`Config::resolve`] is
//! the one place that turns what the user typed into validated settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod raw;

pub use raw::RawConfig;

use crate::auth::{KeyPaths, LoginSettings};
use crate::download::{DEFAULT_MAX_REDIRECTS, Limits, RetryPolicy, Rule, UrlPolicy};
use crate::pve::ids::is_valid_node_name;
use crate::tasks::Retention;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unable to read config '{}': {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config '{}': {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid {key} '{value}': {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("unable to use state dir '{}': {source}", .path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub node: String,
    pub listen: SocketAddr,
    /// The plain-HTTP listener for public volumes.
    pub http_listen: Option<SocketAddr>,
    pub tls: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Other nodes' daemons (standalone; on a PVE node, its member list).
    pub peers: Vec<crate::cluster::peers::Peer>,
    pub peer_port: u16,
    pub state_dir: PathBuf,
    pub storage_cfg: PathBuf,
    pub user_cfg: PathBuf,
    pub token_cfg: PathBuf,
    /// True when neither access file was named: the embedded default, which bootstraps an
    /// admin token on first start.
    pub embedded_access: bool,
    /// True when no storage.cfg was named: the embedded default storage is created.
    pub embedded_storage: bool,
    pub http_proxy: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub auth_fail_delay: Duration,
    pub retry: RetryPolicy,
    pub limits: Limits,
    pub retention: Retention,
    pub socket: PathBuf,
    /// Set in PVE node mode: the directory PVE's own files are read from, never written.
    pub pve_dir: Option<PathBuf>,
    pub shadow_cfg: PathBuf,
    /// PVE's second-factor files; only node mode has them.
    pub tfa_cfg: Option<PathBuf>,
    pub domains_cfg: Option<PathBuf>,
    pub datacenter_cfg: Option<PathBuf>,
    pub keys: KeyPaths,
    pub pam_service: String,
    pub pam_confdir: Option<PathBuf>,
    pub url_policy: UrlPolicy,
    pub max_redirects: usize,
    pub headers: HeaderLimits,
    /// Bytes a request body may have; more gets PVE's 501.
    pub max_body_size: usize,
    pub clients: ClientLimits,
    pub partials: Partials,
    pub catalog: CatalogSettings,
    /// The weakest checksum a checksum file may give.
    pub min_checksum_algorithm: crate::download::Algorithm,
    /// Where download-url's `keyring` names are looked up (`<name>.pgp`).
    pub keyrings: PathBuf,
    pub aplinfo: AplinfoSettings,
}

/// PVE's appliance index: where it comes from, who signs it, how often it is fetched.
#[derive(Debug, Clone)]
pub struct AplinfoSettings {
    pub sources: Vec<String>,
    /// A keyring name in `keyrings`.
    pub keyring: String,
    /// `None`: never updated.
    pub every: Option<Duration>,
    /// Where the verified indexes are kept.
    pub dir: PathBuf,
}

/// The library's background work and its OS database.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    pub osinfo_dir: PathBuf,
    /// Bytes per second the background reads may take; `None`: no limit.
    pub background_rate: Option<u64>,
    /// A volume verified longer ago than this is verified again; `None`: never.
    pub verify_after: Option<Duration>,
    /// How often volumes are looked at for adoption and verification.
    pub scan_every: Duration,
}

/// What one client may hold of the API listener, so that slow or many clients cannot stop it
/// from answering others.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// To send a request's head, and the longest silence while sending its body.
    pub timeout: Duration,
    /// TCP connections open at once, in all; more are closed as they are accepted.
    pub max_connections: usize,
    /// The same for one client address.
    pub max_per_address: usize,
}

/// What happens to partial downloads that no task owns (a crash left them behind).
#[derive(Debug, Clone)]
pub struct Partials {
    /// Kept this long after their last write, for a resume.
    pub keep: Duration,
    /// Older ones are collected at start and then this often.
    pub collect_every: Duration,
}

/// The PVE configuration directory, where a node has one.
pub const DEFAULT_PVE_DIR: &str = "/etc/pve";

/// `pve-dir`: explicit path, `none`, or /etc/pve when it exists.
fn resolve_pve_dir(raw: Option<&str>) -> Result<Option<PathBuf>, ConfigError> {
    match raw {
        Some("none") => Ok(None),
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !dir.is_dir() {
                return Err(ConfigError::Invalid {
                    key: "pve-dir",
                    value: dir.display().to_string(),
                    reason: "not a directory (use 'none' to run without PVE's files)".into(),
                });
            }
            Ok(Some(absolute(&dir)?))
        }
        None => Ok(Some(PathBuf::from(DEFAULT_PVE_DIR)).filter(|d| d.is_dir())),
    }
}

/// What one API request's header fields may hold. PVE's API server stops reading at 8 KiB or
/// 64 lines; actix, underneath, refuses heads over 128 KiB or with more than 96 fields itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Bytes of all fields, each counted as `name: value`.
    pub max_size: usize,
    pub max_count: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits {
            max_size: 8192,
            max_count: 64,
        }
    }
}

/// Above these actix answers before isolib sees the request: it buffers at most 128 KiB of head
/// (request line included) and parses at most 96 fields.
const MAX_HEADER_SIZE_CEILING: usize = 65_536;
const MAX_HEADER_COUNT_CEILING: usize = 96;

/// PVE's `$limit_max_post`: plenty for any form this API takes.
pub const DEFAULT_MAX_BODY_SIZE: usize = 512 * 1024;
/// The body is held in memory while it is parsed, so even a raised limit stays modest.
const MAX_BODY_SIZE_CEILING: usize = 64 * 1024 * 1024;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8016";
pub const DEFAULT_STATE_DIR: &str = "isolib-data";

impl Config {
    /// How to reach `node`'s daemon, if it is another node this one knows.
    pub fn peer(
        &self,
        node: &str,
    ) -> Result<Option<crate::cluster::peers::Peer>, crate::cluster::peers::PeerError> {
        match &self.pve_dir {
            Some(pve) => crate::cluster::peers::from_pve(pve, node, self.peer_port),
            None => Ok(self.peers.iter().find(|p| p.name == node).cloned()),
        }
    }

    /// Every other node this one knows.
    pub fn peer_names(&self) -> Result<Vec<String>, crate::cluster::peers::PeerError> {
        match &self.pve_dir {
            Some(pve) => crate::cluster::peers::pve_members(pve, &self.node),
            None => Ok(self.peers.iter().map(|p| p.name.clone()).collect()),
        }
    }

    pub fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
        let socket = absolute(&raw.socket_path())?;
        let clients = client_limits(&raw)?;
        let node = raw.node.unwrap_or_else(short_hostname);
        if !is_valid_node_name(&node) {
            return Err(invalid(
                "node",
                &node,
                "value does not look like a valid node name",
            ));
        }
        let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_text
            .parse()
            .map_err(|_| invalid("listen", &listen_text, "expected ADDRESS:PORT"))?;
        let http_listen = match &raw.http_listen {
            Some(text) => Some(
                text.parse()
                    .map_err(|_| invalid("http-listen", text, "expected ADDRESS:PORT"))?,
            ),
            None => None,
        };
        let delay = within(
            "auth-fail-delay",
            raw.auth_fail_delay.unwrap_or(3.0),
            0.0..=60.0,
            " seconds",
        )?;
        if raw.tls_cert.is_some() != raw.tls_key.is_some() {
            return Err(invalid("tls-cert", "", "tls-cert and tls-key go together"));
        }
        if let Some(p) = &raw.http_proxy
            && !p.starts_with("http://")
        {
            return Err(invalid(
                "http-proxy",
                p,
                "expected http://[user:pass@]host:port/",
            ));
        }
        let stall = at_least_one("stall-timeout", raw.stall_timeout.unwrap_or(60), " second")?;
        let retry = RetryPolicy {
            retries: raw.download_retries.unwrap_or(5),
            stall_timeout: Duration::from_secs(stall),
            ..RetryPolicy::default()
        };
        let max_transfers = at_least_one(
            "max-transfers",
            raw.max_transfers.unwrap_or(Limits::default().max_transfers),
            "",
        )?;
        let kib = |v: Option<u64>| v.filter(|k| *k > 0).map(|k| k.saturating_mul(1024));
        let limits = Limits {
            max_transfers,
            max_size: raw.max_size,
            bwlimit: kib(raw.bwlimit),
            bwlimit_total: kib(raw.bwlimit_total),
            connections: within("connections", raw.connections.unwrap_or(1), 1..=16, "")?,
        };
        let default_retention = Retention::default();
        let retention = Retention {
            max_count: raw.task_log_keep.unwrap_or(default_retention.max_count),
            max_age: raw.task_log_days.map_or(default_retention.max_age, |d| {
                Duration::from_secs(d.saturating_mul(86_400))
            }),
        };
        let rules = |key: &'static str, list: Option<Vec<String>>| {
            list.unwrap_or_default()
                .iter()
                .map(|text| {
                    text.parse::<Rule>()
                        .map_err(|e| invalid(key, text, &e.to_string()))
                })
                .collect::<Result<Vec<Rule>, ConfigError>>()
        };
        let url_policy = UrlPolicy::new(
            rules("url-allow", raw.url_allow)?,
            rules("url-deny", raw.url_deny)?,
        );
        let default_headers = HeaderLimits::default();
        let headers = HeaderLimits {
            max_size: raw.max_header_size.unwrap_or(default_headers.max_size),
            max_count: raw.max_header_count.unwrap_or(default_headers.max_count),
        };
        within(
            "max-header-size",
            headers.max_size,
            1024..=MAX_HEADER_SIZE_CEILING,
            " bytes",
        )?;
        within(
            "max-header-count",
            headers.max_count,
            8..=MAX_HEADER_COUNT_CEILING,
            "",
        )?;
        let max_body_size = within(
            "max-body-size",
            raw.max_body_size.unwrap_or(DEFAULT_MAX_BODY_SIZE),
            1024..=MAX_BODY_SIZE_CEILING,
            " bytes",
        )?;
        let keep_hours = within(
            "partial-keep-hours",
            raw.partial_keep_hours.unwrap_or(24.0),
            0.0..=100_000.0,
            " hours",
        )?;
        let collect_every = at_least_one(
            "partial-collect-interval",
            raw.partial_collect_interval.unwrap_or(3600),
            " second",
        )?;
        let partials = Partials {
            keep: Duration::from_secs_f64(keep_hours * 3600.0),
            collect_every: Duration::from_secs(collect_every),
        };
        let verify_days = within(
            "verify-after-days",
            raw.verify_after_days.unwrap_or(30.0),
            0.0..=100_000.0,
            " days",
        )?;
        let scan_every = at_least_one(
            "catalog-scan-interval",
            raw.catalog_scan_interval.unwrap_or(300),
            " second",
        )?;
        let min_name = raw
            .min_checksum_algorithm
            .unwrap_or_else(|| "sha256".to_owned());
        let min_checksum_algorithm =
            crate::download::Algorithm::parse(&min_name).ok_or_else(|| {
                invalid(
                    "min-checksum-algorithm",
                    &min_name,
                    "expected md5, sha1, sha224, sha256, sha384 or sha512",
                )
            })?;
        let catalog = CatalogSettings {
            osinfo_dir: raw
                .osinfo_db
                .unwrap_or_else(|| PathBuf::from(crate::catalog::DEFAULT_OSINFO_DIR)),
            background_rate: match raw.background_bwlimit.unwrap_or(51_200) {
                0 => None,
                kib => Some(kib.saturating_mul(1024)),
            },
            verify_after: (verify_days > 0.0)
                .then(|| Duration::from_secs_f64(verify_days * 86_400.0)),
            scan_every: Duration::from_secs(scan_every),
        };
        let state_dir = absolute(
            &raw.state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        )?;
        let keyrings = raw
            .keyrings
            .clone()
            .unwrap_or_else(|| state_dir.join("keyrings"));
        let aplinfo = AplinfoSettings {
            sources: match &raw.aplinfo_urls {
                Some(list) => list
                    .split(',')
                    .map(|u| u.trim().trim_end_matches('/').to_owned())
                    .filter(|u| !u.is_empty())
                    .collect(),
                None => crate::upstream::aplinfo::DEFAULT_SOURCES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            },
            keyring: raw
                .aplinfo_keyring
                .clone()
                .unwrap_or_else(|| "aplinfo".to_owned()),
            every: match raw.aplinfo_interval.unwrap_or(86_400) {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            dir: state_dir.join("aplinfo"),
        };
        let pve_dir = resolve_pve_dir(raw.pve_dir.as_deref())?;
        let peers = raw
            .peers
            .iter()
            .flatten()
            .map(|p| {
                crate::cluster::peers::parse_peer(p)
                    .map_err(|e| invalid("peers", p, &e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // On a PVE node the daemon presents the node's own certificate, the one its peers pin.
        let (tls_cert, tls_key) = match (&raw.tls_cert, &pve_dir) {
            (None, Some(pve)) => {
                let dir = pve.join("nodes").join(&node);
                let (cert, key) = (dir.join("pve-ssl.pem"), dir.join("pve-ssl.key"));
                if cert.exists() && key.exists() {
                    (Some(cert), Some(key))
                } else {
                    (None, None)
                }
            }
            _ => (raw.tls_cert.clone(), raw.tls_key.clone()),
        };
        // A PVE file is the default for each setting it covers; an explicit setting still wins.
        let pve_file = |name: &str| pve_dir.as_ref().map(|d| d.join(name));
        let embedded_access =
            pve_dir.is_none() && raw.user_cfg.is_none() && raw.token_cfg.is_none();
        let embedded_storage = pve_dir.is_none() && raw.storage_cfg.is_none();
        let storage_cfg = raw
            .storage_cfg
            .or_else(|| pve_file("storage.cfg"))
            .unwrap_or_else(|| state_dir.join("storage.cfg"));
        let user_cfg = raw
            .user_cfg
            .or_else(|| pve_file("user.cfg"))
            .unwrap_or_else(|| state_dir.join("user.cfg"));
        let token_cfg = raw
            .token_cfg
            .or_else(|| pve_file("priv/token.cfg"))
            .unwrap_or_else(|| state_dir.join("token.cfg"));
        let shadow_cfg = raw
            .shadow_cfg
            .or_else(|| pve_file("priv/shadow.cfg"))
            .unwrap_or_else(|| state_dir.join("shadow.cfg"));
        // In node mode these are PVE's keys, which only PVE rotates; otherwise our own.
        let keys = match &pve_dir {
            Some(d) => KeyPaths::in_pve_dir(d),
            None => KeyPaths::standalone(&state_dir.join("auth")),
        };
        Ok(Config {
            node,
            listen,
            http_listen,
            tls: raw.tls.unwrap_or(true),
            tls_cert,
            tls_key,
            peers,
            peer_port: raw.peer_port.unwrap_or(listen.port()),
            storage_cfg,
            user_cfg,
            token_cfg,
            embedded_access,
            embedded_storage,
            state_dir,
            http_proxy: raw.http_proxy,
            ca_file: raw.ca_file,
            auth_fail_delay: Duration::from_secs_f64(delay),
            retry,
            limits,
            retention,
            socket,
            shadow_cfg,
            tfa_cfg: pve_file("priv/tfa.cfg"),
            domains_cfg: pve_file("domains.cfg"),
            datacenter_cfg: pve_file("datacenter.cfg"),
            pve_dir,
            keys,
            pam_service: raw
                .pam_service
                .unwrap_or_else(|| crate::auth::DEFAULT_PAM_SERVICE.to_string()),
            pam_confdir: raw.pam_confdir,
            url_policy,
            max_redirects: raw.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS),
            headers,
            max_body_size,
            clients,
            partials,
            catalog,
            min_checksum_algorithm,
            keyrings,
            aplinfo,
        })
    }

    /// What logging in needs to know.
    pub fn login_settings(&self) -> LoginSettings {
        LoginSettings {
            keys: self.keys.clone(),
            own_keys: self.pve_dir.is_none(),
            shadow_cfg: self.shadow_cfg.clone(),
            second_factors: self.tfa_cfg.clone().zip(self.domains_cfg.clone()),
            pam_service: self.pam_service.clone(),
            pam_confdir: self.pam_confdir.clone(),
        }
    }

    /// The embedded storage: one `dir` storage `local` under the state dir.
    pub fn embedded_storage_cfg(&self) -> String {
        format!(
            "dir: local\n\tpath {}\n\tcontent iso,vztmpl,import\n",
            self.state_dir.display()
        )
    }
}

fn invalid(key: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// `value` inside `range`, else an error naming both.
fn within<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T, ConfigError> {
    if range.contains(&value) {
        return Ok(value);
    }
    Err(invalid(
        key,
        &value.to_string(),
        &format!("expected {} to {}{unit}", range.start(), range.end()),
    ))
}

/// A count or an interval that must not be zero.
fn at_least_one<T: PartialEq + Default + std::fmt::Display>(
    key: &'static str,
    value: T,
    unit: &str,
) -> Result<T, ConfigError> {
    if value == T::default() {
        return Err(invalid(key, "0", &format!("expected at least 1{unit}")));
    }
    Ok(value)
}

fn client_limits(raw: &RawConfig) -> Result<ClientLimits, ConfigError> {
    let timeout = within(
        "client-timeout",
        raw.client_timeout.unwrap_or(10.0),
        0.5..=3600.0,
        " seconds",
    )?;
    let max_connections = within(
        "max-connections",
        raw.max_connections.unwrap_or(800),
        1..=1_000_000,
        "",
    )?;
    let max_per_address = within(
        "max-connections-per-address",
        raw.max_connections_per_address.unwrap_or(64),
        1..=max_connections,
        " ({max_connections})",
    )?;
    Ok(ClientLimits {
        timeout: Duration::from_secs_f64(timeout),
        max_connections,
        max_per_address,
    })
}

fn absolute(p: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(p).map_err(|source| ConfigError::StateDir {
        path: p.to_path_buf(),
        source,
    })
}

/// PVE's node name is the short host name.
fn short_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| h.trim().split('.').next().map(str::to_string))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests;
