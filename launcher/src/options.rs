//! What `start` is asked for: [`StartOptions`] and its defaults, and the options of a cluster's
//! further nodes.

use std::path::PathBuf;
use std::time::Duration;

use agent_api::api::Runtime;

use crate::model::Driver;
use crate::topology::node_name;

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
    /// minikube's `--rootless` (kic): the engine runs as an unprivileged user.
    pub rootless: bool,
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
            rootless: false,
            cpus: 2,
            memory_mb: 4096,
            disk_mb: 20_000,
            runtime: Runtime::Containerd,
            kubernetes_version: platform::bundle::DEFAULT_KUBERNETES_VERSION.to_string(),
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

/// The options of node `index` of the cluster whose first node `first` was started with.
pub fn node_options(first: &StartOptions, index: u32) -> StartOptions {
    let mut o = first.clone();
    o.name = node_name(&first.name, index);
    o.cluster = (index > 1).then(|| first.name.clone());
    o
}
