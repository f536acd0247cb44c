//! An operation's failure, as the API answers it: an HTTP status, the request field at fault,
//! and a message naming it.

use crate::api::ErrorResponse;
use crate::host::HostError;

/// An operation's failure: an HTTP status, the request field at fault, and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    pub status: u16,
    pub field: Option<String>,
    pub message: String,
}

impl OpError {
    pub fn bad(field: &str, message: impl Into<String>) -> OpError {
        OpError { status: 400, field: Some(field.to_string()), message: format!("{field}: {}", message.into()) }
    }
    pub fn forbidden(field: &str, message: impl Into<String>) -> OpError {
        OpError { status: 403, field: Some(field.to_string()), message: format!("{field}: {}", message.into()) }
    }
    pub fn unprocessable(field: &str, message: impl Into<String>) -> OpError {
        OpError { status: 422, field: Some(field.to_string()), message: format!("{field}: {}", message.into()) }
    }
    pub fn not_found(field: &str, message: impl Into<String>) -> OpError {
        OpError { status: 404, field: Some(field.to_string()), message: format!("{field}: {}", message.into()) }
    }
    pub fn internal(message: impl Into<String>) -> OpError {
        OpError { status: 500, field: None, message: message.into() }
    }
    /// An I/O failure on `path`. A full disk (ENOSPC, EDQUOT) is 507 Insufficient Storage, so a
    /// client can tell it from a bug; the old file is intact either way (writes are atomic).
    pub fn io(path: &std::path::Path, e: std::io::Error) -> OpError {
        match e.raw_os_error() {
            Some(nix::libc::ENOSPC | nix::libc::EDQUOT) => OpError {
                status: 507,
                field: Some("path".into()),
                message: format!("{}: no space left on the device holding it ({e}); the previous file is unchanged", path.display()),
            },
            _ => OpError::internal(format!("{}: {e}", path.display())),
        }
    }

    pub fn body(&self) -> ErrorResponse {
        ErrorResponse { error: self.message.clone(), field: self.field.clone() }
    }
}

impl From<HostError> for OpError {
    fn from(e: HostError) -> OpError {
        OpError::internal(e.to_string())
    }
}
