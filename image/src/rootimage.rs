//! The ISO's root as read-only images on the medium, and the small initramfs that mounts them.
//!
//! Two squashfs layers, stacked by `/init` under a tmpfs with overlayfs:
//!
//! * the **base** ([`BASE_IMAGE`]): the package part of the rootfs ([`assemble_base`]), with
//!   the kernel and the initramfs's modules and shell. It is cached in the package cache under
//!   `rootfs/<key>/`, where the key is the SHA-256 of everything that shapes it: the spec's text,
//!   the lock's digest (every package it takes, kernel included) and the installed packages with
//!   their SHA-256, the epoch, the image version, the squashfs tool and
//!   options, and this crate's own source ([`CODE_HASH`]). Content, never timestamps: a changed
//!   input is a new key, so a stale part cannot be served.
//! * the **top** ([`TOP_IMAGE`]): the overlays, the agent, `/version.json` and the units they
//!   bring ([`top_tree`]). It is rebuilt every time, in well under a second.
//!
//! The initramfs is two concatenated compressed cpio archives: the cached part (modules with
//! their depmod indexes, busybox as the emergency shell) and the local part (`/init`, the
//! `/dev/console` node, and the boot plan naming each layer with its SHA-256 and dm-verity root hash).

use crate::apt::{Index, Package};
use crate::assemble::{assemble_base, fetch_unpacked, top_tree, AssembleError, Installed, Options};
use crate::rootfs::{Entry, Kind, Tree};
use crate::spec::{BootSection, Spec};
use crate::squashfs;
use fetch::Http;
use minikube_init::Plan;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// ISO path of the package layer.
pub const BASE_IMAGE: &str = "boot/root.sqfs";
/// ISO path of the local layer.
pub const TOP_IMAGE: &str = "boot/top.sqfs";
/// SHA-256 of the sources of this crate and pki, the boot plan's, and Cargo.lock (see build.rs).
pub const CODE_HASH: &str = env!("IMAGE_CODE_HASH");
/// Bumped when the layout of a cache entry changes.
const FORMAT: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum RootImageError {
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    #[error(transparent)]
    Squashfs(#[from] squashfs::SquashfsError),
    #[error(transparent)]
    Compress(#[from] crate::compress::CompressError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

fn ioerr(path: &Path) -> impl FnOnce(std::io::Error) -> RootImageError {
    let path = path.to_path_buf();
    move |source| RootImageError::Io { path, source }
}

/// Owner and mode of a base directory (a top directory of the same path takes them).
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct DirMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
}

/// What a cache entry records beside its files.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BaseMeta {
    pub format: u32,
    pub key: String,
    /// The package layer's image, dm-verity tree included.
    pub root: squashfs::Sealed,
    pub rootfs_bytes: u64,
    pub kernel_version: String,
    /// Every module in the initramfs (the plan loads them all, dependencies first).
    pub initrd_modules: Vec<String>,
    pub packages: Vec<Installed>,
    /// Units of `systemd.enable` that the base enabled.
    pub enabled: Vec<String>,
    pub dirs: BTreeMap<String, DirMeta>,
}

/// A base layer in the cache.
#[derive(Debug)]
pub struct CachedBase {
    pub dir: PathBuf,
    pub meta: BaseMeta,
    /// Whether this build found it in the cache.
    pub reused: bool,
}

impl CachedBase {
    pub fn root_image(&self) -> PathBuf {
        self.dir.join("root.sqfs")
    }
    pub fn bzimage(&self) -> PathBuf {
        self.dir.join("bzImage")
    }
    pub fn initrd_part(&self) -> PathBuf {
        self.dir.join("initrd-base")
    }
    fn dir_entry(&self, path: &str) -> Option<Entry> {
        self.meta.dirs.get(path).map(|d| Entry { kind: Kind::Dir, mode: d.mode, uid: d.uid, gid: d.gid, mtime: d.mtime })
    }
}

fn boot_of(spec: &Spec) -> Result<&BootSection, RootImageError> {
    spec.boot.as_ref().ok_or_else(|| RootImageError::Other(format!("{}: [boot] section missing", spec.path.display())))
}

/// The squashfs options of a spec.
pub fn squashfs_options(spec: &Spec, epoch: u64) -> Result<squashfs::Options, RootImageError> {
    let b = boot_of(spec)?;
    Ok(squashfs::Options { compressor: b.squashfs.compressor, level: b.squashfs.level, block_kib: b.squashfs.block_kib, epoch })
}

/// The cache key of the base layer (hex SHA-256; see the module docs).
pub fn base_key(spec: &Spec, opts: &Options, index: &Index, set: &[&Package], sq: &squashfs::Options) -> Result<String, RootImageError> {
    let mut h = Sha256::new();
    let mut put = |k: &str, v: &str| {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    };
    put("format", &FORMAT.to_string());
    put("code", CODE_HASH);
    put("spec", &spec.text);
    put("epoch", &opts.epoch.to_string());
    put("version", &opts.version);
    put("squashfs", &serde_json::to_string(sq).expect("options serialize"));
    put("mksquashfs", &squashfs::tool_version()?);
    // With a lock, its digest covers every package taken (kernel and initramfs too); the set is
    // still listed, as it is without one.
    if let Some(p) = &index.pinned {
        put("lock", &p.digest);
    }
    for p in set {
        put("package", &format!("{} {} {} {}", p.name, p.version, p.arch, p.sha256));
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The base layer for this spec and package set: from the cache when its key is there, else
/// built (assembled, written as squashfs, kernel and initramfs part beside it) and cached.
pub fn base(spec: &Spec, opts: &Options, index: &Index, set: &[&Package], http: &Http) -> Result<CachedBase, RootImageError> {
    let sq = squashfs_options(spec, opts.epoch)?;
    let key = base_key(spec, opts, index, set, &sq)?;
    let root = opts.layer_cache.clone().unwrap_or_else(|| opts.cache.root().join("rootfs"));
    let dir = root.join(&key);
    if let Some(meta) = read_meta(&dir, &key) {
        tracing::info!(key = %key, "package layer reused from the cache");
        return Ok(CachedBase { dir, meta, reused: true });
    }
    tracing::info!(key = %key, "building the package layer");
    std::fs::create_dir_all(&root).map_err(ioerr(&root))?;
    let tmp = tempfile::Builder::new().prefix(pki::atomic::TEMP_PREFIX).tempdir_in(&root).map_err(ioerr(&root))?;
    let b = assemble_base(spec, opts, index, set, http)?;
    let kernel = b.kernel.as_ref().ok_or_else(|| RootImageError::Other(format!("{}: a squashfs root needs [kernel]", spec.path.display())))?;
    let written = squashfs::write(&b.tree, &sq, &tmp.path().join("root.sqfs"))?;
    let root_sealed = squashfs::seal(&written.path)?;
    std::fs::write(tmp.path().join("bzImage"), &kernel.bzimage).map_err(ioerr(tmp.path()))?;
    let boot = boot_of(spec)?;
    let (initrd, modules) = initrd_base_tree(boot, b.initrd_modules.as_ref(), index, opts, http)?;
    let bytes = crate::compress::initrd(&initrd, boot.compression, boot.level, 0)?;
    std::fs::write(tmp.path().join("initrd-base"), bytes).map_err(ioerr(tmp.path()))?;
    let dirs = b
        .tree
        .iter()
        .filter(|(_, e)| matches!(e.kind, Kind::Dir))
        .map(|(k, e)| (k.clone(), DirMeta { mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime }))
        .collect();
    let meta = BaseMeta {
        format: FORMAT,
        key: key.clone(),
        root: root_sealed,
        rootfs_bytes: b.tree.content_bytes(),
        kernel_version: kernel.version.clone(),
        initrd_modules: modules,
        packages: b.packages,
        enabled: b.enabled,
        dirs,
    };
    // meta.json last: an entry without it is incomplete and never read.
    let json = serde_json::to_vec(&meta).expect("meta serializes");
    pki::atomic::write_atomic(&tmp.path().join("meta.json"), &json, 0o644).map_err(ioerr(tmp.path()))?;
    let staged = tmp.keep();
    match std::fs::rename(&staged, &dir) {
        Ok(()) => {}
        // Another build cached the same key meanwhile: same inputs, same bytes; keep theirs.
        Err(_) if read_meta(&dir, &key).is_some() => {
            let _ = std::fs::remove_dir_all(&staged);
        }
        Err(e) => return Err(RootImageError::Io { path: dir, source: e }),
    }
    pki::atomic::sync_dir(&root).map_err(ioerr(&root))?;
    prune(&root, KEEP);
    Ok(CachedBase { dir, meta, reused: false })
}

/// Cached package layers kept (the newest by modification time); each is about 180 MB.
const KEEP: usize = 4;

/// Remove all but the `keep` newest entries.
fn prune(root: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(root) else { return };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let m = e.metadata().ok()?.modified().ok()?;
            (name.len() == 64 && e.path().is_dir()).then(|| (m, e.path()))
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, p) in entries.into_iter().skip(keep) {
        tracing::info!(path = %p.display(), "pruning an old package layer from the cache");
        let _ = std::fs::remove_dir_all(&p);
    }
}

fn read_meta(dir: &Path, key: &str) -> Option<BaseMeta> {
    let meta: BaseMeta = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
    let size = std::fs::metadata(dir.join("root.sqfs")).ok()?.len();
    (meta.format == FORMAT && meta.key == key && size == meta.root.file_bytes && dir.join("bzImage").exists() && dir.join("initrd-base").exists())
        .then_some(meta)
}

/// The cached part of the initramfs: modules (with depmod's indexes) and the emergency shell.
fn initrd_base_tree(boot: &BootSection, modules: Option<&Tree>, index: &Index, opts: &Options, http: &Http) -> Result<(Tree, Vec<String>), RootImageError> {
    let modules = modules.ok_or_else(|| RootImageError::Other("boot.initrd_modules: no module selected".into()))?;
    let mut t = Tree::new();
    t.merge(modules);
    let names: Vec<String> = modules.iter().filter_map(|(k, _)| minikube_init::module_name(k).filter(|_| k.contains(".ko"))).collect();
    if !boot.initrd_packages.is_empty() {
        let pkgs = fetch_unpacked(index, &boot.initrd_packages, opts, http)?;
        let bb = pkgs
            .get("/usr/bin/busybox")
            .cloned()
            .ok_or_else(|| RootImageError::Other(format!("boot.initrd_packages: no /usr/bin/busybox in {:?}", boot.initrd_packages)))?;
        t.insert("/usr/bin/busybox", bb);
        t.insert("/usr/bin/sh", Entry::symlink("busybox"));
    }
    // Tree::insert made every parent directory (0755 root).
    t.clamp_mtime(opts.epoch);
    Ok((t, names))
}

/// The local initramfs part: `/init`, the console node, mount points and the plan.
pub fn initrd_local_tree(init: &[u8], plan: &Plan, epoch: u64) -> Result<Tree, RootImageError> {
    let text = plan.render().map_err(|e| RootImageError::Other(format!("boot plan: {e}")))?;
    let mut t = Tree::new();
    t.insert("/init", Entry::file(init.to_vec(), 0o755));
    t.insert(minikube_init::PLAN_PATH, Entry::file(text.into_bytes(), 0o644));
    t.insert("/dev/console", Entry { kind: Kind::CharDev { major: 5, minor: 1 }, mode: 0o600, uid: 0, gid: 0, mtime: epoch });
    for d in ["/proc", "/sys", "/run", "/sysroot", "/dev"] {
        t.insert(d, Entry::dir(0o755));
    }
    t.clamp_mtime(epoch);
    Ok(t)
}

/// Everything the ISO needs for a squashfs root.
pub struct RootImages {
    pub base: CachedBase,
    /// The top layer, dm-verity tree included, at `top_path` (in a temporary directory that
    /// lives as long as this value).
    pub top: squashfs::Sealed,
    pub top_path: PathBuf,
    pub initrd: Vec<u8>,
    pub version_json: Vec<u8>,
    _tmp: tempfile::TempDir,
}

/// The plan's module lists from the initramfs's modules (`names`, dependencies included): first
/// the ones `boot.initrd_modules` asks for (its `patterns`) except `boot.initrd_fallback`, then
/// the fallback ones; `/init` loads each list's dependencies itself, so a dependency only the
/// fallback modules need (libata, scsi_mod) waits with them. Each fallback name must be asked for.
pub fn split_fallback(names: &[String], patterns: &[String], fallback: &[String]) -> Result<(Vec<String>, Vec<String>), RootImageError> {
    let norm = |m: &str| m.replace('-', "_");
    let asked: Vec<String> = names.iter().filter(|n| patterns.iter().any(|p| crate::rootfs::glob_match(&norm(p), n))).cloned().collect();
    if let Some(missing) = fallback.iter().find(|f| !asked.contains(&norm(f))) {
        return Err(RootImageError::Other(format!(
            "boot.initrd_fallback: {missing:?} is not among the modules boot.initrd_modules selects ({})",
            asked.join(" ")
        )));
    }
    Ok(asked.into_iter().partition(|m| !fallback.iter().any(|f| norm(f) == *m)))
}

/// Build (or reuse) the base, build the top, and the initramfs whose plan names both.
/// `init` is the static `minikube-init` binary.
pub fn build(spec: &Spec, opts: &Options, index: &Index, set: &[&Package], http: &Http, init: &[u8], scratch: &Path) -> Result<RootImages, RootImageError> {
    let base = base(spec, opts, index, set, http)?;
    let top = top_tree(spec, opts, &base.meta.enabled, &|p| base.dir_entry(p))?;
    let tmp = tempfile::Builder::new().prefix(pki::atomic::TEMP_PREFIX).tempdir_in(scratch).map_err(ioerr(scratch))?;
    let sq = squashfs_options(spec, opts.epoch)?;
    let top_path = squashfs::write(&top, &sq, &tmp.path().join("top.sqfs"))?.path;
    let top_sealed = squashfs::seal(&top_path)?;
    let boot = boot_of(spec)?;
    let (modules, fallback) = split_fallback(&base.meta.initrd_modules, &boot.initrd_modules, &boot.initrd_fallback)?;
    let plan =
        Plan { kernel: base.meta.kernel_version.clone(), modules, fallback, layers: vec![base.meta.root.layer(BASE_IMAGE), top_sealed.layer(TOP_IMAGE)] };
    let mut initrd = std::fs::read(base.initrd_part()).map_err(ioerr(&base.initrd_part()))?;
    initrd.extend(crate::compress::initrd(&initrd_local_tree(init, &plan, opts.epoch)?, boot.compression, boot.level, 0)?);
    let version_json = top.get("/version.json").and_then(|e| e.content()).unwrap_or(b"{}").to_vec();
    Ok(RootImages { base, top: top_sealed, top_path, initrd, version_json, _tmp: tmp })
}

#[cfg(test)]
mod tests {
    use super::split_fallback;

    #[test]
    fn fallback_modules_wait_with_what_only_they_need() {
        let names: Vec<String> =
            ["virtio_blk", "virtio_pci", "isofs", "sr_mod", "cdrom", "libata", "ata_piix", "scsi_mod"].iter().map(|s| s.to_string()).collect();
        let patterns: Vec<String> = ["virtio_*", "isofs", "sr-mod", "cdrom", "ata_piix"].iter().map(|s| s.to_string()).collect();
        let (first, fallback) = split_fallback(&names, &patterns, &["sr_mod".into(), "cdrom".into(), "ata-piix".into()]).unwrap();
        // libata and scsi_mod are dependencies, asked for by no pattern: /init loads them with
        // the fallback modules that need them.
        assert_eq!(first, ["virtio_blk", "virtio_pci", "isofs"]);
        assert_eq!(fallback, ["sr_mod", "cdrom", "ata_piix"]);
        let e = split_fallback(&names, &patterns, &["ahci".into()]).unwrap_err().to_string();
        assert!(e.contains("boot.initrd_fallback") && e.contains("\"ahci\""), "{e}");
    }
}
