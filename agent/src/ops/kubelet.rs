//! `kubelet`: Kubernetes binaries (streamed, SHA-256 checked) into
//! /var/lib/minikube/binaries/VERSION/, the kubelet unit and its 10-kubeadm.conf drop-in,
//! enabled and started.

use std::io::Read;
use std::time::Duration;

use crate::api::{Changed, KubeletRequest, KubeletResponse};
use crate::host::systemctl;
use crate::ops::{blobs, ensure, files, plain_text, Deferred, Node, OpError};

pub use agent_api::render::kubelet::{drop_in_text, unit_text, BINARIES_DIR, BINARY_NAMES, DROP_IN_PATH, NODE_DIRS, UNIT_PATH};

/// `v1.35.0`, `v1.36.0-alpha.1`...
pub fn check_version(field: &str, v: &str) -> Result<(), OpError> {
    let ok = v.len() <= 64
        && v.strip_prefix('v')
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()) && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b)));
    if !ok {
        return Err(OpError::bad(field, format!("{v:?} is not a Kubernetes version like v1.35.0")));
    }
    Ok(())
}

/// Receive a binary for `version` (0755 root:root) into the store of binaries by SHA-256 (the
/// body is not read when the store has it) and link it as BINARIES_DIR/VERSION/NAME.
pub fn upload_binary(node: &Node, version: &str, name: &str, sha256: &str, body: &mut dyn Read, len: u64) -> Result<Changed, OpError> {
    check_version("version", version)?;
    if !BINARY_NAMES.contains(&name) {
        return Err(OpError::bad("name", format!("{name:?} is not one of {}", BINARY_NAMES.join(", "))));
    }
    let sha = files::check_sha256("sha256", sha256)?;
    let target = node.root.host(&format!("{BINARIES_DIR}/{version}/{name}"));
    let _w = node.lock_writes();
    let mut changed = blobs::receive(node, &sha, body, len)?;
    let blob = blobs::path(&node.root, &sha);
    changed |= blobs::link(&blob, &target).map_err(|e| OpError::io(&target, e))?;
    Ok(Changed { changed })
}

/// Whether the kubelet of `req.version` is in place, linking it from the store when the request
/// names its SHA-256 and the store has it.
pub fn binary_ready(node: &Node, req: &KubeletRequest) -> Result<bool, OpError> {
    let binary = node.root.host(&format!("{BINARIES_DIR}/{}/kubelet", req.version));
    let Some(sha) = &req.binary_sha256 else { return Ok(binary.is_file()) };
    let blob = blobs::path(&node.root, &files::check_sha256("binary_sha256", sha)?);
    if !blob.is_file() {
        return Ok(binary.is_file());
    }
    blobs::link(&blob, &binary).map_err(|e| OpError::io(&binary, e))?;
    Ok(true)
}

pub fn validate(req: &KubeletRequest) -> Result<(), OpError> {
    check_version("version", &req.version)?;
    plain_text("node_name", &req.node_name)?;
    if !req.node_name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b)) {
        return Err(OpError::bad("node_name", format!("{:?} is not a node name", req.node_name)));
    }
    req.node_ip.parse::<std::net::IpAddr>().map_err(|_| OpError::bad("node_ip", format!("{:?} is not an IP address", req.node_ip)))?;
    if let Some(sha) = &req.binary_sha256 {
        files::check_sha256("binary_sha256", sha)?;
    }
    for (i, a) in req.extra_args.iter().enumerate() {
        if !a.starts_with("--") || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(OpError::bad(&format!("extra_args[{i}]"), format!("{a:?} must be one --flag=value without spaces")));
        }
    }
    Ok(())
}

fn state(node: &Node) -> Result<String, OpError> {
    let out = node.host.run(&["systemctl", "is-active", "kubelet"], None, Duration::from_secs(30))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn apply(node: &Node, req: &KubeletRequest) -> Result<KubeletResponse, OpError> {
    apply_in(node, req, None)
}

/// Install and start the kubelet. `deferred` is the boot path: the files are written and the
/// start is queued there.
pub fn apply_in(node: &Node, req: &KubeletRequest, mut deferred: Option<&mut Deferred>) -> Result<KubeletResponse, OpError> {
    validate(req)?;
    let _w = node.lock_writes();
    if !binary_ready(node, req)? {
        return Err(OpError::unprocessable("version", format!("{BINARIES_DIR}/{}/kubelet is missing: upload it first", req.version)));
    }
    let mut changed = false;
    for d in NODE_DIRS {
        let host = node.root.host(d);
        changed |= ensure::dir(&host).map_err(|e| OpError::io(&host, e))?;
    }
    for (path, text) in [(UNIT_PATH, unit_text()), (DROP_IN_PATH, drop_in_text(req))] {
        let host = node.root.host(path);
        if ensure::file(&host, text.as_bytes(), 0o644, None).map_err(|e| OpError::io(&host, e))? {
            changed = true;
            if let Some(d) = deferred.as_deref_mut() {
                d.wrote(path);
            }
        }
    }
    if let Some(d) = deferred {
        d.start.push("kubelet.service");
        return Ok(KubeletResponse { changed, state: "queued".into() });
    }
    let h = node.host.as_ref();
    if changed {
        systemctl(h, &["daemon-reload"])?;
        systemctl(h, &["enable", "kubelet.service"])?;
        systemctl(h, &["restart", "kubelet.service"])?;
    } else if !matches!(state(node)?.as_str(), "active" | "activating") && !super::has_job(h, &["kubelet.service"]) {
        // Neither running nor queued (a start the boot step queued waits for its units, such as
        // network-online.target: it is coming, and starting it here would wait for them too).
        systemctl(h, &["start", "kubelet.service"])?;
        changed = true;
    }
    Ok(KubeletResponse { changed, state: state(node)? })
}
