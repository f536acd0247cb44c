//! Real Kubernetes on podman nodes, from the bundle `cargo xtask kubernetes` built (kubelet,
//! kubeadm, the control plane's images, all from their Go modules; nothing downloaded): one
//! cluster that checks many things, in order, on the machine's one core budget.
//!
//! 1. One node: `start` → Ready with every kube-system pod Running, the images preloaded through
//!    the agent (bytes counted). kubeadm's own validation accepts the configuration we render.
//! 2. A corrupted image archive is refused by its SHA-256 and leaves the node as it was; the
//!    good one is imported and its pod prints its greeting.
//! 3. A Deployment behind a ClusterIP Service answers another pod by its DNS name (CoreDNS and
//!    kube-proxy at work).
//! 4. Two more nodes join: all Ready; a pod on the first node reaches a pod on the third by its
//!    pod IP and through a Service (the nodes route each other's pod ranges).
//! 5. `node delete` takes the third node out of `kubectl get nodes` and out of the routes.
//! 6. stop/start of the control plane: Ready again with no second `kubeadm init`, no image
//!    bytes sent, the Deployment's pod Running again and answering.
//!
//! Needs root, podman, runc, go, the kicbase archive and the bundle (`cargo xtask test` builds
//! both).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use agent_api::api::ImageUpload;
use common::Kubectl;
use image::oci::{build_image, write_archive, write_layer, BlobStore, Compression, ImageConfig, ImageMeta};
use image::rootfs::{Entry, Tree};
use launcher::model::Driver;
use launcher::options::StartOptions;
use launcher::report::{Output, Reporter, StepEvent};
use launcher::resources::state::Home;
use launcher::{driver, start};

const NETCHECK: &str = "localhost/netcheck:v1";
const GREETING: &str = "hello from a pod of a real cluster, in an image built by image::oci";

/// Deletes the cluster (every node, its network) even when the test fails half way.
struct DeleteCluster<'a>(&'a Home, String);
impl Drop for DeleteCluster<'_> {
    fn drop(&mut self) {
        let _ = launcher::cluster::delete_all(self.0, &self.1, Duration::from_secs(30));
    }
}

fn step<'a>(events: &'a [StepEvent], name: &str) -> &'a StepEvent {
    events.iter().find(|e| e.step == name).unwrap_or_else(|| panic!("no step {name} in {events:?}"))
}

fn secs(events: &[StepEvent]) -> f64 {
    events.iter().map(|e| e.seconds).sum()
}

/// The bytes the `images` step says it sent.
fn sent_bytes(events: &[StepEvent]) -> u64 {
    let d = &step(events, "images").detail;
    let n = d.split("sent ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or_else(|| panic!("no byte count in {d:?}"));
    n.parse().unwrap_or_else(|_| panic!("{d:?}"))
}

/// The netcheck image (a static Go program built from e2e/testdata/netcheck) as an OCI archive.
fn netcheck_archive(dir: &Path) -> (PathBuf, String) {
    let bin = e2e::go_program("netcheck", dir);
    let mut tree = Tree::new();
    tree.insert("/usr/local/bin/netcheck", Entry { mtime: 1_700_000_000, ..Entry::file(std::fs::read(bin).unwrap(), 0o755) });
    tree.insert("/tmp", Entry { mtime: 1_700_000_000, ..Entry::dir(0o1777) });
    let store = BlobStore::open(dir.join("store")).unwrap();
    let layer = write_layer(&store, &tree, Compression::default(), "netcheck").unwrap();
    let mut config = ImageConfig::linux(platform::Arch::host().unwrap().debian());
    config.entrypoint = vec!["/usr/local/bin/netcheck".into()];
    let (name, tag) = NETCHECK.rsplit_once(':').unwrap();
    let meta = ImageMeta { name: name.into(), tag: tag.into(), epoch: 1_700_000_000, ..Default::default() };
    let img = build_image(&store, vec![layer], &config, &meta).unwrap();
    let out = dir.join("netcheck.tar");
    write_archive(&img, &out).unwrap();
    (out, img.manifest_digest)
}

/// Import the netcheck archive into node `name`'s runtime through its agent (the preload path).
fn load_netcheck(home: &Home, name: &str, archive: &Path, digest: &str) {
    let mut c = driver::agent::connect_existing(home, &home.machine(name).unwrap()).unwrap();
    let (sha, len) = pki::digest::sha256_file(archive).unwrap();
    let req = ImageUpload { reference: NETCHECK.into(), sha256: sha, digest: digest.into() };
    c.upload_image(&req, &mut std::fs::File::open(archive).unwrap(), len).unwrap_or_else(|e| panic!("{name}: {e}"));
}

fn node_exec(home: &Home, name: &str, argv: &[&str]) -> String {
    let mut c = driver::agent::connect_existing(home, &home.machine(name).unwrap()).unwrap();
    common::exec(&mut c, argv)
}

fn pod(name: &str, node: Option<&str>, args: &[&str], restart: &str) -> String {
    let node = node.map(|n| format!("  nodeName: {n}\n")).unwrap_or_default();
    let args = args.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n{node}  restartPolicy: {restart}\n  containers:\n  - name: main\n    \
         image: {NETCHECK}\n    imagePullPolicy: Never\n    args: [{args}]\n"
    )
}

fn service(name: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - port: 80\n    targetPort: 8080\n")
}

#[test]
fn real_kubernetes_on_podman_nodes() {
    let _one = e2e::GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let archive = e2e::kicbase_archive(&["podman", "runc"]);
    let cache = e2e::kubernetes_bundle();
    let version = platform::bundle::DEFAULT_KUBERNETES_VERSION;
    let arch = platform::Arch::host().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("home"));
    let name = format!("k8s{}", std::process::id());
    let _cleanup = DeleteCluster(&home, name.clone());
    let mut opts = StartOptions::kic(&name, Driver::Podman, &archive.to_string_lossy());
    opts.cache_dir = Some(cache.clone());
    opts.kubernetes_timeout = Duration::from_secs(300);
    let k = Kubectl { bin: platform::bundle::version_dir(&cache, arch, version).join("kubectl"), kubeconfig: home.machine(&name).unwrap().kubeconfig() };

    // kubeadm's own check of the configuration we render.
    let yaml = dir.path().join("kubeadm.yaml");
    let node = launcher::start::bootstrap::Node {
        cluster_name: &name,
        node_name: &name,
        node_ip: "192.168.49.2",
        kubernetes_version: version,
        runtime: agent_api::api::Runtime::Containerd,
    };
    std::fs::write(&yaml, launcher::start::bootstrap::render(&node)).unwrap();
    let kubeadm = platform::bundle::version_dir(&cache, arch, version).join("kubeadm");
    let v = Command::new(&kubeadm).args(["config", "validate", "--config"]).arg(&yaml).output().unwrap();
    assert!(v.status.success(), "kubeadm config validate: {}{}", String::from_utf8_lossy(&v.stdout), String::from_utf8_lossy(&v.stderr));

    // 1. One node to Ready, images preloaded.
    let t = Instant::now();
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    launcher::cluster::start(&home, &opts, 1, &mut rep).unwrap_or_else(|e| panic!("start: {e:#}"));
    let start_to_ready = t.elapsed().as_secs_f64();
    let first = rep.events.clone();
    assert!(step(&first, "images").changed && sent_bytes(&first) > 0, "{:?}", step(&first, "images"));
    assert!(step(&first, "kubeadm").detail.contains("kubeadm init"), "{:?}", step(&first, "kubeadm"));
    assert!(step(&first, "ready").detail.contains("Ready"));
    assert_eq!(k.nodes(), [(name.clone(), true)]);
    k.wait("every kube-system pod Running", 180, |k| {
        let out = k.try_run(&["get", "pods", "-n", "kube-system", "--no-headers", "-o", "custom-columns=N:.metadata.name,P:.status.phase"], None).ok()?;
        let rows: Vec<&str> = out.lines().collect();
        (rows.len() >= 7 && rows.iter().all(|l| l.ends_with("Running"))).then_some(())
    });
    eprintln!(
        "FIGURE kubernetes podman: start -> node Ready {start_to_ready:.1} s (images {:.1} s, {} bytes; kubeadm init {:.1} s)",
        step(&first, "images").seconds,
        sent_bytes(&first),
        step(&first, "kubeadm").seconds
    );

    // 2. A corrupted archive is refused by digest and the node is as it was; the good one runs.
    let (netcheck, digest) = netcheck_archive(dir.path());
    let good = std::fs::read(&netcheck).unwrap();
    let (sha, _) = pki::digest::sha256_file(&netcheck).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let mut c = driver::agent::connect_existing(&home, &home.machine(&name).unwrap()).unwrap();
    let req = ImageUpload { reference: NETCHECK.into(), sha256: sha.clone(), digest: digest.clone() };
    let e = c.upload_image(&req, &mut bad.as_slice(), bad.len() as u64).unwrap_err().to_string();
    assert!(e.contains("sha256") || e.contains("SHA-256") || e.contains("digest"), "{e}");
    drop(c);
    let listed = node_exec(&home, &name, &["ctr", "-n", "k8s.io", "images", "ls", "-q"]);
    assert!(!listed.contains("netcheck"), "a refused image is not in the runtime: {listed}");
    let blob = node_exec(&home, &name, &["ls", "/var/lib/minikube/blobs/sha256"]);
    assert!(!blob.contains(&sha), "a refused archive is not in the blob store");
    load_netcheck(&home, &name, &netcheck, &digest);
    k.apply(&pod("hello", None, &["hello"], "Never"));
    k.wait_phase("hello", "Succeeded", 120);
    assert_eq!(k.run(&["logs", "hello"]).trim(), GREETING);

    // 3. A Deployment behind a Service, reached by its DNS name from another pod.
    k.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    \
         metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: main\n        image: {NETCHECK}\n        imagePullPolicy: Never\n        \
         args: [\"serve\", \":8080\"]\n"
    ));
    k.apply(&service("web"));
    // The Service's backend and the cluster's DNS serving first (the client retries anyway).
    k.run(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    k.run(&["-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s"]);
    k.apply(&pod("client", None, &["get", "http://web.default.svc.cluster.local/", "120"], "Never"));
    k.wait_phase("client", "Succeeded", 180);
    assert!(k.run(&["logs", "client"]).starts_with("netcheck from web-"), "{}", k.run(&["logs", "client"]));

    // 4. Three nodes: all Ready; node 1 reaches a pod on node 3 by pod IP and through a Service.
    let t = Instant::now();
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    launcher::cluster::start(&home, &opts, 3, &mut rep).unwrap_or_else(|e| panic!("start --nodes 3: {e:#}"));
    let (m02, m03) = (launcher::topology::node_name(&name, 2), launcher::topology::node_name(&name, 3));
    k.wait("3 nodes Ready", 120, |k| (k.nodes().iter().filter(|(_, r)| *r).count() == 3).then_some(()));
    eprintln!("FIGURE kubernetes podman: 2 more nodes joined and Ready {:.1} s", t.elapsed().as_secs_f64());
    for n in [&m02, &m03] {
        load_netcheck(&home, n, &netcheck, &digest);
    }
    k.apply(&pod("far", Some(&m03), &["serve", ":8080"], "Always"));
    k.apply(&service("far"));
    k.wait_phase("far", "Running", 120);
    let far_ip = k.run(&["get", "pod", "far", "-o", "jsonpath={.status.podIP}"]);
    assert!(far_ip.starts_with("10.244.2."), "node 3's pod range: {far_ip}");
    k.apply(&pod("near-ip", Some(&name), &["get", &format!("http://{far_ip}:8080/"), "60"], "Never"));
    k.apply(&pod("near-svc", Some(&name), &["get", "http://far/", "60"], "Never"));
    for p in ["near-ip", "near-svc"] {
        k.wait_phase(p, "Succeeded", 120);
        assert_eq!(k.run(&["logs", p]).trim(), "netcheck from far", "{p}");
    }

    // 5. node delete: out of the cluster and out of the other nodes' routes.
    launcher::cluster::delete_node(&home, &name, &m03, Duration::from_secs(30)).unwrap();
    let nodes: Vec<String> = k.nodes().into_iter().map(|(n, _)| n).collect();
    assert_eq!(nodes, [name.clone(), m02.clone()]);
    let routes = node_exec(&home, &name, &["ip", "-4", "route"]);
    assert!(routes.contains("10.244.1.0/24 via") && !routes.contains("10.244.2.0/24"), "{routes}");

    // 6. stop/start of the control plane: no second kubeadm init, no image bytes, workloads back.
    let web_before = k.run(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
    let m = home.machine(&name).unwrap();
    driver::stop(&m, Duration::from_secs(60)).unwrap();
    let t = Instant::now();
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    start::start(&home, &opts, &mut rep).unwrap_or_else(|e| panic!("restart: {e}"));
    let restart_to_ready = t.elapsed().as_secs_f64();
    let again = rep.events.clone();
    assert_eq!(sent_bytes(&again), 0, "{:?}", step(&again, "images"));
    assert!(!step(&again, "images").changed);
    assert!(step(&again, "kubeadm").detail.contains("not initialised again"), "{:?}", step(&again, "kubeadm"));
    k.wait("the control plane Ready again", 120, |k| k.nodes().iter().any(|(n, r)| *n == name && *r).then_some(()));
    k.wait("the Deployment's pod Running again", 180, |k| {
        let out = k.try_run(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.phase}"], None).ok()?;
        (out.trim() == "Running").then_some(())
    });
    k.apply(&pod("client2", None, &["get", "http://web.default.svc.cluster.local/", "120"], "Never"));
    k.wait_phase("client2", "Succeeded", 180);
    assert!(k.run(&["logs", "client2"]).starts_with("netcheck from web-"));
    eprintln!("FIGURE kubernetes podman: restart -> Ready {restart_to_ready:.1} s ({} steps {:.1} s; web pod {web_before} before)", again.len(), secs(&again));
}
