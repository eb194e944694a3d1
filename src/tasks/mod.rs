//! Tasks: UPIDs, their log files, and the registry that runs them (spec/pve-api.md §4).

mod log;
mod registry;
mod upid;

pub use log::TaskLog;
pub use registry::{
    INTERRUPTED_BY_RESTART, Retention, TaskEntry, TaskError, TaskRegistry, status_of_last_line,
};
pub use upid::{UPID_RE, Upid, UpidParseError};
