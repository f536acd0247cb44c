//! kicbase/spec.toml's `[container]` against what the code hard-wired before the spec said it:
//! the same layers, the same layer for every path (the rules replayed on a synthetic package
//! owner map plus every file of the real overlays), the same image config. No network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use image::kicbase::{config, local_paths, Layering};
use image::spec::{Select, Spec};

fn kicbase_spec() -> Spec {
    Spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../kicbase/spec.toml")).unwrap()
}

/// The split as the code did it before: ours, then a package's path (runtime or base), then
/// top-level entries (base), then the rest (system).
fn classify_before(path: &str, owner: &BTreeMap<String, String>, runtime: &BTreeSet<String>, ours: &BTreeSet<String>) -> usize {
    if ours.contains(path) {
        return 3;
    }
    if let Some(pkg) = owner.get(path) {
        return if runtime.contains(pkg) { 1 } else { 0 };
    }
    if path.matches('/').count() == 1 {
        return 0;
    }
    2
}

#[test]
fn the_layer_policy_places_every_path_as_before() {
    let spec = kicbase_spec();
    let c = spec.container.as_ref().unwrap();
    assert_eq!(c.layers, ["base", "runtimes", "system", "ours"]);

    // The runtime roots as the code listed them, in one brought_by rule.
    let roots = ["containerd", "runc", "docker.io", "containernetworking-plugins", "podman", "crun"];
    let brought: Vec<usize> = c.place.iter().enumerate().filter(|(_, p)| matches!(p.select, Select::BroughtBy(_))).map(|(i, _)| i).collect();
    assert_eq!(brought.len(), 1);
    assert_eq!(c.place[brought[0]].select, Select::BroughtBy(roots.iter().map(|s| s.to_string()).collect()));

    let owner: BTreeMap<String, String> = [
        ("/", "base-files"),
        ("/etc", "base-files"),
        ("/opt", "containerd"),
        ("/usr/bin/containerd", "containerd"),
        ("/usr/sbin/runc", "runc"),
        ("/usr/lib/x86_64-linux-gnu/libseccomp.so.2", "libseccomp2"),
        ("/usr/lib/x86_64-linux-gnu/libgpgme.so.11", "libgpgme11"),
        ("/usr/lib/os-release", "base-files"),
        ("/etc/os-release", "base-files"),
        ("/usr/bin/bash", "bash"),
        ("/etc/systemd/system.conf", "systemd"),
    ]
    .into_iter()
    .map(|(p, o)| (p.to_string(), o.to_string()))
    .collect();
    // What resolving without the roots would leave out: the roots and a private dependency.
    let runtime: BTreeSet<String> = ["containerd", "runc", "libgpgme11"].into_iter().map(String::from).collect();
    let extra = BTreeMap::from([("/usr/bin/minikube-agent".to_string(), (b"agent".to_vec(), 0o755))]);
    let local = local_paths(&spec, &extra, 1_700_000_000).unwrap();
    assert!(local.contains("/usr/bin/minikube-agent") && local.len() > 5, "{local:?}");
    let identity = ["/etc/VERSION", "/version.json", "/usr/lib/os-release", "/etc/os-release"];
    let ours: BTreeSet<String> = local.iter().cloned().chain(identity.iter().map(|s| s.to_string())).collect();

    let layering = Layering { rules: &c.place, owner: &owner, local: local.clone(), brought: BTreeMap::from([(brought[0], runtime.clone())]) };
    let mut paths: BTreeSet<String> = owner.keys().cloned().collect();
    paths.extend(ours.iter().cloned());
    paths.extend(
        ["/bin", "/lib64", "/version.json", "/etc/passwd", "/home/docker", "/var/lib/dpkg/status", "/etc/ssl/certs/ca-certificates.crt"].map(String::from),
    );
    let mut seen = BTreeSet::new();
    for p in &paths {
        let want = classify_before(p, &owner, &runtime, &ours);
        assert_eq!(layering.layer_of(p), want, "{p}");
        seen.insert(want);
    }
    assert_eq!(seen.len(), 4, "every layer is exercised");
}

#[test]
fn the_image_config_is_as_before() {
    let spec = kicbase_spec();
    let cfg = config(spec.container.as_ref().unwrap(), "amd64", "v1.2.3", "abc123");
    assert_eq!(cfg.env, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=docker"]);
    assert_eq!(cfg.entrypoint, ["/usr/bin/minikube-agent", "entrypoint", "--", "/sbin/init"]);
    assert!(cfg.cmd.is_empty());
    assert_eq!(cfg.stop_signal.as_deref(), Some("SIGRTMIN+3"));
    assert_eq!(cfg.exposed_ports, ["22/tcp", "2376/tcp", "7443/tcp", "8443/tcp"]);
    let labels: Vec<(&str, &str)> = cfg.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        labels,
        [
            ("org.opencontainers.image.base.name", "debian:bookworm"),
            ("org.opencontainers.image.description", "minikube node image for container drivers"),
            ("org.opencontainers.image.revision", "abc123"),
            ("org.opencontainers.image.title", "kicbase"),
            ("org.opencontainers.image.version", "v1.2.3"),
        ]
    );
    assert_eq!((cfg.architecture.as_str(), cfg.os.as_str()), ("amd64", "linux"));
}

/// Both shipped specs load through the shared base and keep what they had.
#[test]
fn the_shipped_specs_use_the_shared_base() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let base = std::fs::canonicalize(root.join("iso/base.toml")).unwrap();
    for name in ["iso/spec.toml", "kicbase/spec.toml"] {
        let s = Spec::load(&root.join(name)).unwrap();
        assert_eq!(s.bases.iter().map(|b| std::fs::canonicalize(b).unwrap()).collect::<Vec<_>>(), std::slice::from_ref(&base), "{name}");
        assert_eq!(s.image.hostname, "minikube");
        assert_eq!(s.files.overlays, [Path::new("../overlay"), Path::new("overlay")]);
        assert_eq!(s.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["docker", "sshd"]);
        assert_eq!(s.alternatives["/usr/sbin/iptables"], "/usr/sbin/iptables-nft");
        assert!(s.systemd.mask.iter().any(|u| u == "fstrim.timer"), "{name}");
    }
    let iso = Spec::load(&root.join("iso/spec.toml")).unwrap();
    assert_eq!(iso.alternatives["/opt/cni/bin"], "/usr/lib/cni");
    assert!(iso.container.is_none() && iso.kernel.is_some());
    let kic = kicbase_spec();
    // The container trims come after the base's drop list; the container masks after its masks.
    assert_eq!(kic.files.drop[0], "/usr/share/doc/*/*");
    assert_eq!(kic.files.drop.last().unwrap(), "/usr/lib/systemd/system/local-fs.target.wants/*");
    assert!(kic.systemd.mask.iter().any(|u| u == "systemd-udevd.service"));
    assert!(!kic.alternatives.contains_key("/opt/cni/bin"));
}
