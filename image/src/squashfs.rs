//! A [`Tree`] as a compressed read-only squashfs image, written by Debian's `mksquashfs`
//! (squashfs-tools) from a tar stream on its standard input.
//!
//! Every timestamp in the image is `SOURCE_DATE_EPOCH` (squashfs-tools 4.5's reproducible mode
//! sets them all; the tree's own mtimes, already clamped to the epoch, are not kept).
//!
//! The tar carries every owner, mode, device number, symlink, hard link (paths that share one
//! content value with identical metadata) and extended attribute (`SCHILY.xattr.*`, e.g. file
//! capabilities), so no file is written to the host and nothing needs root. `mksquashfs` runs with
//! `SOURCE_DATE_EPOCH` and the root directory's metadata from the tree, so the same tree gives
//! the same bytes whatever the thread count (a test builds twice and compares). The image is written to a temporary
//! file beside the target and renamed into place.

use crate::rootfs::Tree;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    #[error("running mksquashfs (install squashfs-tools: scripts/setup.sh): {0}")]
    Spawn(std::io::Error),
    #[error("mksquashfs failed for {out}: {stderr}")]
    Failed { out: PathBuf, stderr: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("writing the tar stream for {out} at {path}: {source}")]
    Tar { out: PathBuf, path: String, source: std::io::Error },
}

/// squashfs compressors the Debian kernel reads (CONFIG_SQUASHFS_{ZLIB,LZ4,LZO,XZ,ZSTD}).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compressor {
    Gzip,
    Lz4,
    Lzo,
    Xz,
    Zstd,
}

impl Compressor {
    pub const ALL: [Compressor; 5] = [Compressor::Gzip, Compressor::Lz4, Compressor::Lzo, Compressor::Xz, Compressor::Zstd];

    pub fn name(self) -> &'static str {
        match self {
            Compressor::Gzip => "gzip",
            Compressor::Lz4 => "lz4",
            Compressor::Lzo => "lzo",
            Compressor::Xz => "xz",
            Compressor::Zstd => "zstd",
        }
    }

    /// mksquashfs's option for a level, where the compressor takes one.
    fn level_args(self, level: Option<i32>) -> Vec<String> {
        match (self, level) {
            (Compressor::Gzip | Compressor::Zstd | Compressor::Lzo, Some(l)) => vec!["-Xcompression-level".into(), l.to_string()],
            (Compressor::Lz4, Some(l)) if l > 1 => vec!["-Xhc".into()],
            _ => vec![],
        }
    }
}

impl std::fmt::Display for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compressor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Compressor::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| format!("unknown squashfs compressor {s:?} (gzip, lz4, lzo, xz, zstd)"))
    }
}

/// How to write an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Options {
    pub compressor: Compressor,
    pub level: Option<i32>,
    /// Data block size in KiB (4..=1024, a power of two).
    pub block_kib: u32,
    /// Creation time of the filesystem (SOURCE_DATE_EPOCH).
    pub epoch: u64,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Written {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// An image with its dm-verity hash tree appended ([`seal`]): what the initramfs's plan names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Sealed {
    /// Bytes of filesystem (padded to [`minikube_init::verity::BLOCK`]); the tree follows.
    pub data_bytes: u64,
    /// SHA-256 of those bytes; also the tree's salt (unique per image, the same for the same
    /// bytes).
    pub sha256: String,
    pub root_hash: String,
    /// Bytes of the whole file, data and tree.
    pub file_bytes: u64,
}

impl Sealed {
    /// The initramfs plan's entry for this image at `iso_path` on the medium.
    pub fn layer(&self, iso_path: &str) -> minikube_init::Layer {
        minikube_init::Layer {
            path: iso_path.into(),
            sha256: self.sha256.clone(),
            data_bytes: self.data_bytes,
            root_hash: self.root_hash.clone(),
            salt: self.sha256.clone(),
        }
    }
}

/// Append the dm-verity tree of the image at `path` (padding it to a whole block first). The
/// file must not be in `out/`: it is written in place (the builder's images live in a temporary
/// or cache staging directory until complete).
pub fn seal(path: &Path) -> Result<Sealed, SquashfsError> {
    use minikube_init::verity;
    let ioerr = |source| SquashfsError::Io { path: path.to_path_buf(), source };
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(ioerr)?;
    let len = f.metadata().map_err(ioerr)?.len();
    // At least two blocks: the kernel gives a one-block image no tree at all (a tiny top layer
    // would be one); the zeros after the filesystem are never read by squashfs.
    let data_bytes = len.div_ceil(verity::BLOCK).max(2) * verity::BLOCK;
    f.set_len(data_bytes).map_err(ioerr)?;
    let (sha256, _) = pki::digest::sha256_file(path).map_err(ioerr)?;
    let salt = hex::decode(&sha256).expect("sha256_file gives hex");
    let (tree, root) = verity::build(std::io::BufReader::with_capacity(1 << 20, &f), &salt).map_err(ioerr)?;
    let mut w = &f;
    std::io::Seek::seek(&mut w, std::io::SeekFrom::Start(data_bytes)).map_err(ioerr)?;
    w.write_all(&tree).map_err(ioerr)?;
    f.sync_all().map_err(ioerr)?;
    Ok(Sealed { data_bytes, sha256, root_hash: hex::encode(root), file_bytes: data_bytes + tree.len() as u64 })
}

/// `mksquashfs -version`'s first line: part of the cache key of a cached image.
pub fn tool_version() -> Result<String, SquashfsError> {
    let out = Command::new("mksquashfs").arg("-version").output().map_err(SquashfsError::Spawn)?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string())
}

/// Write `tree` as a squashfs image at `out` (atomically).
pub fn write(tree: &Tree, opts: &Options, out: &Path) -> Result<Written, SquashfsError> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let ioerr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SquashfsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(ioerr(dir))?;
    // mksquashfs writes the temporary file through its path; committed only when complete, and
    // removed on any error before that.
    let tmp = pki::atomic::AtomicFile::create(out, 0o644).map_err(ioerr(dir))?;
    let root = tree.get("/").cloned().unwrap_or_else(|| crate::rootfs::Entry::dir(0o755));
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let mut cmd = Command::new("mksquashfs");
    cmd.arg("-")
        .arg(tmp.temp_path())
        .args(["-tar", "-noappend", "-no-progress", "-quiet", "-no-exports"])
        .args(["-comp", opts.compressor.name()])
        .args(opts.compressor.level_args(opts.level))
        .args(["-b", &format!("{}K", opts.block_kib)])
        // In tar mode, squashfs-tools 4.5 ignores -root-time and stamps the root with the clock;
        // SOURCE_DATE_EPOCH is what makes it reproducible (every time becomes the epoch).
        .env("SOURCE_DATE_EPOCH", opts.epoch.to_string())
        .args(["-root-mode", &format!("{:o}", root.mode & 0o7777)])
        .args(["-root-uid", &root.uid.to_string(), "-root-gid", &root.gid.to_string()])
        .args(["-processors", &threads.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(SquashfsError::Spawn)?;
    crate::test_hook::pause("squashfs");
    let stdin = child.stdin.take().expect("piped stdin");
    let stderr = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut s);
        s
    });
    let fed = (|| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, stdin);
        crate::tarstream::write_tree(tree, &mut w, true).map_err(|(path, source)| SquashfsError::Tar { out: out.to_path_buf(), path, source })?;
        w.flush().map_err(|source| SquashfsError::Tar { out: out.to_path_buf(), path: "(end)".into(), source })
    })();
    let status = child.wait().map_err(SquashfsError::Spawn)?;
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(SquashfsError::Failed { out: out.to_path_buf(), stderr: stderr.trim().to_string() });
    }
    fed?;
    let f = std::fs::File::open(tmp.temp_path()).map_err(ioerr(tmp.temp_path()))?;
    let (sha256, size) = pki::digest::sha256_reader(&mut std::io::BufReader::new(f)).map_err(ioerr(tmp.temp_path()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(ioerr(tmp.temp_path()))?;
    }
    // fsync, rename over `out`, fsync the directory.
    tmp.commit().map_err(ioerr(out))?;
    Ok(Written { path: out.to_path_buf(), size, sha256 })
}
