//! The provisioning operations. Each is idempotent: a repeat with the same input reports
//! `changed: false` and touches nothing.

pub mod apply;
pub mod blobs;
pub mod certs;
pub mod ensure;
pub mod exec;
pub mod files;
pub mod hostname;
pub mod images;
pub mod info;
pub mod kubelet;
pub mod logs;
pub mod network;
pub mod runtime;

use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::error::OpError;
use crate::host::{Host, HostError};
use crate::paths::GuestRoot;

/// The node being provisioned: its file tree, its services, and the lock that serialises
/// mutations (readers do not take it).
pub struct Node {
    pub root: GuestRoot,
    pub host: Arc<dyn Host>,
    writes: Mutex<()>,
    /// Mutations also wait for the boot step ([`crate::boot_lock`]): the server's node.
    after_boot: bool,
}

/// A mutation's hold on the node: the in-process lock, and the boot step's lock shared.
pub struct WriteGuard<'a> {
    _boot: Option<nix::fcntl::Flock<std::fs::File>>,
    _writes: MutexGuard<'a, ()>,
}

impl Node {
    pub fn new(root: GuestRoot, host: Arc<dyn Host>) -> Node {
        Node { root, host, writes: Mutex::new(()), after_boot: false }
    }

    /// The server's node, started beside the boot step: every mutation waits until the boot
    /// step has finished.
    pub fn after_boot(mut self) -> Node {
        self.after_boot = true;
        self
    }

    /// Hold this while mutating the node.
    pub fn lock_writes(&self) -> WriteGuard<'_> {
        let writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let boot = self.after_boot.then(|| crate::boot_lock::shared(&self.root)).and_then(|r| {
            // Without the lock file (a /run that cannot be written) there is no boot step to
            // wait for either.
            r.map_err(|e| tracing::warn!("{e}: not waiting for the boot step")).ok()
        });
        WriteGuard { _boot: boot, _writes: writes }
    }
}

/// Service actions owed by an operation that runs at boot (`minikube-agent boot`, ordered
/// before the runtimes and the kubelet): instead of restarting a service after the fact, the
/// operation writes its files and leaves the starts here, queued once at the end without waiting
/// (a job that waited would wait on the boot step itself).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// Units whose file or drop-in changed.
    pub changed_units: Vec<String>,
    /// A reload is needed whatever the units' state (a unit was unmasked).
    pub reload: bool,
    pub stop: Vec<&'static str>,
    pub start: Vec<&'static str>,
    /// A networkd file changed: `networkctl reload` if networkd runs (else it reads the file
    /// when it starts).
    pub networkd: bool,
}

/// The unit a unit file or drop-in path belongs to.
fn unit_of(guest_path: &str) -> Option<String> {
    let rest = ["/etc/systemd/system/", "/lib/systemd/system/", "/usr/lib/systemd/system/"].iter().find_map(|d| guest_path.strip_prefix(d))?;
    let first = rest.split('/').next()?;
    Some(first.strip_suffix(".d").unwrap_or(first).to_string())
}

impl Deferred {
    /// Note that `guest_path` changed (a unit file or drop-in matters to systemd).
    pub fn wrote(&mut self, guest_path: &str) {
        if let Some(unit) = unit_of(guest_path) {
            if !self.changed_units.contains(&unit) {
                self.changed_units.push(unit);
            }
        }
    }

    /// Whether systemd must reload: it says so itself (`NeedDaemonReload`) for a changed unit it
    /// had loaded. A unit it had not found when it started (kubelet.service on a fresh root,
    /// named only in the boot step's `Before=`) is loaded from disk as it is asked about, with
    /// its new files: no reload (about 3 s under emulation).
    fn needs_reload(&self, host: &dyn Host) -> bool {
        if self.reload {
            return true;
        }
        if self.changed_units.is_empty() {
            return false;
        }
        let mut argv = vec!["systemctl", "show", "--property=NeedDaemonReload", "--value"];
        argv.extend(self.changed_units.iter().map(String::as_str));
        match crate::host::run_ok(host, &argv, None, std::time::Duration::from_secs(60)) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == "yes"),
            Err(_) => true,
        }
    }

    /// Reload if needed, then queue the stops and starts (`--no-block`). The stops (other
    /// runtimes' units) are queued on their own thread meanwhile: a `systemctl` is tenths of a
    /// second under emulation, and the two touch different units.
    pub fn run(&self, host: &dyn Host) -> Result<(), HostError> {
        std::thread::scope(|s| {
            if !self.stop.is_empty() {
                s.spawn(|| {
                    // Other runtimes' units may not be installed: not an error.
                    let mut argv = vec!["systemctl", "stop", "--no-block"];
                    argv.extend(&self.stop);
                    let _ = host.run(&argv, None, std::time::Duration::from_secs(60));
                });
            }
            self.reload_and_start(host)
        })
    }

    fn reload_and_start(&self, host: &dyn Host) -> Result<(), HostError> {
        if self.needs_reload(host) {
            crate::host::systemctl(host, &["daemon-reload"])?;
        }
        // Only a running networkd is told: the boot step runs before it starts (it reads the
        // files then), and `networkctl reload` would ask D-Bus to start it, a start queued
        // behind the boot step that asks: the call waits out its timeout.
        if self.networkd && coming_up(host, &["systemd-networkd.service"]) {
            let _ = host.run(&["networkctl", "reload"], None, std::time::Duration::from_secs(30));
        }
        if !self.start.is_empty() {
            let mut args = vec!["start", "--no-block"];
            args.extend(&self.start);
            crate::host::systemctl(host, &args)?;
        }
        Ok(())
    }
}

/// Whether any of `units` is starting or running by systemd's account (`is-active` says
/// activating, reloading or active): on a busy node the start the boot step queued can be
/// between two attempts (`auto-restart`, no job queued) when the launcher's step looks.
pub fn coming_up(host: &dyn Host, units: &[&str]) -> bool {
    let mut argv = vec!["systemctl", "is-active"];
    argv.extend(units);
    host.run(&argv, None, std::time::Duration::from_secs(30))
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).lines().any(|l| matches!(l.trim(), "active" | "activating" | "reloading")))
}

/// Whether any of `units` has a queued or running job (the boot step queued its start).
pub fn has_job(host: &dyn Host, units: &[&str]) -> bool {
    crate::host::run_ok(host, &["systemctl", "list-jobs", "--no-legend", "--plain"], None, std::time::Duration::from_secs(30))
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().nth(1).is_some_and(|u| units.contains(&u))))
}

/// Reject empty strings and strings with control characters (they end up in config files).
pub fn plain_text<'a>(field: &str, value: &'a str) -> Result<&'a str, OpError> {
    if value.trim().is_empty() {
        return Err(OpError::bad(field, "must not be empty"));
    }
    if value.chars().any(char::is_control) {
        return Err(OpError::bad(field, "must not contain control characters"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_of_paths() {
        assert_eq!(super::unit_of("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf").as_deref(), Some("kubelet.service"));
        assert_eq!(super::unit_of("/lib/systemd/system/kubelet.service").as_deref(), Some("kubelet.service"));
        assert_eq!(super::unit_of("/etc/containerd/config.toml"), None);
    }
}
