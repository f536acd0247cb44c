//! The launcher's vocabulary, shared by every layer above it: which driver runs a node, whether
//! it runs, what is recorded about it (`state.json`'s [`MachineState`]) and the names and ports
//! every node has. No I/O here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Profile used when `--name` is not given.
pub const DEFAULT_PROFILE: &str = "minikube";
/// The guest address under qemu user-mode networking.
pub const GUEST_IP: &str = "10.0.2.15";
/// qemu's user-mode network as every VM sees it: the prefix of [`GUEST_IP`], the gateway (the
/// host) and the resolver qemu answers on. Fixed, so a VM's NIC to the host is configured
/// statically at boot (no DHCP on the way to the agent).
pub const USER_NET_PREFIX: u8 = 24;
pub const USER_NET_GATEWAY: &str = "10.0.2.2";
pub const USER_NET_DNS: &str = "10.0.2.3";
/// The MAC address and driver of that NIC (qemu's default MAC, set explicitly: the guest
/// finds the NIC by it).
pub const USER_NIC_MAC: &str = "52:54:00:12:34:56";
pub const USER_NIC_DRIVER: &str = "virtio_net";
/// The name every node resolves to the control plane (minikube's).
pub const CONTROL_PLANE_NAME: &str = "control-plane.minikube.internal";
/// Guest ports forwarded from the host.
pub const GUEST_AGENT_PORT: u16 = agent_api::DEFAULT_PORT;
pub const GUEST_APISERVER_PORT: u16 = 8443;
pub const GUEST_SSH_PORT: u16 = 22;

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

/// Whether a node runs (a VM's qemu, a container).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Stopped,
    /// No machine of that name.
    Nonexistent,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "Running",
            Status::Stopped => "Stopped",
            Status::Nonexistent => "Nonexistent",
        }
    }
}

/// Host ports forwarded to the guest (qemu user-mode networking) or published by the container
/// engine (kic), bound on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    pub agent: u16,
    pub apiserver: u16,
    pub ssh: u16,
}

/// What `start` was asked for and what the host side chose; saved as `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    pub name: String,
    pub driver: Driver,
    /// The node's architecture: the ISO's (qemu, from its `/version.json`), the host's (kic).
    /// State files written before arm64 nodes existed were all amd64.
    #[serde(default = "amd64")]
    pub arch: platform::Arch,
    /// The ISO (qemu).
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub iso: PathBuf,
    /// The image reference the container was created from (kic).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// The OCI runtime the container engine was told to use (kic), e.g. `runc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_runtime: Option<String>,
    pub cpus: u32,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub runtime: agent_api::api::Runtime,
    pub kubernetes_version: String,
    /// The kubelet binary uploaded to the node (a real one, or the test double).
    pub kubelet: PathBuf,
    pub ports: Ports,
    pub node_ip: String,
    /// The cluster (its first node's name) of a second, third... node; None for a first node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The cluster's container network (kic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The NIC a multi-node cluster's VMs share (qemu).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_nic: Option<ClusterNic>,
    /// The VM's ISO brings its NIC to the host up statically (the node document's `uplink`): an
    /// ISO that records its kernel in `/version.json` does, an older one's agent would refuse
    /// the section (and with it the whole document), so its NIC keeps DHCP. Read from the ISO
    /// at each start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub static_uplink: bool,
}

/// A VM's NIC on its cluster's segment: a qemu multicast socket (no root, no bridge), its MAC
/// and the node's static address on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNic {
    /// UDP port of the multicast group 230.0.0.1 (one per cluster).
    pub mcast_port: u16,
    pub mac: String,
    /// The address with its prefix, e.g. `192.168.49.3/24`.
    pub address: String,
}

fn is_empty_path(p: &Path) -> bool {
    p.as_os_str().is_empty()
}

impl MachineState {
    /// 127.0.0.1:PORT of the agent.
    pub fn agent_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.ports.agent))
    }
}

fn amd64() -> platform::Arch {
    platform::Arch::X86_64
}

/// A qemu machine's state for tests.
#[cfg(test)]
pub(crate) fn example_state(name: &str) -> MachineState {
    MachineState {
        name: name.into(),
        driver: Driver::Qemu,
        arch: platform::Arch::X86_64,
        iso: "/x.iso".into(),
        image: String::new(),
        oci_runtime: None,
        cpus: 2,
        memory_mb: 4096,
        disk_mb: 20000,
        runtime: agent_api::api::Runtime::Containerd,
        kubernetes_version: "v1.35.0".into(),
        kubelet: "/k".into(),
        ports: Ports { agent: 1, apiserver: 2, ssh: 3 },
        node_ip: GUEST_IP.into(),
        cluster: None,
        network: None,
        cluster_nic: None,
        static_uplink: true,
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
    }
}
