//! The wire protocol's types: JSON bodies and query strings shared by the server and
//! [`crate::client::Client`]. Which operation carries which type, at which method and path, is
//! defined once in [`crate::endpoints`] (its module documentation has the table).
//!
//! Errors are 4xx/5xx with an [`ErrorResponse`] naming the offending field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every error body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorResponse {
    pub error: String,
    /// The request field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Result of an idempotent operation: `changed` is false when the node already matched.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Changed {
    pub changed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InfoResponse {
    pub agent_version: String,
    pub hostname: String,
    /// `uname -r`
    pub kernel: String,
    /// `uname -m`
    pub arch: String,
    /// PRETTY_NAME of /etc/os-release, if present.
    pub os: Option<String>,
    /// What `minikube-agent boot` did with the node document in this boot (absent when the
    /// boot step has not run, or from an older agent).
    #[serde(default)]
    pub boot_apply: Option<BootApply>,
    /// The boot step is still running: the agent answers beside it, and each change waits for
    /// its end (`boot_apply` is then absent until it has applied the node document).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub boot_running: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostnameRequest {
    pub name: String,
    /// More /etc/hosts lines the agent keeps (e.g. `control-plane.minikube.internal`, the other
    /// nodes of a cluster); the whole managed set is replaced by each request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostEntry>,
}

/// One /etc/hosts line: an address and its names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub ip: String,
    pub names: Vec<String>,
}

/// The cluster NIC and its address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkRequest {
    /// The NIC's MAC address, e.g. `52:54:00:4d:00:02`.
    pub mac: String,
    /// The address with its prefix, e.g. `192.168.49.2/24`.
    pub address: String,
}

/// The NIC that reaches the host, configured statically (qemu's user-mode network, whose
/// addresses are fixed): the boot step brings it up itself, so the agent is reachable once it
/// listens, not once udev and networkd have got to the NIC and DHCP has answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UplinkRequest {
    /// The NIC's MAC address, e.g. `52:54:00:12:34:56`.
    pub mac: String,
    /// The address with its prefix, e.g. `10.0.2.15/24`.
    pub address: String,
    /// The default route's gateway, e.g. `10.0.2.2`.
    pub gateway: String,
    /// Name servers, e.g. `10.0.2.3`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// The NIC's kernel module, loaded when no interface has the MAC yet (`virtio_net`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertsRequest {
    /// Certificates and keys to place (e.g. /var/lib/minikube/certs/apiserver.crt).
    #[serde(default)]
    pub files: Vec<CertFile>,
    /// CA certificates to trust system-wide.
    #[serde(default)]
    pub trust: Vec<TrustedCa>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertFile {
    /// Absolute guest path.
    pub path: String,
    pub pem: String,
    /// A private key: written 0600 (certificates 0644).
    #[serde(default)]
    pub private: bool,
}

/// A CA written to /usr/share/ca-certificates/NAME, linked as /etc/ssl/certs/NAME and
/// /etc/ssl/certs/HASH.0 (OpenSSL subject hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrustedCa {
    /// File name, e.g. `minikubeCA.pem`.
    pub name: String,
    pub pem: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Containerd,
    #[serde(rename = "cri-o")]
    CriO,
}

impl Runtime {
    pub const ALL: [Runtime; 3] = [Runtime::Docker, Runtime::Containerd, Runtime::CriO];

    pub fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
        }
    }

    /// The CRI socket kubelet talks to.
    pub fn cri_socket(self) -> &'static str {
        match self {
            Runtime::Docker => "/var/run/cri-dockerd.sock",
            Runtime::Containerd => "/run/containerd/containerd.sock",
            Runtime::CriO => "/var/run/crio/crio.sock",
        }
    }

    /// systemd units of the runtime (started in this order).
    pub fn units(self) -> &'static [&'static str] {
        match self {
            Runtime::Docker => &["containerd.service", "docker.socket", "docker.service", "cri-docker.socket", "cri-docker.service"],
            Runtime::Containerd => &["containerd.service"],
            Runtime::CriO => &["crio.service"],
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Systemd,
    Cgroupfs,
}

impl CgroupDriver {
    pub fn name(self) -> &'static str {
        match self {
            CgroupDriver::Systemd => "systemd",
            CgroupDriver::Cgroupfs => "cgroupfs",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeRequest {
    pub runtime: Runtime,
    /// e.g. `registry.k8s.io/pause:3.10`
    pub pause_image: String,
    pub cgroup_driver: CgroupDriver,
    /// `host:port` registries reachable without TLS.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// Docker's TLS listener on tcp 2376 (docker runtime only).
    #[serde(default)]
    pub docker_tls: Option<DockerTls>,
    /// How long to wait for the CRI socket (default 60 s).
    #[serde(default)]
    pub socket_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DockerTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeResponse {
    pub changed: bool,
    pub socket: String,
    /// What the runtime reports (`docker version`, `containerd --version`, `crio --version`).
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KubeletRequest {
    /// Kubernetes version, e.g. `v1.35.0`: the binary is /var/lib/minikube/binaries/VERSION/kubelet.
    pub version: String,
    pub node_name: String,
    pub node_ip: String,
    pub runtime: Runtime,
    /// More `--flag=value` arguments for kubelet.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// SHA-256 of the kubelet binary: when the version's binary is missing, the agent links it
    /// from its store of binaries by SHA-256 (nothing is uploaded twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KubeletResponse {
    pub changed: bool,
    /// `systemctl is-active kubelet` after the operation.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PathRequest {
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileStat {
    pub exists: bool,
    pub size: u64,
    /// Lowercase hex; empty when the file does not exist.
    pub sha256: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A file upload: where the streamed body goes, what its SHA-256 must be, its mode and owner
/// (sent in the query string). A node document's file ([`crate::document::FileContent`]) is
/// placed as the upload [`FileContent::upload`](crate::document::FileContent::upload) describes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileUpload {
    pub path: String,
    pub sha256: String,
    /// Permission bits, e.g. 0o644 (octal text in the query; 0644 when absent).
    #[serde(default = "octal_mode::default", with = "octal_mode")]
    pub mode: u32,
    /// `user:group`, names or numbers; default root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A Kubernetes binary upload (sent in the query string).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BinaryUpload {
    /// Kubernetes version, e.g. `v1.35.0`.
    pub version: String,
    /// One of [`crate::render::kubelet::BINARY_NAMES`].
    pub name: String,
    pub sha256: String,
}

/// A container image archive to import into the runtime (sent in the query string).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageUpload {
    /// The name the runtime lists it under: `registry.k8s.io/pause:3.10.1`.
    pub reference: String,
    /// The archive's SHA-256 (how it travels and is stored).
    pub sha256: String,
    /// The image manifest's digest, `sha256:...` (how the runtime knows it).
    pub digest: String,
}

/// A file download (sent in the query string).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Download {
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// Added to a minimal environment (PATH, HOME=/root, LANG=C.UTF-8).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Absolute guest directory; default `/`.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Killed after this many seconds (default 60, at most 3600).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Bytes given on standard input (UTF-8).
    #[serde(default)]
    pub stdin: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecResponse {
    /// None when killed by a signal.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Output, lossily UTF-8, each bounded (see `truncated`).
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogsRequest {
    /// A systemd unit, e.g. `kubelet` or `docker.service`.
    pub unit: String,
    /// Last N lines (default 200, at most 10000).
    #[serde(default)]
    pub lines: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogsResponse {
    pub text: String,
    pub truncated: bool,
}

/// What became of the node document at boot (the boot step's report, [`BootApply`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BootOutcome {
    /// Every section present was applied.
    Applied,
    /// No delivered or stored document: the node waits for the API.
    NoDocument,
    /// The document was unreadable or invalid: nothing was applied.
    Refused,
    /// Applying failed part way (each file is old or new; the API converges the rest).
    Failed,
}

impl BootOutcome {
    pub fn name(self) -> &'static str {
        match self {
            BootOutcome::Applied => "applied",
            BootOutcome::NoDocument => "absent",
            BootOutcome::Refused => "refused",
            BootOutcome::Failed => "failed",
        }
    }
}

/// The boot step's report, kept on /run for `info`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootApply {
    pub outcome: BootOutcome,
    /// Where the document came from (e.g. `qemu fw_cfg`, `stored copy`).
    #[serde(default)]
    pub source: String,
    /// What was done, or the reason it was not.
    pub message: String,
}

/// Permission bits as octal text in a query (`mode=644`), 0644 when absent.
pub mod octal_mode {
    use serde::{de, Deserialize};

    pub fn default() -> u32 {
        0o644
    }

    pub fn serialize<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:o}"))
    }

    pub fn deserialize<'de, D: de::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        u32::from_str_radix(&text, 8).map_err(|_| de::Error::custom(format!("{text:?} is not octal")))
    }
}
