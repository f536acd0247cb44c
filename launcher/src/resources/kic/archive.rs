//! What an image archive holds (OCI layout or `docker save`): its name and the digests an
//! engine may report as its ID, read from the archive's JSON with typed structs.
//!
//! A multi-architecture archive (`cargo xtask kicbase --arch amd64,arm64`) has in `index.json`
//! one descriptor of an image index, the nested index listing one manifest per platform; its
//! docker-archive `manifest.json` has one entry per architecture, tagged `NAME:TAG-ARCH`. Of such
//! an archive, the image is the host's architecture's ([`platform::Arch::host`]), named with the
//! plain `NAME:TAG` of `index.json`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use platform::Arch;
use serde::Deserialize;

use super::KicError;

/// What an image archive holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveImage {
    /// Its name (`manifest.json` `RepoTags[0]`, else the index's `io.containerd.image.name`;
    /// for several architectures, the index's name).
    pub reference: String,
    /// Hex digests an engine may report as the image's ID: the config's (docker, podman) and
    /// the manifest's (containerd-backed stores). For several architectures, the host's.
    pub ids: Vec<String>,
}

/// One entry of a docker-save `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct SavedImage {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

/// The OCI `index.json` or a nested image index (what we read of it).
#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

/// An OCI image manifest (what we read of it).
#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
}

const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An archive as read for one architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArchiveRead {
    pub image: ArchiveImage,
    /// Of a multi-architecture archive: the chosen architecture's docker-archive entry (tagged
    /// `NAME:TAG-ARCH`), when `manifest.json` has it.
    pub multi: Option<SavedImage>,
}

/// Read the name and digests of the image in an archive: `manifest.json` (docker-save style,
/// which our OCI archives carry too), else `index.json` and the manifest blob it names; of a
/// multi-architecture archive, the host's image (an error naming the archive when it has none).
/// Only headers are read; blobs are skipped by seeking.
pub fn read_archive(path: &Path) -> Result<ArchiveImage, KicError> {
    Ok(read_for(path, Arch::host())?.image)
}

/// The architectures (Debian's names) the image of an archive can run as: each one a
/// multi-architecture archive holds, or every one for a single image (it makes no claim; the
/// engine judges it).
pub fn architectures(path: &Path) -> Result<Vec<String>, KicError> {
    let mut out = Vec::new();
    let mut last = None;
    for a in Arch::ALL {
        match read_for(path, Some(a)) {
            Ok(_) => out.push(a.debian().to_string()),
            Err(e) => last = Some(e),
        }
    }
    match (out.is_empty(), last) {
        (true, Some(e)) => Err(e),
        _ => Ok(out),
    }
}

/// [`read_archive`] with the architecture to pick (`None`: a machine we build for no image).
pub(crate) fn read_for(path: &Path, arch: Option<Arch>) -> Result<ArchiveRead, KicError> {
    let bad = |reason: String| KicError::Archive { path: path.to_path_buf(), reason };
    let wanted = |names: &[&str]| -> Result<Vec<Option<Vec<u8>>>, KicError> {
        let f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut ar = tar::Archive::new(f);
        let mut found = vec![None; names.len()];
        for entry in ar.entries_with_seek().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let name = entry_name(&entry).map_err(|e| bad(e.to_string()))?;
            if let Some(i) = names.iter().position(|n| *n == name) {
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf).map_err(|e| bad(format!("{name}: {e}")))?;
                found[i] = Some(buf);
            }
        }
        Ok(found)
    };
    let blob = |name: &str, digest: &str, what: &str| -> Result<Vec<u8>, KicError> {
        let b = format!("blobs/sha256/{}", hex(digest));
        wanted(&[&b])?.remove(0).ok_or_else(|| bad(format!("{b} ({what} {name} names) is missing")))
    };
    fn parse<T: serde::de::DeserializeOwned>(name: &str, bytes: &[u8], bad: &dyn Fn(String) -> KicError) -> Result<T, KicError> {
        serde_json::from_slice(bytes).map_err(|e| bad(format!("{name}: {e}")))
    }

    let found = wanted(&["manifest.json", "index.json"])?;
    let saved: Option<Vec<SavedImage>> = found[0].as_deref().map(|m| parse("manifest.json", m, &bad)).transpose()?;
    let index: Option<Index> = found[1].as_deref().map(|b| parse("index.json", b, &bad)).transpose()?;
    let first_manifest = index.as_ref().and_then(|i| i.manifests.first());

    if let Some(desc) = first_manifest.filter(|d| d.media_type.as_deref() == Some(MEDIA_TYPE_INDEX)) {
        let nested: Index = parse("the image index", &blob("index.json", &desc.digest, "the image index")?, &bad)?;
        let have: Vec<&str> = nested.manifests.iter().filter_map(|m| m.platform.as_ref()).map(|p| p.architecture.as_str()).collect();
        let arch = arch.ok_or_else(|| bad(format!("holds images for {}, and this machine ({}) is none of them", have.join(", "), std::env::consts::ARCH)))?;
        let chosen = nested
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == arch.debian()))
            .ok_or_else(|| bad(format!("has no image for this machine's architecture {} (it has {})", arch.debian(), have.join(", "))))?;
        let manifest: Manifest = parse("the manifest", &blob("the image index", &chosen.digest, "the manifest")?, &bad)?;
        let reference =
            desc.annotations.get("io.containerd.image.name").cloned().ok_or_else(|| bad("index.json names no image (no io.containerd.image.name)".into()))?;
        let config = hex(&manifest.config.digest);
        let multi = saved.into_iter().flatten().find(|s| hex(&s.config) == config);
        return Ok(ArchiveRead { image: ArchiveImage { reference, ids: vec![config, hex(&chosen.digest)] }, multi });
    }

    let mut ids = Vec::new();
    let mut reference = None;
    if let Some(first) = saved.as_ref().and_then(|s| s.first()) {
        reference = first.repo_tags.as_ref().and_then(|t| t.first()).cloned();
        ids.push(hex(&first.config));
    }
    if let Some(desc) = first_manifest {
        if reference.is_none() {
            reference = desc.annotations.get("io.containerd.image.name").cloned();
        }
        if ids.is_empty() {
            let manifest: Manifest = parse("the manifest", &blob("index.json", &desc.digest, "the manifest")?, &bad)?;
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
    Ok(ArchiveRead { image: ArchiveImage { reference, ids }, multi: None })
}

/// The hex of a digest or a blob path (`sha256:<hex>`, `blobs/sha256/<hex>`).
fn hex(digest: &str) -> String {
    digest.rsplit(['/', ':']).next().unwrap_or(digest).to_string()
}

fn entry_name<R: Read>(entry: &tar::Entry<'_, R>) -> std::io::Result<String> {
    Ok(entry.path()?.to_string_lossy().trim_start_matches("./").to_string())
}

/// Write to `out` a docker-archive of the one image `entry` of the archive at `path`: its config
/// and layer blobs (the other architectures' are skipped by seeking) and a `manifest.json` naming
/// it `reference`.
pub(crate) fn write_one_image(path: &Path, entry: &SavedImage, reference: &str, out: impl Write) -> Result<(), KicError> {
    let bad = |reason: String| KicError::Archive { path: path.to_path_buf(), reason };
    let mut wanted: Vec<&str> = std::iter::once(entry.config.as_str()).chain(entry.layers.iter().map(String::as_str)).collect();
    let f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut ar = tar::Archive::new(f);
    let mut b = tar::Builder::new(out);
    for e in ar.entries_with_seek().map_err(|e| bad(e.to_string()))? {
        let mut e = e.map_err(|e| bad(e.to_string()))?;
        let name = entry_name(&e).map_err(|e| bad(e.to_string()))?;
        if let Some(i) = wanted.iter().position(|w| *w == name) {
            wanted.swap_remove(i);
            let h = e.header().clone();
            b.append(&h, &mut e).map_err(|e| bad(format!("{name} to the engine: {e}")))?;
        }
    }
    if !wanted.is_empty() {
        return Err(bad(format!("{} (manifest.json names them) missing", wanted.join(", "))));
    }
    let manifest = serde_json::json!([{ "Config": entry.config, "RepoTags": [reference], "Layers": entry.layers }]);
    let bytes = serde_json::to_vec(&manifest).expect("json");
    let mut h = tar::Header::new_ustar();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "manifest.json", bytes.as_slice()).map_err(|e| bad(format!("manifest.json to the engine: {e}")))?;
    b.into_inner().and_then(|mut w| w.flush()).map_err(|e| bad(format!("to the engine: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tar_of(p: &Path, files: &[(String, Vec<u8>)]) {
        let mut b = tar::Builder::new(std::fs::File::create(p).unwrap());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        b.finish().unwrap();
    }

    /// A two-image archive laid out as `image::oci::write_index_archive` writes it (`archs` in
    /// the nested index's order), with fake digests: `m-ARCH` manifests, `c-ARCH` configs.
    fn multi(dir: &Path, archs: &[&str]) -> PathBuf {
        let p = dir.join(format!("multi-{}.tar", archs.join("-")));
        let mut files = vec![("blobs/sha256/layer".to_string(), vec![0u8; 4096])];
        let mut nested = Vec::new();
        let mut saved = Vec::new();
        for a in archs {
            files.push((format!("blobs/sha256/m-{a}"), format!(r#"{{"config":{{"digest":"sha256:c-{a}"}}}}"#).into_bytes()));
            files.push((format!("blobs/sha256/c-{a}"), format!(r#"{{"architecture":"{a}"}}"#).into_bytes()));
            nested.push(serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:m-{a}"), "platform": {"architecture": a, "os": "linux"}}));
            saved.push(serde_json::json!({"Config": format!("blobs/sha256/c-{a}"), "RepoTags": [format!("kicbase:v1-{a}")], "Layers": ["blobs/sha256/layer"]}));
        }
        files.push(("blobs/sha256/idx".into(), serde_json::to_vec(&serde_json::json!({"manifests": nested})).unwrap()));
        let index = serde_json::json!({"manifests": [{"mediaType": MEDIA_TYPE_INDEX, "digest": "sha256:idx", "annotations": {"io.containerd.image.name": "kicbase:v1", "org.opencontainers.image.ref.name": "v1"}}]});
        files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
        files.push(("manifest.json".into(), serde_json::to_vec(&saved).unwrap()));
        tar_of(&p, &files);
        p
    }

    #[test]
    fn multi_arch_archive_gives_the_asked_architecture() {
        let d = tempfile::tempdir().unwrap();
        // arm64 first: the choice is by platform, not by position.
        let p = multi(d.path(), &["arm64", "amd64"]);
        for (arch, a) in [(Arch::X86_64, "amd64"), (Arch::Aarch64, "arm64")] {
            let r = read_for(&p, Some(arch)).unwrap();
            assert_eq!(r.image, ArchiveImage { reference: "kicbase:v1".into(), ids: vec![format!("c-{a}"), format!("m-{a}")] });
            let entry = r.multi.unwrap();
            assert_eq!(entry.repo_tags, Some(vec![format!("kicbase:v1-{a}")]));
            assert_eq!(entry.layers, ["blobs/sha256/layer"]);
        }
        // The host's (this machine is one we build for).
        let host = Arch::host().unwrap().debian();
        assert_eq!(read_archive(&p).unwrap().ids, [format!("c-{host}"), format!("m-{host}")]);
    }

    #[test]
    fn multi_arch_archive_without_the_host_architecture_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let p = multi(d.path(), &["s390x", "riscv64"]);
        let e = read_archive(&p).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()) && e.contains(Arch::host().unwrap().debian()) && e.contains("s390x, riscv64"), "{e}");
        let e = read_for(&p, None).unwrap_err().to_string();
        assert!(e.contains("multi-s390x-riscv64.tar") && e.contains(std::env::consts::ARCH), "{e}");
    }

    #[test]
    fn one_image_of_a_multi_arch_archive_as_a_docker_archive() {
        let d = tempfile::tempdir().unwrap();
        let p = multi(d.path(), &["amd64", "arm64"]);
        let entry = read_for(&p, Some(Arch::Aarch64)).unwrap().multi.unwrap();
        let mut out = Vec::new();
        write_one_image(&p, &entry, "kicbase:v1", &mut out).unwrap();
        let mut ar = tar::Archive::new(out.as_slice());
        let mut names = BTreeMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            names.insert(e.path().unwrap().to_string_lossy().to_string(), v);
        }
        assert_eq!(names.keys().collect::<Vec<_>>(), ["blobs/sha256/c-arm64", "blobs/sha256/layer", "manifest.json"]);
        assert_eq!(names["blobs/sha256/layer"].len(), 4096);
        let m: Vec<SavedImage> = serde_json::from_slice(&names["manifest.json"]).unwrap();
        assert_eq!(
            m,
            [SavedImage { config: "blobs/sha256/c-arm64".into(), repo_tags: Some(vec!["kicbase:v1".into()]), layers: vec!["blobs/sha256/layer".into()] }]
        );
        // A blob the entry names but the archive lacks is an error naming the archive.
        let broken = SavedImage { layers: vec!["blobs/sha256/gone".into()], ..entry };
        let e = write_one_image(&p, &broken, "kicbase:v1", std::io::sink()).unwrap_err().to_string();
        assert!(e.contains("multi-amd64-arm64.tar") && e.contains("blobs/sha256/gone"), "{e}");
    }
}
