//! `logs`: the last lines of a systemd unit's journal.

use std::time::Duration;

use crate::api::{LogsRequest, LogsResponse};
use crate::host::run_ok;
use crate::ops::{Node, OpError};

pub const DEFAULT_LINES: u32 = 200;
pub const MAX_LINES: u32 = 10_000;
/// The text returned is cut at this many bytes.
pub const MAX_BYTES: usize = 1024 * 1024;

pub fn valid_unit(unit: &str) -> bool {
    !unit.is_empty() && unit.len() <= 256 && !unit.starts_with('-') && unit.bytes().all(|b| b.is_ascii_alphanumeric() || b"@._:-\\".contains(&b))
}

pub fn read(node: &Node, req: &LogsRequest) -> Result<LogsResponse, OpError> {
    if !valid_unit(&req.unit) {
        return Err(OpError::bad("unit", format!("{:?} is not a systemd unit name", req.unit)));
    }
    let lines = req.lines.unwrap_or(DEFAULT_LINES);
    if lines == 0 || lines > MAX_LINES {
        return Err(OpError::bad("lines", format!("must be 1..={MAX_LINES}")));
    }
    let n = lines.to_string();
    let out = run_ok(node.host.as_ref(), &["journalctl", "--no-pager", "--output=short-iso", "-n", &n, "-u", &req.unit], None, Duration::from_secs(30))?;
    let mut text = out.stdout;
    let truncated = out.truncated || text.len() > MAX_BYTES;
    if text.len() > MAX_BYTES {
        // Keep the newest lines.
        text.drain(..text.len() - MAX_BYTES);
    }
    Ok(LogsResponse { text: String::from_utf8_lossy(&text).into_owned(), truncated })
}
