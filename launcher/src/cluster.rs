//! Clusters of several nodes, minikube's way: the profile's first node is the control plane and
//! is named after the profile; the others are `PROFILE-m02`, `PROFILE-m03`... Each node is a
//! machine of its own (state, certificates, ports) whose state names its cluster, so the nodes of
//! a cluster are found by reading the machines, never from a second list to keep in step.
//!
//! kic clusters get their own container network, as minikube's do: the first free /24 from
//! 192.168.49.0 (stepping by 9, as minikube does), gateway .1, node N at .N+1. Every node's
//! /etc/hosts lists every node and `control-plane.minikube.internal`, through the node document
//! at boot and through the agent when a node is added or deleted.

use std::net::Ipv4Addr;

use agent::api::{HostEntry, HostnameRequest};

use crate::kic::{Engine, KicError};
use crate::node_doc::CONTROL_PLANE_NAME;
use crate::state::{Home, MachineState, StateError};

/// The name of node `index` (1 = the control plane) of `profile`.
pub fn node_name(profile: &str, index: u32) -> String {
    if index <= 1 {
        profile.to_string()
    } else {
        format!("{profile}-m{index:02}")
    }
}

/// The index of node `name` in `profile` (None when it is not one of its names).
pub fn node_index(profile: &str, name: &str) -> Option<u32> {
    if name == profile {
        return Some(1);
    }
    let n: u32 = name.strip_prefix(profile)?.strip_prefix("-m")?.parse().ok()?;
    (n >= 2 && node_name(profile, n) == name).then_some(n)
}

/// The cluster a machine belongs to (its own name for a first node).
pub fn cluster_of(state: &MachineState) -> &str {
    state.cluster.as_deref().unwrap_or(&state.name)
}

/// The nodes of `profile` with their states, control plane first.
pub fn nodes(home: &Home, profile: &str) -> Result<Vec<MachineState>, StateError> {
    let mut out = Vec::new();
    for name in home.list()? {
        if node_index(profile, &name).is_none() {
            continue;
        }
        let s = home.machine(&name)?.load()?;
        if cluster_of(&s) == profile {
            out.push(s);
        }
    }
    out.sort_by_key(|s| node_index(profile, &s.name));
    Ok(out)
}

/// The lowest index after the existing nodes'.
pub fn next_index(nodes: &[MachineState], profile: &str) -> u32 {
    nodes.iter().filter_map(|s| node_index(profile, &s.name)).max().unwrap_or(0) + 1
}

/// /etc/hosts lines for a cluster: the control plane's name, then every node.
pub fn hosts(nodes: &[MachineState]) -> Vec<HostEntry> {
    let mut v = Vec::new();
    if let Some(cp) = nodes.first().filter(|s| !s.node_ip.is_empty()) {
        v.push(HostEntry { ip: cp.node_ip.clone(), names: vec![CONTROL_PLANE_NAME.to_string()] });
    }
    for s in nodes.iter().filter(|s| !s.node_ip.is_empty() && s.node_ip != "127.0.0.1") {
        v.push(HostEntry { ip: s.node_ip.clone(), names: vec![s.name.clone()] });
    }
    v
}

/// Routes to the other nodes' pod ranges: (range, the node's cluster address), for every node of
/// `nodes` but `of`. Each node's bridge CNI takes its own /24 of the pod network; the others'
/// are reached through their nodes, on the cluster network.
pub fn pod_routes(nodes: &[MachineState], of: &str) -> Vec<(String, String)> {
    nodes
        .iter()
        .filter(|s| s.name != of && !s.node_ip.is_empty())
        .filter_map(|s| Some((crate::bootstrap::pod_range(node_index(cluster_of(s), &s.name)?), s.node_ip.clone())))
        .collect()
}

/// Give every running node of `nodes` the cluster's /etc/hosts lines and its routes to the other
/// nodes' pod ranges (stale routes into the pod network removed), through its agent.
pub fn refresh_peers(home: &Home, nodes: &[MachineState]) -> anyhow::Result<()> {
    let entries = hosts(nodes);
    for s in nodes {
        let m = home.machine(&s.name)?;
        if crate::driver::status(&m) != crate::machine::Status::Running {
            continue;
        }
        let mut c = crate::provision::connect_existing(home, &m)?;
        c.set_hostname(&HostnameRequest { name: s.name.clone(), hosts: entries.clone() })?;
        sync_routes(&mut c, &s.name, &pod_routes(nodes, &s.name))?;
    }
    Ok(())
}

/// Make the node's routes into the pod network exactly `wanted` (its own range, on its bridge,
/// is the kernel's and stays).
fn sync_routes(c: &mut agent::client::Client, node: &str, wanted: &[(String, String)]) -> anyhow::Result<()> {
    let mut run = |argv: &[&str]| -> anyhow::Result<String> {
        let req = agent::api::ExecRequest { argv: argv.iter().map(|a| a.to_string()).collect(), timeout_secs: Some(30), ..Default::default() };
        let out = c.exec(&req)?;
        if out.exit_code != Some(0) {
            anyhow::bail!("{node}: `{}` failed: {}{}", argv.join(" "), out.stdout, out.stderr);
        }
        Ok(out.stdout)
    };
    let present = run(&["ip", "-4", "route", "show", "root", crate::bootstrap::POD_SUBNET])?;
    for line in present.lines().filter(|l| l.contains(" via ")) {
        let dest = line.split_whitespace().next().unwrap_or_default();
        if !wanted.iter().any(|(range, via)| range == dest && line.contains(&format!(" via {via} "))) {
            run(&["ip", "route", "del", dest])?;
        }
    }
    for (range, via) in wanted {
        run(&["ip", "route", "replace", range, "via", via])?;
    }
    Ok(())
}

/// The multicast group qemu clusters' shared NICs join (each cluster on its own port).
pub const MCAST_GROUP: &str = "230.0.0.1";
/// The qemu clusters' segment (isolated per multicast port, so every cluster may use it).
pub const QEMU_SUBNET: Subnet = Subnet([192, 168, 49]);

/// The shared NIC of qemu node `index` of a cluster whose first node is `first` (its port is
/// chosen for the first node, outside the ports other clusters recorded).
pub fn qemu_nic(home: &Home, cluster: &str, index: u32) -> Result<crate::state::ClusterNic, StateError> {
    let mut taken = Vec::new();
    let mut port = None;
    for name in home.list()? {
        let Ok(s) = home.machine(&name).and_then(|m| m.load()) else { continue };
        if let Some(n) = &s.cluster_nic {
            if cluster_of(&s) == cluster {
                port = Some(n.mcast_port);
            } else {
                taken.push(n.mcast_port);
            }
        }
    }
    let port = port.unwrap_or_else(|| (23000u16..24000).find(|p| !taken.contains(p)).unwrap_or(23000));
    Ok(crate::state::ClusterNic {
        mcast_port: port,
        mac: format!("52:54:00:4d:{:02x}:{:02x}", port % 256, index),
        address: format!("{}/24", QEMU_SUBNET.node_ip(index)),
    })
}

/// A cluster network's /24: its first three octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet(pub [u8; 3]);

impl Subnet {
    pub fn cidr(self) -> String {
        format!("{}.0/24", self.prefix())
    }
    pub fn gateway(self) -> String {
        format!("{}.1", self.prefix())
    }
    /// The address of node `index` (1 → .2).
    pub fn node_ip(self, index: u32) -> String {
        format!("{}.{}", self.prefix(), index + 1)
    }
    fn prefix(self) -> String {
        let [a, b, c] = self.0;
        format!("{a}.{b}.{c}")
    }
    fn parse(cidr: &str) -> Option<Subnet> {
        let ip: Ipv4Addr = cidr.split('/').next()?.parse().ok()?;
        let [a, b, c, _] = ip.octets();
        Some(Subnet([a, b, c]))
    }
}

/// The /24s of [`free_subnet`]'s range that the host already routes (another engine's bridge, a
/// VPN...), from `/proc/net/route`'s text: a network made there would clash (podman refuses it).
pub fn host_routed(proc_net_route: &str) -> Vec<Subnet> {
    let routes: Vec<(u32, u32)> = proc_net_route
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Destination and Mask are hexadecimal in the kernel's (little-endian) byte order.
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            (mask != 0).then_some((dest, mask))
        })
        .collect();
    (49u16..=254)
        .step_by(9)
        .map(|c| Subnet([192, 168, c as u8]))
        .filter(|s| {
            let net = u32::from_be_bytes([s.0[0], s.0[1], s.0[2], 0]);
            // The route's network meets the /24: one contains the other.
            routes.iter().any(|&(dest, mask)| net & mask == dest & mask || dest & 0xffff_ff00 == net)
        })
        .collect()
}

/// The first free /24 from 192.168.49.0, stepping by 9 (minikube's choice), outside `taken`.
pub fn free_subnet(taken: &[Subnet]) -> Option<Subnet> {
    (49u16..=254).step_by(9).map(|c| Subnet([192, 168, c as u8])).find(|s| !taken.contains(s))
}

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
        Err(e) if !crate::kic::is_missing(&e) => Err(e),
        _ => Ok(()),
    }
}

/// The options of node `index` of the cluster whose first node `first` was started with.
pub fn node_options(first: &crate::provision::StartOptions, index: u32) -> crate::provision::StartOptions {
    let mut o = first.clone();
    o.name = node_name(&first.name, index);
    o.cluster = (index > 1).then(|| first.name.clone());
    o
}

/// Start a cluster of `count` nodes (and any node it has beyond them), each reporting its own
/// steps, then give every node the whole cluster's /etc/hosts lines.
pub fn start(home: &Home, first: &crate::provision::StartOptions, count: u32, rep: &mut crate::provision::Reporter) -> anyhow::Result<Vec<MachineState>> {
    if count == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    let multi = count > 1 || nodes(home, &first.name)?.len() > 1;
    let mut first = first.clone();
    // VMs of a cluster share a second NIC; the first node gets it only when there are others.
    first.cluster_nic = multi && !first.driver.is_kic();
    let first = &first;
    crate::provision::start(home, first, rep)?;
    let mut indexes: Vec<u32> = (2..=count).collect();
    indexes.extend(nodes(home, &first.name)?.iter().filter_map(|s| node_index(&first.name, &s.name)).filter(|i| *i > count));
    for i in indexes {
        crate::provision::start(home, &node_options(first, i), rep)?;
    }
    let all = nodes(home, &first.name)?;
    if all.len() > 1 {
        refresh_peers(home, &all)?;
    }
    Ok(all)
}

/// Add the next node to the cluster `first` started; returns its name.
pub fn add(home: &Home, first: &crate::provision::StartOptions, rep: &mut crate::provision::Reporter) -> anyhow::Result<String> {
    let existing = nodes(home, &first.name)?;
    if !first.driver.is_kic() && existing.first().is_some_and(|s| s.cluster_nic.is_none()) {
        anyhow::bail!(
            "{} has no cluster network: VMs get one when the profile is started with several nodes (`minikube-node stop -p {}`, then `start -p {} --nodes 2`)",
            first.name, first.name, first.name
        );
    }
    let index = next_index(&existing, &first.name);
    let mut o = node_options(first, index);
    o.cluster_nic = !first.driver.is_kic();
    crate::provision::start(home, &o, rep)?;
    refresh_peers(home, &nodes(home, &first.name)?)?;
    Ok(o.name)
}

/// Delete node `name` of `profile` (not its control plane) and take it out of the others'
/// /etc/hosts.
pub fn delete_node(home: &Home, profile: &str, name: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
    match node_index(profile, name) {
        Some(1) => anyhow::bail!("{name} is the control plane of {profile}: delete the cluster with `minikube-node delete -p {profile}`"),
        None => anyhow::bail!("{name} is not a node name of {profile} ({profile}-m02, {profile}-m03...)"),
        Some(_) => {}
    }
    let m = home.machine(name)?;
    if !m.exists() || cluster_of(&m.load()?) != profile {
        anyhow::bail!("{profile} has no node {name} (`minikube-node node list -p {profile}`)");
    }
    // Out of the cluster first, when the control plane runs Kubernetes and answers.
    let state = m.load()?;
    let cp = home.machine(profile)?;
    if cp.exists() && crate::driver::status(&cp) == crate::machine::Status::Running {
        let mut c = crate::provision::connect_existing(home, &cp)?;
        if c.stat(crate::bootstrap::ADMIN_CONF)?.exists {
            crate::bootstrap::join::leave(&mut c, profile, &state.kubernetes_version, name)?;
        }
    }
    crate::driver::delete(&m, timeout)?;
    refresh_peers(home, &nodes(home, profile)?)?;
    Ok(())
}

/// Delete every node of `profile` (the others first), then its network. Whether there was
/// anything.
pub fn delete_all(home: &Home, profile: &str, timeout: std::time::Duration) -> anyhow::Result<bool> {
    let all = nodes(home, profile)?;
    let mut any = false;
    for s in all.iter().rev() {
        any |= crate::driver::delete(&home.machine(&s.name)?, timeout)?;
    }
    if all.is_empty() {
        any |= crate::driver::delete(&home.machine(profile)?, timeout)?;
    }
    for s in all.iter().filter(|s| s.network.is_some()) {
        if let (Some(engine), Some(net)) = (s.driver.engine(), &s.network) {
            remove_network(&engine, net)?;
        }
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_indexes() {
        assert_eq!(node_name("mk", 1), "mk");
        assert_eq!(node_name("mk", 2), "mk-m02");
        assert_eq!(node_index("mk", "mk-m03"), Some(3));
        assert_eq!(node_index("mk", "mk"), Some(1));
        assert_eq!(node_index("mk", "mk-m3"), None);
        assert_eq!(node_index("mk", "other-m02"), None);
    }

    #[test]
    fn subnets_the_host_routes_are_taken() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     br-1\t0031A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     tun0\t0000A8C0\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let all = host_routed(route);
        assert!(all.contains(&Subnet([192, 168, 49])) && all.len() == 23, "a /16 VPN route takes every /24 of 192.168: {all:?}");
        let one = host_routed(&route.lines().take(3).collect::<Vec<_>>().join("\n"));
        assert_eq!(one, [Subnet([192, 168, 49])], "the default route takes nothing");
        assert_eq!(free_subnet(&one), Some(Subnet([192, 168, 58])));
    }

    #[test]
    fn subnets_step_by_nine_from_49() {
        assert_eq!(free_subnet(&[]), Some(Subnet([192, 168, 49])));
        assert_eq!(free_subnet(&[Subnet([192, 168, 49])]), Some(Subnet([192, 168, 58])));
        let s = Subnet([192, 168, 49]);
        assert_eq!((s.cidr().as_str(), s.gateway().as_str(), s.node_ip(1).as_str(), s.node_ip(3).as_str()), ("192.168.49.0/24", "192.168.49.1", "192.168.49.2", "192.168.49.4"));
        assert_eq!(Subnet::parse("10.88.0.0/16"), Some(Subnet([10, 88, 0])));
    }
}
