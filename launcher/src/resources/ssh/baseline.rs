//! The agent's provisioning steps done the way minikube does them over SSH: one session per
//! shell command on one connection, files copied after a `stat` (minikube compares size and
//! mtime first), `sudo` for everything, and the same contents the agent writes (the agent's own
//! renderers produce them), so that a benchmark compares transports and round trips, not work.
//!
//! Steps, in minikube's order (see its provisioner and `ssh_runner`):
//! - hostname: `sudo hostname NAME && echo NAME | sudo tee /etc/hostname`, then the /etc/hosts
//!   `127.0.1.1` script;
//! - certs: each file stat + copy; each CA copied to /usr/share/ca-certificates, linked by name,
//!   its subject hash asked from `openssl x509 -hash`, linked by hash;
//! - runtime: other runtimes stopped and masked, config files copied, modules and sysctls
//!   loaded, units unmasked, daemon-reload, enabled, restarted, the socket polled, the version;
//! - kubelet: binary directory listed, binary copied, node directories made, unit and drop-in
//!   copied, daemon-reload, enable, restart, `is-active`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_api::api::{CertsRequest, KubeletRequest, Runtime, RuntimeRequest};
use agent_api::render::{certs as agent_certs, kubelet as agent_kubelet, runtime as agent_runtime};

use super::{quote, Ssh, SshError};

/// What to provision (the same inputs `provision::start` sends to the agent).
pub struct Plan<'a> {
    pub hostname: &'a str,
    pub certs: &'a CertsRequest,
    /// More files for the certs step (path, content, mode), e.g. the service-account key.
    pub extra_files: Vec<(String, Vec<u8>, u32)>,
    pub runtime: &'a RuntimeRequest,
    pub kubelet_binary: &'a Path,
    pub kubelet: &'a KubeletRequest,
}

/// One step's wall time and the SSH sessions it opened.
#[derive(Debug, Clone)]
pub struct StepTime {
    pub step: &'static str,
    pub seconds: f64,
    pub sessions: u32,
}

/// Copy a file the way minikube's runner does: `stat` the target, then one session that makes
/// the directory, writes the content and sets the mode.
pub fn copy(ssh: &Ssh, path: &str, content: &[u8], mode: u32) -> Result<(), SshError> {
    let _ = ssh.output(&format!("stat -c '%s %y' {}", quote(path)), None)?;
    let dir = Path::new(path).parent().map(|p| p.display().to_string()).unwrap_or_else(|| "/".into());
    let p = quote(path);
    ssh.run(&format!("sudo mkdir -p {} && sudo tee {p} >/dev/null && sudo chmod {mode:o} {p}", quote(&dir)), Some(content))?;
    Ok(())
}

fn step<T>(ssh: &Ssh, name: &'static str, times: &mut Vec<StepTime>, f: impl FnOnce() -> Result<T, SshError>) -> Result<T, SshError> {
    let before = ssh.sessions.get();
    let t = Instant::now();
    let v = f()?;
    times.push(StepTime { step: name, seconds: t.elapsed().as_secs_f64(), sessions: ssh.sessions.get() - before });
    Ok(v)
}

/// Run every step; returns the time and session count of each.
pub fn provision(ssh: &Ssh, plan: &Plan) -> Result<Vec<StepTime>, SshError> {
    let mut times = Vec::new();
    step(ssh, "hostname", &mut times, || hostname(ssh, plan.hostname))?;
    step(ssh, "certs", &mut times, || certs(ssh, plan.certs, &plan.extra_files))?;
    step(ssh, "runtime", &mut times, || runtime(ssh, plan.runtime))?;
    step(ssh, "kubelet", &mut times, || kubelet(ssh, plan.kubelet_binary, plan.kubelet))?;
    Ok(times)
}

pub fn hostname(ssh: &Ssh, name: &str) -> Result<(), SshError> {
    let n = quote(name);
    ssh.run(&format!("sudo hostname {n} && echo {n} | sudo tee /etc/hostname >/dev/null"), None)?;
    ssh.run(
        &format!(
            "if ! grep -xq '.*\\s{name}' /etc/hosts; then \
               if grep -xq '127.0.1.1\\s.*' /etc/hosts; then sudo sed -i 's/^127.0.1.1\\s.*/127.0.1.1\\t{name}/g' /etc/hosts; \
               else echo '127.0.1.1\t{name}' | sudo tee -a /etc/hosts >/dev/null; fi; fi"
        ),
        None,
    )?;
    Ok(())
}

pub fn certs(ssh: &Ssh, req: &CertsRequest, extra: &[(String, Vec<u8>, u32)]) -> Result<(), SshError> {
    for f in &req.files {
        copy(ssh, &f.path, f.pem.as_bytes(), if f.private { 0o600 } else { 0o644 })?;
    }
    for (path, content, mode) in extra {
        copy(ssh, path, content, *mode)?;
    }
    for ca in &req.trust {
        let shared = format!("{}/{}", agent_certs::CA_SHARE_DIR, ca.name);
        let by_name = format!("{}/{}", agent_certs::CA_LINK_DIR, ca.name);
        copy(ssh, &shared, ca.pem.as_bytes(), 0o644)?;
        ssh.run(&format!("sudo /bin/bash -c \"test -s {shared} && ln -fs {shared} {by_name}\""), None)?;
        let out = ssh.run(&format!("openssl x509 -hash -noout -in {shared}"), None)?;
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let by_hash = format!("{}/{hash}.0", agent_certs::CA_LINK_DIR);
        ssh.run(&format!("sudo /bin/bash -c \"test -L {by_hash} || ln -fs {by_name} {by_hash}\""), None)?;
    }
    Ok(())
}

/// The baseline provisions a VM, whose bounding set has CAP_SYS_RESOURCE: containerd may lower
/// pods' OOM scores there, as the agent decides on such a node.
pub fn runtime(ssh: &Ssh, req: &RuntimeRequest) -> Result<(), SshError> {
    let (files, absent) = agent_runtime::config_files(req, false);
    let no_shim = req.runtime == Runtime::Docker && !ssh.output("test -x /usr/bin/cri-dockerd", None)?.status.success();
    let ours: Vec<&str> = req.runtime.units().iter().copied().filter(|u| !(no_shim && u.starts_with("cri-docker"))).collect();
    for other in Runtime::ALL.iter().filter(|r| **r != req.runtime) {
        for unit in other.units().iter().filter(|u| !ours.contains(u)) {
            let _ = ssh.output(&format!("sudo systemctl stop -f {unit}"), None)?;
            let _ = ssh.output(&format!("sudo systemctl mask {unit}"), None)?;
        }
    }
    for f in &files {
        copy(ssh, &f.path, f.content.as_bytes(), f.mode)?;
    }
    for p in absent {
        ssh.run(&format!("sudo rm -f {}", quote(p)), None)?;
    }
    for module in agent_runtime::NETWORK_MODULES {
        ssh.run(&format!("sudo modprobe {module}"), None)?;
    }
    ssh.run("sudo sysctl --load /etc/sysctl.d/99-minikube-runtime.conf >/dev/null", None)?;
    ssh.run(&format!("sudo systemctl unmask {}", ours.join(" ")), None)?;
    ssh.run("sudo systemctl daemon-reload", None)?;
    ssh.run(&format!("sudo systemctl enable {}", ours.join(" ")), None)?;
    for unit in &ours {
        ssh.run(&format!("sudo systemctl restart {unit}"), None)?;
    }
    let socket = if no_shim { agent_runtime::DOCKER_SOCKET } else { req.runtime.cri_socket() };
    let deadline = Instant::now() + Duration::from_secs(req.socket_timeout_secs.unwrap_or(60));
    while !ssh.output(&format!("sudo test -S {socket}"), None)?.status.success() {
        if Instant::now() > deadline {
            return Err(SshError::Failed {
                user: super::USER,
                port: ssh.port,
                command: format!("test -S {socket}"),
                status: "timeout".into(),
                stderr: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let version = match req.runtime {
        Runtime::Docker => "sudo docker version --format '{{.Server.Version}}'",
        Runtime::Containerd => "containerd --version",
        Runtime::CriO => "crio --version",
    };
    ssh.run(version, None)?;
    Ok(())
}

pub fn kubelet(ssh: &Ssh, binary: &Path, req: &KubeletRequest) -> Result<(), SshError> {
    let dir = format!("{}/{}", agent_kubelet::BINARIES_DIR, req.version);
    let _ = ssh.output(&format!("sudo ls {dir}"), None)?;
    let bytes = std::fs::read(binary).map_err(|source| SshError::Io { path: PathBuf::from(binary), source })?;
    copy(ssh, &format!("{dir}/kubelet"), &bytes, 0o755)?;
    ssh.run(&format!("sudo mkdir -p {}", agent_kubelet::NODE_DIRS.join(" ")), None)?;
    copy(ssh, agent_kubelet::UNIT_PATH, agent_kubelet::unit_text().as_bytes(), 0o644)?;
    copy(ssh, agent_kubelet::DROP_IN_PATH, agent_kubelet::drop_in_text(req).as_bytes(), 0o644)?;
    ssh.run("sudo systemctl daemon-reload", None)?;
    ssh.run("sudo systemctl enable kubelet.service", None)?;
    ssh.run("sudo systemctl restart kubelet.service", None)?;
    let _ = ssh.output("systemctl is-active kubelet", None)?;
    Ok(())
}

impl Plan<'_> {
    /// Every file the steps write (both ways), in a fixed order.
    pub fn written_paths(&self) -> Vec<String> {
        let (files, _) = agent_runtime::config_files(self.runtime, false);
        let mut paths: Vec<String> = files.into_iter().map(|f| f.path).collect();
        paths.extend(self.certs.files.iter().map(|f| f.path.clone()));
        paths.extend(self.extra_files.iter().map(|f| f.0.clone()));
        paths.push(agent_kubelet::UNIT_PATH.into());
        paths.push(agent_kubelet::DROP_IN_PATH.into());
        paths.push(format!("{}/{}/kubelet", agent_kubelet::BINARIES_DIR, self.kubelet.version));
        for ca in &self.certs.trust {
            paths.push(format!("{}/{}", agent_certs::CA_SHARE_DIR, ca.name));
        }
        paths
    }
}

/// A shell command (run as root on the node) that undoes what the steps wrote, so both ways
/// start each benchmark round from the same state: kubelet stopped and its files gone,
/// certificates and runtime configuration removed, hostname back to `minikube`, /etc/hosts
/// restored from the copy the first reset keeps.
pub fn reset_script(plan: &Plan) -> String {
    let mut paths = plan.written_paths();
    paths.extend(plan.certs.trust.iter().map(|ca| format!("{}/{}", agent_certs::CA_LINK_DIR, ca.name)));
    paths.push(format!("{}/{}", agent_kubelet::BINARIES_DIR, plan.kubelet.version));
    let quoted: Vec<String> = paths.iter().map(|p| quote(p)).collect();
    format!(
        "systemctl stop kubelet.service 2>/dev/null; \
         for l in /etc/ssl/certs/*.0; do [ -e \"$l\" ] || rm -f \"$l\"; done; \
         rm -rf {}; \
         for l in /etc/ssl/certs/*.0; do [ -e \"$l\" ] || rm -f \"$l\"; done; \
         [ -e /etc/hosts.bench ] || cp /etc/hosts /etc/hosts.bench; cp /etc/hosts.bench /etc/hosts; \
         hostname minikube; echo minikube > /etc/hostname; systemctl daemon-reload",
        quoted.join(" ")
    )
}
