//! `info`: what the node is.

use crate::api::InfoResponse;
use crate::ops::{Node, OpError};

pub fn info(node: &Node) -> Result<InfoResponse, OpError> {
    let uts = nix::sys::utsname::uname().map_err(|e| OpError::internal(format!("uname: {e}")))?;
    let os = std::fs::read_to_string(node.root.host("/etc/os-release"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string()));
    Ok(InfoResponse {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: node.host.hostname()?,
        kernel: uts.release().to_string_lossy().into_owned(),
        arch: uts.machine().to_string_lossy().into_owned(),
        os,
        boot_apply: std::fs::read(node.root.host(crate::document::STATUS)).ok().and_then(|b| serde_json::from_slice(&b).ok()),
        boot_running: crate::boot_lock::running(&node.root),
    })
}
