//! Multi-architecture OCI archives (`image::oci::build_index` + `write_index_archive`): the
//! structure read back by us, reproducible bytes, and the real consumers: skopeo reads the nested
//! index, podman loads the host's architecture whatever the order. Needs skopeo and rootful
//! podman.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use image::oci::{build_image, build_index, write_index_archive, write_layer, BlobStore, Compression, Image, ImageConfig, ImageMeta};
use image::rootfs::{Entry, Tree};
use sha2::{Digest, Sha256};

const EPOCH: u64 = 1_700_000_000;
const NAME: &str = "localhost/minikube-oci-index";

fn host() -> &'static str {
    image::arch::Arch::host().expect("a machine we build for").debian()
}

/// A one-layer image for `arch`: /etc and /arch (the architecture's name), in `store`.
fn tiny(store: &BlobStore, arch: &str, tag: &str) -> Image {
    let mut t = Tree::new();
    let mut d = Entry::dir(0o755);
    d.mtime = EPOCH;
    t.insert("/etc", d);
    let mut f = Entry::file(format!("{arch}\n").into_bytes(), 0o644);
    f.mtime = EPOCH;
    t.insert("/arch", f);
    let layer = write_layer(store, &t, Compression::Gzip { level: 6, threads: 2 }, "tiny").unwrap();
    let mut cfg = ImageConfig::linux(arch);
    cfg.entrypoint = vec!["/bin/true".into()];
    let meta = ImageMeta { name: NAME.into(), tag: tag.into(), version: "v1".into(), epoch: EPOCH, ..Default::default() };
    build_image(store, vec![layer], &cfg, &meta).unwrap()
}

/// `archs` (in that order) in one archive at `dir/image.tar`; the store is `dir/store`.
fn archive(dir: &Path, archs: &[&str], tag: &str) -> (Vec<Image>, image::oci::ArchiveSummary) {
    let store = BlobStore::open(dir.join("store")).unwrap();
    let images: Vec<Image> = archs.iter().map(|a| tiny(&store, a, tag)).collect();
    let index = build_index(images.clone()).unwrap();
    let summary = write_index_archive(&index, &dir.join("image.tar")).unwrap();
    (images, summary)
}

/// Every regular file of the archive, by path.
fn files(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut m = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            m.insert(e.path().unwrap().to_string_lossy().to_string(), v);
        }
    }
    m
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
    &files[&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))]
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (bash scripts/setup.sh installs skopeo and podman)"));
    assert!(out.status.success(), "{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn index_archive_has_one_annotated_index_and_a_tag_per_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, summary) = archive(tmp.path(), &["amd64", "arm64"], "v1");
    let f = files(&summary.path);
    for (p, data) in &f {
        if let Some(hex) = p.strip_prefix("blobs/sha256/") {
            assert_eq!(hex::encode(Sha256::digest(data)), hex, "{p}");
        }
    }
    let index = json(&f["index.json"]);
    let m = index["manifests"].as_array().unwrap();
    assert_eq!(m.len(), 1, "one descriptor: {index}");
    assert_eq!(m[0]["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(m[0]["digest"], summary.manifest_digest.as_str());
    assert_eq!(m[0]["annotations"]["org.opencontainers.image.ref.name"], "v1");
    assert_eq!(m[0]["annotations"]["io.containerd.image.name"], format!("{NAME}:v1"));
    let nested_bytes = blob(&f, &summary.manifest_digest);
    assert_eq!(m[0]["size"].as_u64().unwrap(), nested_bytes.len() as u64);
    let nested = json(nested_bytes);
    assert_eq!(nested["mediaType"], "application/vnd.oci.image.index.v1+json");
    let listed = nested["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for (d, (im, arch)) in listed.iter().zip(images.iter().zip(["amd64", "arm64"])) {
        assert_eq!(d["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(d["platform"], serde_json::json!({"architecture": arch, "os": "linux"}));
        assert_eq!(d["digest"], im.manifest_digest.as_str());
        let manifest = json(blob(&f, &im.manifest_digest));
        let config = json(blob(&f, manifest["config"]["digest"].as_str().unwrap()));
        assert_eq!(config["architecture"], arch);
    }
    // The docker-archive side: one entry per architecture, NAME:TAG-ARCH, no plain tag.
    let saved = json(&f["manifest.json"]);
    let tags: Vec<&str> = saved.as_array().unwrap().iter().map(|e| e["RepoTags"][0].as_str().unwrap()).collect();
    assert_eq!(tags, [format!("{NAME}:v1-amd64"), format!("{NAME}:v1-arm64")]);
    assert_eq!(saved[1]["Config"], format!("blobs/sha256/{}", images[1].config_digest.trim_start_matches("sha256:")));

    // Reproducible: the same images written again from another store are the same bytes.
    let again = tempfile::tempdir().unwrap();
    let (_, s2) = archive(again.path(), &["amd64", "arm64"], "v1");
    assert_eq!(std::fs::read(&summary.path).unwrap(), std::fs::read(&s2.path).unwrap());
    assert_eq!(summary.sha256, s2.sha256);
    // The order is the caller's: arm64 first is another index.
    let other = tempfile::tempdir().unwrap();
    let (_, s3) = archive(other.path(), &["arm64", "amd64"], "v1");
    assert_ne!(s3.manifest_digest, summary.manifest_digest);

    // Refused: an architecture twice, images of different names.
    let store = BlobStore::open(tmp.path().join("store")).unwrap();
    let e = build_index(vec![tiny(&store, "amd64", "v1"), tiny(&store, "amd64", "v1")]).unwrap_err().to_string();
    assert!(e.contains("twice for amd64"), "{e}");
    let e = build_index(vec![tiny(&store, "amd64", "v1"), tiny(&store, "arm64", "v2")]).unwrap_err().to_string();
    assert!(e.contains("v2") && e.contains("is not named"), "{e}");
}

#[test]
fn skopeo_reads_the_nested_index_and_picks_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, summary) = archive(tmp.path(), &["arm64", "amd64"], "v1");
    let r = format!("oci-archive:{}", summary.path.display());
    let raw: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args(["inspect", "--raw", &r]))).unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json", "{raw}");
    let platforms: Vec<&str> = raw["manifests"].as_array().unwrap().iter().map(|m| m["platform"]["architecture"].as_str().unwrap()).collect();
    assert_eq!(platforms, ["arm64", "amd64"]);
    let info: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args(["inspect", &r]))).unwrap();
    assert_eq!(info["Architecture"], host());
    // The image's digest is the index's; the layer is the host's image's.
    assert_eq!(info["Digest"], summary.manifest_digest.as_str());
    let want = images.iter().find(|i| i.architecture == host()).unwrap();
    assert_eq!(info["Layers"], serde_json::json!([want.layers[0].digest]));
}

/// Removes the podman image even when the test fails.
struct PodmanImage(String);
impl Drop for PodmanImage {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "--force", &self.0]).output();
    }
}

#[test]
fn podman_loads_the_host_architecture_whatever_the_order() {
    for order in [["arm64", "amd64"], ["amd64", "arm64"]] {
        let tmp = tempfile::tempdir().unwrap();
        let tag = format!("t{}-{}", std::process::id(), order[0]);
        let (images, summary) = archive(tmp.path(), &order, &tag);
        let reference = format!("{NAME}:{tag}");
        let _cleanup = PodmanImage(reference.clone());
        let loaded = run(Command::new("podman").args(["load", "-i"]).arg(&summary.path));
        assert!(loaded.contains(&reference), "{order:?}: podman load printed {loaded}");
        let arch = run(Command::new("podman").args(["image", "inspect", "--format", "{{.Architecture}}", &reference]));
        assert_eq!(arch.trim(), host(), "{order:?}");
        let id = run(Command::new("podman").args(["image", "inspect", "--format", "{{.Id}}", &reference]));
        let want = images.iter().find(|i| i.architecture == host()).unwrap();
        assert_eq!(id.trim(), want.config_digest.trim_start_matches("sha256:"), "{order:?}: the host's config");
        for a in order {
            let exists = Command::new("podman").args(["image", "exists", &format!("{NAME}:{tag}-{a}")]).status().unwrap();
            assert!(!exists.success(), "{order:?}: podman read the OCI index, not the docker-archive's {a} tag");
        }
    }
}
