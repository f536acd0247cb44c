//! Kubernetes on the provisioned node, as minikube's kubeadm bootstrapper does it: the kubeadm
//! configuration (v1beta4: InitConfiguration, ClusterConfiguration, KubeletConfiguration,
//! KubeProxyConfiguration) with minikube's values and the certificates we issued, `kubeadm init`
//! through the agent with a bounded wait (not again on a restart), a bridge CNI on the node's
//! pod range, admin.conf as the profile's kubeconfig (server rewritten to the host's forwarded
//! port), and waits for `/readyz` and the node's Ready condition. The other nodes of a cluster
//! join it ([`join`]).
//!
//! Commands run from the node's root directory with paths relative to it (`var/lib/...` from
//! `/`), so the same requests work against an agent serving a test root (`--root`).

use std::path::Path;
use std::time::{Duration, Instant};

use agent_api::api::{ExecRequest, Runtime};
use agent_api::client::{Client, ClientError};
use fetch::Http;

use crate::model::{CONTROL_PLANE_NAME, GUEST_APISERVER_PORT as API_PORT};
use crate::report::Reporter;
use crate::topology::{POD_SUBNET, SERVICE_SUBNET};

pub mod join;

pub const KUBEADM_YAML: &str = "/var/tmp/minikube/kubeadm.yaml";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const CNI_CONF: &str = "/etc/cni/net.d/1-k8s.conflist";
/// Preflight checks minikube tells kubeadm to ignore (its directories exist, the node is small).
pub const IGNORED_PREFLIGHT: &[&str] = &[
    "DirAvailable--etc-kubernetes-manifests",
    "DirAvailable--var-lib-minikube",
    "DirAvailable--var-lib-minikube-etcd",
    "FileAvailable--etc-kubernetes-manifests-kube-scheduler.yaml",
    "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml",
    "FileAvailable--etc-kubernetes-manifests-kube-controller-manager.yaml",
    "FileAvailable--etc-kubernetes-manifests-etcd.yaml",
    "Port-10250",
    "Swap",
    "NumCPU",
    "Mem",
];

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("step {step}: {source}")]
    Agent { step: &'static str, source: ClientError },
    #[error("{tool} {command} failed on {node} ({status}); last lines of its output:\n{output}\nlast lines of the kubelet journal:\n{kubelet}")]
    Kubeadm { tool: &'static str, command: &'static str, node: String, status: String, output: String, kubelet: String },
    #[error("{what} not reached within {secs} s at {url} (last: {last})")]
    NotReady { what: &'static str, secs: u64, url: String, last: String },
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{0}")]
    Fetch(#[from] fetch::FetchError),
}

/// What the configuration is made of.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    pub cluster_name: &'a str,
    pub node_name: &'a str,
    pub node_ip: &'a str,
    pub kubernetes_version: &'a str,
    pub runtime: Runtime,
}

/// The CRI endpoint kubeadm and the kubelet use.
fn cri_endpoint(runtime: Runtime) -> String {
    format!("unix://{}", runtime.cri_socket())
}

/// The `nodeRegistration` of an InitConfiguration or JoinConfiguration: the node's name, its
/// runtime's CRI socket and its address for the kubelet.
fn node_registration(n: &Node) -> String {
    let (cri, name, ip) = (cri_endpoint(n.runtime), n.node_name, n.node_ip);
    format!(
        "nodeRegistration:
  criSocket: {cri}
  name: \"{name}\"
  kubeletExtraArgs:
    - name: node-ip
      value: {ip}
  taints: []
"
    )
}

/// The kubeadm configuration (four YAML documents).
pub fn render(n: &Node) -> String {
    let cri = cri_endpoint(n.runtime);
    let registration = node_registration(n);
    let (ip, version, cluster) = (n.node_ip, n.kubernetes_version, n.cluster_name);
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: {ip}
  bindPort: {API_PORT}
bootstrapTokens:
  - groups:
      - system:bootstrappers:kubeadm:default-node-token
    ttl: 24h0m0s
    usages:
      - signing
      - authentication
{registration}---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
apiServer:
  certSANs: [\"127.0.0.1\", \"localhost\", \"{ip}\"]
  extraArgs:
    - name: enable-admission-plugins
      value: \"NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota\"
certificatesDir: /var/lib/minikube/certs
clusterName: {cluster}
controlPlaneEndpoint: {CONTROL_PLANE_NAME}:{API_PORT}
etcd:
  local:
    dataDir: /var/lib/minikube/etcd
kubernetesVersion: {version}
networking:
  dnsDomain: cluster.local
  podSubnet: \"{POD_SUBNET}\"
  serviceSubnet: {SERVICE_SUBNET}
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  x509:
    clientCAFile: /var/lib/minikube/certs/ca.crt
cgroupDriver: systemd
containerRuntimeEndpoint: {cri}
hairpinMode: hairpin-veth
runtimeRequestTimeout: 15m
clusterDomain: cluster.local
failSwapOn: false
staticPodPath: /etc/kubernetes/manifests
# The bundle's images are preloaded and the node's disk is small: no image garbage collection
# and no disk-pressure eviction (as minikube does).
imageGCHighThresholdPercent: 100
evictionHard:
  nodefs.available: \"0%\"
  nodefs.inodesFree: \"0%\"
  imagefs.available: \"0%\"
# Container nodes on a cgroup v1 host see cgroup v1: said explicitly, as 1.35 turns it to true.
failCgroupV1: false
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: \"{POD_SUBNET}\"
metricsBindAddress: 0.0.0.0:10249
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"
    )
}

/// The bridge CNI configuration of a node whose pods take addresses in `range`.
pub fn cni_config(range: &str) -> String {
    format!(
        "{{\n  \"cniVersion\": \"0.4.0\",\n  \"name\": \"bridge\",\n  \"plugins\": [\n    {{\n      \"type\": \"bridge\",\n      \"bridge\": \"bridge\",\n      \
         \"addIf\": \"true\",\n      \"isDefaultGateway\": true,\n      \"forceAddress\": false,\n      \"ipMasq\": true,\n      \"hairpinMode\": true,\n      \
         \"ipam\": {{ \"type\": \"host-local\", \"subnet\": \"{range}\" }}\n    }},\n    {{ \"type\": \"portmap\", \"capabilities\": {{ \"portMappings\": true }} }}\n  ]\n}}\n"
    )
}

/// admin.conf with every `server:` pointing at `server`.
pub fn rewrite_server(kubeconfig: &str, server: &str) -> String {
    kubeconfig
        .lines()
        .map(|l| match l.trim_start().strip_prefix("server:") {
            Some(_) => format!("{}server: {server}", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// How the host reaches the API server: the forwarded URL and the profile's client identity.
pub struct Api<'a> {
    pub url: String,
    pub ca_pem: &'a str,
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
}

/// Everything `run` needs besides the agent.
pub struct Bootstrap<'a> {
    pub node: Node<'a>,
    pub api: Api<'a>,
    /// The node's pod range ([`pod_range`]).
    pub pod_range: String,
    /// Where the profile's kubeconfig goes.
    pub kubeconfig: &'a Path,
    /// `kubeadm init`'s limit, and the limit of each wait.
    pub timeout: Duration,
}

fn relative(guest: &str) -> String {
    guest.trim_start_matches('/').to_string()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Run the bootstrap steps: `kubeadm`, `cni`, `kubeconfig`, `ready`.
pub fn run(client: &mut Client, b: &Bootstrap, rep: &mut Reporter) -> Result<(), BootstrapError> {
    let agent = |step: &'static str| move |source| BootstrapError::Agent { step, source };
    // kubeadm: its configuration, then init unless the control plane exists (a restart).
    let t = Instant::now();
    let yaml = render(&b.node);
    let wrote = client.upload_bytes(KUBEADM_YAML, yaml.as_bytes(), 0o644, None).map_err(agent("kubeadm"))?.changed;
    let exists = client.stat(ADMIN_CONF).map_err(agent("kubeadm"))?.exists;
    if exists {
        rep.step("kubeadm", t, wrote, "control plane exists: not initialised again");
    } else {
        let mut args = vec!["init".to_string(), "--config".into(), relative(KUBEADM_YAML)];
        args.push(format!("--ignore-preflight-errors={}", IGNORED_PREFLIGHT.join(",")));
        kubeadm(client, b.node.node_name, b.node.kubernetes_version, "init", &args, b.timeout)?;
        rep.step("kubeadm", t, true, format!("kubeadm init {} ({} preflight checks ignored)", b.node.kubernetes_version, IGNORED_PREFLIGHT.len()));
    }

    cni(client, &b.pod_range, rep)?;

    // kubeconfig: admin.conf, its server the host's forwarded port.
    let t = Instant::now();
    let mut admin = Vec::new();
    client.download(ADMIN_CONF, &mut admin).map_err(agent("kubeconfig"))?;
    let text = rewrite_server(&String::from_utf8_lossy(&admin), &b.api.url);
    let changed = crate::resources::kubeconfig::write(b.kubeconfig, &text).map_err(|source| BootstrapError::Io { path: b.kubeconfig.to_path_buf(), source })?;
    rep.step("kubeconfig", t, changed, format!("{} (admin.conf, server {})", b.kubeconfig.display(), b.api.url));

    // ready: /readyz, then the node's Ready condition.
    let t = Instant::now();
    let http = Http::with_client_tls(Duration::from_secs(5), Duration::from_secs(10), b.api.ca_pem, b.api.cert_pem, b.api.key_pem)?;
    let readyz = format!("{}/readyz", b.api.url);
    wait(b.timeout, "the API server's /readyz", &readyz, || match http.get_any(&readyz) {
        Ok((200, body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
        Ok((status, body)) => Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body).chars().take(200).collect::<String>())),
        Err(e) => Err(e.to_string()),
    })?;
    node_ready(&http, &b.api.url, b.node.node_name, b.timeout)?;
    rep.step("ready", t, false, format!("/readyz ok, node {} Ready", b.node.node_name));
    Ok(())
}

/// `kubeadm ARGS` on a node through its agent, from the node's root, with the version's
/// binaries first on PATH and a bounded run time; a failure carries the end of kubeadm's output
/// and of the kubelet's journal.
fn kubeadm(client: &mut Client, node: &str, version: &str, command: &'static str, args: &[String], timeout: Duration) -> Result<(), BootstrapError> {
    tool(client, node, version, "kubeadm", command, args, timeout)
}

/// `TOOL ARGS` (kubeadm or kubectl of the node's version) through the node's agent, as
/// [`kubeadm`] runs it.
pub(crate) fn tool(
    client: &mut Client,
    node: &str,
    version: &str,
    tool: &'static str,
    command: &'static str,
    args: &[String],
    timeout: Duration,
) -> Result<(), BootstrapError> {
    let bin_dir = format!("{}/{version}", agent_api::render::kubelet::BINARIES_DIR);
    let req = ExecRequest {
        argv: std::iter::once(relative(&format!("{bin_dir}/{tool}"))).chain(args.iter().cloned()).collect(),
        env: [("PATH".to_string(), format!("{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))].into(),
        cwd: Some("/".into()),
        timeout_secs: Some(timeout.as_secs().max(1)),
        stdin: None,
    };
    let out = client.exec(&req).map_err(|source| BootstrapError::Agent { step: "kubeadm", source })?;
    if out.exit_code == Some(0) {
        return Ok(());
    }
    let status = match (out.timed_out, out.exit_code, out.signal) {
        (true, _, _) => format!("timed out after {} s", timeout.as_secs()),
        (_, Some(c), _) => format!("exit status {c}"),
        (_, None, s) => format!("signal {}", s.unwrap_or(0)),
    };
    let kubelet = client.logs("kubelet", Some(20)).map(|l| l.text).unwrap_or_else(|e| format!("(not available: {e})"));
    Err(BootstrapError::Kubeadm {
        tool,
        command,
        node: node.to_string(),
        status,
        output: tail(&format!("{}{}", out.stdout, out.stderr), 20),
        kubelet: tail(&kubelet, 20),
    })
}

/// The `cni` step: the bridge configuration on the node's pod range.
fn cni(client: &mut Client, range: &str, rep: &mut Reporter) -> Result<(), BootstrapError> {
    let t = Instant::now();
    let c = client.upload_bytes(CNI_CONF, cni_config(range).as_bytes(), 0o644, None).map_err(|source| BootstrapError::Agent { step: "cni", source })?;
    rep.step("cni", t, c.changed, format!("bridge {range} in {CNI_CONF}"));
    Ok(())
}

/// Wait until the API server at `url` reports node `name` Ready.
fn node_ready(http: &Http, url: &str, name: &str, timeout: Duration) -> Result<(), BootstrapError> {
    let node_url = format!("{url}/api/v1/nodes/{name}");
    wait(timeout, "the node's Ready condition", &node_url, || {
        let (status, body) = http.get_any(&node_url).map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        let ready = v["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
        match ready.map(|c| c["status"].as_str().unwrap_or("")) {
            Some("True") => Ok("Ready".to_string()),
            Some(s) => Err(format!("Ready={s}")),
            None => Err("no Ready condition yet".into()),
        }
    })?;
    Ok(())
}

/// Poll `probe` every half second until it answers or `timeout` passes.
fn wait(timeout: Duration, what: &'static str, url: &str, mut probe: impl FnMut() -> Result<String, String>) -> Result<String, BootstrapError> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(BootstrapError::NotReady { what, secs: timeout.as_secs(), url: url.to_string(), last });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lines_are_rewritten() {
        let admin = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: AAA\n    server: https://control-plane.minikube.internal:8443\n  name: mk\n";
        let out = rewrite_server(admin, "https://127.0.0.1:41234");
        assert!(out.contains("    server: https://127.0.0.1:41234\n"), "{out}");
        assert!(!out.contains("control-plane"));
    }

    #[test]
    fn cni_config_is_json_on_the_nodes_own_range() {
        let v: serde_json::Value = serde_json::from_str(&cni_config(&crate::topology::pod_range(2))).unwrap();
        assert_eq!(v["plugins"][0]["ipam"]["subnet"], "10.244.1.0/24");
        assert_eq!(crate::topology::pod_range(1), "10.244.0.0/24");
    }
}
