//! kubeadm-test-double: stands in for `kubeadm init`, `kubeadm token create` and `kubeadm join`,
//! which cannot be downloaded here. It records its arguments, reads the `--config` file as
//! kubeadm would (multi-document YAML) and refuses a missing or wrong field among those minikube's
//! bootstrap relies on; then it writes what kubeadm would: `etc/kubernetes/admin.conf` (init),
//! the token in `etc/kubernetes/kubeadm-test-double.tokens` (token create, which needs
//! admin.conf), `etc/kubernetes/kubelet.conf` (join). Paths are relative to its working directory
//! (the node's root). A file `etc/kubernetes/kubeadm-test-double.fail` makes it fail with that
//! file's text (the error path of the tests).

use std::process::ExitCode;

use serde_yaml_ng::Value;

fn fail(msg: &str) -> ExitCode {
    eprintln!("kubeadm-test-double: {msg}");
    ExitCode::FAILURE
}

fn field<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, k| v.get(k))
}

fn text(doc: &Value, kind: &str, path: &str) -> Result<String, String> {
    field(doc, path).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("{kind}.{path}: missing"))
}

fn documents(yaml: &str) -> Result<std::collections::BTreeMap<String, Value>, String> {
    let mut docs = std::collections::BTreeMap::new();
    for d in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v = Value::deserialize(d).map_err(|e| format!("config is not YAML: {e}"))?;
        let kind = v.get("kind").and_then(Value::as_str).ok_or("a document has no kind")?.to_string();
        docs.insert(kind, v);
    }
    Ok(docs)
}

/// A bootstrap token: `[a-z0-9]{6}.[a-z0-9]{16}`.
fn is_token(t: &str) -> bool {
    let ok = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    t.split_once('.').is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

fn check_join(yaml: &str) -> Result<(), String> {
    let docs = documents(yaml)?;
    let join = docs.get("JoinConfiguration").ok_or("no JoinConfiguration document")?;
    let k = "JoinConfiguration";
    if text(join, k, "apiVersion")? != "kubeadm.k8s.io/v1beta4" {
        return Err(format!("{k}.apiVersion: not kubeadm.k8s.io/v1beta4"));
    }
    let endpoint = text(join, k, "discovery.bootstrapToken.apiServerEndpoint")?;
    if endpoint != "control-plane.minikube.internal:8443" {
        return Err(format!("{k}.discovery.bootstrapToken.apiServerEndpoint: {endpoint:?}"));
    }
    let token = text(join, k, "discovery.bootstrapToken.token")?;
    if !is_token(&token) {
        return Err(format!("{k}.discovery.bootstrapToken.token: {token:?} is not a bootstrap token"));
    }
    let pins = field(join, "discovery.bootstrapToken.caCertHashes")
        .and_then(Value::as_sequence)
        .ok_or(format!("{k}.discovery.bootstrapToken.caCertHashes: missing"))?;
    let pin_ok = |p: &Value| p.as_str().and_then(|p| p.strip_prefix("sha256:")).is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
    if pins.is_empty() || !pins.iter().all(pin_ok) {
        return Err(format!("{k}.discovery.bootstrapToken.caCertHashes: {pins:?} are not sha256:<hex> pins"));
    }
    if text(join, k, "nodeRegistration.name")?.is_empty() {
        return Err(format!("{k}.nodeRegistration.name: empty"));
    }
    if !text(join, k, "nodeRegistration.criSocket")?.starts_with("unix://") {
        return Err(format!("{k}.nodeRegistration.criSocket: not a unix:// socket"));
    }
    Ok(())
}

fn check(yaml: &str) -> Result<(), String> {
    let docs = documents(yaml)?;
    let get = |k: &str| docs.get(k).ok_or_else(|| format!("no {k} document"));
    let (init, cluster, kubelet, proxy) =
        (get("InitConfiguration")?, get("ClusterConfiguration")?, get("KubeletConfiguration")?, get("KubeProxyConfiguration")?);
    let want = |doc: &Value, kind: &str, path: &str, value: &str| -> Result<(), String> {
        let got = text(doc, kind, path)?;
        if got != value {
            return Err(format!("{kind}.{path}: {got:?}, expected {value:?}"));
        }
        Ok(())
    };
    want(init, "InitConfiguration", "apiVersion", "kubeadm.k8s.io/v1beta4")?;
    want(cluster, "ClusterConfiguration", "apiVersion", "kubeadm.k8s.io/v1beta4")?;
    want(cluster, "ClusterConfiguration", "certificatesDir", "/var/lib/minikube/certs")?;
    want(cluster, "ClusterConfiguration", "controlPlaneEndpoint", "control-plane.minikube.internal:8443")?;
    want(cluster, "ClusterConfiguration", "networking.podSubnet", "10.244.0.0/16")?;
    want(cluster, "ClusterConfiguration", "networking.serviceSubnet", "10.96.0.0/12")?;
    want(cluster, "ClusterConfiguration", "etcd.local.dataDir", "/var/lib/minikube/etcd")?;
    want(kubelet, "KubeletConfiguration", "cgroupDriver", "systemd")?;
    want(proxy, "KubeProxyConfiguration", "clusterCIDR", "10.244.0.0/16")?;
    let version = text(cluster, "ClusterConfiguration", "kubernetesVersion")?;
    if !version.starts_with('v') {
        return Err(format!("ClusterConfiguration.kubernetesVersion: {version:?} is not a version"));
    }
    let cri = text(init, "InitConfiguration", "nodeRegistration.criSocket")?;
    if !cri.starts_with("unix://") || text(kubelet, "KubeletConfiguration", "containerRuntimeEndpoint")? != cri {
        return Err(format!("InitConfiguration.nodeRegistration.criSocket {cri:?} must be the kubelet's containerRuntimeEndpoint, a unix:// socket"));
    }
    if text(init, "InitConfiguration", "nodeRegistration.name")?.is_empty() {
        return Err("InitConfiguration.nodeRegistration.name: empty".into());
    }
    let ip = text(init, "InitConfiguration", "localAPIEndpoint.advertiseAddress")?;
    ip.parse::<std::net::IpAddr>().map_err(|_| format!("InitConfiguration.localAPIEndpoint.advertiseAddress: {ip:?} is not an IP address"))?;
    // kubeadm reuses the certificates it finds in certificatesDir.
    for f in ["ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "sa.key", "sa.pub"] {
        if !std::path::Path::new("var/lib/minikube/certs").join(f).is_file() {
            return Err(format!("certificatesDir lacks {f}: kubeadm would make a new one"));
        }
    }
    Ok(())
}

use serde::Deserialize;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("version") {
        println!("kubeadm-test-double");
        return ExitCode::SUCCESS;
    }
    let _ = std::fs::create_dir_all("var/tmp/minikube");
    let _ = std::fs::write("var/tmp/minikube/kubeadm-test-double.args", args.join("\n") + "\n");
    if let Ok(msg) = std::fs::read_to_string("etc/kubernetes/kubeadm-test-double.fail") {
        return fail(msg.trim());
    }
    let write =
        |path: &str, text: &str| std::fs::create_dir_all("etc/kubernetes").and_then(|()| std::fs::write(path, text)).map_err(|e| format!("{path}: {e}"));
    match args.first().map(String::as_str) {
        Some("init") => {}
        Some("token") if args.get(1).map(String::as_str) == Some("create") => {
            let Some(token) = args.get(2).filter(|t| is_token(t)) else {
                return fail(&format!("token create: {:?} is not a bootstrap token", args.get(2)));
            };
            let Some(kubeconfig) = args.iter().position(|a| a == "--kubeconfig").and_then(|i| args.get(i + 1)) else {
                return fail("token create: --kubeconfig is missing");
            };
            if !std::path::Path::new(kubeconfig).is_file() {
                return fail(&format!("token create: {kubeconfig}: no such file (is this the control plane?)"));
            }
            let mut tokens = std::fs::read_to_string("etc/kubernetes/kubeadm-test-double.tokens").unwrap_or_default();
            tokens.push_str(&format!("{token}\n"));
            return match write("etc/kubernetes/kubeadm-test-double.tokens", &tokens) {
                Ok(()) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            };
        }
        Some("join") => {
            let Some(config) = args.iter().position(|a| a == "--config").and_then(|i| args.get(i + 1)) else {
                return fail("join: --config is missing");
            };
            let checked = std::fs::read_to_string(config).map_err(|e| format!("{config}: {e}")).and_then(|y| check_join(&y));
            return match checked.and_then(|()| write("etc/kubernetes/kubelet.conf", "apiVersion: v1\nkind: Config\n")) {
                Ok(()) => {
                    println!("This node has joined the cluster (kubeadm-test-double: nothing was started)");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            };
        }
        _ => return fail(&format!("only init, token create and join are stood in for, not {args:?}")),
    }
    let Some(config) = args.iter().position(|a| a == "--config").and_then(|i| args.get(i + 1)) else {
        return fail("--config is missing");
    };
    let yaml = match std::fs::read_to_string(config) {
        Ok(y) => y,
        Err(e) => return fail(&format!("{config}: {e}")),
    };
    if let Err(e) = check(&yaml) {
        return fail(&e);
    }
    let admin = "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: /var/lib/minikube/certs/ca.crt\n    \
                 server: https://control-plane.minikube.internal:8443\n  name: mk\ncontexts:\n- context:\n    cluster: mk\n    user: kubernetes-admin\n  name: mk\n\
                 current-context: mk\nusers:\n- name: kubernetes-admin\n  user: {}\n";
    if let Err(e) = std::fs::create_dir_all("etc/kubernetes").and_then(|()| std::fs::write("etc/kubernetes/admin.conf", admin)) {
        return fail(&format!("etc/kubernetes/admin.conf: {e}"));
    }
    println!("Your Kubernetes control-plane has initialized successfully! (kubeadm-test-double: nothing was started)");
    ExitCode::SUCCESS
}
