//! `start`: create or reuse the machine, boot it, wait for the agent, then provision through the
//! agent — hostname, certificates, container runtime, kubelet — and write the kubeconfig. Only
//! the first part depends on the driver: qemu (state, certificates, data disk; boot from the
//! ISO) or kic (state, certificates; image; container), each ending with a connected agent. Every
//! step reports once with its duration ([`Reporter`]); a second `start` on a running machine
//! repeats the idempotent calls and the agent answers `changed: false`.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent::api::Runtime;
use agent::client::{Client, ClientError};
use agent::document::{NodeDocument, Outcome};

use crate::certs;
use crate::driver::{self, Driver};
use crate::kic::{self, ImageSource, Kic, KicConfig};
use crate::binaries::Downloader;
use crate::kubelet::{self, KubeletSource};
use crate::machine::{self, Status};
use crate::node_doc::{self, Binary, Sections};
use crate::qemu;
use crate::state::{Home, MachineDir, MachineState, Ports};

/// `--image` default: the archive `cargo xtask kicbase` writes.
pub const DEFAULT_KIC_IMAGE: &str = "out/kicbase.tar";

/// What `start` was asked for.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub name: String,
    pub driver: Driver,
    /// The ISO (qemu).
    pub iso: PathBuf,
    /// An image archive or reference (kic), see [`ImageSource::parse`].
    pub image: String,
    /// The container engine's OCI runtime (kic); None: [`kic::default_oci_runtime`].
    pub oci_runtime: Option<String>,
    pub cpus: u32,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub runtime: Runtime,
    pub kubernetes_version: String,
    /// A kubelet binary to install instead of the release's.
    pub kubelet: Option<PathBuf>,
    /// minikube's cache directory (`linux/ARCH/VERSION/NAME`); None: the home's `cache/`.
    pub cache_dir: Option<PathBuf>,
    /// Replaces the upstream release host (minikube's `--binary-mirror`).
    pub binary_mirror: Option<String>,
    /// Install the kubelet test double (no Kubernetes is bootstrapped then).
    pub kubelet_test_double: bool,
    /// A node with its container runtime only: no kubelet, no kubeadm.
    pub no_kubernetes: bool,
    /// How long `kubeadm init`, and each wait for the control plane, may take.
    pub kubernetes_timeout: Duration,
    /// How long to wait for the agent after qemu (or the container) started.
    pub agent_timeout: Duration,
}

impl StartOptions {
    /// A qemu node booted from `iso`.
    pub fn new(name: &str, iso: PathBuf) -> StartOptions {
        StartOptions {
            name: name.to_string(),
            driver: Driver::Qemu,
            iso,
            image: DEFAULT_KIC_IMAGE.to_string(),
            oci_runtime: None,
            cpus: 2,
            memory_mb: 4096,
            disk_mb: 20_000,
            runtime: Runtime::Containerd,
            kubernetes_version: kubelet::DEFAULT_VERSION.to_string(),
            kubelet: None,
            cache_dir: None,
            binary_mirror: None,
            kubelet_test_double: false,
            no_kubernetes: false,
            kubernetes_timeout: Duration::from_secs(600),
            agent_timeout: Duration::from_secs(600),
        }
    }

    /// A container node (podman or docker) from `image` (archive path or reference).
    pub fn kic(name: &str, driver: Driver, image: &str) -> StartOptions {
        StartOptions { driver, image: image.to_string(), agent_timeout: Duration::from_secs(300), ..StartOptions::new(name, PathBuf::from("out/minikube.iso")) }
    }
}

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    /// One JSON object per line.
    Json,
}

/// One finished step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepEvent {
    pub step: &'static str,
    pub seconds: f64,
    pub changed: bool,
    pub detail: String,
}

/// Prints step events and keeps them for the caller.
pub struct Reporter {
    pub output: Output,
    pub events: Vec<StepEvent>,
    out: Box<dyn Write>,
}

impl Reporter {
    pub fn new(output: Output, out: Box<dyn Write>) -> Reporter {
        Reporter { output, events: Vec::new(), out }
    }

    pub fn step(&mut self, step: &'static str, started: Instant, changed: bool, detail: impl Into<String>) {
        let e = StepEvent { step, seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0, changed, detail: detail.into() };
        let line = match self.output {
            Output::Text => format!("{:<10} {:>8.2}s  {}{}", e.step, e.seconds, if e.changed { "" } else { "(unchanged) " }, e.detail),
            Output::Json => serde_json::json!({ "event": "step", "step": e.step, "seconds": e.seconds, "changed": e.changed, "detail": e.detail }).to_string(),
        };
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
        self.events.push(e);
    }

    pub fn done(&mut self, total: Duration, kubeconfig: &std::path::Path) {
        let line = match self.output {
            Output::Text => format!("done       {:>8.2}s  kubeconfig {}", total.as_secs_f64(), kubeconfig.display()),
            Output::Json => {
                serde_json::json!({ "event": "done", "seconds": (total.as_secs_f64() * 1000.0).round() / 1000.0, "kubeconfig": kubeconfig }).to_string()
            }
        };
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Machine(#[from] machine::MachineError),
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    #[error("certificates: {0}")]
    Certs(#[from] certs::CertError),
    #[error("{0}")]
    Kubelet(#[from] kubelet::KubeletError),
    #[error("{0}")]
    Binaries(#[from] crate::binaries::BinaryError),
    #[error("{0}")]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    #[error("{0}")]
    Ssh(#[from] crate::ssh::SshError),
    #[error("step {step}: {source}")]
    Agent { step: &'static str, source: ClientError },
    #[error("the agent did not answer within {secs}s at {addr} ({last_error}); qemu {qemu}; last console lines of {log}:\n{tail}")]
    AgentTimeout { secs: u64, addr: String, last_error: String, qemu: &'static str, log: String, tail: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("runtime {0} is not supported by `start` (docker or containerd)")]
    Runtime(&'static str),
    #[error("{0}")]
    Driver(#[from] driver::DriverError),
    #[error("{0}")]
    Kic(#[from] kic::KicError),
    #[error("container {name}: the agent logged its ready line but did not answer within {secs}s at {addr} ({last_error}); last container log lines:\n{tail}")]
    KicAgent { secs: u64, addr: String, last_error: String, name: String, tail: String },
}

/// Errors worth another attempt: the connection broke or the agent was busy.
pub fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Io { .. } | ClientError::Http(_) => true,
        ClientError::Status { status, .. } => *status == 503 || *status == 429,
        _ => false,
    }
}

/// Run `f` up to `attempts` times, sleeping 0.5 s, 1 s, 2 s... between transient failures.
pub fn with_retry<T>(step: &'static str, attempts: u32, mut f: impl FnMut() -> Result<T, ClientError>) -> Result<T, StartError> {
    let mut delay = Duration::from_millis(500);
    let mut n = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if n < attempts && transient(&e) => {
                tracing::warn!("step {step}: {e}; retrying in {delay:?} (attempt {n} of {attempts})");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(8));
                n += 1;
            }
            Err(source) => return Err(StartError::Agent { step, source }),
        }
    }
}

/// Connect to the machine's agent (one attempt).
pub fn connect(state: &MachineState, certs: &certs::ProfileCerts) -> Result<Client, ClientError> {
    Client::connect(state.agent_addr(), "127.0.0.1", &certs.agent_ca_pem, &certs.launcher)
}

/// Connect using the certificates on disk (for exec, logs...). A kic node's agent port is read
/// from the engine (it is chosen again whenever the container starts).
pub fn connect_existing(home: &Home, m: &MachineDir) -> anyhow::Result<Client> {
    let mut state = m.load()?;
    if let Some(node) = driver::container(m, state.driver) {
        state.ports.agent = node.host_port(agent::DEFAULT_PORT)?;
    }
    let ca = std::fs::read_to_string(home.shared_certs().join("agent-ca.crt"))?;
    let id = pki::Identity::load(&m.certs_dir().join("launcher.crt"), &m.certs_dir().join("launcher.key"))?;
    Ok(Client::connect(state.agent_addr(), "127.0.0.1", &ca, &id)?)
}

/// How long one attempt to reach a booting agent may wait.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Poll the agent until it answers `info`, `alive()` turns false, or `timeout` passes. The
/// error is the last connection error and whether the node was still alive.
pub fn poll_agent(state: &MachineState, certs: &certs::ProfileCerts, timeout: Duration, alive: impl Fn() -> bool) -> Result<(Client, String), (String, bool)> {
    let deadline = Instant::now() + timeout;
    loop {
        // A short limit per attempt: a connection made before the guest's network is up can sit
        // in SYN retransmission for many seconds after the agent listens; a new one will not.
        let probe = Client::connect_within(state.agent_addr(), "127.0.0.1", &certs.agent_ca_pem, &certs.launcher, PROBE_TIMEOUT);
        let last_error = match probe.and_then(|mut c| c.info().map(|i| (c, i))) {
            Ok((c, info)) => {
                let mut detail = format!("agent {} on {} ({})", info.agent_version, info.kernel, info.os.unwrap_or_default());
                if let Some(b) = &info.boot_apply {
                    if matches!(b.outcome, Outcome::Refused | Outcome::Failed) {
                        tracing::warn!("the node document was {} at boot ({}): {}; the API steps converge the node", b.outcome.name(), b.source, b.message);
                    }
                    detail.push_str(&format!("; node document {} at boot", b.outcome.name()));
                    if !matches!(b.outcome, Outcome::Applied) {
                        detail.push_str(&format!(": {}", b.message));
                    }
                }
                return Ok((c, detail));
            }
            Err(e) => e.to_string(),
        };
        let alive = alive();
        if !alive || Instant::now() >= deadline {
            return Err((last_error, alive));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Poll the agent until it answers `info`, qemu dies, or `timeout` passes.
pub fn wait_for_agent(m: &MachineDir, state: &MachineState, certs: &certs::ProfileCerts, timeout: Duration) -> Result<(Client, String), StartError> {
    poll_agent(state, certs, timeout, || machine::running_pid(m).is_some()).map_err(|(last_error, alive)| StartError::AgentTimeout {
        secs: timeout.as_secs(),
        addr: state.agent_addr().to_string(),
        last_error,
        qemu: if alive { "still running" } else { "exited" },
        log: m.console_log().display().to_string(),
        tail: machine::console_tail(m, 20),
    })
}

/// The whole `start` flow: the driver's part (machine, boot, where the agent answers), then
/// the same provisioning through the agent for every driver.
pub fn start(home: &Home, opts: &StartOptions, rep: &mut Reporter) -> Result<MachineState, StartError> {
    if !matches!(opts.runtime, Runtime::Docker | Runtime::Containerd) {
        return Err(StartError::Runtime(opts.runtime.name()));
    }
    let total = Instant::now();
    let m = home.machine(&opts.name)?;
    // One `start` per profile at a time; the lock dies with the process.
    let _lock = m.lock(home)?;
    if m.exists() {
        driver::check_same(&opts.name, m.load()?.driver, opts.driver)?;
    }
    let up = match opts.driver {
        Driver::Qemu => up_qemu(home, &m, opts, rep)?,
        Driver::Podman | Driver::Docker => up_kic(home, &m, opts, rep)?,
    };
    let state = provision(&m, up, opts.kubernetes_timeout, rep)?;
    rep.done(total.elapsed(), &m.kubeconfig());
    Ok(state)
}

/// A node whose agent answers, handed from the driver's part of `start` to [`provision`].
struct Up {
    state: MachineState,
    cas: certs::SharedCas,
    pc: certs::ProfileCerts,
    kubelet: Option<Kubelet>,
    /// kubeadm, kubectl and crictl when Kubernetes is bootstrapped.
    kubernetes: Option<Vec<(&'static str, Binary)>>,
    /// The node document delivered for this boot: its sections are the API steps' requests.
    doc: NodeDocument,
    client: Client,
}

/// The recorded state with what may change between starts (runtime, Kubernetes; CPUs and
/// memory when the node is not running), or `new()` for a new profile. Returns whether the
/// profile existed.
fn recorded_or_new(
    m: &MachineDir,
    opts: &StartOptions,
    running: bool,
    new: impl FnOnce() -> Result<MachineState, StartError>,
) -> Result<(MachineState, bool), StartError> {
    if !m.exists() {
        return Ok((new()?, false));
    }
    let mut s = m.load()?;
    s.runtime = opts.runtime;
    s.kubernetes_version = opts.kubernetes_version.clone();
    if !running {
        s.cpus = opts.cpus;
        s.memory_mb = opts.memory_mb;
    } else if (s.cpus, s.memory_mb) != (opts.cpus, opts.memory_mb) {
        tracing::warn!(
            "{} runs with {} CPUs and {} MiB: {} CPUs and {} MiB apply after `minikube-node stop -p {}` and start",
            s.name, s.cpus, s.memory_mb, opts.cpus, opts.memory_mb, s.name
        );
    }
    if s.disk_mb != opts.disk_mb {
        tracing::warn!("{}: the data disk stays {} MiB (its size is fixed when it is made; delete the profile to change it)", s.name, s.disk_mb);
    }
    Ok((s, true))
}

/// What `start` prepares on the host before the node boots.
/// The kubelet for the node: where it came from and its bytes.
struct Kubelet {
    src: KubeletSource,
    bin: Binary,
}

struct Prepared {
    cas: certs::SharedCas,
    pc: certs::ProfileCerts,
    kubelet: Option<Kubelet>,
    kubernetes: Option<Vec<(&'static str, Binary)>>,
    /// The profile's SSH public key (the docker user's authorized key).
    ssh_key: String,
}

impl Prepared {
    /// The node document for `state` as prepared.
    fn document(&self, state: &MachineState) -> NodeDocument {
        node_doc::build(state, &self.pc, &self.ssh_key, self.kubelet.as_ref().map(|k| &k.bin))
    }
}

/// The machine directory, the kubelet to upload, the certificates (the API server's for
/// `node_ip`) and the SSH key.
fn prepare(home: &Home, m: &MachineDir, opts: &StartOptions, state: &mut MachineState, node_ip: &str) -> Result<Prepared, StartError> {
    std::fs::create_dir_all(&m.dir).map_err(|source| StartError::Io { path: m.dir.clone(), source })?;
    let cache = opts.cache_dir.clone().unwrap_or_else(|| home.cache());
    let downloads = Downloader::new(opts.binary_mirror.as_deref(), &cache, crate::binaries::go_arch());
    let binary = |p: &std::path::Path| Binary::of(p).map_err(|source| StartError::Io { path: p.to_path_buf(), source });
    let kubelet = if opts.no_kubernetes {
        None
    } else {
        let src = kubelet::resolve(opts.kubelet.as_deref(), opts.kubelet_test_double, &downloads, &opts.kubernetes_version, &m.kubelet_double())?;
        state.kubelet = machine::absolute(src.path());
        Some(Kubelet { bin: binary(&state.kubelet)?, src })
    };
    // Kubernetes is bootstrapped with the release's kubeadm, kubectl and crictl, unless the
    // kubelet is the test double (nothing real could run) or there is no kubelet.
    let kubernetes = match &kubelet {
        Some(k) if !k.src.is_test_double() => {
            let v = &opts.kubernetes_version;
            Some(vec![
                ("kubeadm", binary(&downloads.ensure(v, "kubeadm")?)?),
                ("kubectl", binary(&downloads.ensure(v, "kubectl")?)?),
                ("crictl", binary(&downloads.ensure_crictl(&crate::binaries::crictl_version(v))?)?),
            ])
        }
        _ => None,
    };
    let cas = certs::shared_cas(&home.shared_certs())?;
    let pc = certs::ensure_profile(&cas, &m.certs_dir(), &m.trust_dir(), node_ip)?;
    let (ssh_key, _) = crate::ssh::ensure_key(m, &format!("minikube-node@{}", state.name))?;
    Ok(Prepared { cas, pc, kubelet, kubernetes, ssh_key })
}

/// A new profile's state from the options; the driver part fills in ISO, image, ports and IP.
fn new_state(opts: &StartOptions, driver: Driver) -> MachineState {
    MachineState {
        name: opts.name.clone(),
        driver,
        iso: PathBuf::new(),
        image: String::new(),
        oci_runtime: None,
        cpus: opts.cpus,
        memory_mb: opts.memory_mb,
        disk_mb: opts.disk_mb,
        runtime: opts.runtime,
        kubernetes_version: opts.kubernetes_version.clone(),
        kubelet: PathBuf::new(),
        ports: Ports { agent: 0, apiserver: 0, ssh: 0 },
        node_ip: String::new(),
    }
}

fn issued_suffix(issued: &[&str]) -> String {
    if issued.is_empty() {
        String::new()
    } else {
        format!("; issued {}", issued.join(", "))
    }
}

/// qemu: state, certificates and data disk; boot from the ISO; wait for the agent on the
/// forwarded port.
fn up_qemu(home: &Home, m: &MachineDir, opts: &StartOptions, rep: &mut Reporter) -> Result<Up, StartError> {
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
    // The ISO path may change between starts.
    state.iso = iso;
    if !running && existed && machine::refresh_ports(&mut state.ports, &taken)? {
        tracing::info!("recorded host ports were taken: now {:?}", state.ports);
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

/// kic: state and certificates (the trust directory is mounted into the container); the image
/// (an archive is loaded once); the container created, or started again, with its ports and
/// address read back from the engine; the agent's ready line in the container's logs.
fn up_kic(home: &Home, m: &MachineDir, opts: &StartOptions, rep: &mut Reporter) -> Result<Up, StartError> {
    let engine = opts.driver.engine().expect("a kic driver has an engine");
    let node = Kic::existing(engine.clone(), &opts.name);

    // machine: state, certificates.
    let t = Instant::now();
    let container = node.find_state()?;
    let running = container == Some(kic::ContainerState::Running);
    let (mut state, existed) = recorded_or_new(m, opts, running, || {
        Ok(MachineState {
            oci_runtime: opts.oci_runtime.clone().or_else(|| kic::default_oci_runtime(&engine)),
            ..new_state(opts, opts.driver)
        })
    })?;
    if container.is_none() && opts.oci_runtime.is_some() {
        // A container made anew may use another OCI runtime.
        state.oci_runtime = opts.oci_runtime.clone();
    }
    // The API server's certificate names the node's address, known once the container runs:
    // until then the loopback address stands in (already among its names).
    let provisional = if state.node_ip.is_empty() { "127.0.0.1".to_string() } else { state.node_ip.clone() };
    let mut prep = prepare(home, m, opts, &mut state, &provisional)?;
    // The node document and the kubelet, in the trust directory the container mounts: its boot
    // step applies them before the runtime starts.
    let mut doc = prep.document(&state);
    let trust = m.trust_dir();
    node_doc::deliver(&trust.join(agent::document::FILE_NAME), &doc, Some((&trust.join("blobs"), prep.kubelet.as_ref().map(|k| &k.bin))))
        .map_err(|source| StartError::Io { path: trust.clone(), source })?;
    m.save(&state)?;
    let detail =
        if existed { "reused".to_string() } else { format!("created {} ({}, {} CPUs, {} MiB)", m.dir.display(), state.driver, state.cpus, state.memory_mb) };
    rep.step("machine", t, !existed || !prep.pc.issued.is_empty(), format!("{detail}{}", issued_suffix(&prep.pc.issued)));

    // image: only a container to create needs one.
    let t = Instant::now();
    if container.is_none() {
        let src = match ImageSource::parse(&opts.image)? {
            ImageSource::Archive(p) => ImageSource::Archive(machine::absolute(&p)),
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
            let (_, privileges) = Kic::create_with_fallback(&cfg)?;
            let how = match privileges {
                kic::Privileges::Privileged => "privileged",
                kic::Privileges::AllCaps => "all capabilities",
            };
            (0, format!("created from {} ({how}, OCI runtime {})", state.image, state.oci_runtime.as_deref().unwrap_or("default")))
        }
    };
    let published = || -> Result<(Ports, String), kic::KicError> {
        let ports = Ports { agent: node.host_port(agent::DEFAULT_PORT)?, apiserver: node.host_port(KIC_APISERVER_PORT)?, ssh: node.host_port(KIC_SSH_PORT)? };
        Ok((ports, node.ip()?))
    };
    (state.ports, state.node_ip) = match published() {
        Ok(v) => v,
        Err(e) => {
            // A container whose init exits at once loses its ports: say that, with its logs.
            std::thread::sleep(Duration::from_secs(1));
            node.check_running()?;
            return Err(e.into());
        }
    };
    if state.node_ip != provisional {
        // A new container's address is known only now: the API steps bring the certificates and
        // the kubelet's node IP up to date (the next boot gets them from the document).
        let again = certs::ensure_profile(&prep.cas, &m.certs_dir(), &m.trust_dir(), &state.node_ip)?;
        tracing::info!("node address {}: issued {:?}", state.node_ip, again.issued);
        prep.pc = again;
        doc = prep.document(&state);
        node_doc::deliver(&trust.join(agent::document::FILE_NAME), &doc, None).map_err(|source| StartError::Io { path: trust.clone(), source })?;
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
            return Err(StartError::KicAgent {
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
    Ok(Up { state, cas: prep.cas, pc: prep.pc, kubelet: prep.kubelet, kubernetes: prep.kubernetes, doc, client })
}

/// The container ports of the API server and SSH (published on 127.0.0.1 like the agent's).
pub const KIC_APISERVER_PORT: u16 = 8443;
pub const KIC_SSH_PORT: u16 = 22;
/// How long the agent may take to answer through the published port after its ready line.
const KIC_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The steps every driver shares, through the agent: hostname, certificates, container runtime,
/// kubelet — each the node document's section, so each answers `changed: false` in
/// milliseconds when the boot step applied the document — then the kubeconfig on the host.
fn provision(m: &MachineDir, up: Up, kubernetes_timeout: Duration, rep: &mut Reporter) -> Result<MachineState, StartError> {
    let Up { state, cas, pc, kubelet, kubernetes, doc, mut client } = up;
    let sections = Sections::of(&doc);

    // hostname
    let t = Instant::now();
    let c = with_retry("hostname", 5, || client.set_hostname(sections.hostname))?;
    rep.step("hostname", t, c.changed, state.name.clone());

    // certs, with the small files (sa.pub, the SSH key for docker)
    let t = Instant::now();
    let c = with_retry("certs", 5, || client.certs(sections.certs))?;
    let mut changed = c.changed;
    for f in sections.files {
        let up = agent::ops::apply::upload_of(f);
        changed |= with_retry("certs", 5, || client.upload_file(&up, &mut f.content.as_bytes(), f.content.len() as u64))?.changed;
    }
    rep.step("certs", t, changed, format!("{} files into {}, SSH key for docker", sections.certs.files.len() + 1, certs::GUEST_CERTS_DIR));

    // runtime
    let t = Instant::now();
    let r = with_retry("runtime", 5, || client.runtime(sections.runtime))?;
    rep.step("runtime", t, r.changed, format!("{} {}", state.runtime.name(), r.version.lines().next().unwrap_or_default()));

    // kubelet: the agent keeps binaries by SHA-256 and answers before the body is sent when it
    // has this one.
    let t = Instant::now();
    match (&kubelet, sections.kubelet) {
        (Some(k), Some(req)) => {
            let up = upload(&mut client, &state, "kubelet", &k.bin, "kubelet")?;
            let r = with_retry("kubelet", 5, || client.kubelet(req))?;
            let what = match &k.src {
                KubeletSource::TestDouble(_) => format!("{} (test double, as asked)", kubelet::TEST_DOUBLE_NAME),
                other => other.path().display().to_string(),
            };
            let binary = if up { "binary uploaded" } else { "binary present" };
            rep.step("kubelet", t, up || r.changed, format!("{} {what}, {binary}: {}", state.kubernetes_version, r.state));
        }
        _ => rep.step("kubelet", t, false, "none (--no-kubernetes)"),
    }

    // Kubernetes: kubeadm init (once), CNI, admin.conf as the kubeconfig, Ready.
    if let Some(bins) = &kubernetes {
        let t = Instant::now();
        let mut uploaded = Vec::new();
        for (name, bin) in bins {
            if upload(&mut client, &state, "binaries", bin, name)? {
                uploaded.push(*name);
            }
        }
        let detail = if uploaded.is_empty() { "kubeadm, kubectl, crictl present".to_string() } else { format!("uploaded {}", uploaded.join(", ")) };
        rep.step("binaries", t, !uploaded.is_empty(), format!("{} {detail}", state.kubernetes_version));
        let b = crate::bootstrap::Bootstrap {
            node: crate::bootstrap::Node {
                cluster_name: &state.name,
                node_name: &state.name,
                node_ip: &state.node_ip,
                kubernetes_version: &state.kubernetes_version,
                runtime: state.runtime,
            },
            api: crate::bootstrap::Api {
                url: format!("https://127.0.0.1:{}", state.ports.apiserver),
                ca_pem: &pc.cluster_ca.cert_pem,
                cert_pem: &pc.client.cert_pem,
                key_pem: &pc.client.key_pem,
            },
            kubeconfig: &m.kubeconfig(),
            timeout: kubernetes_timeout,
        };
        crate::bootstrap::run(&mut client, &b, rep)?;
        return Ok(state);
    }

    // kubeconfig
    let t = Instant::now();
    let text = crate::kubeconfig::render(
        &state.name,
        &format!("https://127.0.0.1:{}", state.ports.apiserver),
        &cas.cluster_ca_path(),
        &m.certs_dir().join("client.crt"),
        &m.certs_dir().join("client.key"),
    );
    let changed = crate::kubeconfig::write(&m.kubeconfig(), &text).map_err(|source| StartError::Io { path: m.kubeconfig(), source })?;
    rep.step("kubeconfig", t, changed, m.kubeconfig().display().to_string());
    Ok(state)
}

/// Upload a binary for the node's Kubernetes version (nothing is sent when the node has it).
fn upload(client: &mut Client, state: &MachineState, step: &'static str, bin: &Binary, name: &str) -> Result<bool, StartError> {
    Ok(with_retry(step, 5, || {
        let mut f = std::fs::File::open(&bin.path).map_err(|source| ClientError::Io { addr: state.agent_addr(), source })?;
        client.upload_binary(&state.kubernetes_version, name, &bin.sha256, &mut f, bin.len)
    })?
    .changed)
}

/// The console's `minikube-agent: ready` line, if the current boot printed one.
pub fn agent_ready_line(m: &MachineDir) -> Option<String> {
    qemu::find_line(&m.console_log(), agent::READY_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_transient_errors_only() {
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut n = 0;
        let r = with_retry("t", 3, || {
            n += 1;
            if n < 3 {
                Err(ClientError::Io { addr, source: std::io::Error::from(std::io::ErrorKind::ConnectionReset) })
            } else {
                Ok(n)
            }
        });
        assert_eq!(r.unwrap(), 3);
        let mut m = 0;
        let r: Result<(), _> = with_retry("t", 3, || {
            m += 1;
            Err(ClientError::Status { status: 400, error: agent::api::ErrorResponse { error: "bad".into(), field: Some("name".into()) } })
        });
        assert!(matches!(r, Err(StartError::Agent { step: "t", .. })));
        assert_eq!(m, 1, "a refusal is not retried");
    }

    #[test]
    fn another_driver_is_refused_before_anything_happens() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        let m = home.machine("p1").unwrap();
        let qemu = MachineState { kubernetes_version: "v1.34.1".into(), ..crate::state::example_state("p1") };
        m.save(&qemu).unwrap();
        let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
        let e = start(&home, &StartOptions::kic("p1", Driver::Docker, "kicbase:v1"), &mut rep).unwrap_err();
        assert!(matches!(e, StartError::Driver(driver::DriverError::Mismatch { recorded: Driver::Qemu, requested: Driver::Docker, .. })), "{e}");
        assert!(rep.events.is_empty(), "no step ran");
        assert!(!home.shared_certs().exists() && !m.trust_dir().exists(), "nothing was issued");
        assert_eq!(m.load().unwrap(), qemu, "the state is untouched");
    }

    #[test]
    fn json_events_are_one_object_per_line() {
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut r = Reporter::new(Output::Json, Box::new(Buf(shared.clone())));
        r.step("boot", Instant::now(), true, "x");
        r.done(Duration::from_millis(1500), std::path::Path::new("/k"));
        let text = String::from_utf8(shared.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["step"], "boot");
        assert_eq!(lines[1]["event"], "done");
        assert_eq!(lines[1]["seconds"], 1.5);
    }
}
