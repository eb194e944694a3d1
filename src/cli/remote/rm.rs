//! `isolib rm VOLID`: delete a volume and wait for the `imgdel` task (spec §7.4).

use super::api;
use super::conn::{ConnectArgs, Connection};
use super::error::ClientError;
use super::follow::{self, is_success};
use super::params::Volid;
use super::table;

#[derive(clap::Args, Debug, Clone)]
pub struct RmArgs {
    /// Volume to remove, e.g. local:iso/debian-12.iso
    pub volid: Volid,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

pub async fn run(args: RmArgs) -> Result<(), ClientError> {
    let conn = Connection::open(&args.conn)?;
    let mut interrupt = follow::interrupt_handler()?;
    let volid = args.volid.to_string();
    let Some(upid) = api::delete_volume(&conn, &args.volid.storage, &volid).await? else {
        // A daemon that finished the removal within the request answers null.
        return table::print(&format!("Removed volume '{volid}'\n"));
    };
    let status = follow::follow(&conn, &upid, &mut interrupt, false).await?;
    if is_success(&status) {
        Ok(())
    } else {
        Err(ClientError::TaskFailed { upid, status })
    }
}
