//! Output: one tar that is an OCI layout and a docker-archive, or an OCI layout directory.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::config::OCI_LAYOUT;
use super::{BlobStore, Image, ImageIndex, OciError};

/// What [`write_archive`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub path: PathBuf,
    /// Archive size in bytes.
    pub size: u64,
    /// `sha256:<hex>` of the archive file itself.
    pub sha256: String,
    /// The image's manifest digest; for several architectures, the nested index's digest.
    pub manifest_digest: String,
}

/// Write `image` as a single tar at `target`: `blobs/`, `blobs/sha256/`, the blobs (sorted by
/// digest), `index.json`, `manifest.json` (docker-archive), `oci-layout`; every entry owned by
/// 0:0, mtime = `image.meta.epoch`, dirs 0755, files 0644. Accepted by `docker load`,
/// `podman load`, `skopeo ... oci-archive:` and `docker-archive:`.
///
/// Written to a temporary file beside `target`, fsynced, then renamed over it: on failure the
/// previous file is untouched.
pub fn write_archive(image: &Image, target: &Path) -> Result<ArchiveSummary, OciError> {
    let content = Content {
        store: &image.store,
        blobs: image.blob_digests(),
        index: image.index_json()?,
        docker_manifest: image.docker_manifest_json()?,
        epoch: image.meta.epoch,
        top: &image.manifest_digest,
    };
    write_tar(&content, target)
}

/// Write the images of `index` as one tar at `target`, as [`write_archive`] does one image:
/// `index.json` names the nested index blob, `manifest.json` has one entry per architecture
/// (`NAME:TAG-ARCH`); each blob is stored once. The summary's `manifest_digest` is the nested
/// index's digest.
pub fn write_index_archive(index: &ImageIndex, target: &Path) -> Result<ArchiveSummary, OciError> {
    let content = Content {
        store: index.store(),
        blobs: index.blob_digests(),
        index: index.index_json()?,
        docker_manifest: index.docker_manifest_json()?,
        epoch: index.meta().epoch,
        top: &index.digest,
    };
    write_tar(&content, target)
}

/// What goes into an archive.
struct Content<'a> {
    store: &'a BlobStore,
    /// Sorted, without duplicates.
    blobs: Vec<String>,
    index: Vec<u8>,
    docker_manifest: Vec<u8>,
    epoch: u64,
    /// What `index.json` points at.
    top: &'a str,
}

fn write_tar(c: &Content<'_>, target: &Path) -> Result<ArchiveSummary, OciError> {
    let parent = parent_dir(target);
    fs::create_dir_all(&parent).map_err(OciError::io(&parent))?;
    let tmp = pki::atomic::AtomicFile::create(target, 0o644).map_err(OciError::io(&parent))?;
    let tmp_path = tmp.temp_path().to_path_buf();
    let epoch = c.epoch;

    let out = tmp.file().try_clone().map_err(OciError::io(&tmp_path))?;
    let hashing = super::layer::HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
    let mut b = tar::Builder::new(hashing);
    let io_tmp = |e| OciError::Io { path: tmp_path.clone(), source: e };
    for dir in ["blobs/", "blobs/sha256/"] {
        let h = header(dir, EntryType::Directory, 0o755, 0, epoch).map_err(io_tmp)?;
        b.append(&h, io::empty()).map_err(io_tmp)?;
    }
    for digest in &c.blobs {
        let src = c.store.blob_path(digest);
        let f = File::open(&src).map_err(|_| OciError::MissingBlob { digest: digest.clone(), dir: c.store.sha256_dir() })?;
        let len = f.metadata().map_err(OciError::io(&src))?.len();
        let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        let h = header(&name, EntryType::Regular, 0o644, len, epoch).map_err(io_tmp)?;
        // A short read would make tar-rs fail the append, so a truncated blob cannot slip in.
        b.append(&h, f).map_err(OciError::io(&src))?;
    }
    for (name, data) in [("index.json", c.index.as_slice()), ("manifest.json", c.docker_manifest.as_slice()), ("oci-layout", OCI_LAYOUT)] {
        let h = header(name, EntryType::Regular, 0o644, data.len() as u64, epoch).map_err(io_tmp)?;
        b.append(&h, data).map_err(io_tmp)?;
    }
    let hashing = b.into_inner().map_err(io_tmp)?;
    let (inner, sha256, count) = hashing.into_parts();
    inner.into_inner().map_err(|e| OciError::Io { path: tmp_path.clone(), source: e.into_error() })?;
    crate::test_hook::pause("archive-write");
    tmp.commit().map_err(OciError::io(target))?;
    let summary = ArchiveSummary { path: target.to_path_buf(), size: count, sha256, manifest_digest: c.top.to_string() };
    tracing::info!(path = %target.display(), size = summary.size, sha256 = %summary.sha256,
        manifest = %summary.manifest_digest, "wrote image archive");
    Ok(summary)
}

/// Write `image` as an OCI image layout directory at `dir` (`oci-layout`, `index.json`,
/// `blobs/sha256/*`; blobs hard-linked from the store when possible, copied otherwise), for
/// `skopeo ... oci:DIR` and `umoci unpack --image DIR:TAG`.
///
/// Built in a temporary directory beside `dir` and renamed into place; an existing `dir` is
/// replaced only once the new one is complete. If `dir` is the blob store's own root, only
/// `oci-layout` and `index.json` are (atomically) written there.
pub fn write_layout(image: &Image, dir: &Path) -> Result<(), OciError> {
    if same_dir(dir, image.store.root()) {
        write_file_atomic(&dir.join("oci-layout"), OCI_LAYOUT)?;
        return write_file_atomic(&dir.join("index.json"), &image.index_json()?);
    }
    let parent = parent_dir(dir);
    fs::create_dir_all(&parent).map_err(OciError::io(&parent))?;
    let base = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = tempfile::Builder::new().prefix(&format!(".{base}.")).tempdir_in(&parent).map_err(OciError::io(&parent))?;
    let blobs = tmp.path().join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(OciError::io(&blobs))?;
    for digest in image.blob_digests() {
        let src = image.store.blob_path(&digest);
        if !src.is_file() {
            return Err(OciError::MissingBlob { digest, dir: image.store.sha256_dir() });
        }
        let dst = blobs.join(digest.trim_start_matches("sha256:"));
        if fs::hard_link(&src, &dst).is_err() {
            fs::copy(&src, &dst).map_err(OciError::io(&dst))?;
            File::open(&dst).and_then(|f| f.sync_all()).map_err(OciError::io(&dst))?;
        }
    }
    write_file_atomic(&tmp.path().join("oci-layout"), OCI_LAYOUT)?;
    write_file_atomic(&tmp.path().join("index.json"), &image.index_json()?)?;
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).map_err(OciError::io(tmp.path()))?;
    }
    let new = tmp.keep();
    if dir.exists() {
        let old = tempfile::Builder::new().prefix(&format!(".{base}.old.")).tempdir_in(&parent).map_err(OciError::io(&parent))?;
        let old_path = old.keep();
        // rename(2) onto a directory needs it empty: move the old layout into the (empty) temp dir.
        let moved = old_path.join("layout");
        fs::rename(dir, &moved).map_err(OciError::io(dir))?;
        fs::rename(&new, dir).map_err(OciError::io(dir))?;
        fs::remove_dir_all(&old_path).map_err(OciError::io(&old_path))?;
    } else {
        fs::rename(&new, dir).map_err(OciError::io(dir))?;
    }
    sync_dir(&parent);
    tracing::info!(dir = %dir.display(), manifest = %image.manifest_digest, "wrote OCI layout");
    Ok(())
}

fn header(name: &str, kind: EntryType, mode: u32, size: u64, mtime: u64) -> io::Result<Header> {
    let mut h = Header::new_ustar();
    h.set_path(name)?;
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_username("root")?;
    h.set_groupname("root")?;
    h.set_mtime(mtime);
    h.set_size(size);
    h.set_cksum();
    Ok(h)
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn write_file_atomic(path: &Path, data: &[u8]) -> Result<(), OciError> {
    let parent = parent_dir(path);
    let mut tmp = pki::atomic::AtomicFile::create(path, 0o644).map_err(OciError::io(&parent))?;
    tmp.write_all(data).map_err(OciError::io(tmp.temp_path()))?;
    tmp.commit().map_err(OciError::io(path))
}
