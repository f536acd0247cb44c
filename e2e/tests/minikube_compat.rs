//! The real minikube (`k8s.io/minikube`, built from its Go module by `cargo xtask minikube`)
//! drives our kicbase with the podman driver, offline: its binary and image caches are filled
//! from the Kubernetes bundle (`bundle::minikube::fill_home`), the storage-provisioner image is
//! built from minikube's own module, `--preload=false`, and `--base-image` names our kicbase
//! (plus the bundle's crictl: minikube runs `crictl` on the node and Debian bookworm has none).
//!
//! One profile, in order: `minikube start` → `minikube kubectl -- get nodes` Ready, with the
//! control plane's images the ones from minikube's image cache (ours); `minikube ssh -- ...`;
//! `minikube stop` / `start` → Ready again; `minikube delete` leaves no container, network or
//! volume of the profile behind.
//!
//! The setup (private home, kicbase + crictl image, this host's workarounds, start flags) is
//! `bundle::minikube::run::Minikube`, which `cargo xtask bench minikube` uses too; dropping it
//! deletes whatever is left, even when the test fails.
//!
//! Needs root, podman, the kicbase archive, the bundle and minikube (`cargo xtask test` builds
//! them all); a missing one fails the test naming it.

use std::time::{Duration, Instant};

use bundle::minikube::run::{self, Minikube, NodeImage, Setup};

const PROFILE: &str = "mkcompat";
const KUBERNETES: &str = platform::bundle::DEFAULT_KUBERNETES_VERSION;

/// `minikube ARGS`, which must succeed; its output.
fn ok(mk: &Minikube, args: &[&str], limit: Duration) -> String {
    mk.run(args, limit).unwrap_or_else(|e| panic!("{e}"))
}

fn podman(args: &[&str]) -> String {
    run::podman(args).1
}

#[test]
fn minikube_starts_stops_and_deletes_a_podman_node_of_our_kicbase() {
    let _guard = e2e::GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let kicbase = e2e::kicbase_archive(&["podman"]);
    let cache = e2e::kubernetes_bundle();
    let (bin, storage_provisioner) = e2e::minikube_tools();
    let arch = platform::Arch::host().expect("an amd64 or arm64 host");
    assert!(run::is_root(), "minikube's podman driver runs podman as root (--force): run the test as root");

    // Home filled from the bundle, our kicbase plus the bundle's crictl (one layer) as the image
    // minikube runs, the host's workarounds; nothing of the profile in podman yet.
    let setup = Setup::new(PROFILE, bin, storage_provisioner, NodeImage::Kic(kicbase), cache, arch, KUBERNETES);
    let mk = Minikube::prepare(&setup).unwrap_or_else(|e| panic!("minikube's offline setup: {e}"));
    assert_eq!(mk.filled.files.len(), 3 + 7 + 1, "kubelet, kubeadm, kubectl, seven control-plane images, the storage-provisioner");

    let version = ok(&mk, &["version", "--short"], Duration::from_secs(30));
    assert!(version.contains(bundle::minikube::DEFAULT_VERSION), "minikube version: {version}");

    // 1. start → Ready.
    let t = Instant::now();
    mk.start(Duration::from_secs(900), &|_| {}).unwrap_or_else(|e| panic!("{e}"));
    let ready = mk.wait_ready(Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("minikube start → Ready: {:.1} s (Ready seen {:.1} s after start returned)", t.elapsed().as_secs_f64(), ready.as_secs_f64());

    // The control plane runs the bundle's images, from minikube's image cache.
    let images = ok(&mk, &["ssh", "--", "sudo", "crictl", "images"], Duration::from_secs(60));
    for name in ["registry.k8s.io/kube-apiserver", "registry.k8s.io/etcd", "registry.k8s.io/coredns/coredns", "gcr.io/k8s-minikube/storage-provisioner"] {
        assert!(images.contains(name), "{name} not in the node's images:\n{images}");
    }
    // 2. ssh: our image's identity file, read by minikube's SSH runner.
    let version_json = ok(&mk, &["ssh", "--", "cat", "/version.json"], Duration::from_secs(60));
    let v: serde_json::Value = serde_json::from_str(version_json.trim()).unwrap_or_else(|e| panic!("/version.json is not JSON ({e}): {version_json}"));
    assert!(v.is_object(), "{v}");
    let uname = ok(&mk, &["ssh", "--", "id", "-un"], Duration::from_secs(60));
    assert_eq!(uname.trim(), "docker", "minikube logs in as docker");

    // 3. stop, start → Ready again.
    ok(&mk, &["stop"], Duration::from_secs(300));
    let c = podman(&["ps", "--filter", &format!("name=^{PROFILE}$"), "--format", "{{.Status}}"]);
    assert!(c.trim().is_empty(), "the node still runs after minikube stop: {c}");
    let t = Instant::now();
    mk.start(Duration::from_secs(900), &|_| {}).unwrap_or_else(|e| panic!("{e}"));
    mk.wait_ready(Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("minikube restart → Ready: {:.1} s", t.elapsed().as_secs_f64());

    // 4. delete leaves nothing of the profile (no container, network or volume).
    mk.delete(Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mk.leftovers(), Vec::<String>::new(), "minikube delete left these behind");
}
