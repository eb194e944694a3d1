//! The writing side of one task log: whole lines only, and PVE's final line
//! (`TASK OK` / `TASK ERROR: <text>`), which is how a task's status is read back later.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct TaskLog {
    file: Arc<Mutex<File>>,
}

impl TaskLog {
    pub fn create(path: &Path) -> io::Result<TaskLog> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)?;
        Ok(TaskLog {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Appends one line. A log that cannot be written must not fail the transfer it describes.
    pub fn line(&self, text: &str) {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let text = crate::redact::userinfo(text);
        let mut buf = String::with_capacity(text.len() + 1);
        buf.push_str(&text);
        buf.push('\n');
        if let Err(e) = f.write_all(buf.as_bytes()) {
            tracing::warn!("unable to write task log: {e}");
        }
    }

    pub(super) fn finish(&self, status: &str) {
        if status == "OK" {
            self.line("TASK OK");
        } else {
            self.line(&format!("TASK ERROR: {status}"));
        }
    }
}

impl crate::download::LogSink for TaskLog {
    fn line(&self, text: &str) {
        TaskLog::line(self, text)
    }
}
