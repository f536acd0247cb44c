//! Which driver runs a node, the [`NodeDriver`] trait each one implements, and the lifecycle
//! commands (`status`, `stop`, `delete`, console) dispatched on the driver recorded in the
//! profile's `state.json`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kic::{Engine, Kic, KicError};
use crate::machine::{MachineError, Status};
use crate::state::{MachineDir, StateError};

/// How a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// A VM booted from the ISO.
    Qemu,
    /// A kicbase container under podman.
    Podman,
    /// A kicbase container under docker.
    Docker,
}

impl Driver {
    pub const ALL: [Driver; 3] = [Driver::Qemu, Driver::Podman, Driver::Docker];

    pub fn name(self) -> &'static str {
        match self {
            Driver::Qemu => "qemu",
            Driver::Podman => "podman",
            Driver::Docker => "docker",
        }
    }

    /// The container engine of a kic driver (None for qemu). The docker client honours
    /// `DOCKER_HOST`, podman its own configuration.
    pub fn engine(self) -> Option<Engine> {
        match self {
            Driver::Qemu => None,
            Driver::Podman => Some(Engine::podman()),
            Driver::Docker => Some(Engine::docker()),
        }
    }

    pub fn is_kic(self) -> bool {
        self != Driver::Qemu
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown `--driver` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown driver {0:?}: use qemu, podman or docker")]
pub struct UnknownDriver(pub String);

impl std::str::FromStr for Driver {
    type Err = UnknownDriver;
    fn from_str(s: &str) -> Result<Driver, UnknownDriver> {
        Driver::ALL.into_iter().find(|d| d.name() == s).ok_or_else(|| UnknownDriver(s.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Machine(#[from] MachineError),
    #[error("{0}")]
    Kic(#[from] KicError),
    #[error("{0}")]
    State(#[from] StateError),
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

/// One driver's half of a node: bringing it up to an answering agent, and the lifecycle
/// commands. [`crate::qemu_node::QemuNode`] and [`crate::kic_node::KicNode`] implement it; the
/// agent steps after `up` are the same for every driver ([`crate::provision`]).
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
    fn host_ports(&self, state: &crate::state::MachineState) -> Result<crate::state::Ports, DriverError>;
    /// Create or start the node and wait until its agent answers (the steps `machine`, [`image`],
    /// `boot`, `agent`).
    fn up(&self, home: &crate::state::Home, opts: &crate::provision::StartOptions, rep: &mut crate::provision::Reporter) -> Result<crate::provision::Up, crate::provision::StartError>;
}

/// The node of profile `m` run by `driver`.
pub fn node(m: &MachineDir, driver: Driver) -> Box<dyn NodeDriver> {
    match driver.engine() {
        None => Box::new(crate::qemu_node::QemuNode { m: m.clone() }),
        Some(e) => Box::new(crate::kic_node::KicNode { m: m.clone(), kic: Kic::existing(e, &m.name) }),
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

/// Stop and remove the node (kic: container and /var volume) and its state directory.
pub fn delete(m: &MachineDir, timeout: Duration) -> Result<bool, DriverError> {
    recorded_node(m).delete(timeout)
}

/// The node's console.
pub fn console_tail(m: &MachineDir, lines: usize) -> Result<String, DriverError> {
    recorded_node(m).console_tail(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for d in Driver::ALL {
            assert_eq!(d.name().parse::<Driver>().unwrap(), d);
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{}\"", d.name()));
        }
        let e = "kvm2".parse::<Driver>().unwrap_err().to_string();
        assert!(e.contains("kvm2") && e.contains("podman"), "{e}");
        assert!(Driver::Podman.is_kic() && !Driver::Qemu.is_kic());
        assert_eq!(Driver::Docker.engine().unwrap().program, "docker");
    }

    #[test]
    fn mismatch_names_profile_and_both_drivers() {
        check_same("p1", Driver::Podman, Driver::Podman).unwrap();
        let e = check_same("p1", Driver::Qemu, Driver::Podman).unwrap_err().to_string();
        assert!(e.contains("\"p1\"") && e.contains("qemu driver") && e.contains("not podman"), "{e}");
        assert!(e.contains("delete -p p1"), "{e}");
    }
}
