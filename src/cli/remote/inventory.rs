//! `isolib inventory export [--format json|csv]` writes the library to stdout;
//! `isolib inventory import FILE [--dry-run]` makes this daemon hold what the file lists and
//! follows the task to its end.

use super::conn::{ConnectArgs, Connection};
use super::error::ClientError;
use super::follow::{self, is_success};
use super::table;

#[derive(clap::Args, Debug, Clone)]
pub struct InventoryArgs {
    #[command(subcommand)]
    pub command: InventoryCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum InventoryCommand {
    /// Write every volume with its record to stdout
    Export {
        /// json, with a format version, or csv, with a header row
        #[arg(long, default_value = "json", value_parser = ["json", "csv"])]
        format: String,
        #[command(flatten)]
        conn: ConnectArgs,
    },
    /// Make every volume the file lists present here with its sha256
    Import {
        /// An inventory written by `isolib inventory export`
        file: std::path::PathBuf,
        /// Only say what would be done
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        conn: ConnectArgs,
    },
}

pub async fn run(args: InventoryArgs) -> Result<(), ClientError> {
    match args.command {
        InventoryCommand::Export { format, conn } => {
            let conn = Connection::open(&conn)?;
            let path = format!("{}/inventory", conn.node_path());
            let text = if format == "csv" {
                conn.get_text(&path, &[("format", "csv".to_string())])
                    .await?
            } else {
                let data: serde_json::Value = conn.get(&path, &[]).await?.data;
                let mut t = serde_json::to_string_pretty(&data).unwrap_or_default();
                t.push('\n');
                t
            };
            table::print(&text)
        }
        InventoryCommand::Import {
            file,
            dry_run,
            conn,
        } => {
            let text = std::fs::read_to_string(&file).map_err(|source| ClientError::ReadFile {
                path: file.clone(),
                source,
            })?;
            let conn = Connection::open(&conn)?;
            let mut interrupt = follow::interrupt_handler()?;
            let mut form = vec![("inventory", text)];
            if dry_run {
                form.push(("dry-run", "1".to_string()));
            }
            let path = format!("{}/inventory", conn.node_path());
            let upid: String = conn.post(&path, &form).await?.data;
            let status = follow::follow(&conn, &upid, &mut interrupt, false).await?;
            if is_success(&status) {
                Ok(())
            } else {
                Err(ClientError::TaskFailed { upid, status })
            }
        }
    }
}
