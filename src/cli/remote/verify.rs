//! `isolib verify VOLID [--repair]` or `isolib verify --storage ID`: re-read volumes against
//! their records in a task, follow its log, and exit non-zero when one failed.

use super::api;
use super::conn::{ConnectArgs, Connection};
use super::error::ClientError;
use super::follow::{self, is_success};
use super::params::Volid;

#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    /// Volume to verify, e.g. local:iso/debian-12.iso
    #[arg(required_unless_present = "storage", conflicts_with = "storage")]
    pub volid: Option<Volid>,
    /// Verify every volume of this storage instead
    #[arg(long, value_name = "ID")]
    pub storage: Option<String>,
    /// Fetch a failed volume again from its recorded source, when that still yields the
    /// recorded sha256, and replace it
    #[arg(long)]
    pub repair: bool,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

pub async fn run(args: VerifyArgs) -> Result<(), ClientError> {
    let conn = Connection::open(&args.conn)?;
    let mut interrupt = follow::interrupt_handler()?;
    // clap makes sure one of the two is there.
    let (storage, volid) = match &args.volid {
        Some(v) => (v.storage.clone(), Some(v.to_string())),
        None => (args.storage.clone().unwrap_or_default(), None),
    };
    let upid = api::verify(&conn, &storage, volid.as_deref(), args.repair).await?;
    let status = follow::follow(&conn, &upid, &mut interrupt, false).await?;
    if is_success(&status) {
        Ok(())
    } else {
        Err(ClientError::TaskFailed { upid, status })
    }
}
