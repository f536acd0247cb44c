//! kicbase: the minikube node as an OCI image (what minikube's docker and podman drivers run),
//! built from a spec (`kicbase/spec.toml`) without a container daemon, without root, bit for bit
//! reproducible.
//!
//! Pipeline: [`assemble`](crate::assemble::assemble) (spec -> one rootfs tree) -> [`split`] into
//! the spec's layers -> [`write_layers`] (each layer's blob is cached under a key computed from
//! its tree, so an unchanged layer is not compressed again) -> [`crate::oci::build_image`] with
//! [`config`] -> [`crate::oci::write_archive`]; beside the archive a `dpkg -l`-like package list
//! and a CycloneDX SBOM ([`sbom_cyclonedx`]).
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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::assemble::{self, Assembly, Installed};
use crate::oci::{self, BlobStore, Compression, Image, ImageConfig, ImageMeta, Layer};
use crate::rootfs::{Kind, Tree};
use crate::spec::{ContainerSection, Placement, Select, Spec};

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
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KicbaseError + '_ {
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
    /// Blob store and layer cache (kept between builds for fast rebuilds).
    pub work_dir: PathBuf,
    /// The archive; the package list and SBOM go beside it (`NAME.packages.txt`,
    /// `NAME.sbom.json` where NAME is the archive's stem).
    pub out: PathBuf,
}

/// What [`build`] made.
#[derive(Debug)]
pub struct Build {
    pub image: Image,
    /// The spec's layer names, bottom first (one per layer of `image`).
    pub layer_names: Vec<String>,
    pub archive: oci::ArchiveSummary,
    pub packages: Vec<Installed>,
    pub package_list: PathBuf,
    pub sbom: PathBuf,
    /// Bytes of file content in the final tree (the unpacked size).
    pub unpacked_bytes: u64,
    /// Layers whose blob came from the cache.
    pub cached_layers: Vec<bool>,
    pub assemble_time: Duration,
    pub layers_time: Duration,
    pub archive_time: Duration,
}

/// The `[container]` section of a kicbase spec (a spec without one is refused).
pub fn container(spec: &Spec) -> Result<&ContainerSection, KicbaseError> {
    spec.container.as_ref().ok_or_else(|| KicbaseError::Spec {
        path: spec.path.clone(),
        message: "a container image needs a [container] section (entrypoint, layers, place)".into(),
    })
}

/// The image config from the spec's `[container]`, with the version and revision labels.
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

/// The packages of `asm` that only `roots` bring in (a `brought_by` rule, see the module docs):
/// names in the full set but not in the set resolved without `roots`.
pub fn brought_by(spec: &Spec, asm: &Assembly, roots: &[String]) -> Result<BTreeSet<String>, KicbaseError> {
    let mut base = spec.clone();
    base.packages.include.retain(|p| !roots.iter().any(|r| r == p.as_str()));
    if base.packages.include.is_empty() {
        // resolve() refuses an empty request; the required set alone is the base then.
        base.packages.include.push("base-files".into());
    }
    let base_set: BTreeSet<String> =
        assemble::resolve_spec(&base, &asm.index)?.iter().map(|p| p.name.clone()).collect();
    Ok(asm.packages.iter().map(|p| p.name.clone()).filter(|n| !base_set.contains(n)).collect())
}

/// The local paths (a `select = "local"` rule): the files of the spec's overlays and the
/// `extra` files the build adds (the agent).
pub fn local_paths(spec: &Spec, extra: &BTreeMap<String, (Vec<u8>, u32)>, epoch: u64) -> Result<BTreeSet<String>, KicbaseError> {
    let mut local: BTreeSet<String> = extra.keys().cloned().collect();
    for o in &spec.files.overlays {
        let t = assemble::read_overlay(&spec.resolve_path(o), epoch)?;
        local.extend(t.iter().filter(|(k, e)| k.as_str() != "/" && e.kind != Kind::Dir).map(|(k, _)| k.clone()));
    }
    Ok(local)
}

/// The spec's `[[container.place]]` rules with what they need from a build.
pub struct Layering<'a> {
    pub rules: &'a [Placement],
    /// Path -> the package that has it. (A directory goes with the first package in name order
    /// that has it; `split_layers` repeats it in every layer that has something under it.)
    pub owner: &'a BTreeMap<String, String>,
    /// What `select = "local"` matches ([`local_paths`]).
    pub local: BTreeSet<String>,
    /// For each `brought_by` rule, by its index in `rules`: its packages ([`brought_by`]).
    pub brought: BTreeMap<usize, BTreeSet<String>>,
}

impl<'a> Layering<'a> {
    /// The rules of `c` for the build `asm` of `spec` (resolves once more per `brought_by` rule).
    pub fn new(
        spec: &Spec,
        c: &'a ContainerSection,
        asm: &'a Assembly,
        extra: &BTreeMap<String, (Vec<u8>, u32)>,
        epoch: u64,
    ) -> Result<Layering<'a>, KicbaseError> {
        let mut brought = BTreeMap::new();
        for (i, p) in c.place.iter().enumerate() {
            if let Select::BroughtBy(roots) = &p.select {
                brought.insert(i, brought_by(spec, asm, roots)?);
            }
        }
        Ok(Layering { rules: &c.place, owner: &asm.owner, local: local_paths(spec, extra, epoch)?, brought })
    }

    /// The layer (index into the spec's `container.layers`) of `path`: the first rule's that
    /// matches it.
    pub fn layer_of(&self, path: &str) -> usize {
        for (i, r) in self.rules.iter().enumerate() {
            let hit = match &r.select {
                Select::Local => self.local.contains(path),
                Select::Paths(paths) => paths.contains(path),
                Select::BroughtBy(_) => {
                    self.owner.get(path).is_some_and(|pkg| self.brought.get(&i).is_some_and(|set| set.contains(pkg)))
                }
                Select::Packages => self.owner.contains_key(path),
                Select::TopLevel => path.matches('/').count() == 1,
                Select::Rest => true,
            };
            if hit {
                return r.layer;
            }
        }
        // The spec was checked to end with `select = "rest"`; an empty rule list has no layers.
        self.rules.last().map_or(0, |r| r.layer)
    }
}

/// The newest mtime of a package file (regular files and links owned by a package), not counting
/// files at the epoch itself: those are package files the build rewrote (/etc/hosts, os-release)
/// or clamped, and counting them would tie the date to SOURCE_DATE_EPOCH.
pub fn package_epoch(tree: &Tree, owner: &BTreeMap<String, String>, epoch: u64) -> u64 {
    tree.iter()
        .filter(|(k, e)| e.kind != Kind::Dir && owner.contains_key(k.as_str()))
        .map(|(_, e)| e.mtime)
        .filter(|m| *m < epoch)
        .max()
        .unwrap_or(epoch)
}

/// Split the assembled tree into the spec's layers (see the module docs), lower layers' late
/// mtimes clamped to the package epoch.
pub fn split(spec: &Spec, asm: &Assembly, extra: &BTreeMap<String, (Vec<u8>, u32)>, epoch: u64) -> Result<Vec<Tree>, KicbaseError> {
    let c = container(spec)?;
    let layering = Layering::new(spec, c, asm, extra, epoch)?;
    let pkg_epoch = package_epoch(&asm.tree, &asm.owner, epoch);
    let brought: usize = layering.brought.values().map(BTreeSet::len).sum();
    tracing::info!(brought_packages = brought, local_files = layering.local.len(), pkg_epoch, "layer split");
    let top = c.layers.len() - 1;
    // Clamp first (on a copy): split_layers repeats parent directories with the final tree's
    // metadata, so the clamp must be visible in the tree it splits.
    let mut tree = asm.tree.clone();
    let mut late = Vec::new();
    for (k, e) in tree.iter() {
        let lower = k == "/" || e.kind == Kind::Dir || layering.layer_of(k) < top;
        if lower && e.mtime > pkg_epoch {
            late.push(k.clone());
        }
    }
    for k in late {
        if let Some(e) = tree.get_mut(&k) {
            e.mtime = pkg_epoch;
        }
    }
    Ok(oci::split_layers(&tree, c.layers.len(), |p, _| layering.layer_of(p))?)
}

/// A key for a layer blob: sha256 over every entry (path, kind, target or content hash, mode,
/// owner, mtime) and the compression settings. Equal keys give equal blobs.
pub fn layer_key(tree: &Tree, compression: Compression) -> String {
    let mut h = Sha256::new();
    h.update(format!("{compression:?}\0").as_bytes());
    for (k, e) in tree.iter() {
        h.update(k.as_bytes());
        h.update(format!("\0{}\0{}\0{}\0{}\0", e.st_mode(), e.uid, e.gid, e.mtime).as_bytes());
        match &e.kind {
            Kind::File(c) => h.update(Sha256::digest(c.as_slice())),
            Kind::Symlink(t) => h.update(t.as_bytes()),
            other => h.update(format!("{other:?}").as_bytes()),
        }
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Write the layers into `store`, reusing a cached blob when a layer's [`layer_key`] was built
/// before (and its blob is still there); `names` are their names, bottom first (the history
/// says "kicbase layer N: NAME"). Returns the layers and whether each came from cache.
pub fn write_layers(store: &BlobStore, layers: &[Tree], names: &[String], compression: Compression) -> Result<(Vec<Layer>, Vec<bool>), KicbaseError> {
    let cache_dir = store.root().join("layer-cache");
    std::fs::create_dir_all(&cache_dir).map_err(io_err(&cache_dir))?;
    let mut out = Vec::new();
    let mut cached = Vec::new();
    for (i, t) in layers.iter().enumerate() {
        let name = names.get(i).map_or("layer", String::as_str);
        let created_by = format!("kicbase layer {i}: {name}");
        let key = layer_key(t, compression);
        let entry_path = cache_dir.join(format!("{key}.json"));
        if let Some(l) = read_cached(&entry_path, store, &created_by) {
            tracing::info!(layer = name, digest = %l.digest, "layer unchanged (cached)");
            out.push(l);
            cached.push(true);
            continue;
        }
        let l = oci::write_layer(store, t, compression, &created_by)?;
        let doc = serde_json::json!({
            "digest": l.digest, "diff_id": l.diff_id, "size": l.size, "tar_size": l.tar_size,
            "media_type": l.media_type, "entries": l.entries,
        });
        write_atomic(&entry_path, serde_json::to_vec_pretty(&doc).expect("json").as_slice())?;
        out.push(l);
        cached.push(false);
    }
    Ok((out, cached))
}

fn read_cached(path: &Path, store: &BlobStore, created_by: &str) -> Option<Layer> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let l = Layer {
        digest: v["digest"].as_str()?.to_string(),
        diff_id: v["diff_id"].as_str()?.to_string(),
        size: v["size"].as_u64()?,
        tar_size: v["tar_size"].as_u64()?,
        media_type: v["media_type"].as_str()?.to_string(),
        entries: v["entries"].as_u64()? as usize,
        created_by: created_by.to_string(),
    };
    let meta = std::fs::metadata(store.blob_path(&l.digest)).ok()?;
    (meta.len() == l.size).then_some(l)
}

/// Write `bytes` to `path` (0644) through the one atomic writer, making its directory first.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KicbaseError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    pki::atomic::write_atomic(path, bytes, 0o644).map_err(io_err(path))
}

/// A CycloneDX 1.5 JSON SBOM: the image as the subject, one component per Debian package with
/// version, architecture, a purl and the .deb's SHA-256. Deterministic (no serial number, the
/// timestamp is SOURCE_DATE_EPOCH).
pub fn sbom_cyclonedx(meta: &ImageMeta, suite: &str, packages: &[Installed]) -> Vec<u8> {
    let components: Vec<serde_json::Value> = packages
        .iter()
        .map(|p| {
            let purl = format!(
                "pkg:deb/debian/{}@{}?arch={}&distro=debian-{}",
                p.name,
                p.version.replace(':', "%3A").replace('+', "%2B"),
                p.arch,
                suite
            );
            serde_json::json!({
                "type": "library",
                "bom-ref": purl,
                "name": p.name,
                "version": p.version,
                "purl": purl,
                "hashes": [{"alg": "SHA-256", "content": p.sha256}],
                "properties": [
                    {"name": "debian:architecture", "value": p.arch},
                    {"name": "debian:filename", "value": p.filename},
                    {"name": "debian:size", "value": p.size.to_string()},
                ],
            })
        })
        .collect();
    let doc = serde_json::json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": oci::rfc3339(meta.epoch),
            "component": {
                "type": "container",
                "bom-ref": meta.reference(),
                "name": meta.name,
                "version": meta.tag,
                "properties": [{"name": "vcs:revision", "value": meta.revision}],
            },
        },
        "components": components,
    });
    let mut v = serde_json::to_vec_pretty(&doc).expect("json");
    v.push(b'\n');
    v
}

/// Remove blobs and cache entries that the current image does not use (the store would
/// otherwise keep every top layer ever built).
pub fn prune(store: &BlobStore, keep: &Image) -> Result<usize, KicbaseError> {
    let keep: BTreeSet<String> = keep.blob_digests().iter().map(|d| d.trim_start_matches("sha256:").to_string()).collect();
    let mut removed = 0;
    let dir = store.sha256_dir();
    for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
        let e = e.map_err(io_err(&dir))?;
        let name = e.file_name().to_string_lossy().to_string();
        if !keep.contains(&name) && e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            std::fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
            removed += 1;
        }
    }
    let cache = store.root().join("layer-cache");
    if let Ok(rd) = std::fs::read_dir(&cache) {
        for e in rd.flatten() {
            let stale = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["digest"].as_str().map(|d| !keep.contains(d.trim_start_matches("sha256:"))))
                .unwrap_or(true);
            if stale {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(removed)
}

/// Files written beside the archive: `<stem>.packages.txt` and `<stem>.sbom.json`.
pub fn side_paths(out: &Path) -> (PathBuf, PathBuf) {
    let stem = out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "kicbase".into());
    let dir = out.parent().unwrap_or(Path::new("."));
    (dir.join(format!("{stem}.packages.txt")), dir.join(format!("{stem}.sbom.json")))
}

/// Spec -> `out` (OCI archive) + package list + SBOM.
pub fn build(spec: &Spec, opts: &assemble::Options, k: &KicbaseOptions) -> Result<Build, KicbaseError> {
    if spec.kernel.is_some() || spec.boot.is_some() {
        return Err(KicbaseError::Spec {
            path: spec.path.clone(),
            message: "a container image has no [kernel] or [boot] section".into(),
        });
    }
    let c = container(spec)?;
    let t0 = Instant::now();
    // A build killed mid-way leaves its temporary files beside the archive: clear them.
    if let Some(dir) = k.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        pki::atomic::remove_stale_temps(dir).map_err(io_err(dir))?;
    }
    let asm = assemble::assemble(spec, opts)?;
    let unpacked_bytes = asm.tree.content_bytes();
    let assemble_time = t0.elapsed();

    let t1 = Instant::now();
    let trees = split(spec, &asm, &opts.extra_files, opts.epoch)?;
    let store = BlobStore::open(&k.work_dir)?;
    let (layers, cached_layers) = write_layers(&store, &trees, &c.layers, k.compression)?;
    drop(trees);
    let layers_time = t1.elapsed();

    let t2 = Instant::now();
    let version = format!("v{}", opts.version);
    let meta = ImageMeta {
        name: k.name.clone(),
        tag: k.tag.clone(),
        version: version.clone(),
        revision: opts.commit.clone(),
        source: k.source_url.clone(),
        epoch: opts.epoch,
    };
    let cfg = config(c, spec.source.arch.debian(), &version, &opts.commit);
    let image = oci::build_image(&store, layers, &cfg, &meta)?;
    let archive = oci::write_archive(&image, &k.out)?;
    let (package_list, sbom) = side_paths(&k.out);
    write_atomic(&package_list, assemble::package_list(&asm.packages).as_bytes())?;
    write_atomic(&sbom, &sbom_cyclonedx(&meta, &spec.source.suite, &asm.packages))?;
    let pruned = prune(&store, &image)?;
    tracing::debug!(pruned, "pruned unused blobs");
    let archive_time = t2.elapsed();
    Ok(Build {
        image,
        layer_names: c.layers.clone(),
        archive,
        packages: asm.packages,
        package_list,
        sbom,
        unpacked_bytes,
        cached_layers,
        assemble_time,
        layers_time,
        archive_time,
    })
}
