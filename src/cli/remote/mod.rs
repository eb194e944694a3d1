//! The client side of `isolib`: `download`, `ls`, `tasks`, `rm`, `show`, `verify`,
//! `inventory`, `track` and `boot` talk to a running daemon
//! over its PVE API, on the local Unix socket or on `--url` with an API token.
//!
//! # Layout
//!
//! - [`conn`]: connection options, the transport (socket or URL + token) and the JSON envelope.
//! - [`api`]: one function per API call, returning typed answers.
//! - [`params`]: parsing what the user typed (checksum, volume id, file name from a URL).
//! - [`follow`] and [`progress`]: following a task's log, the progress bar, Ctrl-C.
//! - [`download`], [`ls`], [`tasks`], [`rm`], [`show`], [`verify`], [`inventory`]: one runner per
//!   command.
//! - [`table`]: output formatting.

pub mod api;
pub mod boot;
pub mod conn;
pub mod download;
pub mod error;
pub mod follow;
pub mod inventory;
pub mod ls;
pub mod params;
pub mod progress;
pub mod rm;
pub mod show;
pub mod table;
pub mod tasks;
pub mod track;
pub mod verify;

pub use boot::BootArgs;
pub use conn::ConnectArgs;
pub use download::DownloadArgs;
pub use error::{ApiError, ClientError};
pub use inventory::InventoryArgs;
pub use ls::LsArgs;
pub use rm::RmArgs;
pub use show::ShowArgs;
pub use tasks::TasksArgs;
pub use track::TrackArgs;
pub use verify::VerifyArgs;

/// The client subcommands; flattened into the `isolib` command enum.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ClientCommand {
    /// Download a URL into a storage (download-url) and follow the task to its end
    Download(DownloadArgs),
    /// List the volumes of one or all storages
    Ls(LsArgs),
    /// List recent tasks
    Tasks(TasksArgs),
    /// Remove a volume
    Rm(RmArgs),
    /// Show a volume's attributes and catalog record
    Show(ShowArgs),
    /// Export the library, or import one exported elsewhere
    Inventory(InventoryArgs),
    /// Verify volumes against their catalog records (and repair them)
    Verify(VerifyArgs),
    /// Tracked releases: add, ls, show, check, rm
    Track(TrackArgs),
    /// Network boot: configs and hosts
    Boot(BootArgs),
}

/// Runs one client command. Output goes to stdout, the progress bar and notices to stderr;
/// the caller prints the error (`isolib: {e}`) and exits with [`ClientError::exit_code`].
pub async fn run(cmd: ClientCommand) -> Result<(), ClientError> {
    match cmd {
        ClientCommand::Download(args) => download::run(args).await,
        ClientCommand::Ls(args) => ls::run(args).await,
        ClientCommand::Tasks(args) => tasks::run(args).await,
        ClientCommand::Rm(args) => rm::run(args).await,
        ClientCommand::Show(args) => show::run(args).await,
        ClientCommand::Inventory(args) => inventory::run(args).await,
        ClientCommand::Verify(args) => verify::run(args).await,
        ClientCommand::Track(args) => track::run(args).await,
        ClientCommand::Boot(args) => boot::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::Subcommand;

    /// clap checks its definitions only at parse time (unique ids, conflicts); this makes a
    /// clash a test failure instead of a panic on the user's first run.
    #[test]
    fn command_definitions_are_consistent() {
        // Nested subcommands (`track add`, `boot host set`) are checked one by one: a flag
        // that two flattened groups both declare shows only there.
        fn walk(cmd: &clap::Command) {
            cmd.clone().debug_assert();
            cmd.get_subcommands().for_each(walk);
        }
        walk(&super::ClientCommand::augment_subcommands(
            clap::Command::new("isolib"),
        ));
    }
}
