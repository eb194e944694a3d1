//! `isolib track add|ls|show|check|rm`: tracked releases (`/cluster/isolib/tracks`).

use serde_json::Value;

use super::conn::{ConnectArgs, Connection, segment};
use super::error::ClientError;
use super::follow::{self, is_success};
use super::table::{self, Align, field};

#[derive(clap::Args, Debug, Clone)]
pub struct TrackArgs {
    #[command(subcommand)]
    pub command: TrackCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum TrackCommand {
    /// Track the releases announced at a URL
    Add(AddArgs),
    /// List the tracks
    Ls {
        #[command(flatten)]
        conn: ConnectArgs,
    },
    /// Show a track: its definition, the release held and the latest seen, the last poll
    Show(NameArgs),
    /// Poll a track now and follow the task it starts; non-zero exit when it failed
    Check(NameArgs),
    /// Stop tracking (the volumes stay)
    Rm(NameArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct NameArgs {
    pub name: String,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct AddArgs {
    pub name: String,
    #[arg(long, value_name = "ID")]
    pub storage: String,
    /// iso, vztmpl or import
    #[arg(long, value_name = "T", default_value = "iso")]
    pub content: String,
    /// The checksum file, the directory index or the feed that announces releases
    #[arg(long)]
    pub url: String,
    /// Matched against whole file names; its first group is the version
    #[arg(long, value_name = "REGEX")]
    pub pattern: Option<String>,
    /// alpine (latest-releases.yaml) or fcos (stream JSON)
    #[arg(long)]
    pub feed: Option<String>,
    /// A detached signature of the checksum file
    #[arg(long, value_name = "URL")]
    pub signature_url: Option<String>,
    /// Check the checksum file's signature against this keyring
    #[arg(long, value_name = "NAME")]
    pub keyring: Option<String>,
    /// Keep this many releases; older ones go unless protected or in use
    #[arg(long, value_name = "N")]
    pub keep: Option<u32>,
    /// Seconds between polls
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<u64>,
    #[command(flatten)]
    pub conn: AddConnectArgs,
}

/// [`ConnectArgs`] where `--url` is taken by the track's URL: the daemon's is `--daemon-url`.
#[derive(clap::Args, Debug, Clone)]
pub struct AddConnectArgs {
    /// Unix socket of the local daemon
    #[arg(long, value_name = "PATH", conflicts_with = "daemon_url")]
    pub socket: Option<std::path::PathBuf>,
    /// The local daemon's config file
    #[arg(long, value_name = "FILE", conflicts_with_all = ["socket", "daemon_url"])]
    pub config: Option<std::path::PathBuf>,
    /// Daemon URL, e.g. https://host:8016 (instead of the local socket; needs a token)
    #[arg(long = "daemon-url", id = "daemon_url", value_name = "URL")]
    pub url: Option<String>,
    /// API token for --daemon-url: USER@REALM!NAME=SECRET [default: $ISOLIB_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// PEM file with CA certificates to trust for --daemon-url, besides the system's
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Don't verify the daemon's TLS certificate (--daemon-url)
    #[arg(long)]
    pub insecure: bool,
    /// Node name in API paths
    #[arg(long)]
    pub node: Option<String>,
}

impl From<AddConnectArgs> for ConnectArgs {
    fn from(a: AddConnectArgs) -> ConnectArgs {
        ConnectArgs {
            socket: a.socket,
            config: a.config,
            url: a.url,
            token: a.token,
            ca_file: a.ca_file,
            insecure: a.insecure,
            node: a.node,
        }
    }
}

const TRACKS: &str = "/cluster/isolib/tracks";

pub async fn run(args: TrackArgs) -> Result<(), ClientError> {
    let item = |name: &str| format!("{TRACKS}/{}", segment(name));
    match args.command {
        TrackCommand::Add(a) => {
            let conn = Connection::open(&a.conn.into())?;
            let mut form = vec![
                ("name", a.name),
                ("storage", a.storage),
                ("content", a.content),
                ("url", a.url),
            ];
            let optional = [
                ("pattern", a.pattern),
                ("feed", a.feed),
                ("signature-url", a.signature_url),
                ("keyring", a.keyring),
                ("keep", a.keep.map(|k| k.to_string())),
                ("interval", a.interval.map(|i| i.to_string())),
            ];
            form.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
            conn.post::<Value>(TRACKS, &form).await?;
            Ok(())
        }
        TrackCommand::Ls { conn } => {
            let conn = Connection::open(&conn)?;
            let list: Vec<Value> = conn.get(TRACKS, &[]).await?.data;
            let headers = [
                ("NAME", Align::Left),
                ("STORAGE", Align::Left),
                ("CURRENT", Align::Left),
                ("LATEST", Align::Left),
                ("LAST POLL", Align::Left),
                ("ERROR", Align::Left),
            ];
            table::print_rows(&headers, &list, row)
        }
        TrackCommand::Show(a) => {
            let conn = Connection::open(&a.conn)?;
            let v: Value = conn.get(&item(&a.name), &[]).await?.data;
            // The reply was JSON a moment ago; writing it again cannot fail.
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            table::print(&format!("{text}\n"))
        }
        TrackCommand::Check(a) => {
            let conn = Connection::open(&a.conn)?;
            let mut interrupt = follow::interrupt_handler()?;
            let upid: String = conn
                .post(&format!("{}/check", item(&a.name)), &[])
                .await?
                .data;
            let status = follow::follow(&conn, &upid, &mut interrupt, false).await?;
            if is_success(&status) {
                Ok(())
            } else {
                Err(ClientError::TaskFailed { upid, status })
            }
        }
        TrackCommand::Rm(a) => {
            let conn = Connection::open(&a.conn)?;
            conn.delete::<Value>(&item(&a.name)).await?;
            Ok(())
        }
    }
}

fn row(t: &Value) -> Vec<String> {
    vec![
        field(&t["name"]),
        field(&t["storage"]),
        field(&t["current"]["version"]),
        field(&t["latest"]["version"]),
        t["last-poll"]
            .as_u64()
            .map_or_else(|| "-".into(), table::local_time),
        t["error"].as_str().unwrap_or("").to_owned(),
    ]
}
