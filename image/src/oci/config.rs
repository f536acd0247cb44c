//! Image config, manifest and index documents (canonical JSON: keys sorted, compact).

use std::collections::{BTreeMap, HashMap};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, HistoryBuilder, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    PlatformBuilder, RootFsBuilder,
};
use serde::Serialize;

use super::{BlobStore, Layer, OciError, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST};

/// The runtime part of an image config (what `docker inspect` shows under `Config`), plus the
/// platform.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// GOARCH spelling: `amd64`, `arm64`.
    pub architecture: String,
    /// `linux`.
    pub os: String,
    /// e.g. `v8` for arm64; usually `None`.
    pub variant: Option<String>,
    /// `KEY=value` strings, e.g. `container=docker`, `PATH=...`.
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// e.g. `SIGRTMIN+3` (systemd's clean shutdown signal).
    pub stop_signal: Option<String>,
    /// `22/tcp`, `8443/tcp`; a bare number means TCP.
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

impl ImageConfig {
    /// A Linux config for `architecture` with nothing else set.
    pub fn linux(architecture: &str) -> Self {
        ImageConfig { architecture: architecture.into(), os: "linux".into(), ..Default::default() }
    }
}

/// Identity and provenance of the image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageMeta {
    /// Repository, e.g. `gcr.io/k8s-minikube/kicbase` (lowercase).
    pub name: String,
    /// Tag, e.g. `v0.0.50`.
    pub tag: String,
    /// `org.opencontainers.image.version`.
    pub version: String,
    /// `org.opencontainers.image.revision` (the source commit).
    pub revision: String,
    /// `org.opencontainers.image.source` (URL of the source repository).
    pub source: String,
    /// SOURCE_DATE_EPOCH: the image's `created` time and the archive's mtimes.
    pub epoch: u64,
}

impl ImageMeta {
    /// `name:tag`, the docker-archive RepoTag and the containerd/podman image name.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }

    /// The annotations naming the image in `index.json`: the tag
    /// (`org.opencontainers.image.ref.name`) and the full name (`io.containerd.image.name`).
    pub(crate) fn name_annotations(&self) -> HashMap<String, String> {
        HashMap::from([(ANNOTATION_REF_NAME.to_string(), self.tag.clone()), (ANNOTATION_CONTAINERD_NAME.to_string(), self.reference())])
    }

    pub(crate) fn validate(&self) -> Result<(), OciError> {
        let bad = |reason| Err(OciError::Reference { reference: self.reference(), reason });
        let n = &self.name;
        if n.is_empty() || n.starts_with('/') || n.ends_with('/') || n.contains("//") {
            return bad("repository name must be non-empty, with non-empty path components");
        }
        let (host, rest) = match n.split_once('/') {
            Some((h, r)) if h.contains('.') || h.contains(':') || h == "localhost" => (Some(h), r),
            _ => (None, n.as_str()),
        };
        if let Some(h) = host {
            if !h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c)) {
                return bad("registry host has invalid characters");
            }
        }
        if !rest.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c)) {
            return bad("repository path must be lowercase letters, digits, '.', '_', '-', '/'");
        }
        let t = &self.tag;
        if t.is_empty() || t.len() > 128 || t.starts_with(['.', '-']) || !t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return bad("tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'");
        }
        Ok(())
    }
}

/// An image whose blobs (layers, config, manifest) are in `store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub store: BlobStore,
    pub meta: ImageMeta,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub layers: Vec<Layer>,
    pub config_digest: String,
    pub config_size: u64,
    /// The image's identity in OCI terms (what `skopeo inspect` shows as Digest).
    pub manifest_digest: String,
    pub manifest_size: u64,
}

impl Image {
    /// Digests of all blobs the image needs, sorted, without duplicates.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut v: Vec<String> = self.layers.iter().map(|l| l.digest.clone()).collect();
        v.push(self.config_digest.clone());
        v.push(self.manifest_digest.clone());
        v.sort();
        v.dedup();
        v
    }

    /// The platform the image is for (`os`, `architecture`, `variant`).
    pub(crate) fn platform(&self) -> Result<oci_spec::image::Platform, OciError> {
        let mut platform = PlatformBuilder::default().architecture(Arch::from(self.architecture.as_str())).os(Os::from(self.os.as_str()));
        if let Some(v) = &self.variant {
            platform = platform.variant(v.clone());
        }
        platform.build().map_err(spec("index.json platform"))
    }

    /// The descriptor of the image's manifest, with its platform.
    pub(crate) fn manifest_descriptor(&self, annotations: Option<HashMap<String, String>>) -> Result<Descriptor, OciError> {
        let mut d = DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(digest(&self.manifest_digest)?)
            .size(self.manifest_size)
            .platform(self.platform()?);
        if let Some(a) = annotations {
            d = d.annotations(a);
        }
        d.build().map_err(spec("index.json manifest descriptor"))
    }

    /// `index.json`: one manifest, annotated with the tag (`org.opencontainers.image.ref.name`)
    /// and the full name (`io.containerd.image.name`, which podman and containerd prefer).
    pub fn index_json(&self) -> Result<Vec<u8>, OciError> {
        let desc = self.manifest_descriptor(Some(self.meta.name_annotations()))?;
        top_index(desc)
    }

    /// One entry of a docker-archive `manifest.json`, tagged `repo_tag`, pointing into
    /// `blobs/sha256/`.
    pub(crate) fn docker_entry(&self, repo_tag: &str) -> serde_json::Value {
        let blob = |d: &str| format!("blobs/sha256/{}", d.strip_prefix("sha256:").unwrap_or(d));
        serde_json::json!({
            "Config": blob(&self.config_digest),
            "RepoTags": [repo_tag],
            "Layers": self.layers.iter().map(|l| blob(&l.digest)).collect::<Vec<_>>(),
        })
    }

    /// The docker-archive `manifest.json`, pointing into `blobs/sha256/`.
    pub fn docker_manifest_json(&self) -> Result<Vec<u8>, OciError> {
        let doc = serde_json::json!([self.docker_entry(&self.meta.reference())]);
        canonical_json(&doc, "manifest.json")
    }
}

/// An `index.json` holding the one descriptor `desc`.
pub(crate) fn top_index(desc: Descriptor) -> Result<Vec<u8>, OciError> {
    let index =
        ImageIndexBuilder::default().schema_version(2u32).media_type(MediaType::ImageIndex).manifests(vec![desc]).build().map_err(spec("index.json"))?;
    canonical_json(&index, "index.json")
}

/// `oci-layout` file content.
pub(crate) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Write the config and manifest blobs for `layers` (bottom first) into `store`.
///
/// Config: `created` = `meta.epoch` (RFC 3339), `rootfs.diff_ids` from the layers, one history
/// entry per layer (its `created_by`). Manifest annotations: `org.opencontainers.image.{version,
/// revision, source, created, ref.name}` (empty version/revision/source are left out).
pub fn build_image(store: &BlobStore, layers: Vec<Layer>, config: &ImageConfig, meta: &ImageMeta) -> Result<Image, OciError> {
    meta.validate()?;
    let created = rfc3339(meta.epoch);
    let some = |v: &Vec<String>| if v.is_empty() { None } else { Some(v.clone()) };
    let mut rc = ConfigBuilder::default();
    if let Some(v) = some(&config.env) {
        rc = rc.env(v);
    }
    if let Some(v) = some(&config.entrypoint) {
        rc = rc.entrypoint(v);
    }
    if let Some(v) = some(&config.cmd) {
        rc = rc.cmd(v);
    }
    if let Some(v) = &config.stop_signal {
        rc = rc.stop_signal(v.clone());
    }
    let ports: Vec<String> = config.exposed_ports.iter().map(|p| if p.contains('/') { p.clone() } else { format!("{p}/tcp") }).collect();
    if let Some(v) = some(&ports) {
        rc = rc.exposed_ports(v);
    }
    if let Some(v) = some(&config.volumes) {
        rc = rc.volumes(v);
    }
    if !config.labels.is_empty() {
        rc = rc.labels(config.labels.clone().into_iter().collect::<HashMap<_, _>>());
    }
    if let Some(v) = &config.working_dir {
        rc = rc.working_dir(v.clone());
    }
    if let Some(v) = &config.user {
        rc = rc.user(v.clone());
    }
    let rc = rc.build().map_err(spec("image config: config"))?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>())
        .build()
        .map_err(spec("image config: rootfs"))?;
    let history = layers
        .iter()
        .map(|l| HistoryBuilder::default().created(created.clone()).created_by(l.created_by.clone()).build().map_err(spec("image config: history")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ic = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(Arch::from(config.architecture.as_str()))
        .os(Os::from(config.os.as_str()))
        .config(rc)
        .rootfs(rootfs)
        .history(history);
    if let Some(v) = &config.variant {
        ic = ic.variant(v.clone());
    }
    let ic = ic.build().map_err(spec("image config"))?;
    let config_bytes = canonical_json(&ic, "image config")?;
    let config_digest = store.put_bytes(&config_bytes)?;

    let mut annotations =
        HashMap::from([("org.opencontainers.image.created".to_string(), created.clone()), (ANNOTATION_REF_NAME.to_string(), meta.tag.clone())]);
    for (k, v) in [("version", &meta.version), ("revision", &meta.revision), ("source", &meta.source)] {
        if !v.is_empty() {
            annotations.insert(format!("org.opencontainers.image.{k}"), v.clone());
        }
    }
    let layer_descs =
        layers.iter().map(|l| Ok(Descriptor::new(MediaType::from(l.media_type.as_str()), l.size, digest(&l.digest)?))).collect::<Result<Vec<_>, OciError>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(MediaType::ImageConfig, config_bytes.len() as u64, digest(&config_digest)?))
        .layers(layer_descs)
        .annotations(annotations)
        .build()
        .map_err(spec("image manifest"))?;
    let manifest_bytes = canonical_json(&manifest, "image manifest")?;
    let manifest_digest = store.put_bytes(&manifest_bytes)?;
    debug_assert!(MEDIA_TYPE_CONFIG == MediaType::ImageConfig.to_string());
    debug_assert!(MEDIA_TYPE_MANIFEST == MediaType::ImageManifest.to_string());
    tracing::info!(reference = %meta.reference(), %manifest_digest, %config_digest, layers = layers.len(), "built image");
    Ok(Image {
        store: store.clone(),
        meta: meta.clone(),
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        variant: config.variant.clone(),
        layers,
        config_digest,
        config_size: config_bytes.len() as u64,
        manifest_digest,
        manifest_size: manifest_bytes.len() as u64,
    })
}

pub(crate) fn spec(what: &'static str) -> impl Fn(oci_spec::OciSpecError) -> OciError {
    move |source| OciError::Spec { what: what.to_string(), source }
}

pub(crate) fn digest(d: &str) -> Result<oci_spec::image::Digest, OciError> {
    d.parse().map_err(|source| OciError::Spec { what: format!("digest {d}"), source })
}

/// Serialize with every object's keys sorted (oci-spec keeps maps in `HashMap`s, whose order
/// is random), compact, no trailing newline.
pub(crate) fn canonical_json(v: &impl Serialize, what: &str) -> Result<Vec<u8>, OciError> {
    let value = serde_json::to_value(v).map_err(|source| OciError::Json { what: what.to_string(), source })?;
    serde_json::to_vec(&sorted(value)).map_err(|source| OciError::Json { what: what.to_string(), source })
}

fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The latest epoch a build accepts: the end of year 9999 (RFC 3339 has four-digit years).
pub const MAX_EPOCH: u64 = 253_402_300_799;

/// Seconds since the Unix epoch as RFC 3339 UTC (`2024-05-01T12:00:00Z`), by the `time` crate.
/// Epochs past [`MAX_EPOCH`] are refused where they are read (`SOURCE_DATE_EPOCH`).
pub fn rfc3339(epoch: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(epoch.min(MAX_EPOCH) as i64).expect("an epoch up to year 9999 is representable");
    at.format(&time::format_description::well_known::Rfc3339).expect("a UTC date in years 0000-9999 formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let m: HashMap<String, u32> = (0..50).map(|i| (format!("k{i:02}"), i)).collect();
        let s = String::from_utf8(canonical_json(&m, "t").unwrap()).unwrap();
        assert!(s.starts_with(r#"{"k00":0,"k01":1,"#), "{s}");
    }

    #[test]
    fn reference_validation() {
        let ok = ImageMeta { name: "gcr.io/k8s-minikube/kicbase".into(), tag: "v0.0.50".into(), ..Default::default() };
        ok.validate().unwrap();
        let upper = ImageMeta { name: "gcr.io/K8s/kicbase".into(), ..ok.clone() };
        assert!(upper.validate().is_err());
        let badtag = ImageMeta { tag: "-x".into(), ..ok.clone() };
        assert!(badtag.validate().is_err());
        let port = ImageMeta { name: "localhost:5000/kicbase".into(), ..ok };
        port.validate().unwrap();
    }
}
