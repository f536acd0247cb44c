//! The Kubernetes bundle: Kubernetes, etcd, CoreDNS, crictl and our pause built from their Go
//! modules (pinned by committed go.mod and go.sum files under `bundle/go/`), laid out in the
//! launcher's cache as minikube lays out its downloads, plus the control plane's images built
//! with [`image::oci`] under the names kubeadm asks for. `minikube-node start` finds the
//! binaries with no flag and preloads the images into the node's runtime.
//!
//! Pipeline ([`build`]): the release's companions ([`Release`]) → the content key of every
//! input ([`key`]) → reuse when the cache's `bundle.json` has that key → `go build` per module
//! into a staging directory ([`gobuild`]) → images ([`images`]) → each file renamed into place →
//! `bundle.json` written last ([`platform::bundle::BundleManifest`]). A failure removes the
//! staging directory; the previous manifest is removed before any file is replaced, so a
//! half-replaced bundle is never taken for a whole one.

pub mod gobuild;
pub mod images;
pub mod minikube;
pub mod release;
pub mod sbom;
pub mod syft;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use platform::bundle::{self as layout, BundleBinary, BundleManifest};
use platform::Arch;

pub use release::{Release, DEFAULT_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("Kubernetes version {version:?}: {reason}")]
    Version { version: String, reason: String },
    #[error("`{command}` (in {dir}) failed: {status}\n{stderr}")]
    Command { command: String, dir: PathBuf, status: String, stderr: String },
    #[error("module {module}: cannot be downloaded from the Go module proxy (`{command}`): {stderr}")]
    Module { module: String, command: String, stderr: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("image {reference}: {source}")]
    Image { reference: String, source: Box<image::oci::OciError> },
    #[error("{tool}: {reason}")]
    Tool { tool: String, reason: String },
    #[error("{binary}: no Go build info ({reason})")]
    BuildInfo { binary: PathBuf, reason: String },
    #[error("kube-proxy's packages ({spec}): {source}")]
    Packages { spec: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
}

impl BundleError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
        move |source| BundleError::Io { path: path.to_path_buf(), source }
    }
}

/// What the bundle builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Kubelet,
    Kubeadm,
    Kubectl,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    KubeProxy,
    Etcd,
    Coredns,
    Crictl,
    Pause,
}

impl Component {
    pub const ALL: [Component; 11] = [
        Component::Kubelet,
        Component::Kubeadm,
        Component::Kubectl,
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::KubeProxy,
        Component::Etcd,
        Component::Coredns,
        Component::Crictl,
        Component::Pause,
    ];

    /// The binary's (and image's) name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Kubelet => "kubelet",
            Component::Kubeadm => "kubeadm",
            Component::Kubectl => "kubectl",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::KubeProxy => "kube-proxy",
            Component::Etcd => "etcd",
            Component::Coredns => "coredns",
            Component::Crictl => "crictl",
            Component::Pause => "pause",
        }
    }

    /// The Go module (our directory under `bundle/go/`) it is built in.
    pub fn module(self) -> gobuild::Module {
        match self {
            Component::Etcd => gobuild::Module::Etcd,
            Component::Coredns => gobuild::Module::Coredns,
            Component::Crictl => gobuild::Module::Crictl,
            Component::Pause => gobuild::Module::Pause,
            _ => gobuild::Module::Kubernetes,
        }
    }

    /// Its main package.
    pub fn package(self) -> String {
        match self {
            Component::Etcd => "go.etcd.io/etcd/server/v3".into(),
            Component::Coredns => "github.com/coredns/coredns".into(),
            Component::Crictl => "sigs.k8s.io/cri-tools/cmd/crictl".into(),
            Component::Pause => "minikube.local/bundle/pause".into(),
            c => format!("k8s.io/kubernetes/cmd/{}", c.name()),
        }
    }
}

/// Where and how to build.
#[derive(Debug, Clone)]
pub struct Options {
    pub release: Release,
    pub arch: Arch,
    /// The launcher's cache directory (holding `linux/ARCH/...`).
    pub cache: PathBuf,
    /// `bundle/` of the workspace: the Go modules and the kube-proxy image's spec.
    pub source_dir: PathBuf,
    /// Generated modules (other versions than the default) and the images' blob store.
    pub work_dir: PathBuf,
    /// SOURCE_DATE_EPOCH: the binaries' build date and the images' dates.
    pub epoch: u64,
    /// The commit the bundle is built from (the images' revision label).
    pub commit: String,
    /// Package source and cache for kube-proxy's Debian packages.
    pub packages: image::assemble::Options,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: BundleManifest,
    /// Nothing was built: the cache had a bundle of the same key.
    pub reused: bool,
    /// Each stage and its wall time.
    pub stages: Vec<(String, Duration)>,
}

/// Progress, for a terminal or a log.
pub trait Progress {
    fn start(&mut self, stage: &str, detail: &str);
    fn finish(&mut self, stage: &str, took: Duration);
}

/// The files of the workspace a bundle is built from: each Go module's go.mod, go.sum and
/// main.go (those that exist), kube-proxy's package spec and its lock.
pub fn source_files(o: &Options) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for m in gobuild::Module::ALL {
        let dir = gobuild::module_dir(o, m);
        for name in ["go.mod", "go.sum", "main.go"] {
            files.push(dir.join(name));
        }
    }
    let spec = images::proxy_spec(&o.source_dir);
    files.push(image::lock::lock_path(&spec));
    files.push(spec);
    files
}

/// The files of a built bundle, relative to its version directory: the manifest, the SBOM, each
/// binary and each image (what its provenance names as subjects).
pub fn files(m: &BundleManifest) -> Vec<String> {
    let mut out = vec![layout::MANIFEST.to_string(), layout::SBOM.to_string()];
    out.extend(m.binaries.iter().map(|b| b.file.clone()));
    out.extend(m.images.iter().map(|i| i.file.clone()));
    out
}

/// The content key: the release, the architecture, the epoch and commit, the Go toolchain, every
/// file of the Go modules, the kube-proxy spec and this crate's own code.
pub fn key(o: &Options, go_version: &str) -> Result<String, BundleError> {
    let mut text = format!("bundle 1\n{}\n{}\n{}\n{}\n{go_version}\n", o.release.kubernetes, o.arch.debian(), o.epoch, o.commit);
    for f in source_files(o) {
        match std::fs::read(&f) {
            Ok(bytes) => text.push_str(&format!("{} {}\n", f.display(), pki::digest::sha256_hex(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => text.push_str(&format!("{} none\n", f.display())),
            Err(e) => return Err(BundleError::Io { path: f, source: e }),
        }
    }
    for src in [include_str!("lib.rs"), include_str!("gobuild.rs"), include_str!("images.rs"), include_str!("release.rs"), include_str!("sbom.rs")] {
        text.push_str(&pki::digest::sha256_hex(src.as_bytes()));
        text.push('\n');
    }
    Ok(pki::digest::sha256_hex(text.as_bytes()))
}

/// The cache's manifest for the release and architecture, if one is there and every file it
/// names has the recorded size.
pub fn cached(cache: &Path, arch: Arch, version: &str) -> Option<BundleManifest> {
    let path = layout::manifest_path(cache, arch, version);
    let m: BundleManifest = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let dir = layout::version_dir(cache, arch, version);
    let whole = |file: &str, size: u64| std::fs::metadata(dir.join(file)).is_ok_and(|md| md.len() == size);
    let complete = m.binaries.iter().all(|b| whole(&b.file, b.size)) && m.images.iter().all(|i| whole(&i.file, i.size));
    (complete && dir.join(layout::SBOM).is_file()).then_some(m)
}

/// Build the bundle into the cache, or reuse the cache's when its key matches.
pub fn build(o: &Options, progress: &mut dyn Progress) -> Result<Built, BundleError> {
    let go_version = gobuild::go_version()?;
    let k = key(o, &go_version)?;
    if let Some(m) = cached(&o.cache, o.arch, &o.release.kubernetes).filter(|m| m.key == k) {
        return Ok(Built { manifest: m, reused: true, stages: Vec::new() });
    }
    let version_dir = layout::version_dir(&o.cache, o.arch, &o.release.kubernetes);
    let staging = Staging::new(&version_dir)?;
    let mut stages = Vec::new();

    // Binaries, one static `go build` per module.
    let mut binaries = Vec::new();
    for group in gobuild::groups() {
        let t = Instant::now();
        let names: Vec<&str> = group.components.iter().map(|c| c.name()).collect();
        let label = format!("go build {}", group.module.name());
        progress.start(&label, &format!("{} (static)", names.join(" ")));
        gobuild::build(o, &group, &staging.dir)?;
        let took = t.elapsed();
        progress.finish(&label, took);
        stages.push((label, took));
        for c in group.components {
            let built = staging.dir.join(c.name());
            let (sha256, size) = pki::digest::sha256_file(&built).map_err(BundleError::io(&built))?;
            let file = match c {
                Component::Crictl => format!("../cri-tools/{}/crictl", o.release.crictl),
                _ => c.name().to_string(),
            };
            binaries.push(BundleBinary { name: c.name().into(), file, sha256, size, module: gobuild::module_version(o, c.module()) });
        }
    }

    // Images.
    let t = Instant::now();
    progress.start("images", "7 images with image::oci");
    let images = images::build(o, &go_version, &staging.dir)?;
    let took = t.elapsed();
    progress.finish("images", took);
    stages.push(("images".into(), took));

    // The SBOM, from the binaries' build info, beside the manifest.
    let doc = sbom::document(o, &staging.dir, &binaries, &images.proxy_packages, &images.suite)?;
    let sbom_path = staging.dir.join(layout::SBOM);
    pki::atomic::write_atomic(&sbom_path, &doc, 0o644).map_err(BundleError::io(&sbom_path))?;
    let images = images.images;

    let manifest =
        BundleManifest { kubernetes_version: o.release.kubernetes.clone(), arch: o.arch, key: k, source_date_epoch: o.epoch, go_version, binaries, images };
    staging.commit(&manifest)?;
    Ok(Built { manifest, reused: false, stages })
}

/// crictl alone, for the node images' `/usr/bin/crictl` (minikube's bootstrap runs it on every
/// node): the bundle's crictl build (same module, flags and toolchain, so the same bytes), into
/// `out_dir`, with its build info for the image's SBOM.
pub fn node_crictl(o: &Options, out_dir: &Path) -> Result<image::sbom::GoBinary, BundleError> {
    let group = gobuild::groups().into_iter().find(|g| g.module == gobuild::Module::Crictl).expect("crictl is one of the bundle's builds");
    std::fs::create_dir_all(out_dir).map_err(BundleError::io(out_dir))?;
    gobuild::build(o, &group, out_dir)?;
    let path = out_dir.join(Component::Crictl.name());
    let bytes = std::fs::read(&path).map_err(BundleError::io(&path))?;
    let modules = sbom::build_info(&path, o.arch)?.modules();
    Ok(image::sbom::GoBinary {
        path: "/usr/bin/crictl".into(),
        sha256: pki::digest::sha256_hex(&bytes),
        bytes,
        name: Component::Crictl.name().into(),
        version: gobuild::version(o, gobuild::Module::Crictl).to_string(),
        modules,
    })
}

/// The staging directory beside the version's directory, removed unless committed.
struct Staging {
    dir: PathBuf,
    version_dir: PathBuf,
}

impl Staging {
    fn new(version_dir: &Path) -> Result<Staging, BundleError> {
        let name = version_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = version_dir.with_file_name(format!("{}bundle-{name}", pki::atomic::TEMP_PREFIX));
        // The staging directory sits beside the version's (same file system, so files are renamed
        // into place); the version's directory itself is made only when the build succeeded.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(layout::IMAGES_DIR)).map_err(BundleError::io(&dir))?;
        Ok(Staging { dir, version_dir: version_dir.to_path_buf() })
    }

    /// Move every file into place, then write the manifest.
    fn commit(self, m: &BundleManifest) -> Result<(), BundleError> {
        let manifest = self.version_dir.join(layout::MANIFEST);
        match std::fs::remove_file(&manifest) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(BundleError::Io { path: manifest, source: e }),
            _ => {}
        }
        let staged = |file: &str| self.dir.join(Path::new(file).file_name().unwrap_or_default());
        let mut moves: Vec<(PathBuf, PathBuf)> = m.binaries.iter().map(|b| (staged(&b.name), self.version_dir.join(&b.file))).collect();
        moves.extend(m.images.iter().map(|i| (self.dir.join(&i.file), self.version_dir.join(&i.file))));
        moves.push((self.dir.join(layout::SBOM), self.version_dir.join(layout::SBOM)));
        for (from, to) in moves {
            let dir = to.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir).map_err(BundleError::io(dir))?;
            std::fs::rename(&from, &to).map_err(BundleError::io(&to))?;
        }
        let json = serde_json::to_vec_pretty(m).expect("the manifest serializes");
        pki::atomic::write_atomic(&manifest, &json, 0o644).map_err(BundleError::io(&manifest))?;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
