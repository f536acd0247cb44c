//! The qemu driver's lifecycle on top of [`crate::resources::qemu`]: create a machine (certificates, data
//! disk, state), boot it detached, tell whether it runs, stop it, delete it. Stale pidfiles and
//! QMP sockets left by a crashed run are detected and removed.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_api::document::NodeDocument;

use crate::model::{MachineState, Ports, Status, GUEST_AGENT_PORT, GUEST_APISERVER_PORT, GUEST_SSH_PORT};
use crate::resources::certs::ProfileCerts;
use crate::resources::kernel::{self, DirectKernel};
use crate::resources::node_doc::Binary;
use crate::resources::qemu::{self, Accel, BootMedium, VmConfig};
use crate::resources::state::MachineDir;

/// fw_cfg entry names of the agent's trust files.
pub fn fw_cfg_name(file: &str) -> String {
    format!("opt/io.minikube/agent/{file}")
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("{0}")]
    Qemu(#[from] qemu::QemuError),
    #[error("{0}")]
    State(#[from] crate::resources::state::StateError),
    #[error("{0}")]
    Disk(#[from] crate::resources::disk::DiskError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("ISO {0}: no such file (build it with `cargo xtask iso`, or pass --iso)")]
    NoIso(PathBuf),
    #[error("ISO {path}: {reason} (an ISO built by `cargo xtask iso` names its architecture in /version.json)")]
    IsoIdentity { path: PathBuf, reason: String },
    #[error("{0}")]
    Ssh(#[from] crate::resources::ssh::SshError),
    #[error("{0}")]
    Kernel(#[from] kernel::KernelError),
    #[error("no free TCP port on 127.0.0.1: {0}")]
    NoPort(std::io::Error),
}

/// A port on 127.0.0.1 that nobody listens on right now and that is not in `taken`.
pub fn free_port(taken: &BTreeSet<u16>) -> Result<u16, MachineError> {
    Ok(free_ports_n(1, taken)?[0])
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `n` distinct free ports outside `taken` (ports other profiles recorded).
fn free_ports_n(n: usize, taken: &BTreeSet<u16>) -> Result<Vec<u16>, MachineError> {
    // Hold the listeners until all are chosen, so they differ.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..64 {
        if ports.len() == n {
            break;
        }
        let l = TcpListener::bind("127.0.0.1:0").map_err(MachineError::NoPort)?;
        let p = l.local_addr().map_err(MachineError::NoPort)?.port();
        if !taken.contains(&p) {
            ports.push(p);
        }
        held.push(l);
    }
    if ports.len() < n {
        return Err(MachineError::NoPort(std::io::Error::other("no free port outside the ones other profiles recorded")));
    }
    Ok(ports)
}

/// Three distinct free ports outside `taken`.
pub fn free_ports(taken: &BTreeSet<u16>) -> Result<Ports, MachineError> {
    let p = free_ports_n(3, taken)?;
    Ok(Ports { agent: p[0], apiserver: p[1], ssh: p[2] })
}

/// Replace recorded ports that another program took while the machine was stopped, or that
/// another profile recorded. Returns whether any changed.
pub fn refresh_ports(ports: &mut Ports, taken: &BTreeSet<u16>) -> Result<bool, MachineError> {
    let mut changed = false;
    let mut avoid = taken.clone();
    avoid.extend([ports.agent, ports.apiserver, ports.ssh]);
    for p in [&mut ports.agent, &mut ports.apiserver, &mut ports.ssh] {
        if taken.contains(p) || !port_free(*p) {
            *p = free_port(&avoid)?;
            avoid.insert(*p);
            changed = true;
        }
    }
    Ok(changed)
}

/// The qemu pid of a machine if it runs: the pidfile names a live process whose command line
/// mentions this machine's pidfile (so a recycled pid is not mistaken for it).
pub fn running_pid(m: &MachineDir) -> Option<u32> {
    let pid = qemu::read_pidfile(&m.pidfile())?;
    if !qemu::pid_alive(pid) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let want = m.pidfile().to_string_lossy().into_owned();
    cmdline.split(|b| *b == 0).any(|a| a == want.as_bytes()).then_some(pid)
}

pub fn status(m: &MachineDir) -> Status {
    if !m.exists() {
        Status::Nonexistent
    } else if running_pid(m).is_some() {
        Status::Running
    } else {
        Status::Stopped
    }
}

/// Remove the pidfile and QMP socket of a qemu that is gone. Returns whether anything was
/// removed.
pub fn clean_stale(m: &MachineDir) -> bool {
    if running_pid(m).is_some() {
        return false;
    }
    let mut removed = false;
    for p in [m.pidfile(), m.qmp_socket()] {
        if std::fs::remove_file(&p).is_ok() {
            tracing::warn!("removed stale {} (qemu is not running)", p.display());
            removed = true;
        }
    }
    removed
}

/// Create the data disk if it does not exist yet, carrying the agent's trust, the machine's SSH
/// public key as the docker user's authorized key, the node document and the kubelet it names
/// (so that the first boot configures the node with nothing crossing the network).
pub fn ensure_disk(m: &MachineDir, state: &MachineState, certs: &ProfileCerts, doc: &NodeDocument, kubelet: Option<&Binary>) -> Result<bool, MachineError> {
    if m.disk().exists() {
        return Ok(false);
    }
    let (authorized_keys, _) = crate::resources::ssh::ensure_key(m, &format!("minikube-node@{}", state.name))?;
    let tar = crate::resources::disk::userdata_tar(&crate::resources::disk::Userdata {
        ca_pem: certs.agent_ca_pem.clone(),
        agent_cert_pem: certs.agent.cert_pem.clone(),
        agent_key_pem: certs.agent.key_pem.clone(),
        authorized_keys,
        document: crate::resources::node_doc::to_bytes(doc),
        blobs: kubelet.iter().map(|k| (k.sha256.clone(), k.path.clone())).collect(),
    })?;
    crate::resources::disk::create(&m.disk(), &tar, state.disk_mb, crate::resources::disk::DiskFormat::from_env())?;
    Ok(true)
}

/// An ISO's `/version.json` ([`platform::ImageVersion`]): its architecture and how it boots.
pub fn iso_version(iso: &Path) -> Result<platform::ImageVersion, MachineError> {
    let name = platform::ImageVersion::PATH;
    let bytes = kernel::read_iso_file(iso, name).map_err(|e| match e {
        kernel::KernelError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => MachineError::NoIso(iso.to_path_buf()),
        kernel::KernelError::Io { path, source } => MachineError::Io { path, source },
        kernel::KernelError::NotIso { reason, .. } => MachineError::IsoIdentity { path: iso.to_path_buf(), reason: format!("not an ISO 9660 image: {reason}") },
        kernel::KernelError::Iso { reason, path, .. } => MachineError::IsoIdentity { path: iso.to_path_buf(), reason: format!("{path}: {reason}") },
    })?;
    serde_json::from_slice(&bytes).map_err(|e| MachineError::IsoIdentity { path: iso.to_path_buf(), reason: format!("{name}: {e}") })
}

/// The architecture an ISO was built for, from its `/version.json`.
pub fn iso_arch(iso: &Path) -> Result<platform::Arch, MachineError> {
    Ok(iso_version(iso)?.arch)
}

/// The kernel qemu starts itself for a machine of `state`: the ISO's own (`/version.json` says
/// which, with its command line), on x86. None (the bootloader on the medium starts it) for an
/// ISO that records none, on arm64, or with `MINIKUBE_NODE_BOOT=medium`.
pub fn direct_kernel(state: &MachineState, cache: &Path) -> Result<Option<DirectKernel>, MachineError> {
    if state.arch != platform::Arch::X86_64 || std::env::var("MINIKUBE_NODE_BOOT").is_ok_and(|v| v == "medium") {
        return Ok(None);
    }
    let Some(boot) = iso_version(&state.iso)?.boot else { return Ok(None) };
    Ok(Some(kernel::prepare(&state.iso, &boot, cache)?))
}

/// The qemu configuration of a machine.
pub fn vm_config(m: &MachineDir, state: &MachineState, accel: Accel, kernel: Option<DirectKernel>) -> VmConfig {
    let trust = m.trust_dir();
    VmConfig {
        name: format!("minikube-node-{}", state.name),
        arch: state.arch,
        accel,
        memory_mb: state.memory_mb as u32,
        cpus: state.cpus,
        boot: BootMedium::Cdrom(state.iso.clone()),
        firmware: None,
        kernel,
        disks: vec![m.disk()],
        fw_cfg: [agent_api::trust::CA_FILE, agent_api::trust::CERT_FILE, agent_api::trust::KEY_FILE]
            .iter()
            .map(|f| (fw_cfg_name(f), trust.join(f)))
            .chain(Some(crate::resources::node_doc::machine_file(m)).filter(|p| p.is_file()).map(|p| (fw_cfg_name(agent_api::document::FILE_NAME), p)))
            .collect(),
        hostfwd: vec![(state.ports.agent, GUEST_AGENT_PORT), (state.ports.apiserver, GUEST_APISERVER_PORT), (state.ports.ssh, GUEST_SSH_PORT)],
        cluster_nic: state.cluster_nic.as_ref().map(|n| (format!("{}:{}", crate::topology::MCAST_GROUP, n.mcast_port), n.mac.clone())),
        serial_log: m.console_log(),
        qmp_socket: m.qmp_socket(),
        pidfile: m.pidfile(),
        daemonize: true,
    }
}

/// Boot a stopped machine, detached, its kernel unpacked into `kernel_cache` when qemu can start
/// it directly ([`direct_kernel`]). Returns the pid and the accelerator.
pub fn boot(m: &MachineDir, state: &MachineState, kernel_cache: &Path) -> Result<(u32, Accel), MachineError> {
    if !state.iso.is_file() {
        return Err(MachineError::NoIso(state.iso.clone()));
    }
    clean_stale(m);
    let accel = qemu::choose_accel_for(state.arch);
    let kernel = direct_kernel(state, kernel_cache)?;
    let vm = qemu::start(vm_config(m, state, accel, kernel))?;
    Ok((vm.pid, accel))
}

/// Power the machine off (ACPI, then a hard stop after `timeout`). Returns None when it was not
/// running, Some(clean) otherwise.
pub fn stop(m: &MachineDir, timeout: Duration) -> Result<Option<bool>, MachineError> {
    let Some(pid) = running_pid(m) else {
        clean_stale(m);
        return Ok(None);
    };
    let clean = match qemu::powerdown(&m.qmp_socket(), pid, timeout) {
        Ok(c) => c,
        Err(e) => {
            // No QMP (socket gone): terminate the process instead.
            tracing::warn!("{e}: sending SIGTERM to qemu {pid}");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while qemu::pid_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if qemu::pid_alive(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
            false
        }
    };
    clean_stale(m);
    Ok(Some(clean))
}

/// Stop the machine (hard stop allowed) and remove its directory.
pub fn delete(m: &MachineDir, timeout: Duration) -> Result<bool, MachineError> {
    let existed = m.dir.exists();
    stop(m, timeout)?;
    crate::resources::state::remove_dir(&m.dir)?;
    Ok(existed)
}

/// The last `n` console lines.
pub fn console_tail(m: &MachineDir, n: usize) -> String {
    qemu::console_tail(&m.console_log(), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iso_without_its_architecture_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let not_iso = dir.path().join("minikube.iso");
        std::fs::write(&not_iso, vec![0u8; 40 * 2048]).unwrap();
        let e = iso_arch(&not_iso).unwrap_err().to_string();
        assert!(e.contains(&not_iso.display().to_string()) && e.contains("not an ISO 9660 image"), "{e}");
        let e = iso_arch(&dir.path().join("missing.iso")).unwrap_err().to_string();
        assert!(e.contains("missing.iso"), "{e}");
    }

    #[test]
    fn stale_pidfile_and_socket_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let home = crate::resources::state::Home::at(d.path());
        let m = home.machine("stale").unwrap();
        std::fs::create_dir_all(&m.dir).unwrap();
        // Our own pid is alive but is not a qemu started with this pidfile.
        std::fs::write(m.pidfile(), std::process::id().to_string()).unwrap();
        std::fs::write(m.qmp_socket(), b"").unwrap();
        assert_eq!(running_pid(&m), None);
        assert!(clean_stale(&m));
        assert!(!m.pidfile().exists() && !m.qmp_socket().exists());
        assert!(!clean_stale(&m));
    }

    #[test]
    fn ports_are_distinct_and_taken_ones_replaced() {
        let none = BTreeSet::new();
        let mut p = free_ports(&none).unwrap();
        assert!(p.agent != p.apiserver && p.apiserver != p.ssh && p.agent != p.ssh);
        let hold = TcpListener::bind(("127.0.0.1", p.agent)).unwrap();
        let before = p.agent;
        assert!(refresh_ports(&mut p, &none).unwrap());
        assert_ne!(p.agent, before);
        drop(hold);
        // A port another profile recorded is replaced even when nothing listens on it.
        let taken: BTreeSet<u16> = [p.ssh].into();
        let ssh = p.ssh;
        assert!(refresh_ports(&mut p, &taken).unwrap());
        assert_ne!(p.ssh, ssh);
        let fresh = free_ports(&taken).unwrap();
        assert!(![fresh.agent, fresh.apiserver, fresh.ssh].contains(&ssh));
    }
}
