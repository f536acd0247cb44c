//! Binaries kept by SHA-256 on the data disk: a blob is written once, verified, under its hash;
//! the places that use it (`/var/lib/minikube/binaries/VERSION/kubelet`) are hard links to it.
//! A blob that exists was verified when it was written, so "do you have X" costs a `stat`, not a
//! hash of 80 MB under emulation.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::ops::{files, Node, OpError};
use crate::paths::GuestRoot;

/// The store (guest path). On the same bind mount as the binaries directory, so that links work.
pub const BLOB_DIR: &str = "/var/lib/minikube/blobs/sha256";

/// Where the blob `sha256` (lowercase hex) lives (host path).
pub fn path(root: &GuestRoot, sha256: &str) -> PathBuf {
    root.host(&format!("{BLOB_DIR}/{sha256}"))
}

/// Make `target` the blob (a hard link; a copy across file systems). Returns whether it changed.
pub fn link(blob: &Path, target: &Path) -> io::Result<bool> {
    let b = fs::metadata(blob)?;
    if let Ok(t) = fs::symlink_metadata(target) {
        if t.dev() == b.dev() && t.ino() == b.ino() {
            return Ok(false);
        }
    }
    let dir = target.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir)?;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!("{}{name}.{}.link", pki::atomic::TEMP_PREFIX, std::process::id()));
    let _ = fs::remove_file(&temp);
    match fs::hard_link(blob, &temp) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            fs::copy(blob, &temp)?;
            fs::File::open(&temp)?.sync_all()?;
        }
        Err(e) => return Err(e),
    }
    fs::rename(&temp, target).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })?;
    pki::atomic::sync_dir(dir)?;
    Ok(true)
}

/// Receive the blob `sha256` from `body` unless the store has it (then the body is left
/// unread). Returns whether it was written.
pub fn receive(node: &Node, sha256: &str, body: &mut dyn Read, len: u64) -> Result<bool, OpError> {
    let blob = path(&node.root, sha256);
    if blob.is_file() {
        return Ok(false);
    }
    files::receive(&blob, sha256, 0o755, Some((0, 0)), body, len)
}

/// Copy a file into the store, verifying its hash (a blob delivered beside the trust files or
/// in the userdata tar). Returns whether it was written.
pub fn import(root: &GuestRoot, sha256: &str, from: &Path) -> Result<bool, OpError> {
    let blob = path(root, sha256);
    if blob.is_file() {
        return Ok(false);
    }
    let mut f = fs::File::open(from).map_err(|e| OpError::io(from, e))?;
    let len = f.metadata().map_err(|e| OpError::io(from, e))?.len();
    files::receive(&blob, sha256, 0o755, Some((0, 0)), &mut f, len)
        .map_err(|e| OpError { message: format!("{} (importing {}): {}", blob.display(), from.display(), e.message), ..e })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_blob_is_written_once_and_linked() {
        let d = tempfile::tempdir().unwrap();
        let node = Node::new(GuestRoot::new(d.path()), Arc::new(crate::host::RecordingHost::node("m")));
        let data = b"#!/bin/sh\necho kubelet\n";
        let sha = pki::digest::sha256_hex(data);
        assert!(receive(&node, &sha, &mut &data[..], data.len() as u64).unwrap());
        assert!(!receive(&node, &sha, &mut io::empty(), data.len() as u64).unwrap(), "present: the body is not read");
        let target = d.path().join("var/lib/minikube/binaries/v1/kubelet");
        assert!(link(&path(&node.root, &sha), &target).unwrap());
        assert!(!link(&path(&node.root, &sha), &target).unwrap());
        assert_eq!(fs::read(&target).unwrap(), data);
        let bad = pki::digest::sha256_hex(b"other");
        let e = receive(&node, &bad, &mut &data[..], data.len() as u64).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(!path(&node.root, &bad).exists(), "a blob with the wrong content is not kept");
    }
}
