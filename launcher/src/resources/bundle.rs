//! The Kubernetes bundle `cargo xtask kubernetes` leaves in the cache: its manifest, read.

use std::path::{Path, PathBuf};

use platform::bundle::{self, BundleManifest};
use platform::Arch;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: not a Kubernetes bundle manifest ({source}); build it again with `cargo xtask kubernetes`")]
    Manifest { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The bundle of `version` for `arch` in the cache, if `cargo xtask kubernetes` built one.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The version's directory (files in the manifest are relative to it).
    pub dir: PathBuf,
    pub manifest: BundleManifest,
}

impl Bundle {
    /// Read the cache's manifest; `None` when there is none (binaries then come from the
    /// release host and kubeadm pulls the images, as without a bundle).
    pub fn find(cache: &Path, arch: Arch, version: &str) -> Result<Option<Bundle>, BundleError> {
        let path = bundle::manifest_path(cache, arch, version);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(BundleError::Io { path, source }),
        };
        let manifest = serde_json::from_slice(&bytes).map_err(|source| BundleError::Manifest { path: path.clone(), source })?;
        Ok(Some(Bundle { dir: bundle::version_dir(cache, arch, version), manifest }))
    }
}
