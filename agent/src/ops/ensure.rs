//! Converging single files, directories and links: each returns whether it changed anything.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use pki::atomic::AtomicFile;

/// Create `dir` and its parents (0755) if missing.
pub fn dir(path: &Path) -> io::Result<bool> {
    if path.is_dir() {
        return Ok(false);
    }
    fs::create_dir_all(path)?;
    Ok(true)
}

/// Make `path` a regular file holding `content` with permission bits `mode` and, if given,
/// owner `(uid, gid)`. Rewrites atomically when the content differs.
pub fn file(path: &Path, content: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<bool> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_file() && meta.len() == content.len() as u64 && fs::read(path)? == content {
            return attributes(path, &meta, mode, owner);
        }
    }
    if let Some(parent) = path.parent() {
        dir(parent)?;
    }
    let mut f = AtomicFile::create(path, mode)?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(f.file(), Some(uid.into()), Some(gid.into()))?;
    }
    f.write_all(content)?;
    crate::hooks::before_commit(path);
    match f.commit() {
        // A file that is a mount point (the engine's /etc/hostname, /etc/hosts and
        // /etc/resolv.conf in a container) cannot be replaced: rewrite it in place.
        Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) && path.is_file() => {
            let mut w = fs::OpenOptions::new().write(true).truncate(true).open(path)?;
            w.write_all(content)?;
            w.sync_all()?;
            let meta = fs::metadata(path)?;
            attributes(path, &meta, mode, owner)?;
        }
        r => r?,
    }
    Ok(true)
}

/// Fix mode and owner of an existing file in place.
pub fn attributes(path: &Path, meta: &fs::Metadata, mode: u32, owner: Option<(u32, u32)>) -> io::Result<bool> {
    let mut changed = false;
    if let Some((uid, gid)) = owner {
        if meta.uid() != uid || meta.gid() != gid {
            nix::unistd::chown(path, Some(uid.into()), Some(gid.into()))?;
            changed = true;
        }
    }
    if meta.permissions().mode() & 0o7777 != mode & 0o7777 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))?;
        changed = true;
    }
    Ok(changed)
}

/// Make `path` a symbolic link to `target` (replaced atomically through a temporary link).
pub fn symlink(path: &Path, target: &str) -> io::Result<bool> {
    if fs::read_link(path).is_ok_and(|t| t == Path::new(target)) {
        return Ok(false);
    }
    let parent = path.parent().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "link without parent"))?;
    dir(parent)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = parent.join(format!("{}{name}.link.{}", pki::atomic::TEMP_PREFIX, std::process::id()));
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp)?;
    fs::rename(&temp, path)?;
    pki::atomic::sync_dir(parent)?;
    Ok(true)
}

/// Remove `path` if it exists.
pub fn absent(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
