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
use crate::binaries::Downloader;
use crate::kubelet::{self, KubeletSource};
use crate::machine;
use crate::node_doc::{self, Binary, Sections};
use crate::qemu;
use crate::state::{Home, MachineDir, MachineState, Ports};

/// `--image` default: the archive `cargo xtask kicbase` writes.
pub const DEFAULT_KIC_IMAGE: &str = "out/kicbase.tar";
/// `--iso` default for a new profile: the ISO `cargo xtask iso` writes.
pub const DEFAULT_ISO: &str = "out/minikube.iso";

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
    /// The cluster (its first node's name) when this is a second, third... node.
    pub cluster: Option<String>,
    /// A VM of a multi-node cluster: give it the cluster's shared NIC.
    pub cluster_nic: bool,
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
            cluster: None,
            cluster_nic: false,
            agent_timeout: Duration::from_secs(600),
        }
    }

    /// A container node (podman or docker) from `image` (archive path or reference).
    pub fn kic(name: &str, driver: Driver, image: &str) -> StartOptions {
        StartOptions { driver, image: image.to_string(), agent_timeout: Duration::from_secs(300), ..StartOptions::new(name, PathBuf::from(DEFAULT_ISO)) }
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
    Preload(#[from] crate::preload::PreloadError),
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
    Kic(#[from] crate::kic::KicError),
    #[error("container {name}: the agent logged its ready line but did not answer within {secs}s at {addr} ({last_error}); last container log lines:\n{tail}")]
    KicAgent { secs: u64, addr: String, last_error: String, name: String, tail: String },
    #[error("node {node} joins the control plane {control_plane}, which cannot be reached: {reason} (start the cluster's first node)")]
    ControlPlane { node: String, control_plane: String, reason: String },
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

/// Connect using the certificates on disk (for exec, logs...), to the agent port the driver
/// says (a kic node's is read from the engine).
pub fn connect_existing(home: &Home, m: &MachineDir) -> anyhow::Result<Client> {
    Ok(connect_existing_with(home, m)?.0)
}

/// [`connect_existing`], with the machine's state, its host ports as the driver reports them.
pub fn connect_existing_with(home: &Home, m: &MachineDir) -> anyhow::Result<(Client, MachineState)> {
    let mut state = m.load()?;
    state.ports = driver::node(m, state.driver).host_ports(&state)?;
    let ca = std::fs::read_to_string(home.shared_certs().join("agent-ca.crt"))?;
    let id = pki::Identity::load(&m.certs_dir().join("launcher.crt"), &m.certs_dir().join("launcher.key"))?;
    Ok((Client::connect(state.agent_addr(), "127.0.0.1", &ca, &id)?, state))
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
    let up = driver::node(&m, opts.driver).up(home, opts, rep)?;
    let state = provision(home, &m, up, opts.kubernetes_timeout, rep)?;
    rep.done(total.elapsed(), &m.kubeconfig());
    Ok(state)
}

/// A node whose agent answers, handed from the driver's part of `start` to [`provision`].
pub struct Up {
    pub(crate) state: MachineState,
    pub(crate) cas: certs::SharedCas,
    pub(crate) pc: certs::ProfileCerts,
    pub(crate) kubelet: Option<Kubelet>,
    /// kubeadm, kubectl, crictl and the bundle's images when Kubernetes is bootstrapped.
    pub(crate) kubernetes: Option<KubernetesParts>,
    /// The node document delivered for this boot: its sections are the API steps' requests.
    pub(crate) doc: NodeDocument,
    pub(crate) client: Client,
}

/// The recorded state with what may change between starts (runtime, Kubernetes; CPUs and
/// memory when the node is not running), or `new()` for a new profile. Returns whether the
/// profile existed.
pub(crate) fn recorded_or_new(
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

/// The kubelet for the node: where it came from and its bytes.
pub(crate) struct Kubelet {
    pub(crate) src: KubeletSource,
    pub(crate) bin: Binary,
}

/// What a node needs besides the kubelet to run Kubernetes: kubeadm, kubectl and crictl, and
/// the images to preload when the cache has a bundle of the version.
pub(crate) struct KubernetesParts {
    pub(crate) binaries: Vec<(&'static str, Binary)>,
    pub(crate) bundle: Option<crate::preload::Bundle>,
}

/// What `start` prepares on the host before the node boots.
pub(crate) struct Prepared {
    pub(crate) cas: certs::SharedCas,
    pub(crate) pc: certs::ProfileCerts,
    pub(crate) kubelet: Option<Kubelet>,
    pub(crate) kubernetes: Option<KubernetesParts>,
    /// The other nodes of the cluster (for /etc/hosts).
    pub(crate) peers: Vec<MachineState>,
    /// The profile's SSH public key (the docker user's authorized key).
    pub(crate) ssh_key: String,
}

impl Prepared {
    /// The node document for `state` as prepared.
    pub(crate) fn document(&self, state: &MachineState) -> NodeDocument {
        let cluster = crate::cluster::cluster_of(state).to_string();
        let mut all: Vec<MachineState> = self.peers.iter().filter(|p| p.name != state.name).cloned().collect();
        all.push(state.clone());
        all.sort_by_key(|s| crate::cluster::node_index(&cluster, &s.name));
        node_doc::build(state, &self.pc, &self.ssh_key, self.kubelet.as_ref().map(|k| &k.bin), crate::cluster::hosts(&all))
    }
}

/// The machine directory, the kubelet to upload, the certificates (the API server's for
/// `node_ip`) and the SSH key.
pub(crate) fn prepare(home: &Home, m: &MachineDir, opts: &StartOptions, state: &mut MachineState, node_ip: &str) -> Result<Prepared, StartError> {
    std::fs::create_dir_all(&m.dir).map_err(|source| StartError::Io { path: m.dir.clone(), source })?;
    let cache = opts.cache_dir.clone().unwrap_or_else(|| home.cache());
    let downloads = Downloader::new(opts.binary_mirror.as_deref(), &cache, state.arch.debian());
    let binary = |p: &std::path::Path| Binary::of(p).map_err(|source| StartError::Io { path: p.to_path_buf(), source });
    let kubelet = if opts.no_kubernetes {
        None
    } else {
        let src = kubelet::resolve(opts.kubelet.as_deref(), opts.kubelet_test_double, &downloads, &opts.kubernetes_version, &m.kubelet_double())?;
        state.kubelet = machine::absolute(src.path());
        Some(Kubelet { bin: binary(&state.kubelet)?, src })
    };
    // Kubernetes is bootstrapped (first node) or joined (the others) with the release's kubeadm,
    // kubectl and crictl, unless the kubelet is the test double (nothing real could run) or
    // there is no kubelet.
    let kubernetes = match &kubelet {
        Some(k) if !k.src.is_test_double() => {
            let v = &opts.kubernetes_version;
            Some(KubernetesParts {
                binaries: vec![
                    ("kubeadm", binary(&downloads.ensure(v, "kubeadm")?)?),
                    ("kubectl", binary(&downloads.ensure(v, "kubectl")?)?),
                    ("crictl", binary(&downloads.ensure_crictl(&crate::binaries::crictl_version(v))?)?),
                ],
                bundle: crate::preload::Bundle::find(&cache, state.arch, v)?,
            })
        }
        _ => None,
    };
    let cas = certs::shared_cas(&home.shared_certs())?;
    let pc = certs::ensure_profile(&cas, &m.certs_dir(), &m.trust_dir(), node_ip)?;
    let (ssh_key, _) = crate::ssh::ensure_key(m, &format!("minikube-node@{}", state.name))?;
    let peers = crate::cluster::nodes(home, crate::cluster::cluster_of(state))?;
    Ok(Prepared { cas, pc, kubelet, kubernetes, peers, ssh_key })
}

/// A new profile's state from the options; the driver part fills in ISO, image, ports and IP.
pub(crate) fn new_state(opts: &StartOptions, driver: Driver) -> MachineState {
    MachineState {
        name: opts.name.clone(),
        driver,
        // A container node runs the host's architecture (the engine picks it from a
        // multi-architecture image); a VM's is read from its ISO by the qemu driver.
        arch: platform::Arch::host().unwrap_or(platform::Arch::X86_64),
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
        cluster: opts.cluster.clone(),
        network: None,
        cluster_nic: None,
    }
}

pub(crate) fn issued_suffix(issued: &[&str]) -> String {
    if issued.is_empty() {
        String::new()
    } else {
        format!("; issued {}", issued.join(", "))
    }
}

/// The steps every driver shares, through the agent: hostname, certificates, container runtime,
/// kubelet — each the node document's section, so each answers `changed: false` in
/// milliseconds when the boot step applied the document — then the kubeconfig on the host.
fn provision(home: &Home, m: &MachineDir, up: Up, kubernetes_timeout: Duration, rep: &mut Reporter) -> Result<MachineState, StartError> {
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

    // Kubernetes: kubeadm init (once) on the first node, join (once) on the others; CNI; Ready;
    // admin.conf as the kubeconfig.
    if let Some(parts) = &kubernetes {
        let t = Instant::now();
        let mut uploaded = Vec::new();
        for (name, bin) in &parts.binaries {
            if upload(&mut client, &state, "binaries", bin, name)? {
                uploaded.push(*name);
            }
        }
        let detail = if uploaded.is_empty() { "kubeadm, kubectl, crictl present".to_string() } else { format!("uploaded {}", uploaded.join(", ")) };
        rep.step("binaries", t, !uploaded.is_empty(), format!("{} {detail}", state.kubernetes_version));
        if let Some(bundle) = &parts.bundle {
            crate::preload::run(&|| connect(&state, &pc), &state, bundle, rep)?;
        }
        let cluster = crate::cluster::cluster_of(&state).to_string();
        let node = crate::bootstrap::Node {
            cluster_name: &cluster,
            node_name: &state.name,
            node_ip: &state.node_ip,
            kubernetes_version: &state.kubernetes_version,
            runtime: state.runtime,
        };
        let pod_range = crate::bootstrap::pod_range(crate::cluster::node_index(&cluster, &state.name).unwrap_or(1));
        let api = |port: u16| crate::bootstrap::Api {
            url: format!("https://127.0.0.1:{port}"),
            ca_pem: &pc.cluster_ca.cert_pem,
            cert_pem: &pc.client.cert_pem,
            key_pem: &pc.client.key_pem,
        };
        if state.cluster.is_none() {
            let b = crate::bootstrap::Bootstrap { node, api: api(state.ports.apiserver), pod_range, kubeconfig: &m.kubeconfig(), timeout: kubernetes_timeout };
            crate::bootstrap::run(&mut client, &b, rep)?;
        } else {
            let unreachable = |reason: String| StartError::ControlPlane { node: state.name.clone(), control_plane: cluster.clone(), reason };
            let cp = home.machine(&cluster)?;
            let (mut cp_client, cp_state) = connect_existing_with(home, &cp).map_err(|e| unreachable(format!("{e:#}")))?;
            let der = pki::certs_from_pem(pc.cluster_ca.cert_pem.as_bytes(), "the cluster CA").map_err(certs::CertError::from)?;
            let ca_pin = pki::public_key_pin(&der[0]).map_err(certs::CertError::from)?;
            let j = crate::bootstrap::join::Join { node, control_plane: &cluster, ca_pin, pod_range, api: api(cp_state.ports.apiserver), timeout: kubernetes_timeout };
            crate::bootstrap::join::run(&mut cp_client, &mut client, &j, rep)?;
        }
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
