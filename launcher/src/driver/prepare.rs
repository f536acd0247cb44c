//! What both drivers do on the host before a node boots: the profile's state (recorded or new),
//! the kubelet and the other Kubernetes binaries, the bundle's images, the certificates, the SSH
//! key and the node document built from them.

use std::path::{Path, PathBuf};

use crate::driver::DriverError;
use crate::model::{Driver, MachineState, Ports};
use crate::options::StartOptions;
use crate::resources::binaries::{crictl_version, Downloader};
use crate::resources::bundle::Bundle;
use crate::resources::certs;
use crate::resources::kubelet::{self, KubeletSource};
use crate::resources::node_doc::{self, Binary, Sections};
use crate::resources::state::{Home, MachineDir};

/// The recorded state with what may change between starts (runtime, Kubernetes; CPUs and
/// memory when the node is not running), or `new()` for a new profile. Returns whether the
/// profile existed.
pub(crate) fn recorded_or_new(
    m: &MachineDir,
    opts: &StartOptions,
    running: bool,
    new: impl FnOnce() -> Result<MachineState, DriverError>,
) -> Result<(MachineState, bool), DriverError> {
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
            s.name,
            s.cpus,
            s.memory_mb,
            opts.cpus,
            opts.memory_mb,
            s.name
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
    pub(crate) bundle: Option<Bundle>,
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
    /// The node's sections (its node document) for `state` as prepared.
    pub(crate) fn sections(&self, state: &MachineState) -> Sections {
        let cluster = crate::topology::cluster_of(state).to_string();
        let mut all: Vec<MachineState> = self.peers.iter().filter(|p| p.name != state.name).cloned().collect();
        all.push(state.clone());
        all.sort_by_key(|s| crate::topology::node_index(&cluster, &s.name));
        node_doc::build(state, &self.pc, &self.ssh_key, self.kubelet.as_ref().map(|k| &k.bin), crate::topology::hosts(&all))
    }
}

/// The machine directory, the kubelet to upload, the certificates (the API server's for
/// `node_ip`) and the SSH key.
pub(crate) fn prepare(home: &Home, m: &MachineDir, opts: &StartOptions, state: &mut MachineState, node_ip: &str) -> Result<Prepared, DriverError> {
    std::fs::create_dir_all(&m.dir).map_err(|source| DriverError::Io { path: m.dir.clone(), source })?;
    let cache = opts.cache_dir.clone().unwrap_or_else(|| home.cache());
    let downloads = Downloader::new(opts.binary_mirror.as_deref(), &cache, state.arch.debian());
    let binary = |p: &std::path::Path| Binary::of(p).map_err(|source| DriverError::Io { path: p.to_path_buf(), source });
    let kubelet = if opts.no_kubernetes {
        None
    } else {
        let src = kubelet::resolve(opts.kubelet.as_deref(), opts.kubelet_test_double, &downloads, &opts.kubernetes_version, &m.kubelet_double())?;
        state.kubelet = absolute(src.path());
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
                    ("crictl", binary(&downloads.ensure_crictl(&crictl_version(v))?)?),
                ],
                bundle: Bundle::find(&cache, state.arch, v)?,
            })
        }
        _ => None,
    };
    let cas = certs::shared_cas(&home.shared_certs())?;
    let pc = certs::ensure_profile(&cas, &m.certs_dir(), &m.trust_dir(), node_ip)?;
    let (ssh_key, _) = crate::resources::ssh::ensure_key(m, &format!("minikube-node@{}", state.name))?;
    let peers = home.nodes(crate::topology::cluster_of(state))?;
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
        static_uplink: false,
    }
}

pub(crate) fn issued_suffix(issued: &[&str]) -> String {
    if issued.is_empty() {
        String::new()
    } else {
        format!("; issued {}", issued.join(", "))
    }
}

/// Is `path` absolute (qemu runs detached, so relative paths would be resolved elsewhere)?
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }
}
