//! The daemon's configuration: TOML keys and `--<key>` flags share one definition
//! ([`RawConfig`]); flags win over the file, the file over the defaults. [`Config::resolve`] is
//! the one place that turns what the user typed into validated settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::download::{Limits, RetryPolicy};
use crate::schema::Pattern;
use crate::tasks::Retention;

pub static NODE_NAME_RE: Pattern = Pattern::new(r"^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$");

/// What the user typed, in the file or on the command line.
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawConfig {
    /// Node name used in UPIDs and accepted in `/nodes/{node}` [default: short host name]
    #[arg(long)]
    pub node: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8016]
    #[arg(long)]
    pub listen: Option<String>,
    /// Serve HTTPS [default: true]
    #[arg(long)]
    pub tls: Option<bool>,
    /// PEM certificate (chain); without it a self-signed pair is made once in the state dir
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Tasks, TLS pair and default config files live here [default: ./isolib-data]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Storages, PVE storage.cfg format [default: <state-dir>/storage.cfg, created with one dir storage `local`]
    #[arg(long)]
    pub storage_cfg: Option<PathBuf>,
    /// Users, groups, roles, ACLs, PVE user.cfg format [default: <state-dir>/user.cfg]
    #[arg(long)]
    pub user_cfg: Option<PathBuf>,
    /// API token secrets, PVE priv/token.cfg format [default: <state-dir>/token.cfg]
    #[arg(long)]
    pub token_cfg: Option<PathBuf>,
    /// Proxy for http and https downloads, like datacenter.cfg http_proxy [default: none, whatever the environment says]
    #[arg(long)]
    pub http_proxy: Option<String>,
    /// Extra CA certificates (PEM) trusted on top of the system store
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Seconds every authentication failure is delayed [default: 3, as PVE]
    #[arg(long)]
    pub auth_fail_delay: Option<f64>,
    /// Retries of a download after a transient failure, resuming where it broke off [default: 5]
    #[arg(long)]
    pub download_retries: Option<u32>,
    /// Seconds without a byte after which a download attempt counts as stalled [default: 60]
    #[arg(long)]
    pub stall_timeout: Option<u64>,
    /// Downloads transferring at once; more wait in a queue [default: 4]
    #[arg(long)]
    pub max_transfers: Option<usize>,
    /// Largest download accepted, in bytes [default: no limit]
    #[arg(long)]
    pub max_size: Option<u64>,
    /// KiB/s for each download [default: no limit]
    #[arg(long)]
    pub bwlimit: Option<u64>,
    /// KiB/s for all downloads together [default: no limit]
    #[arg(long)]
    pub bwlimit_total: Option<u64>,
    /// Finished tasks whose logs are kept [default: 10000]
    #[arg(long)]
    pub task_log_keep: Option<usize>,
    /// Days a finished task's log is kept [default: 90]
    #[arg(long)]
    pub task_log_days: Option<u64>,
    /// Hours a partial download left by a crash is kept, so asking for it again resumes it [default: 24]
    #[arg(long)]
    pub partial_keep_hours: Option<f64>,
    /// Seconds between two collections of partial downloads kept longer than partial-keep-hours [default: 3600]
    #[arg(long)]
    pub partial_collect_interval: Option<u64>,
}

impl RawConfig {
    pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// `self` (flags) over `file`.
    pub fn over(self, file: RawConfig) -> RawConfig {
        RawConfig {
            node: self.node.or(file.node),
            listen: self.listen.or(file.listen),
            tls: self.tls.or(file.tls),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            state_dir: self.state_dir.or(file.state_dir),
            storage_cfg: self.storage_cfg.or(file.storage_cfg),
            user_cfg: self.user_cfg.or(file.user_cfg),
            token_cfg: self.token_cfg.or(file.token_cfg),
            http_proxy: self.http_proxy.or(file.http_proxy),
            ca_file: self.ca_file.or(file.ca_file),
            auth_fail_delay: self.auth_fail_delay.or(file.auth_fail_delay),
            download_retries: self.download_retries.or(file.download_retries),
            stall_timeout: self.stall_timeout.or(file.stall_timeout),
            max_transfers: self.max_transfers.or(file.max_transfers),
            max_size: self.max_size.or(file.max_size),
            bwlimit: self.bwlimit.or(file.bwlimit),
            bwlimit_total: self.bwlimit_total.or(file.bwlimit_total),
            task_log_keep: self.task_log_keep.or(file.task_log_keep),
            task_log_days: self.task_log_days.or(file.task_log_days),
            partial_keep_hours: self.partial_keep_hours.or(file.partial_keep_hours),
            partial_collect_interval: self
                .partial_collect_interval
                .or(file.partial_collect_interval),
        }
    }
}

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
    pub tls: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
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
    pub partials: Partials,
}

/// What happens to partial downloads that no task owns (a crash left them behind).
#[derive(Debug, Clone)]
pub struct Partials {
    /// Kept this long after their last write, for a resume.
    pub keep: Duration,
    /// Older ones are collected at start and then this often.
    pub collect_every: Duration,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8016";
pub const DEFAULT_STATE_DIR: &str = "isolib-data";

impl Config {
    pub fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
        let invalid = |key, value: &str, reason: &str| ConfigError::Invalid {
            key,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let node = raw.node.unwrap_or_else(short_hostname);
        if !NODE_NAME_RE.is_match(&node) {
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
        let delay = raw.auth_fail_delay.unwrap_or(3.0);
        if !(0.0..=60.0).contains(&delay) {
            return Err(invalid(
                "auth-fail-delay",
                &delay.to_string(),
                "expected 0 to 60 seconds",
            ));
        }
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
        let stall = raw.stall_timeout.unwrap_or(60);
        if stall == 0 {
            return Err(invalid("stall-timeout", "0", "expected at least 1 second"));
        }
        let retry = RetryPolicy {
            retries: raw.download_retries.unwrap_or(5),
            stall_timeout: Duration::from_secs(stall),
            ..RetryPolicy::default()
        };
        let max_transfers = raw.max_transfers.unwrap_or(Limits::default().max_transfers);
        if max_transfers == 0 {
            return Err(invalid("max-transfers", "0", "expected at least 1"));
        }
        let kib = |v: Option<u64>| v.filter(|k| *k > 0).map(|k| k.saturating_mul(1024));
        let limits = Limits {
            max_transfers,
            max_size: raw.max_size,
            bwlimit: kib(raw.bwlimit),
            bwlimit_total: kib(raw.bwlimit_total),
        };
        let default_retention = Retention::default();
        let retention = Retention {
            max_count: raw.task_log_keep.unwrap_or(default_retention.max_count),
            max_age: raw.task_log_days.map_or(default_retention.max_age, |d| {
                Duration::from_secs(d.saturating_mul(86_400))
            }),
        };
        let keep_hours = raw.partial_keep_hours.unwrap_or(24.0);
        if !(0.0..=100_000.0).contains(&keep_hours) {
            return Err(invalid(
                "partial-keep-hours",
                &keep_hours.to_string(),
                "expected 0 to 100000 hours",
            ));
        }
        let collect_every = raw.partial_collect_interval.unwrap_or(3600);
        if collect_every == 0 {
            return Err(invalid(
                "partial-collect-interval",
                "0",
                "expected at least 1 second",
            ));
        }
        let partials = Partials {
            keep: Duration::from_secs_f64(keep_hours * 3600.0),
            collect_every: Duration::from_secs(collect_every),
        };
        let state_dir = absolute(
            &raw.state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        )?;
        let embedded_access = raw.user_cfg.is_none() && raw.token_cfg.is_none();
        let embedded_storage = raw.storage_cfg.is_none();
        Ok(Config {
            node,
            listen,
            tls: raw.tls.unwrap_or(true),
            tls_cert: raw.tls_cert,
            tls_key: raw.tls_key,
            storage_cfg: raw
                .storage_cfg
                .unwrap_or_else(|| state_dir.join("storage.cfg")),
            user_cfg: raw.user_cfg.unwrap_or_else(|| state_dir.join("user.cfg")),
            token_cfg: raw.token_cfg.unwrap_or_else(|| state_dir.join("token.cfg")),
            embedded_access,
            embedded_storage,
            state_dir,
            http_proxy: raw.http_proxy,
            ca_file: raw.ca_file,
            auth_fail_delay: Duration::from_secs_f64(delay),
            retry,
            limits,
            retention,
            partials,
        })
    }

    /// The embedded storage: one `dir` storage `local` under the state dir.
    pub fn embedded_storage_cfg(&self) -> String {
        format!(
            "dir: local\n\tpath {}\n\tcontent iso,vztmpl,import\n",
            self.state_dir.display()
        )
    }
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
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_over_defaults() {
        let file: RawConfig =
            toml::from_str("node = \"filenode\"\nlisten = \"127.0.0.1:9000\"\ntls = false\n")
                .expect("toml");
        let flags = RawConfig {
            listen: Some("127.0.0.1:9001".into()),
            ..Default::default()
        };
        let cfg = Config::resolve(flags.over(file)).expect("valid");
        assert_eq!(cfg.node, "filenode");
        assert_eq!(cfg.listen.port(), 9001);
        assert!(!cfg.tls);
        assert!(cfg.embedded_access && cfg.embedded_storage);
        assert!(cfg.state_dir.is_absolute());
        assert_eq!(cfg.storage_cfg, cfg.state_dir.join("storage.cfg"));
        assert_eq!(cfg.auth_fail_delay, Duration::from_secs(3));
        assert_eq!(cfg.partials.keep, Duration::from_secs(24 * 3600));
        assert_eq!(cfg.partials.collect_every, Duration::from_secs(3600));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<RawConfig>("bogus = 1").is_err());
        let bad = RawConfig {
            node: Some("-x".into()),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(bad).expect_err("bad node").to_string(),
            "invalid node '-x': value does not look like a valid node name"
        );
        let bad = RawConfig {
            partial_keep_hours: Some(-1.0),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(bad).expect_err("negative").to_string(),
            "invalid partial-keep-hours '-1': expected 0 to 100000 hours"
        );
    }
}
