//! The minikube ISO from a spec: [`crate::assemble`] the rootfs, add `/init`, write it as a
//! compressed cpio initramfs, take the kernel and isolinux from Debian's packages, and write the
//! El Torito ISO (BIOS via isolinux, hybrid MBR) atomically.

use crate::assemble::{assemble, fetch_unpacked, AssembleError, Installed, Options};
use crate::compress::Compression;
use crate::fetch::Http;
use crate::iso::{BiosBoot, EfiBoot, IsoImage};
use crate::rootfs::Entry;
use crate::spec::Spec;
use std::path::Path;
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
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// What a build produced, with timings for the benchmark.
#[derive(Debug)]
pub struct IsoBuild {
    pub size: u64,
    pub initrd_size: u64,
    pub rootfs_bytes: u64,
    pub kernel_version: String,
    pub packages: Vec<Installed>,
    pub assemble_time: Duration,
    pub compress_time: Duration,
    pub iso_time: Duration,
}

/// isolinux.cfg for the kernel command line.
pub fn isolinux_cfg(cmdline: &str) -> String {
    format!(
        "SERIAL 0 115200\nDEFAULT minikube\nPROMPT 0\nTIMEOUT 0\n\nLABEL minikube\n  KERNEL /boot/bzImage\n  INITRD /boot/initrd\n  APPEND {cmdline}\n"
    )
}

/// Build the ISO described by `spec` into `out` (atomically: the old file stays on failure).
pub fn build(spec: &Spec, opts: &Options, compression: Option<(Compression, Option<i32>)>, out: &Path) -> Result<IsoBuild, IsoBuildError> {
    let serr = |m: &str| IsoBuildError::Spec { spec: spec.path.display().to_string(), message: m.into() };
    let boot = spec.boot.as_ref().ok_or_else(|| serr("[boot] section missing: an ISO needs init and cmdline"))?;
    if spec.kernel.is_none() {
        return Err(serr("[kernel] section missing: an ISO needs a kernel"));
    }
    let (comp, level) = match compression {
        Some(c) => c,
        None => (
            boot.compression.parse::<Compression>().map_err(|_| serr("boot.compression: unknown format"))?,
            boot.level,
        ),
    };
    let t0 = Instant::now();
    let mut a = assemble(spec, opts)?;
    let init_path = spec.resolve_path(&boot.init);
    let init = std::fs::read(&init_path).map_err(|source| IsoBuildError::Io { path: init_path.display().to_string(), source })?;
    let mut e = Entry::file(init, 0o755);
    e.mtime = opts.epoch;
    a.tree.insert("/init", e);
    let kernel = a.kernel.take().expect("kernel section checked above");
    let assemble_time = t0.elapsed();

    let t1 = Instant::now();
    let initrd = crate::compress::initrd(&a.tree, comp, level, 0)?;
    let compress_time = t1.elapsed();
    tracing::info!(format = comp.name(), bytes = initrd.len(), "initramfs compressed");

    let t2 = Instant::now();
    let http = Http::default();
    let bl = fetch_unpacked(&a.index, &boot.bootloader_packages, opts, &http)?;
    let get = |p: &str| -> Result<Vec<u8>, IsoBuildError> {
        bl.get(p).and_then(|e| e.content()).map(|c| c.to_vec()).ok_or_else(|| {
            serr(&format!("boot.bootloader_packages: no {p} in {:?}", boot.bootloader_packages))
        })
    };
    let bios = BiosBoot {
        isolinux_bin: get("/usr/lib/ISOLINUX/isolinux.bin")?,
        ldlinux_c32: get("/usr/lib/syslinux/modules/bios/ldlinux.c32")?,
        isolinux_cfg: isolinux_cfg(&boot.cmdline).into_bytes(),
        isohybrid_mbr: Some(get("/usr/lib/ISOLINUX/isohdpfx.bin")?),
    };
    let initrd_size = initrd.len() as u64;
    let mut img = IsoImage::new(boot.volume_id.clone(), opts.epoch as i64)
        .file("boot/bzImage", kernel.bzimage)
        .file("boot/initrd", initrd)
        .file("version.json", a.tree.get("/version.json").and_then(|e| e.content()).unwrap_or(b"{}").to_vec());
    img.bios = Some(bios);
    // UEFI: a standalone GRUB (built by the host's grub-mkimage from the modules of Debian's
    // grub-efi-amd64-bin package) in a FAT ESP, booting the same kernel, initrd and cmdline.
    if bl.contains(crate::iso::GRUB_EFI_MODULE_DIR) {
        let mods = tempfile::tempdir().map_err(|source| IsoBuildError::Io { path: "grub modules".into(), source })?;
        for (k, e) in bl.children_of(crate::iso::GRUB_EFI_MODULE_DIR) {
            if let Some(c) = e.content() {
                let rel = k.trim_start_matches(crate::iso::GRUB_EFI_MODULE_DIR).trim_start_matches('/');
                let dst = mods.path().join(rel);
                std::fs::create_dir_all(dst.parent().unwrap()).map_err(|source| IsoBuildError::Io { path: dst.display().to_string(), source })?;
                std::fs::write(&dst, c).map_err(|source| IsoBuildError::Io { path: dst.display().to_string(), source })?;
            }
        }
        let cfg = crate::iso::grub_cfg(&boot.volume_id, &boot.cmdline, "minikube-iso: grub");
        let grub = crate::iso::grub_efi(&cfg, mods.path())?;
        let esp = crate::iso::esp_image(&[(crate::iso::ESP_BOOTLOADER, &grub)])?;
        img.efi = Some(EfiBoot { esp_image: esp });
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|source| IsoBuildError::Io { path: dir.display().to_string(), source })?;
    }
    let written = crate::iso::write(&img, out)?;
    for w in &written.warnings {
        tracing::warn!("{w}");
    }
    Ok(IsoBuild {
        size: written.size,
        initrd_size,
        rootfs_bytes: a.tree.content_bytes(),
        kernel_version: kernel.version,
        packages: a.packages,
        assemble_time,
        compress_time,
        iso_time: t2.elapsed(),
    })
}
