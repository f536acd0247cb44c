//! kubeadm-test-double: stands in for `kubeadm init`, which cannot be downloaded here. It records
//! its arguments, reads the `--config` file as kubeadm would (multi-document YAML) and refuses a
//! missing or wrong field among those minikube's bootstrap relies on; then it writes
//! `etc/kubernetes/admin.conf` as kubeadm would. Paths are relative to its working directory
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

fn check(yaml: &str) -> Result<(), String> {
    let mut docs = std::collections::BTreeMap::new();
    for d in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v = Value::deserialize(d).map_err(|e| format!("config is not YAML: {e}"))?;
        let kind = v.get("kind").and_then(Value::as_str).ok_or("a document has no kind")?.to_string();
        docs.insert(kind, v);
    }
    let get = |k: &str| docs.get(k).ok_or_else(|| format!("no {k} document"));
    let (init, cluster, kubelet, proxy) = (get("InitConfiguration")?, get("ClusterConfiguration")?, get("KubeletConfiguration")?, get("KubeProxyConfiguration")?);
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
    if args.first().map(String::as_str) != Some("init") {
        return fail(&format!("only `init` is stood in for, not {args:?}"));
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
