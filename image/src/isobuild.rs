//! The minikube ISO from a spec, with its root in one of two places ([`RootMode`]):
//!
//! * `squashfs` (default): the root as read-only squashfs layers on the medium beside a small
//!   initramfs that mounts them ([`crate::rootimage`]; the package layer is cached);
//! * `initramfs`: [`crate::assemble`] the rootfs, add the spec's `/init` script and write it all
//!   as one compressed cpio initramfs, unpacked into RAM at boot.
//!
//! Then the kernel, isolinux and GRUB from Debian's packages, and the El Torito ISO (BIOS via
//! isolinux, UEFI via GRUB, hybrid MBR/GPT), written atomically, with its CycloneDX SBOM
//! ([`crate::sbom`]) inside (`/sbom.json` beside `/version.json`) and beside it ([`sbom_path`]).

use crate::assemble::{assemble, fetch_unpacked, open_index, resolve_spec, AssembleError, Installed, Options};
use crate::compress::Compression;
use crate::iso::{BiosBoot, EfiBoot, IsoFile, IsoImage};
use crate::rootfs::Entry;
use crate::spec::{RootMode, Spec};
use fetch::Http;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum IsoBuildError {
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    #[error("{spec}: {message}")]
    Spec { spec: String, message: String },
    #[error(transparent)]
    Compress(#[from] crate::compress::CompressError),
    #[error(transparent)]
    Iso(#[from] crate::iso::IsoError),
    #[error(transparent)]
    RootImage(#[from] crate::rootimage::RootImageError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// What a build produced, with timings for the benchmark.
#[derive(Debug)]
pub struct IsoBuild {
    pub root: RootMode,
    /// squashfs root: whether the package layer came from the cache, and its key.
    pub base_reused: bool,
    pub base_key: String,
    /// squashfs root: sizes of the package and local layers.
    pub base_size: u64,
    pub top_size: u64,
    pub size: u64,
    pub initrd_size: u64,
    pub rootfs_bytes: u64,
    pub kernel_version: String,
    pub packages: Vec<Installed>,
    /// The SBOM written beside the ISO ([`sbom_path`]).
    pub sbom: PathBuf,
    pub assemble_time: Duration,
    pub compress_time: Duration,
    pub iso_time: Duration,
}

/// The SBOM's name inside the ISO (at its root, beside `version.json`).
pub const SBOM_FILE: &str = "sbom.json";

/// The SBOM beside an ISO: `out/minikube.iso` -> `out/minikube.sbom.json`.
pub fn sbom_path(out: &Path) -> PathBuf {
    out.with_extension("sbom.json")
}

/// The ISO's SBOM: the installed packages, then the kernel (`kernel.package` and its image
/// package), the bootloader packages and (squashfs root) the initramfs's packages the ISO
/// takes files from, each with its role; then our Go programs (crictl) and their modules.
fn iso_sbom(spec: &Spec, opts: &Options, index: &crate::apt::Index, installed: &[Installed], root: RootMode) -> Vec<u8> {
    let mut taken: Vec<(Installed, &str)> = Vec::new();
    let mut take = |name: &str, role: &'static str| {
        if installed.iter().chain(taken.iter().map(|(p, _)| p)).any(|p| p.name == name) {
            return;
        }
        if let Some(p) = index.by_name(name).into_iter().next() {
            taken.push((Installed::from(p), role));
        }
    };
    if let Some(k) = &spec.kernel {
        take(&k.package, "kernel");
        if let Some(img) = crate::kernel::image_package_name(index, &k.package) {
            take(&img, "kernel");
        }
    }
    for b in spec.boot.iter().flat_map(|b| &b.bootloader_packages) {
        take(b, "bootloader");
    }
    for b in spec.boot.iter().filter(|_| root == RootMode::Squashfs).flat_map(|b| &b.initrd_packages) {
        take(b, "initrd");
    }
    let binaries: Vec<crate::sbom::Binary> = opts.go_binaries.iter().map(crate::sbom::GoBinary::as_binary).collect();
    let modules = crate::sbom::merge(opts.go_binaries.iter().map(|b| b.modules.as_slice()));
    let components: Vec<crate::sbom::Component> = installed
        .iter()
        .map(|package| crate::sbom::Component::Deb { package, role: None })
        .chain(taken.iter().map(|(package, role)| crate::sbom::Component::Deb { package, role: Some(role) }))
        .chain(binaries.iter().map(crate::sbom::Component::Binary))
        .chain(modules.iter().map(crate::sbom::Component::Go))
        .collect();
    let subject = crate::sbom::Subject {
        kind: "operating-system",
        bom_ref: format!("{}@{}", spec.image.name, opts.version),
        name: &spec.image.name,
        version: &opts.version,
        revision: &opts.commit,
        epoch: opts.epoch,
    };
    crate::sbom::cyclonedx(&subject, &spec.source.suite, &components)
}

/// isolinux.cfg for the kernel command line.
pub fn isolinux_cfg(cmdline: &str) -> String {
    format!(
        "SERIAL 0 115200\nDEFAULT minikube\nPROMPT 0\nTIMEOUT 0\n\nLABEL minikube\n  KERNEL {}\n  INITRD {}\n  APPEND {cmdline}\n",
        platform::KernelBoot::KERNEL,
        platform::KernelBoot::INITRD
    )
}

/// Build the ISO described by `spec` into `out` (atomically: the old file stays on failure).
/// `root` overrides the spec's `boot.root`; `compression` overrides the initramfs compression of
/// an `initramfs` root.
pub fn build(
    spec: &Spec,
    opts: &Options,
    compression: Option<(Compression, Option<i32>)>,
    root: Option<RootMode>,
    out: &Path,
) -> Result<IsoBuild, IsoBuildError> {
    let serr = |m: &str| IsoBuildError::Spec { spec: spec.path.display().to_string(), message: m.into() };
    let boot = spec.boot.as_ref().ok_or_else(|| serr("[boot] section missing: an ISO needs init and cmdline"))?;
    if spec.kernel.is_none() {
        return Err(serr("[kernel] section missing: an ISO needs a kernel"));
    }
    let root = root.unwrap_or(boot.root);
    let ioerr = |path: &Path| {
        let path = path.display().to_string();
        move |source| IsoBuildError::Io { path, source }
    };
    let out_dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_dir).map_err(ioerr(out_dir))?;
    // A build killed mid-way (SIGKILL) leaves its temporary files; the old ISO is intact.
    let stale = pki::atomic::remove_stale_temps(out_dir).map_err(ioerr(out_dir))?;
    if stale > 0 {
        tracing::info!(stale, dir = %out_dir.display(), "removed temporary files of an interrupted build");
    }
    let http = Http::default();
    let t0 = Instant::now();
    let mut report = IsoBuild {
        root,
        base_reused: false,
        base_key: String::new(),
        base_size: 0,
        top_size: 0,
        size: 0,
        initrd_size: 0,
        rootfs_bytes: 0,
        kernel_version: String::new(),
        packages: vec![],
        sbom: sbom_path(out),
        assemble_time: Duration::ZERO,
        compress_time: Duration::ZERO,
        iso_time: Duration::ZERO,
    };
    let mut img = IsoImage::new(boot.volume_id.clone(), opts.epoch as i64);
    // Kept alive until the ISO is written (the top layer lives in it).
    let mut _root_images = None;
    let index = match root {
        RootMode::Initramfs => {
            let (comp, level) = match compression {
                Some(c) => c,
                None => (boot.compression, boot.level),
            };
            let mut a = assemble(spec, opts)?;
            let init_path = spec.resolve_path(&boot.init);
            let init = std::fs::read(&init_path).map_err(ioerr(&init_path))?;
            let mut e = Entry::file(init, 0o755);
            e.mtime = opts.epoch;
            a.tree.insert("/init", e);
            let kernel = a.kernel.take().expect("kernel section checked above");
            report.assemble_time = t0.elapsed();
            let t1 = Instant::now();
            let initrd = crate::compress::initrd(&a.tree, comp, level, 0)?;
            report.compress_time = t1.elapsed();
            tracing::info!(format = comp.name(), bytes = initrd.len(), "initramfs compressed");
            report.initrd_size = initrd.len() as u64;
            report.rootfs_bytes = a.tree.content_bytes();
            report.kernel_version = kernel.version;
            report.packages = a.packages;
            img = img
                .file(platform::KernelBoot::KERNEL, kernel.bzimage)
                .file(platform::KernelBoot::INITRD, initrd)
                .file("version.json", a.tree.get("/version.json").and_then(|e| e.content()).unwrap_or(b"{}").to_vec());
            a.index
        }
        RootMode::Squashfs => {
            if compression.is_some() {
                return Err(serr("--compression and --level set the initramfs of --root initramfs; a squashfs root is compressed as [boot.squashfs] says"));
            }
            let init = opts
                .init_binary
                .as_deref()
                .ok_or_else(|| serr("a squashfs root needs the minikube-init binary (Options::init_binary) as the initramfs's /init"))?;
            let index = open_index(spec, opts, &http)?;
            let set = resolve_spec(spec, &index)?;
            let mut ri = crate::rootimage::build(spec, opts, &index, &set, &http, init, out_dir)?;
            report.assemble_time = t0.elapsed();
            report.base_reused = ri.base.reused;
            report.base_key = ri.base.meta.key.clone();
            report.base_size = ri.base.meta.root.file_bytes;
            report.top_size = ri.top.file_bytes;
            report.initrd_size = ri.initrd.len() as u64;
            report.rootfs_bytes = ri.base.meta.rootfs_bytes;
            report.kernel_version = ri.base.meta.kernel_version.clone();
            report.packages = ri.base.meta.packages.clone();
            img = img
                .file(platform::KernelBoot::KERNEL, IsoFile::Host(ri.base.bzimage()))
                .file(platform::KernelBoot::INITRD, std::mem::take(&mut ri.initrd))
                .file(crate::rootimage::BASE_IMAGE, IsoFile::Host(ri.base.root_image()))
                .file(crate::rootimage::TOP_IMAGE, IsoFile::Host(ri.top_path.clone()))
                .file("version.json", std::mem::take(&mut ri.version_json));
            _root_images = Some(ri);
            index
        }
    };

    let t2 = Instant::now();
    let bl = fetch_unpacked(&index, &boot.bootloader_packages, opts, &http)?;
    let get = |p: &str| -> Result<Vec<u8>, IsoBuildError> {
        bl.get(p)
            .and_then(|e| e.content())
            .map(|c| c.to_vec())
            .ok_or_else(|| serr(&format!("boot.bootloader_packages: no {p} in {:?}", boot.bootloader_packages)))
    };
    // BIOS: isolinux, when the bootloader packages bring it (amd64).
    if bl.contains("/usr/lib/ISOLINUX/isolinux.bin") {
        img.bios = Some(BiosBoot {
            isolinux_bin: get("/usr/lib/ISOLINUX/isolinux.bin")?,
            ldlinux_c32: get("/usr/lib/syslinux/modules/bios/ldlinux.c32")?,
            isolinux_cfg: isolinux_cfg(&boot.cmdline).into_bytes(),
            isohybrid_mbr: Some(get("/usr/lib/ISOLINUX/isohdpfx.bin")?),
        });
    }
    // UEFI: a standalone GRUB (built by the host's grub-mkimage from the modules of Debian's
    // grub-efi-<arch>-bin package) in a FAT ESP, booting the same kernel, initrd and cmdline.
    let target = crate::iso::grub_efi_target(spec.source.arch);
    if let Some(target) = target.filter(|t| bl.contains(t.module_dir)) {
        let mods = tempfile::tempdir().map_err(|source| IsoBuildError::Io { path: "grub modules".into(), source })?;
        for (k, e) in bl.children_of(target.module_dir) {
            if let Some(c) = e.content() {
                let rel = k.trim_start_matches(target.module_dir).trim_start_matches('/');
                let dst = mods.path().join(rel);
                std::fs::create_dir_all(dst.parent().unwrap()).map_err(ioerr(&dst))?;
                std::fs::write(&dst, c).map_err(ioerr(&dst))?;
            }
        }
        let cfg = crate::iso::grub_cfg_for(target, &boot.volume_id, &boot.cmdline, "minikube-iso: grub");
        let grub = crate::iso::grub_efi_for(target, &cfg, mods.path())?;
        let esp = crate::iso::esp_image(&[(target.esp_path, &grub)])?;
        img.efi = Some(EfiBoot { esp_image: esp });
    }
    if img.bios.is_none() && img.efi.is_none() {
        let efi = target.map_or_else(|| format!("no GRUB EFI platform for {}", spec.source.arch), |t| t.package.to_string());
        return Err(serr(&format!(
            "boot.bootloader_packages {:?} bring no bootloader for {}: isolinux (BIOS) or {efi} (UEFI)",
            boot.bootloader_packages, spec.source.arch
        )));
    }
    let sbom = iso_sbom(spec, opts, &index, &report.packages, root);
    img = img.file(SBOM_FILE, sbom.clone());
    let written = crate::iso::write(&img, out)?;
    pki::atomic::write_atomic(&report.sbom, &sbom, 0o644).map_err(ioerr(&report.sbom))?;
    for w in &written.warnings {
        tracing::warn!("{w}");
    }
    report.size = written.size;
    report.iso_time = t2.elapsed();
    Ok(report)
}
