//! The kic drivers (podman, docker): a kicbase container ([`crate::resources::kic`] for the engine), the
//! trust directory with the node document and the kubelet mounted into it, the agent on a port
//! the engine publishes.

use std::time::{Duration, Instant};

use crate::driver::agent::poll_agent;
use crate::driver::prepare::{absolute, issued_suffix, new_state, prepare, recorded_or_new};
use crate::driver::{DriverError, NodeDriver, Up};
use crate::model::{MachineState, Ports, Status, GUEST_AGENT_PORT, GUEST_APISERVER_PORT, GUEST_SSH_PORT};
use crate::options::StartOptions;
use crate::report::Reporter;
use crate::resources::certs;
use crate::resources::kic::network::{create_network, plan_network, remove_network};
use crate::resources::kic::{self, preflight, ContainerState, ImageSource, Kic, KicConfig};
use crate::resources::node_doc;
use crate::resources::state::{Home, MachineDir};
use crate::topology::{cluster_of, node_index};

/// How long the agent may take to answer through the published port after its ready line.
const KIC_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A kic node.
pub struct KicNode {
    pub m: MachineDir,
    pub kic: Kic,
}

impl NodeDriver for KicNode {
    /// `running` runs; anything else, or no container at all (the next `start` creates it again),
    /// is stopped.
    fn status(&self) -> Status {
        match self.kic.find_state() {
            Ok(Some(ContainerState::Running)) => Status::Running,
            Ok(_) => Status::Stopped,
            Err(e) => {
                tracing::warn!("{e}");
                Status::Stopped
            }
        }
    }

    fn stop(&self, timeout: Duration) -> Result<Option<bool>, DriverError> {
        if self.kic.find_state()? != Some(ContainerState::Running) {
            return Ok(None);
        }
        self.kic.stop_within(timeout)?;
        Ok(Some(true))
    }

    fn delete(&self, _timeout: Duration) -> Result<bool, DriverError> {
        let existed = self.m.dir.exists();
        self.kic.delete()?;
        crate::resources::state::remove_dir(&self.m.dir)?;
        Ok(existed)
    }

    /// systemd and the agent write to the container's tty.
    fn console_tail(&self, lines: usize) -> Result<String, DriverError> {
        Ok(kic::tail(&self.kic.logs()?, lines))
    }

    /// Read from the engine: it chooses them again whenever the container starts.
    fn host_ports(&self, _state: &MachineState) -> Result<Ports, DriverError> {
        Ok(Ports {
            agent: self.kic.host_port(GUEST_AGENT_PORT)?,
            apiserver: self.kic.host_port(GUEST_APISERVER_PORT)?,
            ssh: self.kic.host_port(GUEST_SSH_PORT)?,
        })
    }

    /// State and certificates (the trust directory is mounted into the container); the image (an
    /// archive is loaded once); the container created, or started again, with its ports and
    /// address read back from the engine; the agent's ready line in the container's logs.
    fn up(&self, home: &Home, opts: &StartOptions, rep: &mut Reporter) -> Result<Up, DriverError> {
        let m = &self.m;
        let engine = self.kic.engine.clone();
        let node = &self.kic;

        // A rootless node: the host first, before the engine is asked anything.
        if opts.rootless {
            preflight::check_rootless_host(&preflight::RootlessHost::read())?;
        }
        // machine: state, certificates.
        let t = Instant::now();
        let container = node.find_state()?;
        let running = container == Some(kic::ContainerState::Running);
        let (mut state, existed) = recorded_or_new(m, opts, running, || {
            Ok(MachineState { oci_runtime: opts.oci_runtime.clone().or_else(|| kic::default_oci_runtime(&engine)), ..new_state(opts, opts.driver) })
        })?;
        if container.is_none() && opts.oci_runtime.is_some() {
            // A container made anew may use another OCI runtime.
            state.oci_runtime = opts.oci_runtime.clone();
        }
        // A new container joins its cluster's network at a fixed address (.2 for the first node,
        // .3 for the second...), known before it exists: certificates and the node document name it.
        // The network itself is made only once everything that can fail offline (downloads,
        // checksums, the image) has passed.
        // What the engine can do, checked before anything is made in it (and the privileges the
        // container gets decided from its answers).
        let grant = if container.is_none() {
            let info = preflight::EngineInfo::read(&engine)?;
            let grant = preflight::check(&info, preflight::host_bounding_set(), opts.rootless)?;
            if let ImageSource::Archive(p) = ImageSource::parse(&opts.image)? {
                preflight::check_arch(&info, &opts.image, &kic::architectures(&absolute(&p))?)?;
            }
            Some(grant)
        } else {
            None
        };
        let mut network_to_make = None;
        let mut undo = Undo { kic: node, engine: &engine, container: false, network: None, armed: true };
        if container.is_none() {
            let cluster = cluster_of(&state).to_string();
            let plan = plan_network(&engine, &cluster)?;
            let index = node_index(&cluster, &state.name).unwrap_or(1);
            state.node_ip = plan.subnet.node_ip(index);
            if !plan.exists {
                network_to_make = Some((cluster.clone(), plan.subnet));
            }
            state.network = Some(cluster);
        }
        // The API server's certificate names the node's address, known once the container runs:
        // until then the loopback address stands in (already among its names).
        let provisional = if state.node_ip.is_empty() { "127.0.0.1".to_string() } else { state.node_ip.clone() };
        let mut prep = prepare(home, m, opts, &mut state, &provisional)?;
        // The node document and the kubelet, in the trust directory the container mounts: its boot
        // step applies them before the runtime starts.
        let mut sections = prep.sections(&state);
        let trust = m.trust_dir();
        node_doc::deliver(
            &trust.join(agent_api::document::FILE_NAME),
            &sections.document(),
            Some((&trust.join("blobs"), prep.kubelet.as_ref().map(|k| &k.bin))),
        )
        .map_err(|source| DriverError::Io { path: trust.clone(), source })?;
        m.save(&state)?;
        let detail = if existed {
            "reused".to_string()
        } else {
            format!("created {} ({}, {} CPUs, {} MiB)", m.dir.display(), state.driver, state.cpus, state.memory_mb)
        };
        rep.step("machine", t, !existed || !prep.pc.issued.is_empty(), format!("{detail}{}", issued_suffix(&prep.pc.issued)));

        // image: only a container to create needs one.
        let t = Instant::now();
        if container.is_none() {
            let src = match ImageSource::parse(&opts.image)? {
                ImageSource::Archive(p) => ImageSource::Archive(absolute(&p)),
                r => r,
            };
            let ready = engine.ensure_image(&src)?;
            let detail = match (&src, ready.loaded) {
                (ImageSource::Archive(p), true) => format!("{} loaded from {}", ready.reference, p.display()),
                (ImageSource::Archive(_), false) => format!("{} already in {}", ready.reference, engine.program),
                (ImageSource::Reference(_), _) => ready.reference.clone(),
            };
            state.image = ready.reference;
            m.save(&state)?;
            rep.step("image", t, ready.loaded, detail);
        } else {
            rep.step("image", t, false, format!("{} (the container exists)", state.image));
        }

        // boot: create or start the container; the engine chose ports and address.
        let t = Instant::now();
        let (seen, what) = match &container {
            Some(kic::ContainerState::Running) => (0, "already running".to_string()),
            Some(other) => {
                let seen = node.ready_count()?;
                node.start()?;
                (seen, format!("started again (was {other})"))
            }
            None => {
                let mut cfg = KicConfig::new(engine.clone(), &state.name, &state.image, m.trust_dir());
                cfg.runtime = state.oci_runtime.clone();
                cfg.cpus = Some(state.cpus.to_string());
                cfg.memory = Some(format!("{}m", state.memory_mb));
                cfg.network = state.network.clone();
                cfg.ip = state.network.as_ref().map(|_| state.node_ip.clone());
                cfg.profile = cluster_of(&state).to_string();
                if let Some(g) = &grant {
                    cfg.privileges = g.privileges.clone();
                    cfg.host_cgroups = g.host_cgroups;
                }
                if state.cluster.is_some() {
                    cfg.role = "worker".into();
                }
                if let Some((net, subnet)) = network_to_make.take() {
                    create_network(&engine, &net, subnet)?;
                    undo.network = Some(net);
                }
                undo.container = true;
                let (_, privileges) = Kic::create_with_fallback(&cfg)?;
                let how = match privileges {
                    kic::Privileges::Privileged => "privileged",
                    kic::Privileges::AllCaps => "all capabilities",
                };
                (0, format!("created from {} ({how}, OCI runtime {})", state.image, state.oci_runtime.as_deref().unwrap_or("default")))
            }
        };
        let published = || -> Result<(Ports, String), DriverError> { Ok((self.host_ports(&state)?, node.ip()?)) };
        (state.ports, state.node_ip) = match published() {
            Ok(v) => v,
            Err(e) => {
                // A container whose init exits at once loses its ports: say that, with its logs.
                std::thread::sleep(Duration::from_secs(1));
                node.check_running()?;
                return Err(e);
            }
        };
        if state.node_ip != provisional {
            // A new container's address is known only now: the API steps bring the certificates and
            // the kubelet's node IP up to date (the next boot gets them from the document).
            let again = certs::ensure_profile(&prep.cas, &m.certs_dir(), &m.trust_dir(), &state.node_ip)?;
            tracing::info!("node address {}: issued {:?}", state.node_ip, again.issued);
            prep.pc = again;
            sections = prep.sections(&state);
            node_doc::deliver(&trust.join(agent_api::document::FILE_NAME), &sections.document(), None)
                .map_err(|source| DriverError::Io { path: trust.clone(), source })?;
        }
        m.save(&state)?;
        rep.step(
            "boot",
            t,
            !running,
            format!("{} container {what}, {} at {}, agent on 127.0.0.1:{}", engine.program, state.name, state.node_ip, state.ports.agent),
        );

        // agent: its ready line in the logs, then an answer through the published port.
        let t = Instant::now();
        node.wait_ready_after(seen, opts.agent_timeout)?;
        let alive = || node.find_state().ok().flatten() == Some(kic::ContainerState::Running);
        let (client, detail) = match poll_agent(&state, &prep.pc, KIC_CONNECT_TIMEOUT, alive) {
            Ok(v) => v,
            Err((last_error, _)) => {
                return Err(DriverError::KicAgent {
                    secs: KIC_CONNECT_TIMEOUT.as_secs(),
                    addr: state.agent_addr().to_string(),
                    last_error,
                    name: state.name.clone(),
                    tail: node.logs().map(|l| kic::tail(&l, 20)).unwrap_or_else(|e| e.to_string()),
                })
            }
        };
        // The engine bind-mounts /etc/hostname and /etc/hosts: the agent rewrites such files in
        // place (a rename onto a mount point fails with EBUSY).
        rep.step("agent", t, !running, detail);
        undo.armed = false;
        Ok(Up { state, cas: prep.cas, pc: prep.pc, kubelet: prep.kubelet, kubernetes: prep.kubernetes, sections, client })
    }
}

/// What a failing `up` made in the engine, removed again as `up` returns its error: the
/// container (with its volume) and the cluster's network, each only when this start made it.
struct Undo<'a> {
    kic: &'a Kic,
    engine: &'a kic::Engine,
    container: bool,
    network: Option<String>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.container {
            if let Err(e) = self.kic.delete() {
                tracing::warn!("removing the container of the failed start: {e}");
            }
        }
        if let Some(net) = &self.network {
            if let Err(e) = remove_network(self.engine, net) {
                tracing::warn!("removing the network of the failed start: {e}");
            }
        }
    }
}
