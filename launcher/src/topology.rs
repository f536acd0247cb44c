//! Where nodes sit in a cluster, as names and numbers, minikube's way: the profile's first node
//! is the control plane and is named after the profile, the others are `PROFILE-m02`,
//! `PROFILE-m03`...; node N takes the /24 `10.244.(N-1).0` of the pod network; kic clusters get a
//! /24 of their own from 192.168.49.0 (stepping by 9, as minikube does), gateway .1, node N at
//! .N+1. No I/O here: the layers above read the machines and the engines.

use std::net::Ipv4Addr;

use agent_api::api::HostEntry;

use crate::model::{MachineState, CONTROL_PLANE_NAME};

/// The cluster's pod network and service range (kubeadm's `podSubnet`, `serviceSubnet`).
pub const POD_SUBNET: &str = "10.244.0.0/16";
pub const SERVICE_SUBNET: &str = "10.96.0.0/12";

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
        .filter_map(|s| Some((pod_range(node_index(cluster_of(s), &s.name)?), s.node_ip.clone())))
        .collect()
}

/// The pod range of a cluster's node `index` (1 for the first): a /24 of [`POD_SUBNET`] each, so
/// that pods of different nodes never get the same address.
pub fn pod_range(index: u32) -> String {
    format!("10.244.{}.0/24", index.saturating_sub(1).min(255))
}

/// The multicast group qemu clusters' shared NICs join (each cluster on its own port).
pub const MCAST_GROUP: &str = "230.0.0.1";
/// The qemu clusters' segment (isolated per multicast port, so every cluster may use it).
pub const QEMU_SUBNET: Subnet = Subnet([192, 168, 49]);

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
    pub fn parse(cidr: &str) -> Option<Subnet> {
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
        assert_eq!(
            (s.cidr().as_str(), s.gateway().as_str(), s.node_ip(1).as_str(), s.node_ip(3).as_str()),
            ("192.168.49.0/24", "192.168.49.1", "192.168.49.2", "192.168.49.4")
        );
        assert_eq!(Subnet::parse("10.88.0.0/16"), Some(Subnet([10, 88, 0])));
    }
}
