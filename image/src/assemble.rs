//! Spec -> rootfs: resolve the spec's packages, fetch them into the cache, unpack them into one
//! [`Tree`], then do declaratively what maintainer scripts would do ([`crate::system`]), add the
//! overlays, enable units and add the kernel's modules. The result is a value; writing it out as
//! an initramfs, ISO or OCI layers is the job of other modules.

use crate::apt::{ArchiveConfig, Index, Package};
use crate::resolve::{resolve, Request};
use crate::rootfs::{Entry, Kind, Tree};
use crate::spec::Spec;
use crate::{deb, kernel, system};
use fetch::{Cache, Http};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Apt(#[from] crate::apt::AptError),
    #[error(transparent)]
    Resolve(#[from] crate::resolve::ResolveError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("{0} (check the mirror in your apt sources, or pass --mirror)")]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    Deb(#[from] crate::deb::DebError),
    #[error(transparent)]
    System(#[from] crate::system::SystemError),
    #[error(transparent)]
    Kernel(#[from] crate::kernel::KernelError),
    #[error("overlay {path}: {source}")]
    Overlay { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// Build-wide settings that are not part of the spec.
#[derive(Clone, Debug)]
pub struct Options {
    pub mirror: Option<String>,
    /// SOURCE_DATE_EPOCH: every mtime is clamped to it; dates in files derive from it.
    pub epoch: u64,
    pub cache: Cache,
    /// Parallel downloads.
    pub jobs: usize,
    pub version: String,
    pub commit: String,
    /// Extra files to install (e.g. the agent binary): path -> (content, mode).
    pub extra_files: BTreeMap<String, (Vec<u8>, u32)>,
    /// Go programs of ours to install (mode 0755), listed in the image's SBOM with their modules
    /// (the nodes' crictl).
    pub go_binaries: Vec<crate::gobin::GoBinary>,
    /// The static `minikube-init` binary: `/init` of a squashfs root's initramfs.
    pub init_binary: Option<Vec<u8>>,
    /// Where built package layers are cached (default: `rootfs/` in the package cache);
    /// `cargo xtask verify` gives an empty directory, so that its rebuild makes every layer.
    pub layer_cache: Option<std::path::PathBuf>,
}

impl Options {
    pub fn new(epoch: u64) -> Self {
        Options {
            mirror: None,
            epoch,
            cache: Cache::default_location(),
            jobs: 6,
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: "unknown".into(),
            extra_files: BTreeMap::new(),
            go_binaries: Vec::new(),
            init_binary: None,
            layer_cache: None,
        }
    }
}

/// One installed package, for the package list and the SBOM.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub sha256: String,
    pub size: u64,
    pub filename: String,
}

impl From<&Package> for Installed {
    fn from(p: &Package) -> Installed {
        Installed {
            name: p.name.clone(),
            version: p.version.to_string(),
            arch: p.arch.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
            filename: p.filename.clone(),
        }
    }
}

pub struct Assembly {
    pub tree: Tree,
    pub packages: Vec<Installed>,
    /// Which package brought each path (first one wins), for layer splitting.
    pub owner: BTreeMap<String, String>,
    pub kernel: Option<kernel::Kernel>,
    pub index: Index,
    /// The small initramfs's modules, when the spec boots from a squashfs root.
    pub initrd_modules: Option<Tree>,
}

/// The package index of a build: with the spec's lock file ([`crate::lock`]), exactly the
/// locked packages (nothing resolved, today's indexes unread); without one, today's indexes
/// ([`open_live_index`]) and a warning.
pub fn open_index(spec: &Spec, opts: &Options, http: &Http) -> Result<Index, AssembleError> {
    match crate::lock::read_for(spec)? {
        Some((path, lock)) => Ok(crate::lock::pinned::pinned_index(spec, &path, &lock, opts, http)?),
        None => open_live_index(spec, opts, http),
    }
}

/// Today's package indexes of the spec's suite, its update suites and its extra repositories.
pub fn open_live_index(spec: &Spec, opts: &Options, http: &Http) -> Result<Index, AssembleError> {
    let mirror = opts.mirror.as_deref().or(spec.source.mirror.as_deref());
    let cfg = ArchiveConfig::from_machine(mirror, &spec.source.suite, spec.source.arch.debian(), &spec.source.components)?;
    tracing::info!(mirror = %cfg.mirror, suite = %cfg.suite, arch = %cfg.arch, "package source");
    let mut index = crate::apt::load_index(&cfg, http, &opts.cache)?;
    for suite in &spec.source.updates {
        match ArchiveConfig::from_machine(None, suite, spec.source.arch.debian(), &spec.source.components) {
            Ok(cfg) => {
                tracing::info!(mirror = %cfg.mirror, suite = %cfg.suite, "package source (updates)");
                index.merge(crate::apt::load_index(&cfg, http, &opts.cache)?);
            }
            Err(crate::apt::AptError::NoMirror { .. }) => {
                tracing::warn!("source.updates: suite {suite:?} is not in this machine's apt sources: skipped");
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The spec's extra signed repositories (each verified with its own key).
    crate::repo::merge_repos(&mut index, spec, http, &opts.cache)?;
    Ok(index)
}

/// Fetch packages by exact name (no dependencies), e.g. bootloader or kernel packages, and unpack
/// them into a fresh tree.
pub fn fetch_unpacked(index: &Index, names: &[String], opts: &Options, http: &Http) -> Result<Tree, AssembleError> {
    let mut pkgs = Vec::new();
    for n in names {
        let p = index.by_name(n).into_iter().next().ok_or_else(|| crate::resolve::ResolveError::Unknown {
            name: n.clone(),
            suite: index.suite.clone(),
            arch: index.arch.clone(),
            by: "the boot configuration".into(),
        })?;
        pkgs.push(p);
    }
    let items: Vec<_> = pkgs.iter().map(|p| index.item(p)).collect();
    let paths = opts.cache.fetch_all(http, &items, opts.jobs)?;
    let mut t = Tree::new();
    deb::add_merged_usr_links(&mut t, opts.epoch);
    for (p, path) in pkgs.iter().zip(paths) {
        deb::unpack(&path, &p.name, &mut t)?;
    }
    Ok(t)
}

/// Read an overlay directory into a tree (root-owned; 0755 for executables and dirs, else 0644).
pub fn read_overlay(dir: &Path, epoch: u64) -> Result<Tree, AssembleError> {
    let mut t = Tree::new();
    fn walk(base: &Path, dir: &Path, t: &mut Tree, epoch: u64) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().to_string();
            let key = format!("/{rel}");
            let ft = e.file_type()?;
            let mut entry = if ft.is_symlink() {
                Entry::symlink(std::fs::read_link(&p)?.to_string_lossy().to_string())
            } else if ft.is_dir() {
                Entry::dir(0o755)
            } else {
                use std::os::unix::fs::PermissionsExt;
                let exec = e.metadata()?.permissions().mode() & 0o111 != 0;
                Entry::file(std::fs::read(&p)?, if exec { 0o755 } else { 0o644 })
            };
            entry.mtime = epoch;
            t.insert(&key, entry);
            if ft.is_dir() {
                walk(base, &p, t, epoch)?;
            }
        }
        Ok(())
    }
    walk(dir, dir, &mut t, epoch).map_err(|source| AssembleError::Overlay { path: dir.to_path_buf(), source })?;
    Ok(t)
}

/// Put `layer` on top of `tree`: files and links replace, existing directories keep their entry.
fn layer_onto(tree: &mut Tree, layer: &Tree) {
    for (k, e) in layer.iter() {
        if k == "/" {
            continue;
        }
        if matches!(e.kind, Kind::Dir) && matches!(tree.get(k).map(|x| &x.kind), Some(Kind::Dir)) {
            continue;
        }
        tree.insert(k, e.clone());
    }
}

/// The package set of a spec: a locked index's install set as it is, else resolved.
pub fn resolve_spec<'i>(spec: &Spec, index: &'i Index) -> Result<Vec<&'i Package>, AssembleError> {
    match &index.pinned {
        Some(p) => p
            .install
            .iter()
            .map(|n| index.by_name(n).into_iter().next().ok_or_else(|| AssembleError::Other(format!("{}: {n} is not in its own index", p.lock.display()))))
            .collect(),
        None => resolve_request(spec, index),
    }
}

/// The spec's package request resolved over `index` (a locked index too: kicbase's layer split
/// resolves a part of the spec over the locked set).
pub fn resolve_request<'i>(spec: &Spec, index: &'i Index) -> Result<Vec<&'i Package>, AssembleError> {
    let req = Request {
        include: spec.packages.include.clone(),
        required: spec.packages.required,
        exclude: spec.packages.exclude.clone(),
        prefer: spec.packages.prefer.clone(),
    };
    Ok(resolve(index, &req)?)
}

/// Spec -> rootfs tree, as described in the module docs: the package part ([`assemble_base`])
/// with the local part ([`top_tree`]) laid over it.
pub fn assemble(spec: &Spec, opts: &Options) -> Result<Assembly, AssembleError> {
    let http = Http::default();
    let index = open_index(spec, opts, &http)?;
    let set = resolve_spec(spec, &index)?;
    let base = assemble_base(spec, opts, &index, &set, &http)?;
    let mut a = Assembly { tree: base.tree, packages: base.packages, owner: base.owner, kernel: base.kernel, index, initrd_modules: base.initrd_modules };
    let dirs = a.tree.clone();
    let top = top_tree(spec, opts, &base.enabled, &|p| dirs.get(p).filter(|e| matches!(e.kind, Kind::Dir)).cloned())?;
    layer_onto(&mut a.tree, &top);
    Ok(a)
}

/// The package part of a rootfs, which depends only on the spec, the package set, the epoch and
/// this code (so it can be cached by their content): packages unpacked and stacked, maintainer
/// script duties, kernel modules, and the units of `[systemd]` that the packages ship.
pub struct Base {
    pub tree: Tree,
    pub packages: Vec<Installed>,
    pub owner: BTreeMap<String, String>,
    pub kernel: Option<kernel::Kernel>,
    /// The small initramfs's modules (`boot.initrd_modules`), with their own depmod indexes.
    pub initrd_modules: Option<Tree>,
    /// Units of `systemd.enable` that were found and enabled here.
    pub enabled: Vec<String>,
}

/// The package part, as described on [`Base`].
pub fn assemble_base(spec: &Spec, opts: &Options, index: &Index, set: &[&Package], http: &Http) -> Result<Base, AssembleError> {
    tracing::info!(packages = set.len(), bytes = set.iter().map(|p| p.size).sum::<u64>(), "package set");
    let items: Vec<_> = set.iter().map(|p| index.item(p)).collect();
    let paths = opts.cache.fetch_all(http, &items, opts.jobs)?;

    // Unpack in parallel (one tree per package), then stack in name order.
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let unpacked = fetch::parallel::try_map(set, jobs, |i, p| {
        let mut t = Tree::new();
        deb::unpack(&paths[i], &p.name, &mut t).map(|l| (t, l))
    })?;
    let mut tree = Tree::new();
    deb::add_merged_usr_links(&mut tree, opts.epoch);
    let mut owner = BTreeMap::new();
    let mut installed_lists = Vec::new();
    for (p, (t, list)) in set.iter().zip(unpacked) {
        for (k, _) in t.iter() {
            owner.entry(k.clone()).or_insert_with(|| p.name.clone());
        }
        layer_onto(&mut tree, &t);
        installed_lists.push((*p, list));
    }
    let epoch = opts.epoch;

    let dropped = system::drop_paths(&mut tree, &spec.files.drop, &spec.files.keep);
    tracing::debug!(dropped, "dropped docs and locales");
    let unused =
        system::drop_unused(&mut tree, &spec.files.unused, &spec.files.keep).map_err(|e| AssembleError::Other(format!("{}: {e}", spec.path.display())))?;
    tracing::debug!(?unused, "dropped what the image never uses");

    let mut acc = system::Accounts::from_base_passwd(&tree)?;
    acc.apply_sysusers(&tree)?;
    acc.apply_spec(spec)?;
    acc.write(&mut tree, epoch);
    system::make_homes(&mut tree, spec, &acc, epoch);
    system::apply_alternatives(&mut tree, &spec.alternatives, epoch)?;
    system::apply_copies(&mut tree, &spec.copies, epoch)?;
    system::apply_capabilities(&mut tree, &spec.capabilities)?;
    let pam = crate::pam::configure(&mut tree, epoch);
    tracing::debug!(?pam, "PAM stacks");
    let hash = |pem: &[u8]| {
        use pki::rustls_pki_types::{pem::PemObject, CertificateDer};
        let der = CertificateDer::from_pem_slice(pem).ok()?;
        pki::subject_hash_hex(&der).ok()
    };
    system::ca_certificates(&mut tree, epoch, Some(&hash));
    let base = format!("Debian {}", spec.source.suite);
    system::identity(&mut tree, spec, &opts.version, &base, epoch);
    system::runtime_dir_links(&mut tree, epoch);
    system::dpkg_database(&mut tree, &installed_lists, epoch);

    let (kernel, initrd_modules) = match &spec.kernel {
        None => (None, None),
        Some(k) => {
            let img = kernel::image_package_name(index, &k.package)
                .ok_or_else(|| AssembleError::Other(format!("kernel.package: {:?} is not in {}/{}", k.package, index.suite, index.arch)))?;
            let kt = fetch_unpacked(index, std::slice::from_ref(&img), opts, http)?;
            let kern = kernel::from_package_tree(&kt, &img, &k.modules, epoch)?;
            kern.check_load(&k.load)?;
            layer_onto(&mut tree, &kern.modules);
            if !k.load.is_empty() {
                let mut e = Entry::file(kernel::modules_load(&k.load), 0o644);
                e.mtime = epoch;
                tree.insert("/etc/modules-load.d/minikube.conf", e);
            }
            let initrd = match spec.boot.as_ref().filter(|b| !b.initrd_modules.is_empty()) {
                Some(b) => Some(kernel::from_package_tree(&kt, &img, &b.initrd_modules, epoch)?.modules),
                None => None,
            };
            (Some(kern), initrd)
        }
    };

    let enabled: Vec<String> = spec.systemd.enable.iter().filter(|u| system::has_unit(&tree, u)).cloned().collect();
    system::enable_units(&mut tree, &enabled, epoch)?;
    system::mask_units(&mut tree, &spec.systemd.mask, epoch);
    if let Some(t) = &spec.systemd.default_target {
        let mut e = Entry::symlink(format!("/usr/lib/systemd/system/{t}"));
        e.mtime = epoch;
        tree.insert("/etc/systemd/system/default.target", e);
    }
    tree.clamp_mtime(epoch);

    let packages = set.iter().map(|p| Installed::from(*p)).collect();
    Ok(Base { tree, packages, owner, kernel, initrd_modules, enabled })
}

/// The local part of a rootfs, laid over the package part: the overlays, the extra files (the
/// agent), `/version.json` (which names the commit) and the enablement of the `systemd.enable`
/// units that the base did not ship (`base_enabled` lists those it did). `base_dir` gives the
/// base's entry for a directory, so that a directory both have keeps the base's owner and mode.
pub fn top_tree(spec: &Spec, opts: &Options, base_enabled: &[String], base_dir: &dyn Fn(&str) -> Option<Entry>) -> Result<Tree, AssembleError> {
    let epoch = opts.epoch;
    let mut tree = Tree::new();
    for o in &spec.files.overlays {
        let dir = spec.resolve_path(o);
        let t = read_overlay(&dir, epoch)?;
        layer_onto(&mut tree, &t);
    }
    let go = opts.go_binaries.iter().map(|b| (&b.path, &b.bytes, 0o755));
    for (path, content, mode) in opts.extra_files.iter().map(|(p, (c, m))| (p, c, *m)).chain(go) {
        let mut e = Entry::file(content.clone(), mode);
        e.mtime = epoch;
        tree.insert(path, e);
    }
    system::version_json(&mut tree, spec, &opts.version, &opts.commit, &format!("Debian {}", spec.source.suite), epoch);
    let rest: Vec<String> = spec.systemd.enable.iter().filter(|u| !base_enabled.contains(u)).cloned().collect();
    system::enable_units(&mut tree, &rest, epoch)?;
    let dirs: Vec<String> = tree.iter().filter(|(_, e)| matches!(e.kind, Kind::Dir)).map(|(k, _)| k.clone()).collect();
    for d in dirs {
        if let Some(e) = base_dir(&d) {
            tree.insert(&d, e);
        }
    }
    tree.clamp_mtime(epoch);
    Ok(tree)
}

/// `dpkg -l`-like text listing of installed packages.
pub fn package_list(pkgs: &[Installed]) -> String {
    let mut s = String::from("Desired=Install/Status=Installed\n||/ Name Version Architecture\n");
    for p in pkgs {
        s.push_str(&format!("ii  {} {} {}\n", p.name, p.version, p.arch));
    }
    s
}
