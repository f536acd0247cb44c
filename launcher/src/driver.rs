//! Which driver runs a node, and the lifecycle commands (`status`, `stop`, `delete`, console)
//! dispatched on the driver recorded in the profile's `state.json`: qemu through
//! [`crate::machine`], podman and docker through [`crate::kic`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kic::{self, ContainerState, Engine, Kic, KicError};
use crate::machine::{self, MachineError, Status};
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

/// The node container of a kic profile.
pub fn container(m: &MachineDir, driver: Driver) -> Option<Kic> {
    driver.engine().map(|e| Kic::existing(e, &m.name))
}

/// Map a container state to a machine status: `running` runs; anything else, or no container
/// at all (the next `start` creates it again), is stopped.
pub fn container_status(state: Option<&ContainerState>) -> Status {
    match state {
        Some(ContainerState::Running) => Status::Running,
        _ => Status::Stopped,
    }
}

/// Whether the machine runs (the qemu process, or the container's state).
pub fn status(m: &MachineDir) -> Status {
    if !m.exists() {
        return Status::Nonexistent;
    }
    match recorded(m).and_then(|d| container(m, d)) {
        None => machine::status(m),
        Some(k) => match k.find_state() {
            Ok(s) => container_status(s.as_ref()),
            Err(e) => {
                tracing::warn!("{e}");
                Status::Stopped
            }
        },
    }
}

/// Stop the node. None when it was not running, Some(clean) otherwise (qemu: ACPI power-off
/// within `timeout`, else a hard stop; kic: the engine's stop with `timeout`, then SIGKILL).
pub fn stop(m: &MachineDir, timeout: Duration) -> Result<Option<bool>, DriverError> {
    let driver = m.load()?.driver;
    match container(m, driver) {
        None => Ok(machine::stop(m, timeout)?),
        Some(k) => {
            if k.find_state()? != Some(ContainerState::Running) {
                return Ok(None);
            }
            k.stop_within(timeout)?;
            Ok(Some(true))
        }
    }
}

/// Stop and remove the node (kic: container and /var volume) and its state directory. Returns
/// whether there was anything.
pub fn delete(m: &MachineDir, timeout: Duration) -> Result<bool, DriverError> {
    match recorded(m).and_then(|d| container(m, d)) {
        None => Ok(machine::delete(m, timeout)?),
        Some(k) => {
            let existed = m.dir.exists();
            k.delete()?;
            crate::state::remove_dir(&m.dir)?;
            Ok(existed)
        }
    }
}

/// The node's console: the last `lines` lines of the serial log (qemu) or the container's logs
/// (kic: systemd and the agent write to its tty).
pub fn console_tail(m: &MachineDir, lines: usize) -> Result<String, DriverError> {
    match recorded(m).and_then(|d| container(m, d)) {
        None => Ok(machine::console_tail(m, lines)),
        Some(k) => Ok(kic::tail(&k.logs()?, lines)),
    }
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

    #[test]
    fn container_states_map_to_status() {
        assert_eq!(container_status(Some(&ContainerState::parse("running"))), Status::Running);
        for s in [Some("exited"), Some("created"), Some("stopped"), None] {
            let s = s.map(ContainerState::parse);
            let s = s.as_ref();
            assert_eq!(container_status(s), Status::Stopped, "{s:?}");
        }
    }
}
