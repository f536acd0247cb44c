//! The drivers: the [`NodeDriver`] trait, the preparation both share ([`prepare`]), reaching the
//! agent ([`agent`]), one module per engine ([`qemu`], [`kic`]), and the lifecycle commands
//! (`status`, `stop`, `delete`, console) dispatched on the driver recorded in the profile's
//! `state.json`.

pub mod agent;
pub mod kic;
pub mod prepare;
pub mod qemu;

use std::path::PathBuf;
use std::time::Duration;

use ::agent_api::client::{Client, ClientError};

use crate::model::{Driver, MachineState, Ports, Status};
use crate::options::StartOptions;
use crate::report::Reporter;
use crate::resources::kic::{Engine, Kic, KicError};
use crate::resources::node_doc::Sections;
use crate::resources::state::{Home, MachineDir, StateError};
use crate::retry::StepError;
use qemu::machine::MachineError;

/// What can stop a driver: bringing a node up to an answering agent, or a lifecycle command.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    Kic(#[from] KicError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Preflight(#[from] crate::resources::kic::preflight::PreflightError),
    #[error("certificates: {0}")]
    Certs(#[from] crate::resources::certs::CertError),
    #[error(transparent)]
    Kubelet(#[from] crate::resources::kubelet::KubeletError),
    #[error(transparent)]
    Binaries(#[from] crate::resources::binaries::BinaryError),
    #[error(transparent)]
    Bundle(#[from] crate::resources::bundle::BundleError),
    #[error(transparent)]
    Ssh(#[from] crate::resources::ssh::SshError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a usable launcher credential ({reason}); `minikube-node start -p NAME` issues it again")]
    Credentials { path: PathBuf, reason: String },
    #[error("the agent of {node} cannot be reached: {source} (is it running? `minikube-node status -p {node}`)")]
    Connect { node: String, source: ClientError },
    #[error("the agent did not answer within {secs}s at {addr} ({last_error}); qemu {qemu}; last console lines of {log}:\n{tail}")]
    AgentTimeout { secs: u64, addr: String, last_error: String, qemu: &'static str, log: String, tail: String },
    #[error("container {name}: the agent logged its ready line but did not answer within {secs}s at {addr} ({last_error}); last container log lines:\n{tail}")]
    KicAgent { secs: u64, addr: String, last_error: String, name: String, tail: String },
    #[error("profile {profile:?} runs on the {recorded} driver, not {requested}: delete it first (`minikube-node delete -p {profile}`) or start it with --driver {recorded}")]
    Mismatch { profile: String, recorded: Driver, requested: Driver },
}

/// Refuse to run a profile with another driver than the one it was created with.
pub fn check_same(profile: &str, recorded: Driver, requested: Driver) -> Result<(), DriverError> {
    if recorded == requested {
        Ok(())
    } else {
        Err(DriverError::Mismatch { profile: profile.to_string(), recorded, requested })
    }
}

/// The recorded driver of an existing profile (None when it has no readable state).
pub fn recorded(m: &MachineDir) -> Option<Driver> {
    m.load().ok().map(|s| s.driver)
}

/// A node whose agent answers, handed from the driver's part of `start` to [`crate::start`].
pub struct Up {
    pub(crate) state: MachineState,
    pub(crate) cas: crate::resources::certs::SharedCas,
    pub(crate) pc: crate::resources::certs::ProfileCerts,
    pub(crate) kubelet: Option<prepare::Kubelet>,
    /// kubeadm, kubectl, crictl and the bundle's images when Kubernetes is bootstrapped.
    pub(crate) kubernetes: Option<prepare::KubernetesParts>,
    /// The node document delivered for this boot, section by section: the API steps' requests.
    pub(crate) sections: Sections,
    pub(crate) client: Client,
}

/// One driver's half of a node: bringing it up to an answering agent, and the lifecycle
/// commands. [`qemu::QemuNode`] and [`kic::KicNode`] implement it; the agent steps after `up`
/// are the same for every driver ([`crate::start`]).
pub trait NodeDriver {
    /// Whether the node runs.
    fn status(&self) -> Status;
    /// Stop the node: None when it was not running, Some(clean) otherwise.
    fn stop(&self, timeout: Duration) -> Result<Option<bool>, DriverError>;
    /// Stop and remove the node and its state directory; whether there was anything.
    fn delete(&self, timeout: Duration) -> Result<bool, DriverError>;
    /// The last `lines` lines of the node's console (serial log, or the container's logs).
    fn console_tail(&self, lines: usize) -> Result<String, DriverError>;
    /// The host ports of the agent, the API server and SSH.
    fn host_ports(&self, state: &MachineState) -> Result<Ports, DriverError>;
    /// Create or start the node and wait until its agent answers (the steps `machine`, `image`,
    /// `boot`, `agent`).
    fn up(&self, home: &Home, opts: &StartOptions, rep: &mut Reporter) -> Result<Up, DriverError>;
}

/// The node of profile `m` run by `driver`.
pub fn node(m: &MachineDir, driver: Driver) -> Box<dyn NodeDriver> {
    match Engine::of(driver) {
        None => Box::new(qemu::QemuNode { m: m.clone() }),
        Some(e) => Box::new(kic::KicNode { m: m.clone(), kic: Kic::existing(e, &m.name) }),
    }
}

/// The node of profile `m` by its recorded driver (qemu when it has no readable state).
pub fn recorded_node(m: &MachineDir) -> Box<dyn NodeDriver> {
    node(m, recorded(m).unwrap_or(Driver::Qemu))
}

/// Whether the machine runs.
pub fn status(m: &MachineDir) -> Status {
    if !m.exists() {
        return Status::Nonexistent;
    }
    recorded_node(m).status()
}

/// Stop the node (qemu: ACPI power-off within `timeout`, else a hard stop; kic: the engine's
/// stop with `timeout`, then SIGKILL). None when it was not running, Some(clean) otherwise.
pub fn stop(m: &MachineDir, timeout: Duration) -> Result<Option<bool>, DriverError> {
    node(m, m.load()?.driver).stop(timeout)
}

/// Stop and remove the node (kic: container and /var volume) and its state directory. A profile
/// whose state is missing or unreadable is swept instead ([`sweep`]).
pub fn delete(m: &MachineDir, timeout: Duration) -> Result<bool, DriverError> {
    match recorded(m) {
        Some(driver) => node(m, driver).delete(timeout),
        None => sweep(m, timeout),
    }
}

/// Remove what a profile without a readable state may have left: its qemu (by the pidfile in its
/// directory), a container and a volume of its name in every container engine of this host that
/// answers (an engine that is absent or not running is skipped with a warning), then the
/// directory. Whether there was anything.
pub fn sweep(m: &MachineDir, timeout: Duration) -> Result<bool, DriverError> {
    let mut any = false;
    for engine in [Engine::podman(), Engine::docker()] {
        let k = Kic::existing(engine, &m.name);
        match k.find_state() {
            Ok(found) => {
                any |= found.is_some();
                k.delete()?;
            }
            Err(e) => tracing::info!("sweeping {}: {} skipped ({e})", m.name, k.engine.program),
        }
    }
    any |= qemu::QemuNode { m: m.clone() }.delete(timeout)?;
    Ok(any)
}

/// The node's console.
pub fn console_tail(m: &MachineDir, lines: usize) -> Result<String, DriverError> {
    recorded_node(m).console_tail(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_names_profile_and_both_drivers() {
        check_same("p1", Driver::Podman, Driver::Podman).unwrap();
        let e = check_same("p1", Driver::Qemu, Driver::Podman).unwrap_err().to_string();
        assert!(e.contains("\"p1\"") && e.contains("qemu driver") && e.contains("not podman"), "{e}");
        assert!(e.contains("delete -p p1"), "{e}");
    }
}
