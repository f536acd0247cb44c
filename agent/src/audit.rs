//! The audit log: one JSON line per request that may change the node, with the caller's
//! certificate subject, appended to `audit.log` in the state directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

pub struct AuditLog {
    file: Mutex<File>,
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        Ok(AuditLog { file: Mutex::new(file) })
    }

    /// Append one record; failures are logged, never fatal to the request.
    pub fn record(&self, caller: &str, operation: &str, detail: &str, status: u16, changed: Option<bool>) {
        let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let line = serde_json::json!({
            "time": time,
            "caller": caller,
            "operation": operation,
            "detail": detail,
            "status": status,
            "changed": changed,
        });
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(f, "{line}") {
            tracing::warn!("audit log: {e}");
        }
    }
}
