//! kicbase: the minikube node as an OCI image (what minikube's docker and podman drivers run),
//! built from a spec (`kicbase/spec.toml`) without a container daemon, without root, bit for bit
//! reproducible.
//!
//! Pipeline, for each architecture in turn: [`assemble`](crate::assemble::assemble) (spec with
//! its `source.arch` set to the architecture -> one rootfs tree; packages from Debian's index of
//! that architecture, the agent built for it, nothing of it executed) -> [`split`] into the
//! spec's layers -> [`write_layers`] (each layer's blob is cached under a key computed from its
//! tree, so an unchanged layer is not compressed again) -> [`crate::oci::build_image`] with
//! [`config`]. Then one archive: [`crate::oci::write_archive`] for one architecture,
//! [`crate::oci::write_index_archive`] (a nested image index, `NAME:TAG-ARCH` in the
//! docker-archive manifest) for several. Beside the archive, per architecture, a `dpkg -l`-like
//! package list and a CycloneDX SBOM ([`sbom_cyclonedx`]), named by [`side_file`].
//!
//! # The layer split
//!
//! The spec's `[container]` section names the layers and says which paths go where
//! ([`crate::spec::ContainerSection`]): rules tried in order, the first that matches wins
//! ([`Layering`]). `kicbase/spec.toml` has four, bottom to top, ordered by how often each part
//! changes:
//!
//! 0. **base**: files of the packages the image needs without the container runtimes (systemd,
//!    coreutils, iptables...), plus `/` and the entries right under it (the merged-/usr links).
//!    Changes with a Debian point release.
//! 1. **runtimes**: files of the packages only the runtimes bring (containerd, runc, docker.io,
//!    podman, crun, CNI plugins and their private dependencies). The split is computed, not
//!    listed: the spec is resolved a second time without the rule's `brought_by` packages, and
//!    every package of the full set that is not in that smaller set is theirs ([`brought_by`]).
//! 2. **system**: what the build generates from the package set and the spec (accounts, dpkg
//!    database, CA links, alternatives, unit links, homes): the rest.
//! 3. **ours**: the overlays, the agent binary and the version files (`/etc/VERSION`,
//!    `/version.json`, os-release). A change to the agent or an overlay rebuilds only this layer.
//!
//! Lower layers must not depend on anything of the top layer, SOURCE_DATE_EPOCH included (it
//! moves with every commit): every entry below the top layer whose mtime is later than the
//! newest package file (synthesised directories and generated files get the epoch) is given the
//! newest package file's mtime instead. That date is a function of the package set only.

mod cache;
mod layering;
mod sbom;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use platform::Arch;

use crate::assemble::{self, Installed};
use crate::oci::{self, BlobStore, Compression, Image, ImageConfig, ImageMeta};
use crate::spec::{ContainerSection, Spec};

pub use cache::{layer_key, prune, write_layers};
pub use layering::{brought_by, local_paths, package_epoch, split, Layering};
pub use sbom::{sbom_cyclonedx, side_file, side_paths};

#[derive(Debug, thiserror::Error)]
pub enum KicbaseError {
    #[error(transparent)]
    Assemble(#[from] assemble::AssembleError),
    #[error(transparent)]
    Oci(#[from] oci::OciError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("kicbase spec {path}: {message}")]
    Spec { path: PathBuf, message: String },
    #[error("kicbase spec {path} for {}: {source}", .arch.debian())]
    ForArch { path: PathBuf, arch: Arch, source: Box<KicbaseError> },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KicbaseError + '_ {
    move |source| KicbaseError::Io { path: path.to_path_buf(), source }
}

/// Build settings beyond the spec and [`assemble::Options`].
#[derive(Clone, Debug)]
pub struct KicbaseOptions {
    /// Repository, e.g. `kicbase` or `gcr.io/k8s-minikube/kicbase`.
    pub name: String,
    /// Tag, e.g. `v0.1.0`.
    pub tag: String,
    /// `org.opencontainers.image.source`.
    pub source_url: String,
    pub compression: Compression,
    /// Blob store and layer cache, shared by every architecture (kept between builds for fast
    /// rebuilds).
    pub work_dir: PathBuf,
    /// The archive; the package lists and SBOMs go beside it ([`side_file`]).
    pub out: PathBuf,
}

/// One architecture to build: the files the build adds for it (the agent built for it), on top
/// of [`assemble::Options::extra_files`].
#[derive(Clone, Debug)]
pub struct ArchTarget {
    pub arch: Arch,
    pub extra_files: BTreeMap<String, (Vec<u8>, u32)>,
    /// Go programs of ours built for it (crictl): installed with the extra files, and listed in
    /// its SBOM with their modules.
    pub go_binaries: Vec<crate::gobin::GoBinary>,
}

impl ArchTarget {
    /// `arch` with nothing added to the options' extra files.
    pub fn new(arch: Arch) -> Self {
        ArchTarget { arch, extra_files: BTreeMap::new(), go_binaries: Vec::new() }
    }
}

/// What [`build`] made for one architecture.
#[derive(Debug)]
pub struct ArchBuild {
    pub arch: Arch,
    pub image: Image,
    pub packages: Vec<Installed>,
    pub package_list: PathBuf,
    pub sbom: PathBuf,
    /// Bytes of file content in the final tree (the unpacked size).
    pub unpacked_bytes: u64,
    /// Layers whose blob came from the cache.
    pub cached_layers: Vec<bool>,
    pub assemble_time: Duration,
    pub layers_time: Duration,
}

/// What [`build`] made.
#[derive(Debug)]
pub struct Build {
    /// One per architecture, in the archive's order: [`Arch::ALL`]'s (amd64, arm64).
    pub arches: Vec<ArchBuild>,
    /// The spec's layer names, bottom first (one per layer of each image).
    pub layer_names: Vec<String>,
    /// Its `manifest_digest` is the image's manifest for one architecture, the nested index's
    /// for several.
    pub archive: oci::ArchiveSummary,
    pub archive_time: Duration,
}

/// The `[container]` section of a kicbase spec (a spec without one is refused).
pub fn container(spec: &Spec) -> Result<&ContainerSection, KicbaseError> {
    spec.container.as_ref().ok_or_else(|| KicbaseError::Spec {
        path: spec.path.clone(),
        message: "a container image needs a [container] section (entrypoint, layers, place)".into(),
    })
}

/// The image config from the spec's `[container]`, with the version and revision labels;
/// `arch` is the OCI (Debian) name, `amd64` or `arm64`.
pub fn config(c: &ContainerSection, arch: &str, version: &str, revision: &str) -> ImageConfig {
    let mut cfg = ImageConfig::linux(arch);
    cfg.env = c.env.clone();
    cfg.entrypoint = c.entrypoint.clone();
    cfg.cmd = c.cmd.clone();
    cfg.stop_signal = c.stop_signal.clone();
    cfg.exposed_ports = c.exposed_ports.iter().map(|p| p.to_string()).collect();
    cfg.labels = c.labels.clone();
    cfg.labels.insert("org.opencontainers.image.version".into(), version.into());
    cfg.labels.insert("org.opencontainers.image.revision".into(), revision.into());
    cfg
}

/// Write `bytes` to `path` (0644) through the one atomic writer, making its directory first.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KicbaseError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    pki::atomic::write_atomic(path, bytes, 0o644).map_err(io_err(path))
}

/// The image's name, version and provenance.
fn image_meta(opts: &assemble::Options, k: &KicbaseOptions) -> ImageMeta {
    ImageMeta {
        name: k.name.clone(),
        tag: k.tag.clone(),
        version: format!("v{}", opts.version),
        revision: opts.commit.clone(),
        source: k.source_url.clone(),
        epoch: opts.epoch,
    }
}

/// One architecture: assemble, split, layers (through the cache), config and manifest, package
/// list and SBOM.
fn build_arch(spec: &Spec, opts: &assemble::Options, k: &KicbaseOptions, store: &BlobStore, t: &ArchTarget) -> Result<ArchBuild, KicbaseError> {
    let c = container(spec)?;
    let mut spec = spec.clone();
    spec.source.arch = t.arch;
    let mut opts = opts.clone();
    opts.extra_files.extend(t.extra_files.iter().map(|(k, v)| (k.clone(), v.clone())));
    opts.extra_files.extend(t.go_binaries.iter().map(|b| (b.path.clone(), (b.bytes.clone(), 0o755))));
    let t0 = Instant::now();
    let asm = assemble::assemble(&spec, &opts)?;
    let unpacked_bytes = asm.tree.content_bytes();
    let assemble_time = t0.elapsed();

    let t1 = Instant::now();
    let trees = split(&spec, &asm, &opts.extra_files, opts.epoch)?;
    let (layers, cached_layers) = write_layers(store, &trees, &c.layers, k.compression)?;
    drop(trees);
    let meta = image_meta(&opts, k);
    let cfg = config(c, t.arch.debian(), &meta.version, &opts.commit);
    let image = oci::build_image(store, layers, &cfg, &meta)?;
    let (package_list, sbom) = side_paths(&k.out, t.arch);
    write_atomic(&package_list, assemble::package_list(&asm.packages).as_bytes())?;
    write_atomic(&sbom, &sbom_cyclonedx(&meta, &spec.source.suite, &asm.packages, &t.go_binaries))?;
    let layers_time = t1.elapsed();
    Ok(ArchBuild { arch: t.arch, image, packages: asm.packages, package_list, sbom, unpacked_bytes, cached_layers, assemble_time, layers_time })
}

/// Spec -> `out` (one OCI archive holding every architecture of `targets`) + a package list and
/// an SBOM per architecture. The architectures are built one after another in [`Arch::ALL`]'s
/// order whatever the order of `targets`, into one blob store; blobs no image of this build uses
/// are pruned from it.
pub fn build(spec: &Spec, opts: &assemble::Options, k: &KicbaseOptions, targets: &[ArchTarget]) -> Result<Build, KicbaseError> {
    let refuse = |message: String| KicbaseError::Spec { path: spec.path.clone(), message };
    if spec.kernel.is_some() || spec.boot.is_some() {
        return Err(refuse("a container image has no [kernel] or [boot] section".into()));
    }
    let c = container(spec)?;
    let mut ordered: Vec<&ArchTarget> = targets.iter().collect();
    ordered.sort_by_key(|t| Arch::ALL.iter().position(|a| *a == t.arch));
    if ordered.is_empty() {
        return Err(refuse("no architecture to build".into()));
    }
    if let Some(w) = ordered.windows(2).find(|w| w[0].arch == w[1].arch) {
        return Err(refuse(format!("{} asked for twice", w[0].arch.debian())));
    }
    // A build killed mid-way leaves its temporary files beside the archive: clear them.
    if let Some(dir) = k.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        pki::atomic::remove_stale_temps(dir).map_err(io_err(dir))?;
    }
    let store = BlobStore::open(&k.work_dir)?;
    let mut arches = Vec::new();
    for t in ordered {
        let b = build_arch(spec, opts, k, &store, t).map_err(|e| KicbaseError::ForArch { path: spec.path.clone(), arch: t.arch, source: Box::new(e) })?;
        arches.push(b);
    }

    let t2 = Instant::now();
    let (archive, keep) = if let [one] = arches.as_slice() {
        (oci::write_archive(&one.image, &k.out)?, one.image.blob_digests())
    } else {
        let index = oci::build_index(arches.iter().map(|a| a.image.clone()).collect())?;
        (oci::write_index_archive(&index, &k.out)?, index.blob_digests())
    };
    let pruned = prune(&store, &keep)?;
    tracing::debug!(pruned, "pruned unused blobs");
    let archive_time = t2.elapsed();
    Ok(Build { arches, layer_names: c.layers.clone(), archive, archive_time })
}
