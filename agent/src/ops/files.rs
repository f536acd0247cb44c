//! `files`: streamed upload (checked against SHA-256, written atomically with mode and owner),
//! stat, and download.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::api::{Changed, FileStat, FileUpload};
use crate::ops::{ensure, Node, OpError};
use crate::paths::Access;

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    pki::digest::sha256_file(path).map(|(h, _)| h)
}

/// Check a client-supplied SHA-256 (64 hex digits), returned lowercased.
pub fn check_sha256(field: &str, value: &str) -> Result<String, OpError> {
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(OpError::bad(field, "must be 64 hexadecimal digits"));
    }
    Ok(value.to_ascii_lowercase())
}

fn refuse_temp_names(clean: &str, field: &str) -> Result<(), OpError> {
    if clean.rsplit('/').next().is_some_and(pki::atomic::is_temp_name) {
        return Err(OpError::forbidden(field, "names starting with .minikube-tmp. are the agent's temporary files"));
    }
    Ok(())
}

/// Remove temporary files left in `dir` by an agent process that died mid-write (their names
/// carry the writer's pid: `.minikube-tmp.NAME.PID.N`).
pub fn remove_stale_temps(dir: &Path) {
    let own = std::process::id().to_string();
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !pki::atomic::is_temp_name(&name) {
            continue;
        }
        let pid = name.rsplit('.').nth(1).unwrap_or("");
        let alive = pid == own || Path::new("/proc").join(pid).exists();
        if !alive {
            tracing::info!("removing {} left by a dead writer", e.path().display());
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Stream `len` bytes of `body` into `target` (host path) if its content is not already the
/// one with `sha256` (then the body is left unread). The old file stays in place until the new
/// one is complete and verified.
pub fn receive(target: &Path, sha256: &str, mode: u32, owner: Option<(u32, u32)>, body: &mut dyn Read, len: u64) -> Result<bool, OpError> {
    if let Ok(meta) = fs::symlink_metadata(target) {
        if meta.is_file() && meta.len() == len && sha256_file(target).map_err(|e| OpError::io(target, e))? == sha256 {
            return ensure::attributes(target, &meta, mode, owner).map_err(|e| OpError::io(target, e));
        }
    }
    if let Some(parent) = target.parent() {
        ensure::dir(parent).map_err(|e| OpError::io(parent, e))?;
        remove_stale_temps(parent);
    }
    let mut out = pki::atomic::AtomicFile::create(target, mode).map_err(|e| OpError::io(target, e))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(out.file(), Some(uid.into()), Some(gid.into())).map_err(|e| OpError::io(target, e.into()))?;
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = body.read(&mut buf[..want]).map_err(|e| OpError::internal(format!("request body: {e}")))?;
        if n == 0 {
            return Err(OpError::bad("body", format!("ended {left} bytes early")));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| OpError::io(target, e))?;
        left -= n as u64;
    }
    let got = pki::digest::hex(&hasher.finalize());
    if got != sha256 {
        return Err(OpError::unprocessable("sha256", format!("body has SHA-256 {got}, expected {sha256}")));
    }
    crate::hooks::before_commit(target);
    out.commit().map_err(|e| OpError::io(target, e))?;
    Ok(true)
}

/// A checked upload: the host path, the SHA-256 and the owner.
pub struct Checked {
    pub host: std::path::PathBuf,
    pub sha256: String,
    pub owner: (u32, u32),
}

/// Check an upload's path, hash, mode and owner; nothing is touched. `field` prefixes the
/// field names in errors (empty for the API's query fields).
pub fn check_upload(node: &Node, up: &FileUpload, field: &str) -> Result<Checked, OpError> {
    let f = |name: &str| format!("{field}{name}");
    let (clean, host) = node.root.resolve(&up.path, &f("path"), Access::Write)?;
    refuse_temp_names(&clean, &f("path"))?;
    let sha256 = check_sha256(&f("sha256"), &up.sha256)?;
    if up.mode & !0o7777 != 0 {
        return Err(OpError::bad(&f("mode"), format!("{:o} is not a permission mode", up.mode)));
    }
    let owner = match &up.owner {
        Some(spec) => crate::accounts::resolve_owner(node.root.dir(), spec).map_err(|e| OpError::bad(&f("owner"), e))?,
        None => (0, 0),
    };
    Ok(Checked { host, sha256, owner })
}

pub fn upload(node: &Node, up: &FileUpload, body: &mut dyn Read, len: u64) -> Result<Changed, OpError> {
    let Checked { host, sha256: sha, owner } = check_upload(node, up, "")?;
    let owner = Some(owner);
    let _w = node.lock_writes();
    let changed = receive(&host, &sha, up.mode, owner, body, len)?;
    Ok(Changed { changed })
}

pub fn stat(node: &Node, path: &str) -> Result<FileStat, OpError> {
    let (clean, host) = node.root.resolve(path, "path", Access::Read)?;
    refuse_temp_names(&clean, "path")?;
    match fs::metadata(&host) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(FileStat { exists: false, size: 0, sha256: String::new(), mode: 0, uid: 0, gid: 0 }),
        Err(e) => Err(OpError::io(&host, e)),
        Ok(meta) if !meta.is_file() => Err(OpError::bad("path", format!("{clean} is not a regular file"))),
        Ok(meta) => Ok(FileStat {
            exists: true,
            size: meta.len(),
            sha256: sha256_file(&host).map_err(|e| OpError::io(&host, e))?,
            mode: meta.permissions().mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        }),
    }
}

/// Open a regular file for download: the file and its length.
pub fn open_download(node: &Node, path: &str) -> Result<(File, u64), OpError> {
    let (clean, host) = node.root.resolve(path, "path", Access::Read)?;
    refuse_temp_names(&clean, "path")?;
    let f = File::open(&host).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => OpError::not_found("path", format!("{clean} does not exist")),
        _ => OpError::io(&host, e),
    })?;
    let meta = f.metadata().map_err(|e| OpError::io(&host, e))?;
    if !meta.is_file() {
        return Err(OpError::bad("path", format!("{clean} is not a regular file")));
    }
    Ok((f, meta.len()))
}
