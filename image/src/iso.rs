//! Bootable ISO 9660 images, written with `hadris-iso` (pure Rust, reads no clock).
//!
//! An [`IsoImage`] is a small description: a volume id, files by ISO path, and how it boots:
//!
//! * BIOS from CD: El Torito no-emulation entry for `isolinux/isolinux.bin` (boot-info table,
//!   load size 4), boot catalog at `/boot.catalog`, `isolinux/ldlinux.c32` and
//!   `isolinux/isolinux.cfg` beside it.
//! * BIOS from disk/USB: an isohybrid MBR from syslinux's `isohdpfx.bin` boot code, so the same
//!   file boots as a raw disk.
//! * UEFI (optional): an EFI System Partition image (a FAT image holding
//!   `EFI/BOOT/BOOTX64.EFI`) appended after the files, pointed to by an El Torito EFI entry (CD)
//!   and by a GPT partition (disk); the MBR then becomes a GPT hybrid MBR.
//!
//! The primary tree is ISO level 3 with Rock Ridge (exact names, modes) and Joliet. Every date is
//! the given `SOURCE_DATE_EPOCH`, so the same description gives the same bytes. The output is
//! written to a temporary file beside the target, synced, and renamed into place.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use hadris_fs::{Content, DateTime, Node, Tree};
use hadris_iso::{AppendedPartition, BootEntry, BootInfo, ElTorito, Hybrid, IsoId, IsoLevel, IsoOptions};

/// ISO path of the isolinux boot image.
pub const ISOLINUX_BIN: &str = "isolinux/isolinux.bin";
/// ISO path of isolinux's core module.
pub const LDLINUX_C32: &str = "isolinux/ldlinux.c32";
/// ISO path of isolinux's configuration.
pub const ISOLINUX_CFG: &str = "isolinux/isolinux.cfg";
/// ISO path of the El Torito boot catalog.
pub const BOOT_CATALOG: &str = "boot.catalog";

/// Contents of one file in the image.
#[derive(Clone, Debug)]
pub enum IsoFile {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// A host file, read while the image is written (no copy in memory: use it for the kernel
    /// and initramfs).
    Host(PathBuf),
}

impl From<Vec<u8>> for IsoFile {
    fn from(b: Vec<u8>) -> Self {
        IsoFile::Bytes(b)
    }
}
impl From<&[u8]> for IsoFile {
    fn from(b: &[u8]) -> Self {
        IsoFile::Bytes(b.to_vec())
    }
}
impl From<&str> for IsoFile {
    fn from(s: &str) -> Self {
        IsoFile::Bytes(s.as_bytes().to_vec())
    }
}

/// BIOS boot through isolinux.
#[derive(Clone, Debug)]
pub struct BiosBoot {
    /// `isolinux.bin` (Debian: /usr/lib/ISOLINUX/isolinux.bin).
    pub isolinux_bin: Vec<u8>,
    /// `ldlinux.c32` (Debian: /usr/lib/syslinux/modules/bios/ldlinux.c32).
    pub ldlinux_c32: Vec<u8>,
    /// The `isolinux.cfg` text.
    pub isolinux_cfg: Vec<u8>,
    /// isohybrid MBR boot code (Debian: /usr/lib/ISOLINUX/isohdpfx.bin, 432 bytes). `None`
    /// makes a CD-only image.
    pub isohybrid_mbr: Option<Vec<u8>>,
}

/// UEFI boot from an EFI System Partition image.
#[derive(Clone, Debug)]
pub struct EfiBoot {
    /// A FAT image holding `EFI/BOOT/BOOTX64.EFI`.
    pub esp_image: Vec<u8>,
}

/// What goes into the image.
#[derive(Clone, Debug)]
pub struct IsoImage {
    /// Volume identifier (at most 32 characters; minikube uses `MINIKUBE`... any A-Z0-9_).
    pub volume_id: String,
    /// Files by ISO path (`boot/bzImage`, no leading slash needed). Parent directories are made.
    pub files: BTreeMap<String, IsoFile>,
    pub bios: Option<BiosBoot>,
    pub efi: Option<EfiBoot>,
    /// Every date in the image (descriptors, directory records, Rock Ridge times).
    pub source_date_epoch: i64,
}

impl IsoImage {
    pub fn new(volume_id: impl Into<String>, source_date_epoch: i64) -> Self {
        IsoImage { volume_id: volume_id.into(), files: BTreeMap::new(), bios: None, efi: None, source_date_epoch }
    }
    /// Add (or replace) a file.
    pub fn file(mut self, path: &str, content: impl Into<IsoFile>) -> Self {
        self.files.insert(path.trim_start_matches('/').to_string(), content.into());
        self
    }
}

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("volume id {0:?}: must be 1-32 characters A-Z, 0-9 or _")]
    VolumeId(String),
    #[error("{path}: {reason}")]
    Layout { path: String, reason: String },
    #[error("SOURCE_DATE_EPOCH {0} is not a representable date")]
    Date(i64),
    #[error("{tool}: {message}")]
    Tool { tool: &'static str, message: String },
    #[error("writing ISO {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Summary of a written image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Image size in bytes.
    pub size: u64,
    /// Warnings of the writer (for example metadata it could not store), also logged.
    pub warnings: Vec<String>,
}

/// Build the `hadris` tree and options for `image` (exposed for tests and planning).
fn prepare(image: &IsoImage) -> Result<(Tree, IsoOptions), IsoError> {
    let vid = &image.volume_id;
    if vid.is_empty() || vid.len() > 32 || !vid.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
        return Err(IsoError::VolumeId(vid.clone()));
    }
    let time = DateTime::from_unix_seconds(image.source_date_epoch).map_err(|_| IsoError::Date(image.source_date_epoch))?;

    let mut files: BTreeMap<&str, Content> = BTreeMap::new();
    for (path, file) in &image.files {
        let content = match file {
            IsoFile::Bytes(b) => Content::bytes(b.clone()),
            IsoFile::Host(p) => hadris_fs::host::file(p).map_err(|e| IsoError::Layout { path: path.clone(), reason: format!("{}: {e}", p.display()) })?,
        };
        files.insert(path.as_str(), content);
    }
    let mut el_torito = ElTorito::new();
    let mut hybrid: Option<Hybrid> = None;
    if let Some(bios) = &image.bios {
        for (path, bytes) in [(ISOLINUX_BIN, &bios.isolinux_bin), (LDLINUX_C32, &bios.ldlinux_c32), (ISOLINUX_CFG, &bios.isolinux_cfg)] {
            if files.insert(path, Content::bytes(bytes.clone())).is_some() {
                return Err(IsoError::Layout { path: path.into(), reason: "given both as a file and as BIOS boot".into() });
            }
        }
        el_torito = el_torito.with_entry(BootEntry::bios(ISOLINUX_BIN).with_load_size(4).with_boot_info(BootInfo::Table));
        if let Some(mbr) = &bios.isohybrid_mbr {
            let h = if image.efi.is_some() { Hybrid::gpt_hybrid_mbr() } else { Hybrid::mbr() };
            hybrid = Some(h.with_bootstrap(mbr));
        }
    }
    if let Some(efi) = &image.efi {
        el_torito = el_torito.with_entry(BootEntry::uefi_appended(0));
        let h = hybrid.take().unwrap_or_else(Hybrid::gpt);
        hybrid = Some(h.with_appended(AppendedPartition::esp(Content::bytes(efi.esp_image.clone()))));
    }

    let mut tree = Tree::new();
    for (path, content) in files {
        tree.insert(path, Node::file(content)).map_err(|e| IsoError::Layout { path: path.to_string(), reason: e.to_string() })?;
    }

    let mut options = IsoOptions::new()
        .with_id(IsoId::Volume, vid)
        .with_id(IsoId::Application, "MINIKUBE IMAGE")
        .with_level(IsoLevel::L3)
        .with_joliet()
        .with_rock_ridge()
        .with_time(time);
    if image.bios.is_some() || image.efi.is_some() {
        options = options.with_el_torito(el_torito.with_catalog_path(BOOT_CATALOG));
    }
    if let Some(h) = hybrid {
        options = options.with_hybrid(h);
    }
    Ok((tree, options))
}

/// Size in bytes `image` will take, without writing anything.
pub fn plan(image: &IsoImage) -> Result<u64, IsoError> {
    let (tree, options) = prepare(image)?;
    let report = hadris_iso::plan(&tree, &options).map_err(|e| IsoError::Layout { path: "(image)".into(), reason: e.to_string() })?;
    Ok(report.size())
}

/// Write `image` to `out` atomically (temporary file beside it, fsync, rename).
pub fn write(image: &IsoImage, out: &Path) -> Result<Written, IsoError> {
    let (tree, options) = prepare(image)?;
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let io = |context: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| IsoError::Io { context, path, source }
    };
    let tmp = pki::atomic::AtomicFile::create(out, 0o644).map_err(io("creating temporary file in", &dir))?;
    let file = tmp.file().try_clone().map_err(io("duplicating handle of", tmp.temp_path()))?;
    let device = hadris_storage::host::FileDevice::new(file).map_err(io("opening", tmp.temp_path()))?;
    let started = std::time::Instant::now();
    let report = hadris_iso::sync::write(device, &tree, &options).map_err(|e| IsoError::Write { path: out.to_path_buf(), message: e.to_string() })?;
    let warnings: Vec<String> = report.warnings().iter().map(|w| w.to_string()).collect();
    for w in &warnings {
        tracing::warn!(iso = %out.display(), "{w}");
    }
    crate::test_hook::pause("iso-write");
    tmp.commit().map_err(io("renaming temporary file to", out))?;
    let size = std::fs::metadata(out).map_err(io("reading size of", out))?.len();
    tracing::info!(iso = %out.display(), size, seconds = started.elapsed().as_secs_f64(), "ISO written");
    let _ = std::io::stderr().flush();
    Ok(Written { size, warnings })
}

// ---------------------------------------------------------------------------------------------
// UEFI: a GRUB standalone EFI binary in a FAT EFI System Partition image.

/// GRUB modules built into the EFI binary: enough to find the ISO by its volume id on a CD or a
/// GPT/MBR disk, talk on the serial port, and boot a Linux kernel with an initrd (gzio: arm64's
/// kernel is gzip-compressed, and GRUB unpacks it as it reads it).
pub const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "iso9660",
    "fat",
    "search",
    "search_label",
    "search_fs_file",
    "linux",
    "gzio",
    "echo",
    "serial",
    "terminal",
    "test",
    "normal",
    "configfile",
    "efi_gop",
    "all_video",
];

/// GRUB for one EFI platform: where its modules are (in Debian's package), `grub-mkimage`'s
/// format, and the removable-media loader path firmware looks for in the ESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrubEfiTarget {
    /// Debian's architecture name.
    pub arch: &'static str,
    pub package: &'static str,
    pub module_dir: &'static str,
    pub format: &'static str,
    pub esp_path: &'static str,
    /// GRUB drives a PC serial port itself (x86). On arm64 the firmware's console is already the
    /// UART, and GRUB has no `com0`.
    pub pc_serial: bool,
}

/// Every EFI platform an ISO can boot on.
pub const GRUB_EFI_TARGETS: [GrubEfiTarget; 2] = [
    GrubEfiTarget {
        arch: "amd64",
        package: "grub-efi-amd64-bin",
        module_dir: "/usr/lib/grub/x86_64-efi",
        format: "x86_64-efi",
        esp_path: "EFI/BOOT/BOOTX64.EFI",
        pc_serial: true,
    },
    GrubEfiTarget {
        arch: "arm64",
        package: "grub-efi-arm64-bin",
        module_dir: "/usr/lib/grub/arm64-efi",
        format: "arm64-efi",
        esp_path: "EFI/BOOT/BOOTAA64.EFI",
        pc_serial: false,
    },
];

/// The EFI platform of a Debian architecture (amd64, arm64).
pub fn grub_efi_target(arch: platform::Arch) -> Option<&'static GrubEfiTarget> {
    GRUB_EFI_TARGETS.iter().find(|t| t.arch == arch.debian())
}

/// Where GRUB takes the amd64 image from (Debian package grub-efi-amd64-bin).
pub const GRUB_EFI_MODULE_DIR: &str = GRUB_EFI_TARGETS[0].module_dir;

/// Path of the amd64 GRUB binary inside the ESP (the removable-media default loader).
pub const ESP_BOOTLOADER: &str = GRUB_EFI_TARGETS[0].esp_path;

/// GRUB configuration that finds the ISO by volume id and boots `/boot/bzImage` with
/// `/boot/initrd` and `cmdline` (the same files and command line as isolinux), talking on the
/// first serial port and the screen. Prints `marker` on the console before booting.
pub fn grub_cfg(volume_id: &str, cmdline: &str, marker: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         echo '{marker}'\n\
         if search --no-floppy --set=root --label '{volume_id}'; then\n\
         \x20 echo \"{marker}: ISO found at $root\"\n\
         else\n\
         \x20 echo '{marker}: no filesystem labelled {volume_id}'\n\
         fi\n\
         linux {kernel} {cmdline}\n\
         initrd {initrd}\n\
         boot\n",
        kernel = platform::KernelBoot::KERNEL,
        initrd = platform::KernelBoot::INITRD,
    )
}

/// GRUB configuration for `target`: [`grub_cfg`] on x86; elsewhere the same steps without the
/// PC serial port and in plain commands only (arm64's GRUB runs an embedded configuration with
/// its rescue parser, which has no `if`).
pub fn grub_cfg_for(target: &GrubEfiTarget, volume_id: &str, cmdline: &str, marker: &str) -> String {
    if target.pc_serial {
        return grub_cfg(volume_id, cmdline, marker);
    }
    format!(
        "echo '{marker}'\n\
         search --no-floppy --set=root --label '{volume_id}'\n\
         echo \"{marker}: ISO labelled {volume_id} at $root\"\n\
         linux {kernel} {cmdline}\n\
         initrd {initrd}\n\
         boot\n",
        kernel = platform::KernelBoot::KERNEL,
        initrd = platform::KernelBoot::INITRD,
    )
}

/// Build a standalone GRUB EFI binary for amd64 with `config` embedded (see [`grub_efi_for`]).
pub fn grub_efi(config: &str, module_dir: &Path) -> Result<Vec<u8>, IsoError> {
    grub_efi_for(&GRUB_EFI_TARGETS[0], config, module_dir)
}

/// Build a standalone GRUB EFI binary for `target` with `config` embedded, by running the
/// host's `grub-mkimage -O FORMAT` on `module_dir` (the target's modules, taken from its Debian
/// package: nothing of the target runs). The tool stamps no time into the image: the same inputs
/// give the same bytes.
pub fn grub_efi_for(target: &GrubEfiTarget, config: &str, module_dir: &Path) -> Result<Vec<u8>, IsoError> {
    let dir = tempfile::tempdir().map_err(|source| IsoError::Io { context: "creating temporary directory for", path: "grub-mkimage".into(), source })?;
    let cfg = dir.path().join("grub.cfg");
    let out = dir.path().join("grub.efi");
    std::fs::write(&cfg, config).map_err(|source| IsoError::Io { context: "writing", path: cfg.clone(), source })?;
    let result = std::process::Command::new("grub-mkimage")
        .arg("-O")
        .arg(target.format)
        .arg("-d")
        .arg(module_dir)
        .arg("-p")
        .arg("/boot/grub")
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .args(GRUB_MODULES)
        .output()
        .map_err(|source| IsoError::Io { context: "running (apt package grub-common)", path: "grub-mkimage".into(), source })?;
    if !result.status.success() {
        return Err(IsoError::Tool { tool: "grub-mkimage", message: String::from_utf8_lossy(&result.stderr).trim().to_string() });
    }
    std::fs::read(&out).map_err(|source| IsoError::Io { context: "reading", path: out, source })
}

/// A FAT EFI System Partition image holding `files` (paths like `EFI/BOOT/BOOTX64.EFI`).
/// Sized to the files plus room for FAT metadata; volume id and every date are fixed, so the
/// same files give the same bytes.
pub fn esp_image(files: &[(&str, &[u8])]) -> Result<Vec<u8>, IsoError> {
    const MIB: u64 = 1 << 20;
    let content: u64 = files.iter().map(|(_, d)| d.len() as u64 + 4096).sum();
    let size = (content + content / 8 + MIB).div_ceil(MIB).max(2) * MIB;
    let esp_err = |path: &str, e: std::io::Error| IsoError::Layout { path: format!("ESP:{path}"), reason: e.to_string() };
    let mut disk = std::io::Cursor::new(vec![0u8; size as usize]);
    fatfs::format_volume(&mut disk, fatfs::FormatVolumeOptions::new().volume_id(0x4d4b_4553).volume_label(*b"EFIBOOT    "))
        .map_err(|e| esp_err("(format)", e))?;
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).map_err(|e| esp_err("(mount)", e))?;
        for (path, data) in files {
            let root = fs.root_dir();
            let path = path.trim_start_matches('/');
            let mut dir = root.clone();
            let mut parts: Vec<&str> = path.split('/').collect();
            let name = parts.pop().unwrap_or_default();
            for part in parts {
                dir = match dir.open_dir(part) {
                    Ok(d) => d,
                    Err(_) => dir.create_dir(part).map_err(|e| esp_err(path, e))?,
                };
            }
            let mut file = dir.create_file(name).map_err(|e| esp_err(path, e))?;
            file.truncate().map_err(|e| esp_err(path, e))?;
            file.write_all(data).map_err(|e| esp_err(path, e))?;
            file.flush().map_err(|e| esp_err(path, e))?;
        }
        fs.unmount().map_err(|e| esp_err("(unmount)", e))?;
    }
    Ok(disk.into_inner())
}
