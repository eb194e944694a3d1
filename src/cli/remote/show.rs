//! `isolib show VOLID`: a volume's attributes and catalog record, as the API returns them.

use super::api;
use super::conn::{ConnectArgs, Connection};
use super::error::ClientError;
use super::params::Volid;
use super::table;

#[derive(clap::Args, Debug, Clone)]
pub struct ShowArgs {
    /// Volume to show, e.g. local:iso/debian-12.iso
    pub volid: Volid,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

pub async fn run(args: ShowArgs) -> Result<(), ClientError> {
    let conn = Connection::open(&args.conn)?;
    let info = api::volume_info(&conn, &args.volid.storage, &args.volid.to_string()).await?;
    // The reply was JSON a moment ago; writing it again cannot fail.
    let text = serde_json::to_string_pretty(&info).unwrap_or_default();
    table::print(&format!("{text}\n"))
}
