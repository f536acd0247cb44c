//! `exec`: run a command (argv, env, cwd, timeout) and return its exit status and output.

use std::time::Duration;

use crate::api::{ExecRequest, ExecResponse};
use crate::ops::{Node, OpError};
use crate::process::{self, Spec};

pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
pub const MAX_TIMEOUT_SECS: u64 = 3600;

pub fn run(node: &Node, req: &ExecRequest) -> Result<ExecResponse, OpError> {
    if req.argv.is_empty() || req.argv[0].is_empty() {
        return Err(OpError::bad("argv", "must name a program"));
    }
    if req.argv.iter().any(|a| a.contains('\0')) {
        return Err(OpError::bad("argv", "must not contain NUL"));
    }
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(OpError::bad("env", format!("bad variable {k:?}")));
        }
    }
    let cwd = match &req.cwd {
        None => node.root.dir().to_path_buf(),
        Some(c) => {
            let clean = crate::paths::normalise(c).or_else(|e| if c == "/" { Ok("/".to_string()) } else { Err(e) });
            let clean = clean.map_err(|why| OpError::bad("cwd", format!("{c:?}: {why}")))?;
            let host = node.root.host(&clean);
            if !host.is_dir() {
                return Err(OpError::bad("cwd", format!("{clean} is not a directory")));
            }
            host
        }
    };
    let secs = req.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if secs == 0 || secs > MAX_TIMEOUT_SECS {
        return Err(OpError::bad("timeout_secs", format!("must be 1..={MAX_TIMEOUT_SECS}")));
    }
    let spec = Spec {
        argv: req.argv.clone(),
        env: req.env.clone(),
        cwd: Some(cwd),
        stdin: req.stdin.as_ref().map(|s| s.as_bytes().to_vec()),
        timeout: Some(Duration::from_secs(secs)),
    };
    let _w = node.lock_writes();
    let out = process::run(&spec).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => OpError::bad("argv", format!("{}: not found", req.argv[0])),
        _ => OpError::internal(format!("{}: {e}", req.argv[0])),
    })?;
    Ok(ExecResponse {
        exit_code: out.exit_code,
        signal: out.signal,
        timed_out: out.timed_out,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        truncated: out.truncated,
    })
}
