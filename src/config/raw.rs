//! What the user typed, in the config file or as flags, before anything is checked: one
//! struct for both (serde reads the TOML, clap the flags), and `over` to put flags over the
//! file. The macro writes `over` from the field list, so a new key is declared once here and
//! checked once in [`super::Config::resolve`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, DEFAULT_STATE_DIR};

/// The struct as written, plus `over`, which takes each field from `self` or else from `file`.
macro_rules! layered {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name { $($(#[$fmeta])* pub $field: $ty,)* }

        impl $name {
            /// `self` (flags) over `file`.
            pub fn over(self, file: $name) -> $name {
                $name { $($field: self.$field.or(file.$field),)* }
            }
        }
    };
}

layered! {
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
        /// Address of a plain-HTTP listener that serves public volumes (/files/) only, for installers and iPXE builds without a CA store [default: none]
        #[arg(long)]
        pub http_listen: Option<String>,
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
        /// Connections one download may use at once (1-16), each fetching a segment, for an origin that answers ranges [default: 1, as PVE]
        #[arg(long)]
        pub connections: Option<u32>,
        /// Finished tasks whose logs are kept [default: 10000]
        #[arg(long)]
        pub task_log_keep: Option<usize>,
        /// Days a finished task's log is kept [default: 90]
        #[arg(long)]
        pub task_log_days: Option<u64>,
        /// Local Unix socket serving the same API; a peer with uid 0 or the daemon's own uid is root@pam [default: <state-dir>/isolib.sock]
        #[arg(long)]
        pub socket: Option<PathBuf>,
        /// PVE node mode: read storage.cfg, user.cfg, priv/token.cfg, priv/shadow.cfg, priv/tfa.cfg,
        /// datacenter.cfg and the ticket keys from this directory; `none` turns it off [default: /etc/pve where it exists]
        #[arg(long)]
        pub pve_dir: Option<String>,
        /// Passwords of the `pve` realm, PVE priv/shadow.cfg format [default: <pve-dir>/priv/shadow.cfg, else <state-dir>/shadow.cfg]
        #[arg(long)]
        pub shadow_cfg: Option<PathBuf>,
        /// PAM service that checks `pam` realm passwords [default: proxmox-ve-auth, as PVE]
        #[arg(long)]
        pub pam_service: Option<String>,
        /// Directory of PAM service files [default: the system's, /etc/pam.d]
        #[arg(long)]
        pub pam_confdir: Option<PathBuf>,
        /// URLs that may be fetched: scheme:http|https, host:NAME, host:*.DOMAIN, net:ADDRESS[/PREFIX]; repeat or separate with ',' [default: any http(s) URL]
        #[arg(long, value_delimiter = ',')]
        pub url_allow: Option<Vec<String>>,
        /// URLs that must not be fetched, same rules as --url-allow; deny wins [default: none]
        #[arg(long, value_delimiter = ',')]
        pub url_deny: Option<Vec<String>>,
        /// Redirects a download follows [default: 20, as wget]
        #[arg(long)]
        pub max_redirects: Option<usize>,
        /// Bytes of header fields in one API request [default: 8192, as PVE]
        #[arg(long)]
        pub max_header_size: Option<usize>,
        /// Header fields in one API request [default: 64, as PVE]
        #[arg(long)]
        pub max_header_count: Option<usize>,
        /// Bytes of one API request's body (POST, PUT) [default: 524288, as PVE]
        #[arg(long)]
        pub max_body_size: Option<usize>,
        /// Seconds a client may take to send a request's head, and may stay silent while sending its body [default: 10]
        #[arg(long)]
        pub client_timeout: Option<f64>,
        /// TCP connections open at once, from all clients; more are closed when accepted [default: 800, as PVE]
        #[arg(long)]
        pub max_connections: Option<usize>,
        /// TCP connections open at once from one client address [default: 64]
        #[arg(long)]
        pub max_connections_per_address: Option<usize>,
        /// Hours a partial download left by a crash is kept, so asking for it again resumes it [default: 24]
        #[arg(long)]
        pub partial_keep_hours: Option<f64>,
        /// Seconds between two collections of partial downloads kept longer than partial-keep-hours, and of task logs past task-log-keep or task-log-days [default: 3600]
        #[arg(long)]
        pub partial_collect_interval: Option<u64>,
        /// osinfo-db, which names the OS of an ISO by its volume descriptor [default: /usr/share/osinfo, Debian's osinfo-db package]
        #[arg(long)]
        pub osinfo_db: Option<PathBuf>,
        /// KiB per second the background work (adopting files without a record, scheduled verification) may read [default: 51200; 0: no limit]
        #[arg(long)]
        pub background_bwlimit: Option<u64>,
        /// Days after which a volume is verified again in the background [default: 30; 0: never]
        #[arg(long)]
        pub verify_after_days: Option<f64>,
        /// Seconds between two looks for volumes without a record or due for verification [default: 300]
        #[arg(long)]
        pub catalog_scan_interval: Option<u64>,
        /// The weakest algorithm a checksum file (download-url's checksum-url) may give: md5, sha1, sha224, sha256, sha384 or sha512 [default: sha256]
        #[arg(long)]
        pub min_checksum_algorithm: Option<String>,
        /// Directory of OpenPGP keyrings, one `<name>.pgp` per distribution, that download-url's `keyring` names [default: <state-dir>/keyrings]
        #[arg(long)]
        pub keyrings: Option<PathBuf>,
        /// Sources of PVE's appliance index, comma-separated [default: PVE's, http://download.proxmox.com/images,https://releases.turnkeylinux.org/pve]
        #[arg(long)]
        pub aplinfo_urls: Option<String>,
        /// The keyring (in `keyrings`) whose keys must have signed an appliance index [default: aplinfo]
        #[arg(long)]
        pub aplinfo_keyring: Option<String>,
        /// Seconds between two updates of the appliance index, as pveam's daily update [default: 86400; 0: never]
        #[arg(long)]
        pub aplinfo_interval: Option<u64>,
        /// Another node's daemon, for requests to /nodes/NAME/...: "NAME HOST:PORT SHA256-FINGERPRINT" (repeatable; on a PVE node the cluster's members are the peers)
        #[arg(long = "peer", value_name = "PEER")]
        pub peers: Option<Vec<String>>,
        /// The port every node's daemon listens on, for peers found in PVE's member list [default: the listen port]
        #[arg(long)]
        pub peer_port: Option<u16>,
    }
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

    /// The local socket the daemon listens on with these settings, relative paths as given.
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| {
            self.state_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
                .join("isolib.sock")
        })
    }
}
