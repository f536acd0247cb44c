//! The Kubernetes bootstrap against test doubles, for what the real cluster of `kubernetes.rs`
//! cannot be made to show: a kubeadm that fails (its output must reach the error), an API server
//! whose node never becomes Ready (a bounded wait naming the URL), a join configuration with a bad
//! CA pin, and the exact arguments and files of each call (recorded by `kubeadm-test-double`,
//! which checks its config as YAML), in a test root served by the real agent, with a local HTTPS
//! stand-in for the API server's `/readyz` and node. The real kubeadm, kubelet and control plane
//! run in `kubernetes.rs`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::host::RecordingHost;
use agent_api::api::Runtime;
use agent_api::client::Client;
use launcher::report::{Output, Reporter};
use launcher::resources::certs;
use launcher::start::bootstrap::join::{self, Join};
use launcher::start::bootstrap::{self, Api, Bootstrap, BootstrapError, Node};

const VERSION: &str = "v1.34.1";

/// A node root with the agent serving it, the certificates placed, the kubeadm double uploaded.
struct Fixture {
    root: tempfile::TempDir,
    home: tempfile::TempDir,
    pc: certs::ProfileCerts,
    client: Client,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
    let home = tempfile::tempdir().unwrap();
    let cas = certs::shared_cas(&home.path().join("certs")).unwrap();
    let pc = certs::ensure_profile(&cas, &home.path().join("p/certs"), &home.path().join("p/trust"), "10.0.2.15").unwrap();
    let tls = agent_api::tls::server_config(&pc.agent_ca_pem, &pc.agent).unwrap();
    let node = agent::ops::Node::new(agent::paths::GuestRoot::new(root.path()), Arc::new(RecordingHost::node("minikube")));
    let server = agent::server::Server::bind("127.0.0.1:0".parse().unwrap(), tls, Arc::new(agent::server::Agent::new(node, None))).unwrap();
    let addr = server.local_addr().unwrap();
    server.spawn();
    let mut client = Client::connect(addr, "127.0.0.1", &pc.agent_ca_pem, &pc.launcher).unwrap();
    client.certs(&certs::certs_request(&pc)).unwrap();
    client.upload_bytes(certs::GUEST_SA_PUB, pc.sa_pub_pem.as_bytes(), 0o644, None).unwrap();
    let double = std::fs::read(env!("CARGO_BIN_EXE_kubeadm-test-double")).unwrap();
    let sha = pki::digest::sha256_hex(&double);
    client.upload_binary(VERSION, "kubeadm", &sha, &mut &double[..], double.len() as u64).unwrap();
    Fixture { root, home, pc, client }
}

/// An HTTPS stand-in for the API server (its certificate, client certificates of the cluster
/// CA required): `/readyz` answers 503 `unready` times then `ok`; the node is Ready when
/// `ready`. Returns its URL.
fn api_stand_in(pc: &certs::ProfileCerts, unready: usize, ready: bool) -> String {
    let tls = agent_api::tls::server_config(&pc.cluster_ca.cert_pem, &pc.apiserver).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", l.local_addr().unwrap().port());
    let seen = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for sock in l.incoming().flatten() {
            let (tls, seen) = (tls.clone(), seen.clone());
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(tls) else { return };
                let mut s = rustls::StreamOwned::new(conn, sock);
                let mut reader = BufReader::new(&mut s);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body) = if path == "/readyz" {
                    if seen.fetch_add(1, Ordering::SeqCst) < unready {
                        (503, "[-]etcd failed: not yet".to_string())
                    } else {
                        (200, "ok".to_string())
                    }
                } else if path.starts_with("/api/v1/nodes/") {
                    let s = if ready { "True" } else { "False" };
                    (200, format!("{{\"kind\":\"Node\",\"status\":{{\"conditions\":[{{\"type\":\"Ready\",\"status\":\"{s}\"}}]}}}}"))
                } else {
                    (404, "not found".to_string())
                };
                let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = s.flush();
                s.conn.send_close_notify();
                let _ = s.flush();
            });
        }
    });
    url
}

fn run(f: &mut Fixture, url: &str, timeout: Duration, rep: &mut Reporter) -> Result<(), BootstrapError> {
    let kubeconfig = f.home.path().join("p/kubeconfig");
    let b = Bootstrap {
        node: Node { cluster_name: "node1", node_name: "node1", node_ip: "10.0.2.15", kubernetes_version: VERSION, runtime: Runtime::Containerd },
        api: Api { url: url.to_string(), ca_pem: &f.pc.cluster_ca.cert_pem, cert_pem: &f.pc.client.cert_pem, key_pem: &f.pc.client.key_pem },
        pod_range: launcher::topology::pod_range(1),
        kubeconfig: &kubeconfig,
        timeout,
    };
    bootstrap::run(&mut f.client, &b, rep)
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_default()
}

#[test]
fn bootstrap_with_the_kubeadm_test_double_and_an_api_stand_in() {
    let mut f = fixture();
    let url = api_stand_in(&f.pc, 2, true);
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    run(&mut f, &url, Duration::from_secs(30), &mut rep).unwrap();
    let steps: Vec<&str> = rep.events.iter().map(|e| e.step).collect();
    assert_eq!(steps, ["kubeadm", "cni", "kubeconfig", "ready"]);
    // What kubeadm was given: its config (checked as YAML by the double) and minikube's
    // preflight exceptions.
    let args = read(f.root.path(), "var/tmp/minikube/kubeadm-test-double.args");
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(&args[..3], ["init", "--config", "var/tmp/minikube/kubeadm.yaml"], "{args:?}");
    assert!(args[3].starts_with("--ignore-preflight-errors=") && args[3].contains("Port-10250") && args[3].contains("Swap"), "{args:?}");
    assert!(read(f.root.path(), "var/tmp/minikube/kubeadm.yaml").contains("kind: KubeProxyConfiguration"));
    let cni: serde_json::Value = serde_json::from_str(&read(f.root.path(), "etc/cni/net.d/1-k8s.conflist")).unwrap();
    assert_eq!(cni["plugins"][0]["type"], "bridge");
    assert_eq!(cni["plugins"][0]["ipam"]["subnet"], "10.244.0.0/24", "the first node's pod range");
    let kc = std::fs::read_to_string(f.home.path().join("p/kubeconfig")).unwrap();
    assert!(kc.contains(&format!("server: {url}")) && !kc.contains("control-plane.minikube.internal"), "admin.conf, server rewritten: {kc}");

    // A restart: the control plane exists, kubeadm init does not run again.
    std::fs::remove_file(f.root.path().join("var/tmp/minikube/kubeadm-test-double.args")).unwrap();
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    run(&mut f, &url, Duration::from_secs(30), &mut rep).unwrap();
    assert!(rep.events[0].detail.contains("not initialised again"), "{:?}", rep.events[0]);
    assert!(!f.root.path().join("var/tmp/minikube/kubeadm-test-double.args").exists(), "kubeadm did not run");
}

#[test]
fn bootstrap_errors_with_test_doubles_carry_kubeadm_output_and_the_url() {
    let mut f = fixture();
    // kubeadm fails: the error carries its last lines.
    std::fs::create_dir_all(f.root.path().join("etc/kubernetes")).unwrap();
    std::fs::write(f.root.path().join("etc/kubernetes/kubeadm-test-double.fail"), "[ERROR CRI]: container runtime is not running\n").unwrap();
    let url = api_stand_in(&f.pc, 0, false);
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
    let e = run(&mut f, &url, Duration::from_secs(30), &mut rep).unwrap_err();
    let t = e.to_string();
    assert!(
        matches!(e, BootstrapError::Kubeadm { command: "init", .. }) && t.contains("container runtime is not running") && t.contains("kubelet journal"),
        "{t}"
    );

    // kubeadm succeeds but the node never becomes Ready: a bounded wait naming what and where.
    std::fs::remove_file(f.root.path().join("etc/kubernetes/kubeadm-test-double.fail")).unwrap();
    let e = run(&mut f, &url, Duration::from_secs(2), &mut rep).unwrap_err().to_string();
    assert!(e.contains("the node's Ready condition") && e.contains("/api/v1/nodes/node1") && e.contains("Ready=False"), "{e}");
}

#[test]
fn the_kubeadm_test_double_refuses_a_missing_or_wrong_field() {
    let d = tempfile::tempdir().unwrap();
    let certs = d.path().join("var/lib/minikube/certs");
    std::fs::create_dir_all(&certs).unwrap();
    for f in ["ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "sa.key", "sa.pub"] {
        std::fs::write(certs.join(f), "x").unwrap();
    }
    let good = bootstrap::render(&Node { cluster_name: "m", node_name: "m", node_ip: "10.0.2.15", kubernetes_version: VERSION, runtime: Runtime::Docker });
    let cases = [
        (good.clone(), None),
        (good.replace("  podSubnet: \"10.244.0.0/16\"\n", ""), Some("networking.podSubnet: missing")),
        (good.replace("cgroupDriver: systemd", "cgroupDriver: cgroupfs"), Some("cgroupDriver")),
        (good.replace("kind: KubeProxyConfiguration", "kind: Other"), Some("no KubeProxyConfiguration")),
    ];
    for (yaml, want) in cases {
        std::fs::write(d.path().join("kubeadm.yaml"), &yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubeadm-test-double"))
            .args(["init", "--config", "kubeadm.yaml"])
            .current_dir(d.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        match want {
            None => assert!(out.status.success(), "{err}"),
            Some(w) => assert!(!out.status.success() && err.contains(w), "{w:?} not in {err}"),
        }
    }
}

/// A second node joins: the token is created on the control plane (which has admin.conf), the
/// joining node's JoinConfiguration carries that token and the pin of the cluster CA it was given,
/// the node gets its own pod range, and a second start does not join again.
#[test]
fn a_second_node_joins_with_a_token_from_the_control_plane() {
    let mut cp = fixture();
    let mut node = fixture();
    let url = api_stand_in(&cp.pc, 0, true);
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    run(&mut cp, &url, Duration::from_secs(30), &mut rep).unwrap();

    let ca_der = pki::certs_from_pem(node.pc.cluster_ca.cert_pem.as_bytes(), "ca").unwrap();
    let ca_pin = pki::public_key_pin(&ca_der[0]).unwrap();
    let j = Join {
        node: Node { cluster_name: "node1", node_name: "node1-m02", node_ip: "192.168.49.3", kubernetes_version: VERSION, runtime: Runtime::Containerd },
        control_plane: "node1",
        ca_pin: ca_pin.clone(),
        pod_range: launcher::topology::pod_range(2),
        api: Api { url: url.clone(), ca_pem: &cp.pc.cluster_ca.cert_pem, cert_pem: &cp.pc.client.cert_pem, key_pem: &cp.pc.client.key_pem },
        timeout: Duration::from_secs(30),
    };
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    join::run(&mut cp.client, &mut node.client, &j, &mut rep).unwrap();
    let steps: Vec<&str> = rep.events.iter().map(|e| e.step).collect();
    assert_eq!(steps, ["join", "cni", "ready"]);

    let created: Vec<String> = read(cp.root.path(), "etc/kubernetes/kubeadm-test-double.tokens").lines().map(String::from).collect();
    assert_eq!(created.len(), 1, "one token created on the control plane");
    let config = read(node.root.path(), "var/tmp/minikube/kubeadm-join.yaml");
    assert!(config.contains(&format!("token: {}", created[0])), "the join uses the control plane's token:\n{config}");
    assert!(config.contains(&format!("- {ca_pin}")), "the join pins the cluster CA:\n{config}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(node.root.path().join("var/tmp/minikube/kubeadm-join.yaml")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the join configuration holds a secret");
    let args = read(node.root.path(), "var/tmp/minikube/kubeadm-test-double.args");
    assert!(args.starts_with("join\n--config\nvar/tmp/minikube/kubeadm-join.yaml\n--ignore-preflight-errors="), "{args}");
    let cni: serde_json::Value = serde_json::from_str(&read(node.root.path(), "etc/cni/net.d/1-k8s.conflist")).unwrap();
    assert_eq!(cni["plugins"][0]["ipam"]["subnet"], "10.244.1.0/24", "the second node's pod range");

    // Again: the node has joined (kubelet.conf), no token is created, kubeadm does not run.
    std::fs::remove_file(node.root.path().join("var/tmp/minikube/kubeadm-test-double.args")).unwrap();
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    join::run(&mut cp.client, &mut node.client, &j, &mut rep).unwrap();
    assert!(rep.events[0].detail.contains("joined already") && !rep.events[0].changed, "{:?}", rep.events[0]);
    assert_eq!(read(cp.root.path(), "etc/kubernetes/kubeadm-test-double.tokens").lines().count(), 1);
    assert!(!node.root.path().join("var/tmp/minikube/kubeadm-test-double.args").exists(), "kubeadm did not run");

    // A join configuration with a bad pin is refused by the double, and the error names the
    // node and carries kubeadm's words.
    let mut other = fixture();
    let bad = Join { ca_pin: "sha256:nothex".into(), ..j };
    let e = join::run(&mut cp.client, &mut other.client, &bad, &mut Reporter::new(Output::Text, Box::new(std::io::sink()))).unwrap_err();
    let t = e.to_string();
    assert!(matches!(e, BootstrapError::Kubeadm { command: "join", .. }) && t.contains("node1-m02") && t.contains("caCertHashes"), "{t}");
}
