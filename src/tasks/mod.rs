//! Tasks: UPIDs, their log files, and the registry that runs them (spec/pve-api.md §4).

mod index;
mod log;
mod registry;
mod upid;

pub use index::TaskEntry;
pub use log::TaskLog;
pub use registry::{
    INTERRUPTED_BY_RESTART, Retention, TaskError, TaskRegistry, status_of_last_line,
};
pub use upid::{UPID_RE, Upid, UpidParseError};
