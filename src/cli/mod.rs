//! The `isolib` command line, parsed here and handed on: `serve` to [`crate::daemon`], `add` to
//! [`crate::library`], the
//! commands that talk to a running daemon (`download`, `ls`, `tasks`, `rm`) to [`remote`],
//! `token add` and `user` to [`crate::auth`], `schema` to the API export.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod add;
pub mod remote;
mod user;

use crate::auth::{self, AuthError, AuthId};
use crate::config::{Config, ConfigError, RawConfig};
use crate::daemon::{self, DaemonError};

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
    /// Add a file of this host to a storage as a volume, with its catalog record
    Add {
        #[command(flatten)]
        args: add::AddArgs,
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: RawConfig,
    },
    #[command(flatten)]
    Client(remote::ClientCommand),
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
    Daemon(#[from] DaemonError),
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
    Client(#[from] remote::ClientError),
    #[error(transparent)]
    Add(#[from] crate::library::add::AddError),
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
        Command::Serve { config, flags } => {
            Ok(daemon::run(load_config(config, flags)?, std::future::pending()).await?)
        }
        Command::Schema { out } => write_schema(&out),
        Command::Add {
            args,
            config,
            flags,
        } => add::run(args, load_config(config, flags)?).await,
        Command::Client(cmd) => Ok(remote::run(cmd).await?),
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
    for (name, text) in crate::api::export::files(&crate::api::ROUTER.methods())? {
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
