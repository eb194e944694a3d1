//! The `isolib` command line: `serve` runs the daemon, `token add` manages API tokens, `schema`
//! writes the API description.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod user;

use crate::auth::{self, AuthError, AuthId};
use crate::config::{Config, ConfigError, RawConfig};
use crate::download::{self, Engine, FetchConfig, FetchSetupError};
use crate::http::{self, ServeError};
use crate::state::AppState;
use crate::storage::StorageConfig;
use crate::tasks::{TaskError, TaskRegistry};

#[derive(Parser)]
#[command(
    name = "isolib",
    version,
    about = "Fetch OS images into storage directories, through the Proxmox VE API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon (with no config at all: HTTPS on 127.0.0.1:8016, storage `local` under ./isolib-data)
    Serve {
        /// TOML config file; every key can also be given as a flag, and flags win
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: RawConfig,
    },
    /// Write the API description and its OpenAPI export (api-schema/*.json) from the route table
    Schema {
        /// Directory to write isolib-api.json and openapi.json into
        #[arg(long, default_value = crate::api::export::DEFAULT_DIR)]
        out: PathBuf,
    },
    #[command(flatten)]
    Client(crate::client::ClientCommand),
    /// Manage API tokens
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage users that log in with a password
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token (and the user and ACL lines it needs) and print its secret
    Add {
        /// USER@REALM!NAME
        tokenid: String,
        /// Grant this role (a built-in PVE role or a `role:` line of user.cfg)
        #[arg(long)]
        role: Option<String>,
        /// ACL path for the role
        #[arg(long, default_value = "/")]
        path: String,
        /// Privilege separation: 1 = the token's own ACLs (intersected with the user's), 0 = the user's
        #[arg(long, default_value = "1", value_parser = ["0", "1"])]
        privsep: String,
        /// TOML config file (for user-cfg, token-cfg, state-dir)
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: RawConfig,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Keys(#[from] auth::KeyError),
    #[error(transparent)]
    Tasks(#[from] TaskError),
    #[error(transparent)]
    Fetch(#[from] FetchSetupError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("unable to create '{}': {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Export(#[from] crate::api::export::ExportError),
    #[error("invalid token id '{0}': expected USER@REALM!NAME")]
    TokenId(String),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error("invalid user id '{0}': expected USER@pve or USER@pam")]
    UserId(String),
    #[error("{0}")]
    Password(&'static str),
    #[error("unable to read the password: {0}")]
    Stdin(#[from] std::io::Error),
    #[error(transparent)]
    Shadow(#[from] auth::ShadowError),
    #[error(
        "'{}' holds PVE's own files, which isolib never writes: on a PVE node use `pveum {command}`",
        .dir.display()
    )]
    PveOwned { dir: PathBuf, command: &'static str },
}

fn load_config(config: Option<PathBuf>, flags: RawConfig) -> Result<Config, CliError> {
    let file = match config {
        Some(path) => RawConfig::load(&path)?,
        None => RawConfig::default(),
    };
    Ok(Config::resolve(flags.over(file))?)
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve { config, flags } => serve(load_config(config, flags)?).await,
        Command::Schema { out } => write_schema(&out),
        Command::Client(cmd) => Ok(crate::client::run(cmd).await?),
        Command::User { command } => user::run(command),
        Command::Token {
            command:
                TokenCommand::Add {
                    tokenid,
                    role,
                    path,
                    privsep,
                    config,
                    flags,
                },
        } => {
            let cfg = load_config(config, flags)?;
            if let Some(dir) = cfg.pve_dir {
                return Err(CliError::PveOwned {
                    dir,
                    command: "user token add",
                });
            }
            let id: AuthId = tokenid
                .parse()
                .map_err(|_| CliError::TokenId(tokenid.clone()))?;
            if !id.is_token() {
                return Err(CliError::TokenId(tokenid));
            }
            create_parent(&cfg.user_cfg)?;
            create_parent(&cfg.token_cfg)?;
            let secret = auth::add_token(
                &cfg.user_cfg,
                &cfg.token_cfg,
                &id,
                role.as_deref(),
                &path,
                privsep == "1",
            )?;
            println!("{secret}");
            Ok(())
        }
    }
}

/// Writes the generated API description files into `out`.
fn write_schema(out: &std::path::Path) -> Result<(), CliError> {
    let create = |path: &std::path::Path, source| CliError::Create {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out).map_err(|e| create(out, e))?;
    for (name, text) in crate::api::export::files(crate::api::ROUTES)? {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| create(&path, e))?;
    }
    Ok(())
}

fn create_parent(path: &std::path::Path) -> Result<(), CliError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| CliError::Create {
                path: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}

async fn serve(cfg: Config) -> Result<(), CliError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| CliError::Create {
        path: cfg.state_dir.clone(),
        source,
    })?;
    bootstrap_embedded(&cfg)?;
    let tasks = TaskRegistry::open(&cfg.state_dir, &cfg.node, cfg.retention.clone())?;
    let fetchers = download::fetchers(
        FetchConfig {
            http_proxy: cfg.http_proxy.clone(),
            ca_file: cfg.ca_file.clone(),
            policy: cfg.url_policy.clone(),
            max_redirects: cfg.max_redirects,
        },
        cfg.datacenter_cfg.clone(),
    );
    // A bad CA file or proxy stops the start instead of every download.
    fetchers.get()?;
    let engine = Engine::new(fetchers, cfg.limits.clone(), &cfg.node, cfg.partials.keep);
    // Nothing runs yet: whatever is collectable now goes before the first request.
    match StorageConfig::load_as(&cfg.storage_cfg, cfg.pve_dir.is_some()) {
        Ok(storages) => collect_partials(&engine, &storages, &cfg.node),
        Err(e) => tracing::warn!("not collecting partial downloads: {e}"),
    }
    let tickets = auth::Tickets::new(cfg.login_settings())?;
    let state = AppState::new(cfg, tasks, engine, tickets);
    tokio::spawn(collect_periodically(state.clone()));
    tokio::spawn(prune_periodically(state.clone()));
    http::serve(state).await?;
    Ok(())
}

/// Partial downloads left by a crash are kept for `partial-keep-hours` so that asking again
/// resumes them; this runs the collection of older ones while the daemon runs. The in-flight
/// registry keeps it off whatever a running task owns.
async fn collect_periodically(state: AppState) {
    let every = state.config().partials.collect_every;
    loop {
        tokio::time::sleep(every).await;
        let storages = match state.storage_config() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("not collecting partial downloads: {}", e.message);
                continue;
            }
        };
        let engine = state.engine().clone();
        let node = state.config().node.clone();
        let done = tokio::task::spawn_blocking(move || collect_partials(&engine, &storages, &node));
        if let Err(e) = done.await {
            tracing::warn!("collecting partial downloads failed: {e}");
        }
    }
}

/// Task logs past their retention go on the collection's beat, in a loop of their own (a
/// storage that hangs the collection must not stop them): otherwise only the start and every
/// 64th task prune them, and a quiet daemon would keep logs older than `task-log-days` until
/// its next restart.
async fn prune_periodically(state: AppState) {
    let every = state.config().partials.collect_every;
    loop {
        tokio::time::sleep(every).await;
        let tasks = state.tasks().clone();
        match tokio::task::spawn_blocking(move || tasks.prune()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::info!("removed {n} task log(s) past task-log-keep or task-log-days")
            }
            Ok(Err(e)) => tracing::warn!("unable to prune old task logs: {e}"),
            Err(e) => tracing::warn!("pruning task logs failed: {e}"),
        }
    }
}

/// One collection over the staging directories of all storages that take downloads. Blocking.
/// Disabled storages and those of other nodes are left alone: nothing of this node downloads to
/// them, and their paths may be mounts that are gone (a stat on a dead NFS share hangs).
fn collect_partials(engine: &Engine, storages: &StorageConfig, node: &str) {
    for s in storages
        .storages
        .iter()
        .filter(|s| s.check_enabled(node).is_ok())
    {
        for dir in s.staging_dirs() {
            match engine.collect_partials(&dir) {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    "removed {n} partial download(s) nobody resumed in storage '{}'",
                    s.id
                ),
                Err(e) => tracing::warn!(
                    "unable to collect partial downloads in storage '{}': {e}",
                    s.id
                ),
            }
        }
    }
}

/// The embedded default: a storage.cfg with `local` under the state dir and, on first start, an
/// admin token whose header value is printed once (its secret stays in the owner-only
/// token.cfg).
fn bootstrap_embedded(cfg: &Config) -> Result<(), CliError> {
    if cfg.embedded_storage && !cfg.storage_cfg.exists() {
        std::fs::write(&cfg.storage_cfg, cfg.embedded_storage_cfg()).map_err(|source| {
            CliError::Create {
                path: cfg.storage_cfg.clone(),
                source,
            }
        })?;
    }
    if cfg.embedded_access && !cfg.user_cfg.exists() && !cfg.token_cfg.exists() {
        let id: AuthId = "root@pam!isolib"
            .parse()
            .map_err(|_| CliError::TokenId("root@pam!isolib".into()))?;
        let secret = auth::add_token(&cfg.user_cfg, &cfg.token_cfg, &id, None, "/", false)?;
        println!("Created API token root@pam!isolib. Use this header (shown only once):");
        println!("Authorization: PVEAPIToken=root@pam!isolib={secret}");
    }
    Ok(())
}
