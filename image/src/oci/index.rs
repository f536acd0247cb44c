//! Several images of one name, one per architecture: an OCI image index (a multi-arch image).
//!
//! In the archive ([`super::write_index_archive`]), `index.json` holds ONE descriptor, of media
//! type image index, annotated with the name as a single image's is; it points at the nested
//! index blob, which lists each image's manifest with its platform. podman and skopeo
//! (`oci-archive:`) follow it and pick the host's platform; a flat `index.json` with several
//! manifests is not what podman reads.
//!
//! The docker-archive `manifest.json` has one entry per image, tagged `NAME:TAG-ARCH`
//! (`kicbase:v0.1.0-arm64`) and none with the plain tag: docker 20.10 loads every entry of it,
//! and with one shared tag the last one would win, silently of the wrong architecture.

use super::config::{canonical_json, digest, spec, top_index};
use super::{BlobStore, Image, ImageMeta, OciError};
use oci_spec::image::{DescriptorBuilder, ImageIndexBuilder, MediaType};

/// Images of one name for different architectures, and their index blob (in the images' store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageIndex {
    /// In the nested index's order.
    pub images: Vec<Image>,
    /// `sha256:<hex>` of the nested index blob.
    pub digest: String,
    pub size: u64,
}

fn refuse(reason: String) -> OciError {
    OciError::Index { reason }
}

/// Write the nested index blob of `images` (listed in the order given) into their store.
///
/// The images must share the store, the name, tag and epoch, and each be for another
/// architecture.
pub fn build_index(images: Vec<Image>) -> Result<ImageIndex, OciError> {
    let first = images.first().ok_or_else(|| refuse("an image index needs at least one image".into()))?;
    let (store, meta) = (first.store.clone(), first.meta.clone());
    for (i, im) in images.iter().enumerate() {
        if im.store != store {
            return Err(refuse(format!("{} ({}) is in another blob store than {}", im.meta.reference(), im.architecture, store.root().display())));
        }
        if (&im.meta.name, &im.meta.tag, im.meta.epoch) != (&meta.name, &meta.tag, meta.epoch) {
            return Err(refuse(format!("{} ({}) is not named {} at epoch {}", im.meta.reference(), im.architecture, meta.reference(), meta.epoch)));
        }
        if images[..i].iter().any(|o| o.architecture == im.architecture) {
            return Err(refuse(format!("{} twice for {}", meta.reference(), im.architecture)));
        }
        ImageMeta { tag: arch_tag(&meta.tag, &im.architecture), ..meta.clone() }.validate()?;
    }
    let manifests = images.iter().map(|im| im.manifest_descriptor(None)).collect::<Result<Vec<_>, _>>()?;
    let index =
        ImageIndexBuilder::default().schema_version(2u32).media_type(MediaType::ImageIndex).manifests(manifests).build().map_err(spec("image index"))?;
    let bytes = canonical_json(&index, "image index")?;
    let digest = store.put_bytes(&bytes)?;
    tracing::info!(reference = %meta.reference(), %digest, images = images.len(), "built image index");
    Ok(ImageIndex { images, digest, size: bytes.len() as u64 })
}

/// `TAG-ARCH`: the docker-archive tag of one architecture's image.
pub fn arch_tag(tag: &str, architecture: &str) -> String {
    format!("{tag}-{architecture}")
}

impl ImageIndex {
    pub fn store(&self) -> &BlobStore {
        &self.images[0].store
    }

    pub fn meta(&self) -> &ImageMeta {
        &self.images[0].meta
    }

    /// Digests of all blobs: every image's and the index's, sorted, without duplicates.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut v: Vec<String> = self.images.iter().flat_map(Image::blob_digests).collect();
        v.push(self.digest.clone());
        v.sort();
        v.dedup();
        v
    }

    /// `index.json`: one descriptor, the nested index, annotated with the name.
    pub fn index_json(&self) -> Result<Vec<u8>, OciError> {
        let desc = DescriptorBuilder::default()
            .media_type(MediaType::ImageIndex)
            .digest(digest(&self.digest)?)
            .size(self.size)
            .annotations(self.meta().name_annotations())
            .build()
            .map_err(spec("index.json index descriptor"))?;
        top_index(desc)
    }

    /// The docker-archive `manifest.json`: one entry per image, tagged `NAME:TAG-ARCH`.
    pub fn docker_manifest_json(&self) -> Result<Vec<u8>, OciError> {
        let m = self.meta();
        let doc: Vec<serde_json::Value> = self.images.iter().map(|im| im.docker_entry(&format!("{}:{}", m.name, arch_tag(&m.tag, &im.architecture)))).collect();
        canonical_json(&doc, "manifest.json")
    }
}
