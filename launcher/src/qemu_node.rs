//! The qemu driver: a VM booted from the ISO ([`crate::machine`] for its lifecycle, [`crate::qemu`]
//! for the command line), its data disk carrying the trust and the node document, the agent on a
//! forwarded host port.

use std::time::{Duration, Instant};

use crate::driver::{Driver, DriverError, NodeDriver};
use crate::machine::{self, Status};
use crate::node_doc;
use crate::provision::{issued_suffix, prepare, recorded_or_new, new_state, wait_for_agent, Reporter, StartError, StartOptions, Up};
use crate::state::{Home, MachineDir, MachineState};

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

    fn host_ports(&self, state: &MachineState) -> Result<crate::state::Ports, DriverError> {
        Ok(state.ports)
    }

    /// State, certificates and data disk; boot from the ISO; wait for the agent on the
    /// forwarded port.
    fn up(&self, home: &Home, opts: &StartOptions, rep: &mut Reporter) -> Result<Up, StartError> {
        let m = &self.m;
        // machine: state, certificates, data disk.
        let t = Instant::now();
        let running = machine::status(m) == Status::Running;
        let iso = machine::absolute(&opts.iso);
        if !running && !iso.is_file() {
            return Err(machine::MachineError::NoIso(iso).into());
        }
        // Choose ports and start qemu under the home's port lock (released once qemu has bound
        // them), avoiding the ports other profiles recorded: two starts cannot race for one port.
        let ports_lock = if running { None } else { Some(home.lock_ports()?) };
        let taken = home.recorded_ports(&opts.name);
        let (mut state, existed) = recorded_or_new(m, opts, running, || {
            Ok(MachineState {
                iso: iso.clone(),
                ports: machine::free_ports(&taken)?,
                node_ip: crate::state::GUEST_IP.into(),
                ..new_state(opts, Driver::Qemu)
            })
        })?;
        // The ISO path may change between starts; the machine runs the ISO's architecture.
        if !running {
            state.arch = machine::iso_arch(&iso)?;
        }
        state.iso = iso;
        if !running && existed && machine::refresh_ports(&mut state.ports, &taken)? {
            tracing::info!("recorded host ports were taken: now {:?}", state.ports);
        }
        // A VM of a multi-node cluster: a second NIC on the cluster's segment, its address the
        // node's (certificates, kubelet, /etc/hosts name it). It is added when qemu starts.
        if opts.cluster_nic && state.cluster_nic.is_none() && !running {
            let cluster = crate::cluster::cluster_of(&state).to_string();
            let index = crate::cluster::node_index(&cluster, &state.name).unwrap_or(1);
            state.cluster_nic = Some(crate::cluster::qemu_nic(home, &cluster, index)?);
        }
        if let Some(nic) = &state.cluster_nic {
            state.node_ip = nic.address.split('/').next().unwrap_or_default().to_string();
        }
        let node_ip = state.node_ip.clone();
        let prep = prepare(home, m, opts, &mut state, &node_ip)?;
        // The node document, for fw_cfg at this boot (a running node gets it at its next boot) and,
        // with the kubelet, in a new data disk's userdata.
        let doc = prep.document(&state);
        let doc_file = node_doc::machine_file(m);
        pki::atomic::write_atomic(&doc_file, &node_doc::to_bytes(&doc), 0o600).map_err(|source| StartError::Io { path: doc_file.clone(), source })?;
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
            let (pid, accel) = machine::boot(m, &state)?;
            drop(ports_lock);
            rep.step("boot", t, true, format!("qemu pid {pid}, {} accel, agent on 127.0.0.1:{}", accel.name(), state.ports.agent));
        }

        // agent
        let t = Instant::now();
        let (client, detail) = wait_for_agent(m, &state, &prep.pc, opts.agent_timeout)?;
        rep.step("agent", t, !running, detail);
        Ok(Up { state, cas: prep.cas, pc: prep.pc, kubelet: prep.kubelet, kubernetes: prep.kubernetes, doc, client })
    }
}
