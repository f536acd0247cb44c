//! `runtime`: configure docker, containerd or cri-o the way minikube's provisioner does, restart
//! it through systemd only when its configuration changed, wait for its CRI socket, report its
//! version.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use crate::api::{DockerTls, Runtime, RuntimeRequest, RuntimeResponse};
use crate::host::{run_ok, systemctl};
use crate::ops::{ensure, plain_text, Node, OpError};
use agent_api::render;
pub use agent_api::render::runtime::{ConfigFile, DOCKER_SOCKET, DOCKER_TLS_PORT, NETWORK_MODULES, NETWORK_SYSCTLS};

fn check_image(field: &str, v: &str) -> Result<(), OpError> {
    plain_text(field, v)?;
    if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"./:-_@".contains(&b)) {
        return Err(OpError::bad(field, format!("{v:?} is not an image reference")));
    }
    Ok(())
}

fn check_registry(field: &str, v: &str) -> Result<(), OpError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b)) {
        return Err(OpError::bad(field, format!("{v:?} is not host[:port]")));
    }
    Ok(())
}

fn check_tls(tls: &DockerTls) -> Result<(), OpError> {
    pki::certs_from_pem(tls.ca_pem.as_bytes(), "docker_tls.ca_pem").map_err(|e| OpError::bad("docker_tls.ca_pem", e.to_string()))?;
    pki::certs_from_pem(tls.cert_pem.as_bytes(), "docker_tls.cert_pem").map_err(|e| OpError::bad("docker_tls.cert_pem", e.to_string()))?;
    PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| OpError::bad("docker_tls.key_pem", format!("not a PEM private key: {e}")))?;
    Ok(())
}

/// Validate a request (every error names its field).
pub fn validate(req: &RuntimeRequest) -> Result<(), OpError> {
    check_image("pause_image", &req.pause_image)?;
    for (i, r) in req.insecure_registries.iter().enumerate() {
        check_registry(&format!("insecure_registries[{i}]"), r)?;
    }
    if let Some(tls) = &req.docker_tls {
        if req.runtime != Runtime::Docker {
            return Err(OpError::bad("docker_tls", format!("only for the docker runtime, not {}", req.runtime.name())));
        }
        check_tls(tls)?;
    }
    if req.socket_timeout_secs.is_some_and(|s| s == 0 || s > 600) {
        return Err(OpError::bad("socket_timeout_secs", "must be 1..=600"));
    }
    Ok(())
}

/// Whether this node may lower a process's `oom_score_adj`: it needs CAP_SYS_RESOURCE (24) in
/// the bounding set. A container node on a host that withholds it (as this project's CI hosts
/// do, even for a privileged container) may not, and containerd's CRI must then keep each pod's
/// score at or above its own (`restrict_oom_score_adj`), or runc fails every sandbox with
/// "failed to update /proc/self/oom_score_adj: Permission denied".
pub fn may_lower_oom_score() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bounding = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    bounding.is_none_or(|b| b & (1 << 24) != 0)
}

/// The configuration files for `req` on this node (see [`render::runtime::config_files`]).
pub fn config_files(req: &RuntimeRequest) -> (Vec<ConfigFile>, Vec<&'static str>) {
    render::runtime::config_files(req, !may_lower_oom_score())
}

fn version_command(runtime: Runtime) -> &'static [&'static str] {
    match runtime {
        Runtime::Docker => &["docker", "version", "--format", "{{.Server.Version}}"],
        Runtime::Containerd => &["containerd", "--version"],
        Runtime::CriO => &["crio", "--version"],
    }
}

/// The runtime's version, asked until `deadline` (each try gets at least 30 s). A socket that
/// exists is not yet a daemon that answers: docker's is socket-activated, so `docker version`
/// waits for dockerd to come up, which on a loaded node can take longer than one try.
fn version_by(host: &dyn crate::host::Host, runtime: Runtime, deadline: Instant) -> Result<crate::process::ProcessOutput, OpError> {
    loop {
        let budget = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(30));
        match run_ok(host, version_command(runtime), None, budget) {
            Ok(out) => return Ok(out),
            Err(_) if Instant::now() + Duration::from_secs(1) < deadline => std::thread::sleep(Duration::from_millis(500)),
            Err(e) => return Err(e.into()),
        }
    }
}

fn wait_for(path: PathBuf, timeout: Duration) -> Result<(), OpError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    while !path.exists() {
        if start.elapsed() > timeout {
            return Err(OpError::internal(format!("{} did not appear within {} s", path.display(), timeout.as_secs())));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
    Ok(())
}

/// Present while a runtime restart is owed (on /run: a reboot starts the runtime anyway).
pub const RESTART_PENDING: &str = "/run/minikube-agent/runtime-restart-pending";

pub fn apply(node: &Node, req: &RuntimeRequest) -> Result<RuntimeResponse, OpError> {
    apply_in(node, req, None)
}

/// Load the pod-networking modules (unless `modules` is false) and sysctls.
fn network_setup(node: &Node, modules: bool) -> Result<(), OpError> {
    let host = node.host.as_ref();
    for module in NETWORK_MODULES.iter().filter(|_| modules) {
        if let Err(e) = run_ok(host, &["modprobe", module], None, Duration::from_secs(30)) {
            // In a container modprobe cannot load anything; the host's kernel may have the
            // module already (or built in), which is all the runtime needs.
            if node.root.host(&format!("/sys/module/{module}")).exists() {
                tracing::warn!("{e}; module {module} is present in the kernel, going on");
            } else {
                return Err(e.into());
            }
        }
    }
    if let Err(e) = run_ok(host, &["sysctl", "--load", "/etc/sysctl.d/99-minikube-runtime.conf"], None, Duration::from_secs(30)) {
        // An unprivileged container cannot write /proc/sys; the engine may have set what the
        // runtime needs already (`--sysctl net.ipv4.ip_forward=1`, the host's bridge netfilter).
        let unmet: Vec<&str> = NETWORK_SYSCTLS
            .iter()
            .filter(|key| {
                let path = node.root.host(&format!("/proc/sys/{}", key.replace('.', "/")));
                std::fs::read_to_string(path).map(|v| v.trim() != "1").unwrap_or(true)
            })
            .copied()
            .collect();
        if !unmet.is_empty() {
            return Err(OpError::internal(format!("{e}; not already 1 on this node: {}", unmet.join(", "))));
        }
        tracing::warn!("{e}; every value is already as wanted, going on");
    }
    Ok(())
}

/// The runtime's units: docker without cri-dockerd (Debian does not package it) is docker's own
/// units and socket.
fn units_and_socket(node: &Node, runtime: Runtime) -> (Vec<&'static str>, &'static str) {
    let no_shim = runtime == Runtime::Docker && !node.root.host("/usr/bin/cri-dockerd").exists();
    let units = runtime.units().iter().copied().filter(|u| !(no_shim && u.starts_with("cri-docker"))).collect();
    (units, if no_shim { DOCKER_SOCKET } else { runtime.cri_socket() })
}

/// The other runtimes' units (those `ours` does not share).
fn other_units(runtime: Runtime, ours: &[&'static str]) -> Vec<&'static str> {
    Runtime::ALL.iter().filter(|r| **r != runtime).flat_map(|r| r.units().iter().copied()).filter(|u| !ours.contains(u)).collect()
}

/// Configure the runtime. `deferred` is the boot path: the files are written, and the runtime's
/// start is queued there (it starts once, with this configuration) instead of restarted here.
pub fn apply_in(node: &Node, req: &RuntimeRequest, deferred: Option<&mut super::Deferred>) -> Result<RuntimeResponse, OpError> {
    validate(req)?;
    let (files, absent) = config_files(req);
    let _w = node.lock_writes();
    let mut changed = false;
    let mut wrote = Vec::new();
    for f in &files {
        let host = node.root.host(&f.path);
        if ensure::file(&host, f.content.as_bytes(), f.mode, None).map_err(|e| OpError::io(&host, e))? {
            changed = true;
            wrote.push(f.path.as_str());
        }
    }
    for p in absent {
        let host = node.root.host(p);
        if ensure::absent(&host).map_err(|e| OpError::io(&host, e))? {
            changed = true;
            wrote.push(p);
        }
    }
    let (units, socket_path) = units_and_socket(node, req.runtime);
    if let Some(d) = deferred {
        for p in wrote {
            d.wrote(p);
        }
        // `minikube-agent boot` loaded these modules already (they are among its
        // RUNTIME_MODULES): only the sysctls remain.
        network_setup(node, false)?;
        // A unit masked by an earlier runtime switch (a container's root persists) is unmasked.
        for unit in &units {
            let mask = node.root.host(&format!("/etc/systemd/system/{unit}"));
            if std::fs::read_link(&mask).is_ok_and(|t| t == std::path::Path::new("/dev/null")) {
                ensure::absent(&mask).map_err(|e| OpError::io(&mask, e))?;
                d.reload = true;
            }
        }
        d.stop.extend(other_units(req.runtime, &units));
        d.start.extend(&units);
        return Ok(RuntimeResponse { changed, socket: socket_path.to_string(), version: String::new() });
    }
    // A restart that did not finish (the agent died, or a step failed) is owed: remember it
    // across calls, so a repeat after a failure restarts instead of seeing unchanged files.
    let pending = node.root.host(RESTART_PENDING);
    if changed {
        if let Some(dir) = pending.parent() {
            std::fs::create_dir_all(dir).map_err(|e| OpError::io(dir, e))?;
        }
        std::fs::write(&pending, req.runtime.name()).map_err(|e| OpError::io(&pending, e))?;
    } else if pending.exists() {
        changed = true;
    }
    let host = node.host.as_ref();
    let socket = node.root.host(socket_path);
    if !changed && !socket.exists() {
        // Configured but its socket is not there: starting (the boot step queued it, or systemd
        // restarts it: wait for the socket), or stopped or crashed (start it: a change).
        if !super::has_job(host, &units) && !super::coming_up(host, &units) {
            for unit in &units {
                systemctl(host, &["start", unit])?;
            }
            changed = true;
        }
    } else if changed {
        let ours = &units[..];
        // Stop and mask the other runtimes' units (they may not be installed: failures are fine).
        for unit in other_units(req.runtime, ours) {
            let _ = host.run(&["systemctl", "stop", unit], None, Duration::from_secs(120));
            let _ = host.run(&["systemctl", "mask", unit], None, Duration::from_secs(30));
        }
        network_setup(node, true)?;
        systemctl(host, &["unmask"].iter().chain(ours).copied().collect::<Vec<_>>())?;
        systemctl(host, &["daemon-reload"])?;
        systemctl(host, &["enable"].iter().chain(ours).copied().collect::<Vec<_>>())?;
        for unit in ours {
            systemctl(host, &["restart", unit])?;
        }
    }
    let timeout = Duration::from_secs(req.socket_timeout_secs.unwrap_or(60));
    let deadline = Instant::now() + timeout;
    wait_for(socket, timeout)?;
    match std::fs::remove_file(&pending) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(OpError::io(&pending, e)),
        _ => {}
    }
    let out = version_by(host, req.runtime, deadline)?;
    Ok(RuntimeResponse { changed, socket: socket_path.to_string(), version: String::from_utf8_lossy(&out.stdout).trim().to_string() })
}
