//! A second, third... node joins the cluster as minikube does it: a fresh bootstrap token
//! created on the control plane (`kubeadm token create`, one hour), a JoinConfiguration
//! (v1beta4) on the joining node naming the control plane's endpoint, that token and the cluster
//! CA's public key pin (computed on the host from the CA we issued, never read from the node),
//! `kubeadm join` through the node's agent (not again once the node has its kubelet.conf), the
//! bridge CNI on the node's own pod range, and a wait for the node's Ready condition at the
//! control plane's API server.
//!
//! Pods of different nodes get addresses from different ranges; each node routes the others'
//! ranges through their nodes on the cluster network (the cluster layer).
//! A node deleted from the cluster leaves it first: drained, then its Node object deleted at the
//! control plane ([`leave`]).

use std::time::{Duration, Instant};

use agent_api::client::Client;
use fetch::Http;

use super::{kubeadm, node_ready, node_registration, relative, Api, BootstrapError, Node, API_PORT, IGNORED_PREFLIGHT};
use crate::model::CONTROL_PLANE_NAME;
use crate::report::Reporter;

/// The joining node's kubeadm configuration (it holds the token: mode 0600).
pub const KUBEADM_JOIN_YAML: &str = "/var/tmp/minikube/kubeadm-join.yaml";
/// What `kubeadm join` leaves on a node that joined.
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
/// How long the token lives: long enough for one join.
pub const TOKEN_TTL: &str = "1h0m0s";

/// Everything a join needs besides the two agents.
pub struct Join<'a> {
    /// The joining node.
    pub node: Node<'a>,
    /// The control plane's node name (for messages).
    pub control_plane: &'a str,
    /// `sha256:<hex>` of the cluster CA's public key ([`pki::public_key_pin`]).
    pub ca_pin: String,
    /// The joining node's pod range ([`super::pod_range`]).
    pub pod_range: String,
    /// The control plane's API server as the host reaches it, for the Ready wait.
    pub api: Api<'a>,
    /// The limit of `kubeadm join` and of the wait.
    pub timeout: Duration,
}

/// Take node `name` out of the cluster, through the control plane's agent with its admin.conf:
/// drained (its pods evicted, at most 60 s; a drain that does not finish is only a warning),
/// then its Node object deleted.
pub fn leave(cp: &mut Client, control_plane: &str, version: &str, name: &str) -> Result<(), BootstrapError> {
    let admin = format!("--kubeconfig={}", super::ADMIN_CONF);
    let drain: Vec<String> =
        ["drain", name, "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=60s", &admin].iter().map(|s| s.to_string()).collect();
    if let Err(e) = super::tool(cp, control_plane, version, "kubectl", "drain", &drain, Duration::from_secs(90)) {
        tracing::warn!("{e}");
    }
    let delete: Vec<String> = ["delete", "node", name, "--ignore-not-found", &admin].iter().map(|s| s.to_string()).collect();
    super::tool(cp, control_plane, version, "kubectl", "delete node", &delete, Duration::from_secs(60))
}

/// A bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`, from the system's random source.
pub fn new_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(23);
    let mut buf = [0u8; 64];
    while out.len() < 23 {
        getrandom::getrandom(&mut buf).expect("the system's random source");
        // 252 = 7 * 36: rejecting the bytes above it keeps every character equally likely.
        for b in buf.iter().filter(|b| **b < 252) {
            if out.len() == 6 {
                out.push('.');
            }
            if out.len() < 23 {
                out.push(ALPHABET[(*b % 36) as usize] as char);
            }
        }
    }
    out
}

/// The JoinConfiguration of `n`.
pub fn render_join(n: &Node, token: &str, ca_pin: &str) -> String {
    let registration = node_registration(n);
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: {CONTROL_PLANE_NAME}:{API_PORT}
    token: {token}
    caCertHashes:
      - {ca_pin}
{registration}"
    )
}

/// Run the join steps on the node (`join`, `cni`, `ready`), with the control plane's agent for
/// the token.
pub fn run(control_plane: &mut Client, node: &mut Client, j: &Join, rep: &mut Reporter) -> Result<(), BootstrapError> {
    let agent = |step: &'static str| move |source| BootstrapError::Agent { step, source };
    let t = Instant::now();
    let version = j.node.kubernetes_version;
    if node.stat(KUBELET_CONF).map_err(agent("join"))?.exists {
        rep.step("join", t, false, format!("{} joined already ({KUBELET_CONF} exists)", j.node.node_name));
    } else {
        let token = new_token();
        let create = ["token", "create", token.as_str(), "--ttl", TOKEN_TTL, "--kubeconfig", relative(super::ADMIN_CONF).as_str()].map(String::from);
        kubeadm(control_plane, j.control_plane, version, "token create", &create, j.timeout)?;
        let yaml = render_join(&j.node, &token, &j.ca_pin);
        node.upload_bytes(KUBEADM_JOIN_YAML, yaml.as_bytes(), 0o600, None).map_err(agent("join"))?;
        let args = ["join".to_string(), "--config".into(), relative(KUBEADM_JOIN_YAML), format!("--ignore-preflight-errors={}", IGNORED_PREFLIGHT.join(","))];
        kubeadm(node, j.node.node_name, version, "join", &args, j.timeout)?;
        rep.step("join", t, true, format!("kubeadm join {CONTROL_PLANE_NAME}:{API_PORT} {version} (token from {}, valid {TOKEN_TTL})", j.control_plane));
    }

    super::cni(node, &j.pod_range, rep)?;

    let t = Instant::now();
    let http = Http::with_client_tls(Duration::from_secs(5), Duration::from_secs(10), j.api.ca_pem, j.api.cert_pem, j.api.key_pem)?;
    node_ready(&http, &j.api.url, j.node.node_name, j.timeout)?;
    rep.step("ready", t, false, format!("node {} Ready at {}", j.node.node_name, j.api.url));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_api::api::Runtime;

    #[test]
    fn tokens_have_kubeadms_shape_and_differ() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        for t in [&a, &b] {
            let (id, secret) = t.split_once('.').unwrap();
            assert_eq!((id.len(), secret.len()), (6, 16), "{t}");
            assert!(t.chars().all(|c| c == '.' || c.is_ascii_lowercase() || c.is_ascii_digit()), "{t}");
        }
    }

    #[test]
    fn join_configuration_names_endpoint_token_pin_and_node() {
        let n = Node { cluster_name: "p", node_name: "p-m02", node_ip: "192.168.49.3", kubernetes_version: "v1.34.1", runtime: Runtime::Containerd };
        let y = render_join(&n, "abcdef.0123456789abcdef", "sha256:00");
        for want in [
            "kind: JoinConfiguration",
            "apiServerEndpoint: control-plane.minikube.internal:8443",
            "token: abcdef.0123456789abcdef",
            "- sha256:00",
            "name: \"p-m02\"",
            "value: 192.168.49.3",
            "criSocket: unix://",
        ] {
            assert!(y.contains(want), "{want} in\n{y}");
        }
    }
}
