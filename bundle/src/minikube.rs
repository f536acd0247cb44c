//! The real minikube, as a tool for compatibility tests: `k8s.io/minikube` (v1.38 or later, whose
//! go.mod has no replace lines) built from the Go module proxy through a module of ours
//! (`bundle/go/minikube`, committed go.mod and go.sum for [`DEFAULT_VERSION`]; other versions get
//! one generated in the work directory), stamped as upstream's Makefile stamps it; its
//! storage-provisioner built from the same module into an OCI archive named as minikube asks for
//! it ([`STORAGE_PROVISIONER`]). Both are skipped when `minikube.json` in the output directory
//! records the same content key.
//!
//! [`fill_home`] feeds a minikube home from the Kubernetes bundle, so that `minikube start` with
//! `--preload=false` downloads nothing: the binary cache and the image cache, under the names and
//! tags minikube asks for.
//!
//! [`run`] is the offline setup around them that the compatibility test and the race share;
//! [`race`] is `cargo xtask bench minikube`'s race against `minikube-node`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::oci::{self, BlobStore, Compression, ImageConfig, ImageMeta};
use image::rootfs::{Entry, Tree};
use platform::bundle as layout;
use platform::Arch;
use serde::{Deserialize, Serialize};

use crate::gobuild;
use crate::BundleError;

pub mod memory;
pub mod race;
pub mod run;

/// The minikube release whose module is committed in `bundle/go/minikube`.
pub const DEFAULT_VERSION: &str = "v1.38.1";

/// The first minor release whose go.mod has no replace lines (so it builds as a dependency).
pub const FIRST_MINOR: u32 = 38;

/// The storage-provisioner image minikube's addon runs (its Makefile's
/// `STORAGE_PROVISIONER_TAG`), which it looks for in its image cache.
pub const STORAGE_PROVISIONER: &str = "gcr.io/k8s-minikube/storage-provisioner:v5";

/// minikube's build tag on Linux: the kvm driver opens libvirt with dlopen, so the binary does not
/// link against it.
pub const BUILD_TAGS: &str = "libvirt_dlopen";

/// The stamp file in the output directory, written last.
pub const STAMP: &str = "minikube.json";

#[derive(Debug, thiserror::Error)]
pub enum MinikubeError {
    #[error("minikube version {version:?}: {reason}")]
    Version { version: String, reason: String },
    #[error("minikube {version}: {what} not found in its module ({path})")]
    Source { version: String, what: String, path: PathBuf },
    #[error("the Kubernetes bundle {version} for {arch} is not in {cache} (or incomplete): run `cargo xtask kubernetes`")]
    NoBundle { version: String, arch: String, cache: PathBuf },
    #[error("the Kubernetes bundle has no {0}")]
    BundleLacks(String),
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MinikubeError + '_ {
    move |source| MinikubeError::Bundle(BundleError::Io { path: path.to_path_buf(), source })
}

/// Where and what to build.
#[derive(Debug, Clone)]
pub struct Options {
    /// `v1.38.1`.
    pub version: String,
    /// The host's architecture (minikube runs on the host; its storage-provisioner on the node,
    /// which kic and qemu nodes of this host share).
    pub arch: Arch,
    /// `bundle/` of the workspace.
    pub source_dir: PathBuf,
    /// `out/tools/`.
    pub out_dir: PathBuf,
    /// Generated modules (other versions) and the image's blob store.
    pub work_dir: PathBuf,
}

/// What `minikube.json` records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stamp {
    pub key: String,
    pub version: String,
    pub iso_version: String,
    pub commit: String,
    pub go_version: String,
    pub arch: String,
    /// File name in the output directory, SHA-256, size.
    pub minikube: (String, String, u64),
    pub storage_provisioner: (String, String, u64),
    /// The storage-provisioner archive: the image's reference and manifest digest.
    pub image_reference: String,
    pub image_manifest_digest: String,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    pub stamp: Stamp,
    pub minikube: PathBuf,
    pub storage_provisioner: PathBuf,
    pub reused: bool,
    pub stages: Vec<(String, Duration)>,
}

/// `v1.MINOR.PATCH` with MINOR ≥ [`FIRST_MINOR`].
pub fn check_version(version: &str) -> Result<(), MinikubeError> {
    let bad = |reason: String| MinikubeError::Version { version: version.to_string(), reason };
    let parts: Vec<&str> = version.strip_prefix('v').unwrap_or("").split('.').collect();
    let nums: Vec<u32> = parts.iter().filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).filter_map(|p| p.parse().ok()).collect();
    if parts.len() != 3 || nums.len() != 3 || nums[0] != 1 {
        return Err(bad("expected a release like v1.38.1 (v1.MINOR.PATCH)".into()));
    }
    if nums[1] < FIRST_MINOR {
        return Err(bad(format!("releases before v1.{FIRST_MINOR}.0 have replace lines in their go.mod, which Go ignores in a dependency")));
    }
    Ok(())
}

/// Our module's directory for `o.version`.
pub fn module_dir(o: &Options) -> PathBuf {
    if o.version == DEFAULT_VERSION {
        o.source_dir.join("go").join("minikube")
    } else {
        o.work_dir.join("go").join(format!("minikube-{}", o.version))
    }
}

/// Our module's go.mod for `version` (before `go mod tidy` fills in minikube's requirements).
pub fn go_mod(version: &str) -> String {
    format!(
        "// Builds minikube {version} (its command and its storage-provisioner) from the published module,\n\
         // which has no replace lines from v1.38.0 on. Requirements are minikube's own, as minimal version\n\
         // selection keeps them when this module requires nothing else.\n\
         module minikube.local/bundle/minikube\n\ngo 1.25.0\n\nrequire k8s.io/minikube {version}\n\n\
         tool (\n\tk8s.io/minikube/cmd/minikube\n\tk8s.io/minikube/cmd/storage-provisioner\n)\n"
    )
}

/// For a version other than the default: our module generated in the work directory, then
/// `go mod tidy` (a version the proxy does not serve fails here, naming the module).
fn prepare(o: &Options, dir: &Path) -> Result<(), MinikubeError> {
    if o.version == DEFAULT_VERSION || dir.join("go.sum").is_file() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let gomod = dir.join("go.mod");
    pki::atomic::write_atomic(&gomod, go_mod(&o.version).as_bytes(), 0o644).map_err(io(&gomod))?;
    let mut tidy = gobuild::go_command(dir, o.arch, false);
    tidy.args(["mod", "tidy"]).env("GOFLAGS", "-mod=mod");
    gobuild::run(&mut tidy, dir).map_err(|e| module_error(&o.version, e))?;
    Ok(())
}

fn module_error(version: &str, e: BundleError) -> MinikubeError {
    match e {
        BundleError::Command { command, stderr, .. } => BundleError::Module { module: format!("k8s.io/minikube@{version}"), command, stderr }.into(),
        other => other.into(),
    }
}

/// What upstream stamps besides the version, read from the module: `isoVersion` (its Makefile's
/// `ISO_VERSION`), `gitCommitID` (the tag's commit, from the proxy's `.info`) and the module's
/// time (the image's dates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub dir: PathBuf,
    pub iso_version: String,
    pub commit: String,
    pub epoch: u64,
}

fn upstream(o: &Options, dir: &Path) -> Result<Upstream, MinikubeError> {
    let module = format!("k8s.io/minikube@{}", o.version);
    let mut dl = gobuild::go_command(dir, o.arch, false);
    dl.args(["mod", "download", "-json", &module]);
    let json = gobuild::run(&mut dl, dir).map_err(|e| module_error(&o.version, e))?;
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| MinikubeError::Source {
        version: o.version.clone(),
        what: format!("`go mod download -json` output ({e})"),
        path: dir.to_path_buf(),
    })?;
    let src = PathBuf::from(v["Dir"].as_str().unwrap_or_default());
    let makefile = src.join("Makefile");
    let text = std::fs::read_to_string(&makefile).map_err(io(&makefile))?;
    let iso_version = makefile_var(&text, "ISO_VERSION").ok_or_else(|| MinikubeError::Source {
        version: o.version.clone(),
        what: "ISO_VERSION".into(),
        path: makefile.clone(),
    })?;
    let info = PathBuf::from(v["Info"].as_str().unwrap_or_default());
    let info_text = std::fs::read_to_string(&info).map_err(io(&info))?;
    let i: serde_json::Value = serde_json::from_str(&info_text).unwrap_or_default();
    let commit = i["Origin"]["Hash"].as_str().unwrap_or("unknown").to_string();
    let epoch = i["Time"].as_str().and_then(parse_rfc3339).ok_or_else(|| MinikubeError::Source {
        version: o.version.clone(),
        what: "the release time".into(),
        path: info.clone(),
    })?;
    Ok(Upstream { dir: src, iso_version, commit, epoch })
}

/// `NAME ?= VALUE` of a Makefile.
pub fn makefile_var(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once("?=")?;
        (k.trim() == name).then(|| v.trim().to_string())
    })
}

/// `2026-02-19T19:11:39Z` → seconds since the epoch (UTC only, as the proxy writes it).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date.split('-').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let t: Vec<i64> = time.split('.').next()?.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    // Days from civil (proleptic Gregorian).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + t[0] * 3600 + t[1] * 60 + t[2]).ok()
}

/// The `-ldflags` of minikube's command, as its Makefile's `MINIKUBE_LDFLAGS`.
pub fn ldflags(version: &str, up: &Upstream) -> String {
    let tag = STORAGE_PROVISIONER.rsplit_once(':').map_or("v5", |(_, t)| t);
    [
        format!("-X k8s.io/minikube/pkg/version.version={version}"),
        format!("-X k8s.io/minikube/pkg/version.isoVersion={}", up.iso_version),
        format!("-X k8s.io/minikube/pkg/version.gitCommitID={}", up.commit),
        format!("-X k8s.io/minikube/pkg/version.storageProvisionerVersion={tag}"),
    ]
    .join(" ")
}

/// The content key: version, architecture, Go, our module's files, this module's code.
pub fn key(o: &Options, go_version: &str) -> Result<String, MinikubeError> {
    let mut text = format!("minikube 1\n{}\n{}\n{go_version}\n{BUILD_TAGS}\n", o.version, o.arch.debian());
    let dir = module_dir(o);
    for name in ["go.mod", "go.sum"] {
        let f = dir.join(name);
        match std::fs::read(&f) {
            Ok(b) => text.push_str(&format!("{name} {}\n", pki::digest::sha256_hex(&b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => text.push_str(&format!("{name} none\n")),
            Err(e) => return Err(io(&f)(e)),
        }
    }
    text.push_str(&pki::digest::sha256_hex(include_str!("minikube.rs").as_bytes()));
    Ok(pki::digest::sha256_hex(text.as_bytes()))
}

/// The output directory's stamp, if it has `key` and both files have the recorded sizes.
pub fn cached(out_dir: &Path, key: &str) -> Option<Stamp> {
    let s: Stamp = serde_json::from_slice(&std::fs::read(out_dir.join(STAMP)).ok()?).ok()?;
    let whole = |(f, _, size): &(String, String, u64)| std::fs::metadata(out_dir.join(f)).is_ok_and(|m| m.len() == *size);
    (s.key == key && whole(&s.minikube) && whole(&s.storage_provisioner)).then_some(s)
}

/// Build minikube and the storage-provisioner image into `o.out_dir`, or reuse them.
pub fn build(o: &Options, progress: &mut dyn crate::Progress) -> Result<Built, MinikubeError> {
    check_version(&o.version)?;
    let go_version = gobuild::go_version()?;
    let dir = module_dir(o);
    prepare(o, &dir)?;
    let k = key(o, &go_version)?;
    let paths = |s: &Stamp| (o.out_dir.join(&s.minikube.0), o.out_dir.join(&s.storage_provisioner.0));
    if let Some(stamp) = cached(&o.out_dir, &k) {
        let (minikube, storage_provisioner) = paths(&stamp);
        return Ok(Built { stamp, minikube, storage_provisioner, reused: true, stages: Vec::new() });
    }
    let up = upstream(o, &dir)?;
    std::fs::create_dir_all(&o.out_dir).map_err(io(&o.out_dir))?;
    // Absolute: `go build -o` runs in the module's directory.
    let out_abs = std::fs::canonicalize(&o.out_dir).map_err(io(&o.out_dir))?;
    let staging = out_abs.join(format!("{}minikube-build", pki::atomic::TEMP_PREFIX));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let result = build_in(o, &dir, &up, &staging, &go_version, k, progress);
    let _ = std::fs::remove_dir_all(&staging);
    let (stamp, stages) = result?;
    let (minikube, storage_provisioner) = paths(&stamp);
    Ok(Built { stamp, minikube, storage_provisioner, reused: false, stages })
}

fn build_in(
    o: &Options,
    dir: &Path,
    up: &Upstream,
    staging: &Path,
    go_version: &str,
    key: String,
    progress: &mut dyn crate::Progress,
) -> Result<(Stamp, Vec<(String, Duration)>), MinikubeError> {
    let mut stages = Vec::new();
    // minikube's command, with cgo as upstream's Linux build (the tag keeps libvirt out of the
    // link).
    let t = Instant::now();
    progress.start("go build minikube", &format!("k8s.io/minikube/cmd/minikube@{} (cgo, -tags {BUILD_TAGS})", o.version));
    let mk = staging.join("minikube");
    let mut cmd = gobuild::go_command(dir, o.arch, true);
    cmd.args(["build", "-trimpath", "-tags", BUILD_TAGS, "-ldflags", &ldflags(&o.version, up), "-o"]).arg(&mk).arg("k8s.io/minikube/cmd/minikube");
    gobuild::run(&mut cmd, dir)?;
    progress.finish("go build minikube", t.elapsed());
    stages.push(("go build minikube".to_string(), t.elapsed()));

    // The storage-provisioner, static and stripped (its Makefile's PROVISIONER_LDFLAGS).
    let t = Instant::now();
    progress.start("go build storage-provisioner", "k8s.io/minikube/cmd/storage-provisioner (static)");
    let sp = staging.join("storage-provisioner");
    let tag = STORAGE_PROVISIONER.rsplit_once(':').map_or("v5", |(_, t)| t);
    let mut cmd = gobuild::go_command(dir, o.arch, false);
    cmd.args(["build", "-trimpath", "-ldflags", &format!("-s -w -X k8s.io/minikube/pkg/storage.version={tag}"), "-o"])
        .arg(&sp)
        .arg("k8s.io/minikube/cmd/storage-provisioner");
    gobuild::run(&mut cmd, dir)?;
    let bin = std::fs::read(&sp).map_err(io(&sp))?;
    let archive_name = format!("storage-provisioner-{tag}.tar");
    let archive = staging.join(&archive_name);
    let (manifest_digest, _) = storage_provisioner_image(o, up, go_version, bin, &archive)?;
    progress.finish("go build storage-provisioner", t.elapsed());
    stages.push(("storage-provisioner image".to_string(), t.elapsed()));

    let file = |name: &str| -> Result<(String, String, u64), MinikubeError> {
        let p = staging.join(name);
        let (sha, size) = pki::digest::sha256_file(&p).map_err(io(&p))?;
        Ok((name.to_string(), sha, size))
    };
    let stamp = Stamp {
        key,
        version: o.version.clone(),
        iso_version: up.iso_version.clone(),
        commit: up.commit.clone(),
        go_version: go_version.to_string(),
        arch: o.arch.debian().to_string(),
        minikube: file("minikube")?,
        storage_provisioner: file(&archive_name)?,
        image_reference: STORAGE_PROVISIONER.to_string(),
        image_manifest_digest: manifest_digest,
    };
    // The old stamp goes first, so that half-replaced files are never taken for a whole build.
    let stamp_path = o.out_dir.join(STAMP);
    match std::fs::remove_file(&stamp_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&stamp_path)(e)),
        _ => {}
    }
    for name in ["minikube", archive_name.as_str()] {
        let to = o.out_dir.join(name);
        std::fs::rename(staging.join(name), &to).map_err(io(&to))?;
    }
    let json = serde_json::to_vec_pretty(&stamp).expect("the stamp serializes");
    pki::atomic::write_atomic(&stamp_path, &json, 0o644).map_err(io(&stamp_path))?;
    Ok((stamp, stages))
}

/// The storage-provisioner's image: the binary at `/storage-provisioner` (upstream's Dockerfile:
/// `FROM scratch`, that one file, `CMD ["/storage-provisioner"]`) and `/tmp`, which it needs
/// for its logs. Returns the manifest digest and the archive's SHA-256.
fn storage_provisioner_image(o: &Options, up: &Upstream, go_version: &str, bin: Vec<u8>, archive: &Path) -> Result<(String, String), MinikubeError> {
    let err = |e: oci::OciError| MinikubeError::Bundle(BundleError::Image { reference: STORAGE_PROVISIONER.to_string(), source: Box::new(e) });
    let store_dir = o.work_dir.join("blobs");
    let store = BlobStore::open(&store_dir).map_err(err)?;
    let at = |e: Entry| Entry { mtime: up.epoch, ..e };
    let mut tree = Tree::new();
    tree.insert("/", at(Entry::dir(0o755)));
    tree.insert("/tmp", at(Entry::dir(0o1777)));
    tree.insert("/storage-provisioner", at(Entry::file(bin, 0o755)));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let module = format!("k8s.io/minikube@{}", o.version);
    let layer = oci::write_layer(&store, &tree, Compression::Zstd { level: 12, threads }, &format!("storage-provisioner built from {module}")).map_err(err)?;
    let (name, tag) = STORAGE_PROVISIONER.rsplit_once(':').expect("the reference has a tag");
    let config = ImageConfig {
        cmd: vec!["/storage-provisioner".into()],
        labels: [
            ("org.opencontainers.image.title".to_string(), "storage-provisioner".to_string()),
            (
                "org.opencontainers.image.description".to_string(),
                format!("minikube's storage-provisioner built from {module} by minikube-node's bundle; not the upstream image's bytes"),
            ),
            ("io.minikube-node.bundle.module".to_string(), module.clone()),
            ("io.minikube-node.bundle.go".to_string(), go_version.to_string()),
        ]
        .into(),
        ..ImageConfig::linux(o.arch.debian())
    };
    let meta = ImageMeta {
        name: name.into(),
        tag: tag.into(),
        version: tag.into(),
        revision: up.commit.clone(),
        source: "https://proxy.golang.org/k8s.io/minikube".into(),
        epoch: up.epoch,
    };
    let img = oci::build_image(&store, vec![layer], &config, &meta).map_err(err)?;
    let summary = oci::write_archive(&img, archive).map_err(err)?;
    Ok((img.manifest_digest.clone(), summary.sha256))
}

/// minikube's own directory under `MINIKUBE_HOME` (its `localpath.MiniPath`): the home itself
/// when it is named `.minikube`, else `.minikube` inside it.
pub fn mini_path(minikube_home: &Path) -> PathBuf {
    if minikube_home.file_name().is_some_and(|n| n == ".minikube") {
        minikube_home.to_path_buf()
    } else {
        minikube_home.join(".minikube")
    }
}

/// Where minikube's image cache keeps `reference` (`detect.ImageCacheDir` + the reference with
/// its tag's `:` as `_`).
pub fn image_cache_path(mini: &Path, arch: Arch, reference: &str) -> PathBuf {
    let file = match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => format!("{name}_{tag}"),
        _ => reference.to_string(),
    };
    mini.join("cache").join("images").join(arch.debian()).join(file)
}

/// Where minikube's binary cache keeps a Kubernetes binary.
pub fn binary_cache_path(mini: &Path, arch: Arch, version: &str, name: &str) -> PathBuf {
    mini.join("cache").join("linux").join(arch.debian()).join(version).join(name)
}

/// What [`fill_home`] put where.
#[derive(Debug, Clone)]
pub struct Filled {
    pub mini_path: PathBuf,
    /// (source, destination).
    pub files: Vec<(PathBuf, PathBuf)>,
}

/// Fill minikube's caches under `minikube_home` from the bundle in `bundle_cache` (the
/// launcher's cache) and the storage-provisioner archive: kubelet, kubeadm and kubectl in the
/// binary cache, the seven control-plane images and the storage-provisioner in the image cache
/// under the references minikube asks for. Files are hard-linked (copied across file systems).
pub fn fill_home(minikube_home: &Path, bundle_cache: &Path, arch: Arch, kubernetes: &str, storage_provisioner: &Path) -> Result<Filled, MinikubeError> {
    let m = crate::cached(bundle_cache, arch, kubernetes).ok_or_else(|| MinikubeError::NoBundle {
        version: kubernetes.into(),
        arch: arch.debian().into(),
        cache: bundle_cache.to_path_buf(),
    })?;
    let dir = layout::version_dir(bundle_cache, arch, kubernetes);
    let mini = mini_path(minikube_home);
    let mut files = Vec::new();
    for name in ["kubelet", "kubeadm", "kubectl"] {
        let b = m.binary(name).ok_or_else(|| MinikubeError::BundleLacks(name.into()))?;
        files.push((dir.join(&b.file), binary_cache_path(&mini, arch, kubernetes, name)));
    }
    for i in &m.images {
        files.push((dir.join(&i.file), image_cache_path(&mini, arch, &i.reference)));
    }
    files.push((storage_provisioner.to_path_buf(), image_cache_path(&mini, arch, STORAGE_PROVISIONER)));
    for (from, to) in &files {
        link_or_copy(from, to)?;
    }
    Ok(Filled { mini_path: mini, files })
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), MinikubeError> {
    let parent = to.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    match std::fs::remove_file(to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(to)(e)),
        _ => {}
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(io(to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_before_38_are_refused_with_the_reason() {
        assert!(check_version("v1.38.1").is_ok());
        assert!(check_version("v1.39.0").is_ok());
        let e = check_version("v1.37.0").unwrap_err().to_string();
        assert!(e.contains("replace lines"), "{e}");
        assert!(check_version("1.38.1").is_err());
        assert!(check_version("v1.38").is_err());
    }

    #[test]
    fn the_committed_module_requires_the_default_release_and_only_it_directly() {
        let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/go/minikube/go.mod")).unwrap();
        let generated = go_mod(DEFAULT_VERSION);
        // `go mod tidy` keeps the header and the tools, and lists minikube with its requirements.
        assert!(committed.starts_with(&generated[..generated.find("require").unwrap()]), "{committed}");
        assert!(committed.contains(&format!("\tk8s.io/minikube {DEFAULT_VERSION}")), "{committed}");
        assert!(committed.contains("tool (\n\tk8s.io/minikube/cmd/minikube\n\tk8s.io/minikube/cmd/storage-provisioner\n)\n"));
        assert!(!committed.lines().any(|l| l.starts_with("replace")), "no replace directive");
    }

    #[test]
    fn the_image_cache_names_references_as_minikube_does() {
        let mini = mini_path(Path::new("/h"));
        assert_eq!(mini, Path::new("/h/.minikube"));
        assert_eq!(mini_path(Path::new("/x/.minikube")), Path::new("/x/.minikube"));
        assert_eq!(
            image_cache_path(&mini, Arch::X86_64, "registry.k8s.io/coredns/coredns:v1.12.1"),
            Path::new("/h/.minikube/cache/images/amd64/registry.k8s.io/coredns/coredns_v1.12.1")
        );
        assert_eq!(
            image_cache_path(&mini, Arch::X86_64, STORAGE_PROVISIONER),
            Path::new("/h/.minikube/cache/images/amd64/gcr.io/k8s-minikube/storage-provisioner_v5")
        );
        assert_eq!(binary_cache_path(&mini, Arch::X86_64, "v1.34.4", "kubeadm"), Path::new("/h/.minikube/cache/linux/amd64/v1.34.4/kubeadm"));
    }

    #[test]
    fn stamps_come_from_the_makefile_and_the_proxys_time() {
        assert_eq!(makefile_var("VERSION_BUILD ?= 1\nISO_VERSION ?= v1.38.0\n", "ISO_VERSION").as_deref(), Some("v1.38.0"));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-02-19T19:11:39Z"), Some(1_771_528_299));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:01Z"), Some(951_868_801));
        assert_eq!(parse_rfc3339("2026-02-19 19:11:39"), None);
    }
}
