//! A kic cluster's container network: found, planned, made and removed through the engine.

use super::{is_missing, Engine, KicError};
use crate::topology::{free_subnet, host_routed, Subnet};

/// Where a cluster's network is, or would be made: nothing is created here, so a start can fix
/// its nodes' addresses (certificates and node documents name them) before it creates anything
/// in the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkPlan {
    pub subnet: Subnet,
    /// The network exists already (another node of the cluster made it).
    pub exists: bool,
}

/// The cluster's network `name` as it is, or the first free subnet for it.
pub fn plan_network(engine: &Engine, name: &str) -> Result<NetworkPlan, KicError> {
    // podman lists a network's subnets under .Subnets, docker under .IPAM.Config.
    let fmt = if engine.is_docker() { "{{range .IPAM.Config}}{{.Subnet}} {{end}}" } else { "{{range .Subnets}}{{.Subnet}} {{end}}" };
    if let Ok(out) = engine.run(&["network".into(), "inspect".into(), "--format".into(), fmt.into(), name.into()]) {
        if let Some(subnet) = out.split_whitespace().find_map(Subnet::parse) {
            return Ok(NetworkPlan { subnet, exists: true });
        }
    }
    let listed = engine.run(&["network".into(), "ls".into(), "-q".into()])?;
    let mut taken = Vec::new();
    for net in listed.split_whitespace() {
        if let Ok(out) = engine.run(&["network".into(), "inspect".into(), "--format".into(), fmt.into(), net.into()]) {
            taken.extend(out.split_whitespace().filter_map(Subnet::parse));
        }
    }
    taken.extend(host_routed(&std::fs::read_to_string("/proc/net/route").unwrap_or_default()));
    let subnet = free_subnet(&taken).ok_or_else(|| KicError::Command {
        command: format!("{} network create {name}", engine.program),
        status: "not run".into(),
        stderr: "no free /24 left in 192.168.49.0-192.168.254.0".into(),
    })?;
    Ok(NetworkPlan { subnet, exists: false })
}

/// Make the cluster's network `name` on `subnet`, labelled as minikube labels its networks.
pub fn create_network(engine: &Engine, name: &str, subnet: Subnet) -> Result<(), KicError> {
    engine.run(&[
        "network".into(),
        "create".into(),
        "--subnet".into(),
        subnet.cidr(),
        "--gateway".into(),
        subnet.gateway(),
        "--label".into(),
        "created_by.minikube.sigs.k8s.io=true".into(),
        name.into(),
    ])?;
    Ok(())
}

/// Remove the cluster's network (nothing when it is gone already).
pub fn remove_network(engine: &Engine, name: &str) -> Result<(), KicError> {
    match engine.run(&["network".into(), "rm".into(), "-f".into(), name.into()]) {
        Err(e) if !is_missing(&e) => Err(e),
        _ => Ok(()),
    }
}
