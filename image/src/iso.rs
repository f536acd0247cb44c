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
    if vid.is_empty() || vid.len() > 32 || !vid.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(IsoError::VolumeId(vid.clone()));
    }
    let time = DateTime::from_unix_seconds(image.source_date_epoch).map_err(|_| IsoError::Date(image.source_date_epoch))?;

    let mut files: BTreeMap<&str, Content> = BTreeMap::new();
    for (path, file) in &image.files {
        let content = match file {
            IsoFile::Bytes(b) => Content::bytes(b.clone()),
            IsoFile::Host(p) => hadris_fs::host::file(p)
                .map_err(|e| IsoError::Layout { path: path.clone(), reason: format!("{}: {e}", p.display()) })?,
        };
        files.insert(path.as_str(), content);
    }
    let mut el_torito = ElTorito::new();
    let mut hybrid: Option<Hybrid> = None;
    if let Some(bios) = &image.bios {
        for (path, bytes) in [
            (ISOLINUX_BIN, &bios.isolinux_bin),
            (LDLINUX_C32, &bios.ldlinux_c32),
            (ISOLINUX_CFG, &bios.isolinux_cfg),
        ] {
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
        tree.insert(path, Node::file(content))
            .map_err(|e| IsoError::Layout { path: path.to_string(), reason: e.to_string() })?;
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
    let report = hadris_iso::plan(&tree, &options)
        .map_err(|e| IsoError::Layout { path: "(image)".into(), reason: e.to_string() })?;
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
    let tmp = tempfile::Builder::new()
        .prefix(".iso-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(io("creating temporary file in", &dir))?;
    let file = tmp.as_file().try_clone().map_err(io("duplicating handle of", tmp.path()))?;
    let device = hadris_storage::host::FileDevice::new(file).map_err(io("opening", tmp.path()))?;
    let started = std::time::Instant::now();
    let report = hadris_iso::sync::write(device, &tree, &options)
        .map_err(|e| IsoError::Write { path: out.to_path_buf(), message: e.to_string() })?;
    let warnings: Vec<String> = report.warnings().iter().map(|w| w.to_string()).collect();
    for w in &warnings {
        tracing::warn!(iso = %out.display(), "{w}");
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let f = tmp.as_file();
        f.set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io("setting mode of", tmp.path()))?;
        f.sync_all().map_err(io("syncing", tmp.path()))?;
    }
    tmp.persist(out).map_err(|e| IsoError::Io { context: "renaming temporary file to", path: out.to_path_buf(), source: e.error })?;
    if let Ok(d) = std::fs::File::open(&dir) {
        d.sync_all().map_err(io("syncing directory", &dir))?;
    }
    let size = std::fs::metadata(out).map_err(io("reading size of", out))?.len();
    tracing::info!(iso = %out.display(), size, seconds = started.elapsed().as_secs_f64(), "ISO written");
    let _ = std::io::stderr().flush();
    Ok(Written { size, warnings })
}
