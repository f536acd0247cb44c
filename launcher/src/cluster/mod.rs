//! Clusters of several nodes, minikube's way: each node is a machine of its own (state,
//! certificates, ports) whose state names its cluster, so the nodes of a cluster are found by
//! reading the machines ([`Home::nodes`]), never from a second list to keep in step. Names and
//! numbers are [`crate::topology`]'s; keeping the nodes' hosts and routes in step is [`peers`].

pub mod peers;

use std::time::Duration;

use agent_api::client::ClientError;

use crate::driver::agent::connect_existing;
use crate::driver::DriverError;
use crate::model::{MachineState, Status};
use crate::options::{node_options, StartOptions};
use crate::report::Reporter;
use crate::resources::kic::network::remove_network;
use crate::resources::kic::{Engine, KicError};
use crate::resources::state::{Home, StateError};
use crate::start::bootstrap::{self, BootstrapError};
use crate::start::StartError;
use crate::topology::{cluster_of, next_index, node_index};
pub use peers::refresh_peers;

/// What can stop a cluster command.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Kic(#[from] KicError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error("node {node}: {source}")]
    Agent { node: String, source: ClientError },
    #[error("node {node}: `{command}` failed: {output}")]
    Command { node: String, command: String, output: String },
    #[error("--nodes must be at least 1")]
    NoNodes,
    #[error("{profile} has no cluster network: VMs get one when the profile is started with several nodes (`minikube-node stop -p {profile}`, then `start -p {profile} --nodes 2`)")]
    NoClusterNetwork { profile: String },
    #[error("{name} is the control plane of {profile}: delete the cluster with `minikube-node delete -p {profile}`")]
    ControlPlane { name: String, profile: String },
    #[error("{name} is not a node name of {profile} ({profile}-m02, {profile}-m03...)")]
    NotANodeName { name: String, profile: String },
    #[error("{profile} has no node {name} (`minikube-node node list -p {profile}`)")]
    NoSuchNode { name: String, profile: String },
}

/// Start a cluster of `count` nodes (and any node it has beyond them), each reporting its own
/// steps, then give every node the whole cluster's /etc/hosts lines.
pub fn start(home: &Home, first: &StartOptions, count: u32, rep: &mut Reporter) -> Result<Vec<MachineState>, ClusterError> {
    if count == 0 {
        return Err(ClusterError::NoNodes);
    }
    let multi = count > 1 || home.nodes(&first.name)?.len() > 1;
    let mut first = first.clone();
    // VMs of a cluster share a second NIC; the first node gets it only when there are others.
    first.cluster_nic = multi && !first.driver.is_kic();
    let first = &first;
    crate::start::start(home, first, rep)?;
    let mut indexes: Vec<u32> = (2..=count).collect();
    indexes.extend(home.nodes(&first.name)?.iter().filter_map(|s| node_index(&first.name, &s.name)).filter(|i| *i > count));
    for i in indexes {
        crate::start::start(home, &node_options(first, i), rep)?;
    }
    let all = home.nodes(&first.name)?;
    if all.len() > 1 {
        refresh_peers(home, &all)?;
    }
    Ok(all)
}

/// Add the next node to the cluster `first` started; returns its name.
pub fn add(home: &Home, first: &StartOptions, rep: &mut Reporter) -> Result<String, ClusterError> {
    let existing = home.nodes(&first.name)?;
    if !first.driver.is_kic() && existing.first().is_some_and(|s| s.cluster_nic.is_none()) {
        return Err(ClusterError::NoClusterNetwork { profile: first.name.clone() });
    }
    let index = next_index(&existing, &first.name);
    let mut o = node_options(first, index);
    o.cluster_nic = !first.driver.is_kic();
    crate::start::start(home, &o, rep)?;
    refresh_peers(home, &home.nodes(&first.name)?)?;
    Ok(o.name)
}

/// Delete node `name` of `profile` (not its control plane) and take it out of the others'
/// /etc/hosts.
pub fn delete_node(home: &Home, profile: &str, name: &str, timeout: Duration) -> Result<(), ClusterError> {
    match node_index(profile, name) {
        Some(1) => return Err(ClusterError::ControlPlane { name: name.to_string(), profile: profile.to_string() }),
        None => return Err(ClusterError::NotANodeName { name: name.to_string(), profile: profile.to_string() }),
        Some(_) => {}
    }
    let m = home.machine(name)?;
    if !m.exists() || cluster_of(&m.load()?) != profile {
        return Err(ClusterError::NoSuchNode { name: name.to_string(), profile: profile.to_string() });
    }
    // Out of the cluster first, when the control plane runs Kubernetes and answers.
    let state = m.load()?;
    let cp = home.machine(profile)?;
    if cp.exists() && crate::driver::status(&cp) == Status::Running {
        let mut c = connect_existing(home, &cp)?;
        if c.stat(bootstrap::ADMIN_CONF).map_err(|source| ClusterError::Agent { node: profile.to_string(), source })?.exists {
            bootstrap::join::leave(&mut c, profile, &state.kubernetes_version, name)?;
        }
    }
    crate::driver::delete(&m, timeout)?;
    refresh_peers(home, &home.nodes(profile)?)?;
    Ok(())
}

/// Delete every node of `profile` (the others first), then its network. Machines of the
/// profile's names whose state is missing or unreadable are swept ([`crate::driver::sweep`]),
/// and the network named after the profile with them. Whether there was anything.
pub fn delete_all(home: &Home, profile: &str, timeout: Duration) -> Result<bool, ClusterError> {
    let mut names: Vec<String> = home.list()?.into_iter().filter(|n| node_index(profile, n).is_some()).collect();
    if !names.contains(&profile.to_string()) {
        names.push(profile.to_string());
    }
    names.sort_by_key(|n| std::cmp::Reverse(node_index(profile, n)));
    let mut any = false;
    let mut networks: Vec<(Engine, String)> = Vec::new();
    let mut unreadable = false;
    for name in names {
        let m = home.machine(&name)?;
        match m.load() {
            Ok(s) if cluster_of(&s) != profile => continue,
            Ok(s) => {
                if let (Some(engine), Some(net)) = (Engine::of(s.driver), s.network) {
                    networks.push((engine, net));
                }
            }
            Err(e) if m.exists() || name == profile => {
                if m.exists() {
                    tracing::warn!("{e}: sweeping {name}");
                }
                unreadable = true;
            }
            Err(_) => continue,
        }
        any |= crate::driver::delete(&m, timeout)?;
    }
    if unreadable {
        // The states that would name the network are gone: a network of the profile's name, in
        // any engine that answers.
        for engine in [Engine::podman(), Engine::docker()] {
            networks.push((engine, profile.to_string()));
        }
    }
    networks.dedup();
    for (engine, net) in networks {
        match remove_network(&engine, &net) {
            Err(KicError::Spawn { .. }) => {}
            Err(e) if unreadable => tracing::info!("sweeping network {net}: {} skipped ({e})", engine.program),
            other => other?,
        }
    }
    Ok(any)
}
