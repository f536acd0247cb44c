//! The Kubernetes bundle's manifest: what `cargo xtask kubernetes` built into the launcher's
//! cache and what `minikube-node start` preloads from it. The bundle builder writes it last (its
//! presence means every file it names is complete); the launcher reads it. One type for both.
//!
//! Layout under the cache (minikube's, so `start` finds the binaries with no flag):
//! `linux/ARCH/VERSION/{kubelet,kubeadm,kubectl,kube-apiserver,...}`,
//! `linux/ARCH/cri-tools/CRICTL_VERSION/crictl`, `linux/ARCH/VERSION/images/NAME.tar` (one OCI
//! archive per image), `linux/ARCH/VERSION/sbom.json` (CycloneDX) and
//! `linux/ARCH/VERSION/bundle.json` ([`BundleManifest`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Arch;

/// The Kubernetes version the bundle builds and `minikube-node start` runs by default: the newest
/// 1.34 patch whose whole Go module graph the module proxy serves here.
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.34.4";

/// The manifest's file name, in the version's directory.
pub const MANIFEST: &str = "bundle.json";
/// The bundle's CycloneDX SBOM, in the version's directory.
pub const SBOM: &str = "sbom.json";
/// Images' directory, in the version's directory.
pub const IMAGES_DIR: &str = "images";

/// `CACHE/linux/ARCH/VERSION`: the version's binaries, images and manifest.
pub fn version_dir(cache: &Path, arch: Arch, version: &str) -> PathBuf {
    cache.join("linux").join(arch.debian()).join(version)
}

/// `CACHE/linux/ARCH/cri-tools/VERSION/crictl`.
pub fn crictl_path(cache: &Path, arch: Arch, crictl_version: &str) -> PathBuf {
    cache.join("linux").join(arch.debian()).join("cri-tools").join(crictl_version).join("crictl")
}

/// `CACHE/linux/ARCH/VERSION/bundle.json`.
pub fn manifest_path(cache: &Path, arch: Arch, version: &str) -> PathBuf {
    version_dir(cache, arch, version).join(MANIFEST)
}

/// One binary of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleBinary {
    /// `kubelet`, `etcd`, `crictl`...
    pub name: String,
    /// Relative to the version's directory (`kubelet`, `../cri-tools/v1.34.0/crictl`).
    pub file: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
    /// The Go module and version it was built from (`k8s.io/kubernetes@v1.34.4`).
    pub module: String,
}

/// One container image of the bundle, as kubeadm names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleImage {
    /// `registry.k8s.io/kube-apiserver:v1.34.4`.
    pub reference: String,
    /// The OCI archive, relative to the version's directory (`images/kube-apiserver.tar`).
    pub file: String,
    /// The archive's SHA-256 (lowercase hex): how it travels to the node.
    pub sha256: String,
    pub size: u64,
    /// The image manifest's digest (`sha256:...`): how the runtime knows it.
    pub manifest_digest: String,
}

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleManifest {
    /// `v1.34.4`.
    pub kubernetes_version: String,
    pub arch: Arch,
    /// The content key of everything the bundle was built from: the same key, the same bytes.
    pub key: String,
    pub source_date_epoch: u64,
    /// `go version` of the toolchain that built it.
    pub go_version: String,
    pub binaries: Vec<BundleBinary>,
    pub images: Vec<BundleImage>,
}

impl BundleManifest {
    /// The image kubeadm's sandbox (pause) reference, if the bundle has one.
    pub fn pause_image(&self) -> Option<&str> {
        self.images.iter().map(|i| i.reference.as_str()).find(|r| r.split(':').next().is_some_and(|n| n.ends_with("/pause")))
    }

    /// The binary `name`, if the bundle has it.
    pub fn binary(&self, name: &str) -> Option<&BundleBinary> {
        self.binaries.iter().find(|b| b.name == name)
    }
}
