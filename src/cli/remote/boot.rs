//! `isolib boot config ...` and `isolib boot host ...`: network boot configs and hosts
//! (`/cluster/isolib/boot`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::conn::{ConnectArgs, Connection, segment};
use super::error::ClientError;
use super::table::{self, Align, field};

#[derive(clap::Args, Debug, Clone)]
pub struct BootArgs {
    #[command(subcommand)]
    pub command: BootCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum BootCommand {
    /// Boot configs: the files an installer reads (ignition, kickstart, ...)
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Hosts: which image a machine boots, with which config
    #[command(subcommand)]
    Host(HostCommand),
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ConfigCommand {
    /// Create a boot config
    Add(ConfigArgs),
    /// List the boot configs
    Ls(ConnOnly),
    /// Show one, with its files
    Show(Named),
    /// Change one
    Set(ConfigArgs),
    /// Delete one no host uses
    Rm(Named),
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum HostCommand {
    /// Add a host
    Add(HostArgs),
    /// The hosts table: host, MAC, image, config
    Ls(ConnOnly),
    /// Show one
    Show(Named),
    /// Change one: its image, its config
    Set(HostArgs),
    /// Remove one
    Rm(Named),
}

#[derive(clap::Args, Debug, Clone)]
pub struct ConnOnly {
    #[command(flatten)]
    pub conn: ConnectArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Named {
    pub name: String,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    pub name: String,
    /// ignition, kickstart, cloud-init, autoinstall, preseed or raw
    #[arg(long)]
    pub format: Option<String>,
    /// A file of the config: PATH (named as the file is) or NAME=PATH; repeatable
    #[arg(long = "file", value_name = "[NAME=]PATH")]
    pub files: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct HostArgs {
    pub name: String,
    #[arg(long)]
    pub mac: Option<String>,
    /// Its IP address, by which /boot/config knows it ("" for none)
    #[arg(long)]
    pub ip: Option<String>,
    /// The volume it boots, or localboot ("" for none)
    #[arg(long)]
    pub image: Option<String>,
    /// Its boot config ("" for none)
    #[arg(long = "boot-config", value_name = "NAME")]
    pub boot_config: Option<String>,
    /// bios or uefi
    #[arg(long)]
    pub firmware: Option<String>,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

const BOOT: &str = "/cluster/isolib/boot";

pub async fn run(args: BootArgs) -> Result<(), ClientError> {
    match args.command {
        BootCommand::Config(c) => config(c).await,
        BootCommand::Host(h) => host(h).await,
    }
}

async fn config(cmd: ConfigCommand) -> Result<(), ClientError> {
    let base = format!("{BOOT}/configs");
    match cmd {
        ConfigCommand::Add(a) => {
            let conn = Connection::open(&a.conn)?;
            let form = config_form(&a, true)?;
            conn.post::<Value>(&base, &form).await.map(drop)
        }
        ConfigCommand::Set(a) => {
            let conn = Connection::open(&a.conn)?;
            let form = config_form(&a, false)?;
            conn.put::<Value>(&format!("{base}/{}", segment(&a.name)), &form)
                .await
                .map(drop)
        }
        ConfigCommand::Ls(c) => {
            let conn = Connection::open(&c.conn)?;
            let list: Vec<Value> = conn.get(&base, &[]).await?.data;
            let headers = [
                ("NAME", Align::Left),
                ("FORMAT", Align::Left),
                ("FILES", Align::Left),
                ("DESCRIPTION", Align::Left),
            ];
            table::print_rows(&headers, &list, |c| {
                let files = c["files"]
                    .as_object()
                    .map(|f| f.keys().cloned().collect::<Vec<_>>().join(","))
                    .unwrap_or_default();
                vec![
                    field(&c["name"]),
                    field(&c["format"]),
                    files,
                    field(&c["description"]),
                ]
            })
        }
        ConfigCommand::Show(n) => show(&n, &base).await,
        ConfigCommand::Rm(n) => remove(&n, &base).await,
    }
}

fn config_form(a: &ConfigArgs, create: bool) -> Result<Vec<(&'static str, String)>, ClientError> {
    let mut form = Vec::new();
    if create {
        form.push(("name", a.name.clone()));
    }
    if let Some(f) = &a.format {
        form.push(("format", f.clone()));
    }
    if !a.files.is_empty() {
        let mut files = BTreeMap::new();
        for spec in &a.files {
            let (name, path) = match spec.split_once('=') {
                Some((n, p)) => (n.to_owned(), PathBuf::from(p)),
                None => {
                    let p = PathBuf::from(spec);
                    let n = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (n, p)
                }
            };
            let content = std::fs::read_to_string(&path)
                .map_err(|source| ClientError::ReadFile { path, source })?;
            files.insert(name, content);
        }
        form.push(("files", serde_json::to_string(&files).unwrap_or_default()));
    }
    if let Some(d) = &a.description {
        form.push(("description", d.clone()));
    }
    Ok(form)
}

async fn host(cmd: HostCommand) -> Result<(), ClientError> {
    let base = format!("{BOOT}/hosts");
    match cmd {
        HostCommand::Add(a) => {
            let conn = Connection::open(&a.conn)?;
            let mut form = vec![("name", a.name.clone())];
            form.extend(host_form(&a));
            conn.post::<Value>(&base, &form).await.map(drop)
        }
        HostCommand::Set(a) => {
            let conn = Connection::open(&a.conn)?;
            conn.put::<Value>(&format!("{base}/{}", segment(&a.name)), &host_form(&a))
                .await
                .map(drop)
        }
        HostCommand::Ls(c) => {
            let conn = Connection::open(&c.conn)?;
            let list: Vec<Value> = conn.get(&base, &[]).await?.data;
            let headers = [
                ("HOST", Align::Left),
                ("MAC", Align::Left),
                ("IMAGE", Align::Left),
                ("CONFIG", Align::Left),
            ];
            table::print_rows(&headers, &list, |h| {
                ["name", "mac", "image", "config"]
                    .iter()
                    .map(|k| field(&h[*k]))
                    .collect()
            })
        }
        HostCommand::Show(n) => show(&n, &base).await,
        HostCommand::Rm(n) => remove(&n, &base).await,
    }
}

fn host_form(a: &HostArgs) -> Vec<(&'static str, String)> {
    [
        ("mac", &a.mac),
        ("ip", &a.ip),
        ("image", &a.image),
        ("config", &a.boot_config),
        ("firmware", &a.firmware),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v.clone()?)))
    .collect()
}

async fn show(n: &Named, base: &str) -> Result<(), ClientError> {
    let conn = Connection::open(&n.conn)?;
    let v: Value = conn
        .get(&format!("{base}/{}", segment(&n.name)), &[])
        .await?
        .data;
    // The reply was JSON a moment ago; writing it again cannot fail.
    table::print(&format!(
        "{}\n",
        serde_json::to_string_pretty(&v).unwrap_or_default()
    ))
}

async fn remove(n: &Named, base: &str) -> Result<(), ClientError> {
    let conn = Connection::open(&n.conn)?;
    conn.delete::<Value>(&format!("{base}/{}", segment(&n.name)))
        .await
        .map(drop)
}
