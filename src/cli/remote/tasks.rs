//! `isolib tasks [--limit N] [--errors]`: recent tasks, running ones first.

use super::api::{self, TaskListItem};
use super::conn::{ConnectArgs, Connection};
use super::error::ClientError;
use super::table::{self, Align};

#[derive(clap::Args, Debug, Clone)]
pub struct TasksArgs {
    /// At most this many tasks
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// Only failed tasks
    #[arg(long)]
    pub errors: bool,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

pub async fn run(args: TasksArgs) -> Result<(), ClientError> {
    let conn = Connection::open(&args.conn)?;
    let tasks = api::tasks(&conn, args.limit, args.errors).await?;
    table::print(&render(&tasks))
}

/// The status goes last: a task's error text is as long as it needs to be.
fn render(tasks: &[TaskListItem]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                table::local_time(t.task.starttime),
                t.task.kind.clone(),
                t.task.upid.clone(),
                t.status.clone(),
            ]
        })
        .collect();
    table::render(
        &[
            ("START", Align::Left),
            ("TYPE", Align::Left),
            ("UPID", Align::Left),
            ("STATUS", Align::Left),
        ],
        &rows,
    )
}
