//! The qemu driver: a VM booted from the ISO ([`machine`] for its lifecycle,
//! [`crate::resources::qemu`] for the command line), its data disk carrying the trust and the node document, the agent on a
//! forwarded host port.

use std::time::{Duration, Instant};

use agent_api::client::Client;

pub mod machine;

use crate::driver::agent::poll_agent;
use crate::driver::prepare::{absolute, issued_suffix, new_state, prepare, recorded_or_new};
use crate::driver::{DriverError, NodeDriver, Up};
use crate::model::{ClusterNic, Driver, MachineState, Status};
use crate::options::StartOptions;
use crate::report::Reporter;
use crate::resources::certs::ProfileCerts;
use crate::resources::node_doc;
use crate::resources::state::{Home, MachineDir, StateError};
use crate::topology::{cluster_of, QEMU_SUBNET};

/// A qemu node.
pub struct QemuNode {
    pub m: MachineDir,
}

impl NodeDriver for QemuNode {
    fn status(&self) -> Status {
        machine::status(&self.m)
    }

    fn stop(&self, timeout: Duration) -> Result<Option<bool>, DriverError> {
        Ok(machine::stop(&self.m, timeout)?)
    }

    fn delete(&self, timeout: Duration) -> Result<bool, DriverError> {
        Ok(machine::delete(&self.m, timeout)?)
    }

    fn console_tail(&self, lines: usize) -> Result<String, DriverError> {
        Ok(machine::console_tail(&self.m, lines))
    }

    fn host_ports(&self, state: &MachineState) -> Result<crate::model::Ports, DriverError> {
        Ok(state.ports)
    }

    /// State, certificates and data disk; boot from the ISO; wait for the agent on the
    /// forwarded port.
    fn up(&self, home: &Home, opts: &StartOptions, rep: &mut Reporter) -> Result<Up, DriverError> {
        let m = &self.m;
        // machine: state, certificates, data disk.
        let t = Instant::now();
        let running = machine::status(m) == Status::Running;
        let iso = absolute(&opts.iso);
        if !running && !iso.is_file() {
            return Err(machine::MachineError::NoIso(iso).into());
        }
        // Choose ports and start qemu under the home's port lock (released once qemu has bound
        // them), avoiding the ports other profiles recorded: two starts cannot race for one port.
        let ports_lock = if running { None } else { Some(home.lock_ports()?) };
        let taken = home.recorded_ports(&opts.name);
        let (mut state, existed) = recorded_or_new(m, opts, running, || {
            Ok(MachineState { iso: iso.clone(), ports: machine::free_ports(&taken)?, node_ip: crate::model::GUEST_IP.into(), ..new_state(opts, Driver::Qemu) })
        })?;
        // The ISO path may change between starts; the machine runs the ISO's architecture.
        if !running {
            let v = machine::iso_version(&iso)?;
            state.arch = v.arch;
            state.static_uplink = v.boot.is_some();
        }
        state.iso = iso;
        if !running && existed && machine::refresh_ports(&mut state.ports, &taken)? {
            tracing::info!("recorded host ports were taken: now {:?}", state.ports);
        }
        // A VM of a multi-node cluster: a second NIC on the cluster's segment, its address the
        // node's (certificates, kubelet, /etc/hosts name it). It is added when qemu starts.
        if opts.cluster_nic && state.cluster_nic.is_none() && !running {
            let cluster = cluster_of(&state).to_string();
            let index = crate::topology::node_index(&cluster, &state.name).unwrap_or(1);
            state.cluster_nic = Some(qemu_nic(home, &cluster, index)?);
        }
        if let Some(nic) = &state.cluster_nic {
            state.node_ip = nic.address.split('/').next().unwrap_or_default().to_string();
        }
        let node_ip = state.node_ip.clone();
        let prep = prepare(home, m, opts, &mut state, &node_ip)?;
        // The node document, for fw_cfg at this boot (a running node gets it at its next boot) and,
        // with the kubelet, in a new data disk's userdata.
        let sections = prep.sections(&state);
        let doc = sections.document();
        let doc_file = node_doc::machine_file(m);
        pki::atomic::write_atomic(&doc_file, &node_doc::to_bytes(&doc), 0o600).map_err(|source| DriverError::Io { path: doc_file.clone(), source })?;
        let disk_new = machine::ensure_disk(m, &state, &prep.pc, &doc, prep.kubelet.as_ref().map(|k| &k.bin))?;
        m.save(&state)?;
        let detail = match (existed, disk_new) {
            (false, _) => format!("created {} ({} CPUs, {} MiB, disk {} MiB)", m.dir.display(), state.cpus, state.memory_mb, state.disk_mb),
            (true, true) => "reused; data disk re-created".to_string(),
            (true, false) => "reused".to_string(),
        };
        let changed = !existed || disk_new || !prep.pc.issued.is_empty();
        rep.step("machine", t, changed, format!("{detail}{}", issued_suffix(&prep.pc.issued)));

        // boot
        let t = Instant::now();
        if running {
            rep.step("boot", t, false, "already running");
        } else {
            let (pid, accel) = machine::boot(m, &state, &home.kernels())?;
            drop(ports_lock);
            rep.step("boot", t, true, format!("qemu pid {pid}, {} accel, agent on 127.0.0.1:{}", accel.name(), state.ports.agent));
        }

        // agent
        let t = Instant::now();
        let (client, detail) = wait_for_agent(m, &state, &prep.pc, opts.agent_timeout)?;
        rep.step("agent", t, !running, detail);
        Ok(Up { state, cas: prep.cas, pc: prep.pc, kubelet: prep.kubelet, kubernetes: prep.kubernetes, sections, client })
    }
}

/// Poll the agent until it answers `info`, qemu dies, or `timeout` passes.
fn wait_for_agent(m: &MachineDir, state: &MachineState, certs: &ProfileCerts, timeout: Duration) -> Result<(Client, String), DriverError> {
    poll_agent(state, certs, timeout, || machine::running_pid(m).is_some()).map_err(|(last_error, alive)| DriverError::AgentTimeout {
        secs: timeout.as_secs(),
        addr: state.agent_addr().to_string(),
        last_error,
        qemu: if alive { "still running" } else { "exited" },
        log: m.console_log().display().to_string(),
        tail: machine::console_tail(m, 20),
    })
}

/// The shared NIC of qemu node `index` of a cluster whose first node is `first` (its port is
/// chosen for the first node, outside the ports other clusters recorded).
pub fn qemu_nic(home: &Home, cluster: &str, index: u32) -> Result<ClusterNic, StateError> {
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
    Ok(ClusterNic { mcast_port: port, mac: format!("52:54:00:4d:{:02x}:{:02x}", port % 256, index), address: format!("{}/24", QEMU_SUBNET.node_ip(index)) })
}
/// The console's `minikube-agent: ready` line, if the current boot printed one.
pub fn agent_ready_line(m: &MachineDir) -> Option<String> {
    crate::resources::qemu::find_line(&m.console_log(), agent_api::READY_MARKER)
}
