//! Keeping a cluster's nodes in step with each other through their agents: every node's
//! /etc/hosts lists every node and `control-plane.minikube.internal`, and routes the other nodes'
//! pod ranges through them (each node's bridge CNI takes its own /24 of the pod network).

use agent_api::api::{ExecRequest, HostnameRequest};
use agent_api::client::Client;

use super::ClusterError;
use crate::driver::agent::connect_existing;
use crate::model::{MachineState, Status};
use crate::resources::state::Home;
use crate::topology::{hosts, pod_routes, POD_SUBNET};

/// Give every running node of `nodes` the cluster's /etc/hosts lines and its routes to the other
/// nodes' pod ranges (stale routes into the pod network removed), through its agent.
pub fn refresh_peers(home: &Home, nodes: &[MachineState]) -> Result<(), ClusterError> {
    let entries = hosts(nodes);
    for s in nodes {
        let m = home.machine(&s.name)?;
        if crate::driver::status(&m) != Status::Running {
            continue;
        }
        let mut c = connect_existing(home, &m)?;
        c.set_hostname(&HostnameRequest { name: s.name.clone(), hosts: entries.clone() })
            .map_err(|source| ClusterError::Agent { node: s.name.clone(), source })?;
        sync_routes(&mut c, &s.name, &pod_routes(nodes, &s.name))?;
    }
    Ok(())
}

/// Make the node's routes into the pod network exactly `wanted` (its own range, on its bridge,
/// is the kernel's and stays).
fn sync_routes(c: &mut Client, node: &str, wanted: &[(String, String)]) -> Result<(), ClusterError> {
    let mut run = |argv: &[&str]| -> Result<String, ClusterError> {
        let req = ExecRequest { argv: argv.iter().map(|a| a.to_string()).collect(), timeout_secs: Some(30), ..Default::default() };
        let out = c.exec(&req).map_err(|source| ClusterError::Agent { node: node.to_string(), source })?;
        if out.exit_code != Some(0) {
            return Err(ClusterError::Command { node: node.to_string(), command: argv.join(" "), output: format!("{}{}", out.stdout, out.stderr) });
        }
        Ok(out.stdout)
    };
    let present = run(&["ip", "-4", "route", "show", "root", POD_SUBNET])?;
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
