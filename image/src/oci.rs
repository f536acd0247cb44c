//! OCI images from [`Tree`](crate::rootfs::Tree) values, without a container daemon.
//!
//! Pipeline: a final rootfs tree -> [`split_layers`] (disjoint trees, ordered bottom to top) ->
//! [`write_layer`] per tree (deterministic tar, compressed, hashed while streamed to the
//! [`BlobStore`]) -> [`build_image`] (config + manifest blobs) -> [`write_archive`] (one tar that is
//! both an OCI image layout and a docker-archive) or [`write_layout`] (an OCI layout directory).
//! Several architectures of one image: [`build_index`] (the nested image index blob) ->
//! [`write_index_archive`] (see [`index`](ImageIndex) for what podman and docker do with it).
//!
//! # One archive, two formats
//!
//! The archive holds `oci-layout`, `index.json` and `blobs/sha256/*` (an OCI image layout, read by
//! `skopeo oci-archive:`, `podman load`, containerd and Docker >= 25), plus a docker-archive
//! `manifest.json` whose `Config` and `Layers` paths point at the same blobs (read by `docker load`
//! of any version and `skopeo docker-archive:`). Layers are stored once.
//!
//! # Reproducibility
//!
//! Every byte is a function of the inputs: tar headers carry each entry's own uid/gid/mode/mtime
//! (no host lookups, no user/group names), entries are in tree order, gzip headers carry no time,
//! JSON documents have their keys sorted, times come from `SOURCE_DATE_EPOCH` (the caller's
//! `epoch`), and the outer archive has sorted entries owned by root with mtime = epoch.
//!
//! # Why layers, and which ones
//!
//! A layer's digest depends only on its own tree. With the split "base packages / runtime
//! packages / our files (agent + overlays)", a change to the agent changes only the small top
//! layer: its blob gets a new digest, the lower layers' blobs are byte-identical, and a registry
//! push, `docker pull` or `docker load` skips the layers it already has (they are keyed by digest
//! and diff_id). For this to hold, the lower layers must not contain anything derived from the
//! top layer's inputs: in particular a parent directory shared with the top layer is written with
//! the *final* tree's metadata in both layers, so if adding an agent file bumps the mtime of
//! `/usr/bin`, every layer holding `/usr/bin` changes. Clamp mtimes of shared directories to a
//! value that does not depend on the top layer (e.g. the package set's date) to keep lower layers
//! stable across agent-only changes.

mod archive;
mod config;
mod index;
mod layer;
mod split;

use std::io;
use std::path::PathBuf;

pub use archive::{write_archive, write_index_archive, write_layout, ArchiveSummary};
pub use config::{build_image, rfc3339, Image, ImageConfig, ImageMeta, MAX_EPOCH};
pub use index::{arch_tag, build_index, ImageIndex};
pub use layer::{sha256_file, write_layer, BlobStore, Compression, Layer, GZIP_CHUNK};
pub use split::{split_layers, stack_layers};

/// Media type of an OCI image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Annotation naming the reference (the tag) of a manifest in `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd, Docker >= 25 and podman read for the full image name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Errors of the OCI image layer.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("layer tar entry {path}: {source}")]
    Tar { path: String, source: io::Error },
    #[error("layer split: {path} was classified into layer {index}, but there are only {layers} layers")]
    LayerIndex { path: String, index: usize, layers: usize },
    #[error("layer split: parent {parent} of {path} is missing from the tree or not a directory")]
    BadParent { path: String, parent: String },
    #[error("{what}: {source}")]
    Spec { what: String, source: oci_spec::OciSpecError },
    #[error("{what}: {source}")]
    Json { what: String, source: serde_json::Error },
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: &'static str },
    #[error("image index: {reason}")]
    Index { reason: String },
    #[error("blob {digest} is missing from the blob store {dir}")]
    MissingBlob { digest: String, dir: PathBuf },
}

impl OciError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> OciError {
        let path = path.into();
        move |source| OciError::Io { path, source }
    }
}
