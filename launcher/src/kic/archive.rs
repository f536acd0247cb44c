//! What an image archive holds (OCI layout or `docker save`): its name and the digests an
//! engine may report as its ID, read from the archive's JSON with typed structs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::KicError;

/// What an image archive holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveImage {
    /// Its name (`manifest.json` `RepoTags[0]`, else the index's `io.containerd.image.name`).
    pub reference: String,
    /// Hex digests an engine may report as the image's ID: the config's (docker, podman) and
    /// the manifest's (containerd-backed stores).
    pub ids: Vec<String>,
}

/// One entry of a docker-save `manifest.json`.
#[derive(Deserialize)]
struct SavedImage {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
}

/// The OCI `index.json` (what we read of it).
#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// An OCI image manifest (what we read of it).
#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
}

/// Read the name and digests of the image in an archive: `manifest.json` (docker-save style,
/// which our OCI archives carry too), else `index.json` and the manifest blob it names. Only
/// headers are read; blobs are skipped by seeking.
pub fn read_archive(path: &Path) -> Result<ArchiveImage, KicError> {
    let bad = |reason: String| KicError::Archive { path: path.to_path_buf(), reason };
    let wanted = |names: &[&str]| -> Result<Vec<Option<Vec<u8>>>, KicError> {
        let f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut ar = tar::Archive::new(f);
        let mut found = vec![None; names.len()];
        for entry in ar.entries_with_seek().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let name = entry.path().map_err(|e| bad(e.to_string()))?.to_string_lossy().trim_start_matches("./").to_string();
            if let Some(i) = names.iter().position(|n| *n == name) {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut buf).map_err(|e| bad(format!("{name}: {e}")))?;
                found[i] = Some(buf);
            }
        }
        Ok(found)
    };
    fn parse<T: serde::de::DeserializeOwned>(name: &str, bytes: &[u8], bad: &dyn Fn(String) -> KicError) -> Result<T, KicError> {
        serde_json::from_slice(bytes).map_err(|e| bad(format!("{name}: {e}")))
    }
    let hex = |digest: &str| digest.rsplit(['/', ':']).next().unwrap_or(digest).to_string();

    let found = wanted(&["manifest.json", "index.json"])?;
    let index: Option<Index> = found[1].as_deref().map(|b| parse("index.json", b, &bad)).transpose()?;
    let first_manifest = index.as_ref().and_then(|i| i.manifests.first());
    let mut ids = Vec::new();
    let mut reference = None;
    if let Some(m) = found[0].as_deref() {
        let saved: Vec<SavedImage> = parse("manifest.json", m, &bad)?;
        if let Some(first) = saved.first() {
            reference = first.repo_tags.as_ref().and_then(|t| t.first()).cloned();
            ids.push(hex(&first.config));
        }
    }
    if let Some(desc) = first_manifest {
        if reference.is_none() {
            reference = desc.annotations.get("io.containerd.image.name").cloned();
        }
        if ids.is_empty() {
            let blob = format!("blobs/sha256/{}", hex(&desc.digest));
            let m = wanted(&[&blob])?.remove(0).ok_or_else(|| bad(format!("{blob} (the manifest index.json names) is missing")))?;
            let manifest: Manifest = parse(&blob, &m, &bad)?;
            ids.push(hex(&manifest.config.digest));
        }
        ids.push(hex(&desc.digest));
    }
    if found[0].is_none() && index.is_none() {
        return Err(bad("neither manifest.json nor index.json: not an image archive".into()));
    }
    let reference = reference.ok_or_else(|| bad("names no image (no RepoTags in manifest.json, no io.containerd.image.name in index.json)".into()))?;
    if ids.is_empty() {
        return Err(bad("names no image configuration".into()));
    }
    Ok(ArchiveImage { reference, ids })
}
