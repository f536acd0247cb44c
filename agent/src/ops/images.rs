//! `images.upload`: a container image archive (an OCI archive, as the Kubernetes bundle builds
//! them) received by SHA-256 into the blob store and imported into containerd's `k8s.io`
//! namespace, where the CRI, and so the kubelet, finds it: the preload that lets kubeadm start a
//! control plane with no registry. The runtime is asked first: when it already holds the
//! reference at the manifest digest, nothing is read or imported (milliseconds). The archive is
//! checked against its SHA-256 as it arrives (a corrupt one is refused and never reaches the
//! store), and containerd checks every blob inside against the manifest. Imported images get the
//! label `io.cri-containerd.pinned=pinned`, which containerd's CRI (1.7 and later) reports as
//! pinned so the kubelet's image garbage collection keeps them; Debian 12's containerd 1.6 does
//! not know the label, so the kubelet configuration also turns image garbage collection off.

use std::io::Read;
use std::time::Duration;

use crate::api::{Changed, ImageUpload};
use crate::host::run_ok;
use crate::ops::{blobs, files, Node, OpError};

/// containerd's namespace for the CRI.
pub const NAMESPACE: &str = "k8s.io";
/// The label that pins an image against the kubelet's garbage collection.
pub const PINNED_LABEL: &str = "io.cri-containerd.pinned=pinned";
const CTR_TIMEOUT: Duration = Duration::from_secs(300);

/// `registry.k8s.io/pause:3.10.1`: a name with a tag, of the characters references use.
pub fn check_reference(field: &str, r: &str) -> Result<(), OpError> {
    let name_ok =
        |n: &str| !n.is_empty() && !n.starts_with(['-', '.', '/']) && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b));
    let tag_ok = |t: &str| (1..=128).contains(&t.len()) && !t.starts_with(['-', '.']) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    match r.rsplit_once(':') {
        Some((name, tag)) if name_ok(name) && tag_ok(tag) => Ok(()),
        _ => Err(OpError::bad(field, format!("{r:?} is not an image reference like registry.k8s.io/pause:3.10.1"))),
    }
}

/// The manifest digest containerd lists for `reference` in the CRI's namespace, if it has it.
pub fn runtime_digest(node: &Node, reference: &str) -> Result<Option<String>, OpError> {
    let filter = format!("name=={reference}");
    let out = run_ok(node.host.as_ref(), &["ctr", "-n", NAMESPACE, "images", "ls", &filter], None, CTR_TIMEOUT)
        .map_err(|e| OpError::internal(format!("ctr images ls: {e}")))?;
    // REF TYPE DIGEST SIZE PLATFORMS LABELS
    Ok(String::from_utf8_lossy(&out.stdout).lines().skip(1).find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next() == Some(reference)).then(|| f.nth(1).map(str::to_string)).flatten()
    }))
}

/// Receive and import the image `req` names, unless containerd has it already.
pub fn upload(node: &Node, req: &ImageUpload, body: &mut dyn Read, len: u64) -> Result<Changed, OpError> {
    check_reference("reference", &req.reference)?;
    let sha = files::check_sha256("sha256", &req.sha256)?;
    let digest = req.digest.strip_prefix("sha256:").map(|h| files::check_sha256("digest", h)).transpose()?;
    let Some(digest) = digest.map(|h| format!("sha256:{h}")) else {
        return Err(OpError::bad("digest", format!("{:?} is not a manifest digest like sha256:<64 hex digits>", req.digest)));
    };
    // No write lock: imports of different images run side by side (containerd serialises what
    // it must; a blob is written to a temporary name and renamed), and a node's CPUs each take one.
    if runtime_digest(node, &req.reference)?.as_deref() == Some(digest.as_str()) {
        return Ok(Changed { changed: false });
    }
    blobs::receive(node, &sha, body, len)?;
    let blob = blobs::path(&node.root, &sha);
    let archive = blob.to_string_lossy().into_owned();
    run_ok(node.host.as_ref(), &["ctr", "-n", NAMESPACE, "images", "import", &archive], None, CTR_TIMEOUT)
        .map_err(|e| OpError::internal(format!("importing {} into containerd: {e}", req.reference)))?;
    // containerd 1.6's `ctr images import` has no --label: the label is set after.
    run_ok(node.host.as_ref(), &["ctr", "-n", NAMESPACE, "images", "label", &req.reference, PINNED_LABEL], None, CTR_TIMEOUT)
        .map_err(|e| OpError::internal(format!("pinning {} in containerd: {e}", req.reference)))?;
    match runtime_digest(node, &req.reference)? {
        Some(d) if d == digest => Ok(Changed { changed: true }),
        other => Err(OpError::internal(format!(
            "{}: containerd lists {} after the import of {archive}, expected {digest}",
            req.reference,
            other.as_deref().unwrap_or("nothing")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_checked() {
        for ok in ["registry.k8s.io/pause:3.10.1", "registry.k8s.io/coredns/coredns:v1.12.1", "localhost:5000/a/b:v1"] {
            check_reference("reference", ok).unwrap();
        }
        for bad in ["pause", "registry.k8s.io/pause:", ":v1", "a b:v1", "-x:v1", "x:v1/y", "x:$(rm)"] {
            assert!(check_reference("reference", bad).is_err(), "{bad}");
        }
    }
}
