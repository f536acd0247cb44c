//! The bundle built for real (Go from the module proxy, kube-proxy's packages from Debian's
//! mirror): an unserved version is refused naming its module, leaving nothing in the cache; two
//! builds of the same inputs give the same bytes. After `cargo xtask test` built the bundle, Go's
//! caches are warm and each build here is mostly linking.

use std::path::Path;

use platform::bundle::{manifest_path, version_dir, BundleManifest};

fn options(version: &str, cache: &Path, work: &Path) -> bundle::Options {
    let epoch = 1_765_000_000;
    let mut packages = image::assemble::Options::new(epoch);
    packages.commit = "test".into();
    bundle::Options {
        release: bundle::Release::of(version).unwrap(),
        arch: platform::Arch::host().expect("an amd64 or arm64 host"),
        cache: cache.to_path_buf(),
        source_dir: Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
        work_dir: work.to_path_buf(),
        epoch,
        commit: "test".into(),
        packages,
    }
}

struct Quiet;
impl bundle::Progress for Quiet {
    fn start(&mut self, stage: &str, detail: &str) {
        eprintln!("{stage}: {detail}");
    }
    fn finish(&mut self, _: &str, _: std::time::Duration) {}
}

#[test]
fn a_version_the_proxy_does_not_serve_is_refused_naming_the_module() {
    let d = tempfile::tempdir().unwrap();
    let o = options("v1.34.99", &d.path().join("cache"), &d.path().join("work"));
    let e = bundle::build(&o, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("k8s.io/kubernetes@v1.34.99") && e.contains("go mod download"), "{e}");
    assert!(!version_dir(&o.cache, o.arch, "v1.34.99").exists(), "nothing of v1.34.99 in the cache");
    assert!(!manifest_path(&o.cache, o.arch, "v1.34.99").exists());
}

#[test]
fn two_builds_give_the_same_bytes_and_a_third_reuses() {
    let d = tempfile::tempdir().unwrap();
    let version = bundle::DEFAULT_VERSION;
    let build = |name: &str| {
        let o = options(version, &d.path().join(name), &d.path().join(format!("work-{name}")));
        let b = bundle::build(&o, &mut Quiet).unwrap_or_else(|e| panic!("{e}"));
        assert!(!b.reused);
        (o, b.manifest)
    };
    let (oa, a) = build("a");
    let (_, b) = build("b");
    assert_eq!(a, b, "the same inputs, the same manifest (every binary's and image's SHA-256)");
    let on_disk: BundleManifest = serde_json::from_slice(&std::fs::read(manifest_path(&oa.cache, oa.arch, version)).unwrap()).unwrap();
    assert_eq!(on_disk, a);
    let names: Vec<&str> = a.binaries.iter().map(|b| b.name.as_str()).collect();
    for n in
        ["kubelet", "kubeadm", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns", "crictl", "pause"]
    {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    // Each file is what the manifest says.
    let dir = version_dir(&oa.cache, oa.arch, version);
    for (file, sha) in a.binaries.iter().map(|b| (&b.file, &b.sha256)).chain(a.images.iter().map(|i| (&i.file, &i.sha256))) {
        assert_eq!(&pki::digest::sha256_file(&dir.join(file)).unwrap().0, sha, "{file}");
    }
    // kubeadm stamps: the version it reports is the release's (kubeadm refuses unstamped binaries).
    let out = std::process::Command::new(dir.join("kubeadm")).args(["version", "-o", "short"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), version);
    // Nothing changed: the next build reuses the cache's bundle.
    let again = bundle::build(&oa, &mut Quiet).unwrap();
    assert!(again.reused && again.manifest == a);
}
