//! kicbase image builds on a SMALL spec (a handful of real Debian packages, one runtime package),
//! so that building twice stays fast: reproducibility, the layer split (an agent change re-ships
//! only the top layer), the archive read back by skopeo (oci-archive and docker-archive), every
//! digest checked by us, the config fields, the package list and the SBOM.
//! Needs the Debian mirror from the apt sources (packages go to the shared cache) and skopeo.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use image::arch::Arch;
use image::assemble::Options;
use image::kicbase::{ArchBuild, ArchTarget, Build, KicbaseOptions};
use image::oci::Compression;
use image::spec::Spec;
use sha2::{Digest, Sha256};

/// Later than any package's file dates (2027-01-15): the clamp to SOURCE_DATE_EPOCH must not
/// touch package files, as in a real build where the epoch is the commit's date.
const EPOCH: u64 = 1_800_000_000;

const SPEC: &str = r#"
[image]
name = "kicbase-test"
hostname = "minikube"

[packages]
include = ["base-files", "base-passwd", "netbase", "libc6", "runc"]

[files]
overlays = ["overlay"]
drop = ["/usr/share/doc/*/*", "/usr/share/man"]
keep = ["/usr/share/doc/*/copyright"]

[[users]]
name = "docker"
uid = 1000
gid = 1000
home = "/home/docker"
create_home = true
"#;

/// kicbase/spec.toml's `[container]`, with runc as the one runtime package.
const CONTAINER: &str = r#"
[container]
entrypoint = ["/usr/bin/minikube-agent", "entrypoint", "--", "/sbin/init"]
env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=docker"]
stop_signal = "SIGRTMIN+3"
exposed_ports = ["22/tcp", "2376/tcp", "7443/tcp", "8443/tcp"]
layers = ["base", "runtimes", "system", "ours"]

[[container.place]]
layer = "ours"
select = "local"

[[container.place]]
layer = "ours"
paths = ["/etc/VERSION", "/version.json", "/usr/lib/os-release", "/etc/os-release"]

[[container.place]]
layer = "runtimes"
brought_by = ["runc"]

[[container.place]]
layer = "base"
select = "packages"

[[container.place]]
layer = "base"
select = "top-level"

[[container.place]]
layer = "system"
select = "rest"
"#;

/// A spec directory with an overlay (a unit drop-in and a symlink, like kicbase's).
fn spec_dir() -> (tempfile::TempDir, Spec) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("spec.toml"), format!("{SPEC}{CONTAINER}")).unwrap();
    let o = d.path().join("overlay");
    std::fs::create_dir_all(o.join("etc/systemd/journald.conf.d")).unwrap();
    std::fs::write(o.join("etc/systemd/journald.conf.d/10-kicbase.conf"), "[Journal]\nReadKMsg=no\n").unwrap();
    std::fs::create_dir_all(o.join("opt/cni")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/cni", o.join("opt/cni/bin")).unwrap();
    let spec = Spec::load(&d.path().join("spec.toml")).unwrap();
    (d, spec)
}

fn options(epoch: u64, agent: &[u8], commit: &str) -> Options {
    let mut o = Options::new(epoch);
    o.commit = commit.into();
    o.extra_files = BTreeMap::from([("/usr/bin/minikube-agent".to_string(), (agent.to_vec(), 0o755))]);
    o
}

fn kopts(work: &Path, out: PathBuf) -> KicbaseOptions {
    KicbaseOptions {
        name: "kicbase".into(),
        tag: "v0.1.0".into(),
        source_url: "https://github.com/kubernetes/minikube".into(),
        compression: Compression::Gzip { level: 6, threads: 2 },
        work_dir: work.to_path_buf(),
        out,
    }
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (apt-get install skopeo)"));
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Every regular file of the outer archive, by path.
fn archive_files(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut m = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let p = e.path().unwrap().to_string_lossy().to_string();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            m.insert(p, v);
        }
    }
    m
}

/// An amd64 build (the agent is in the options' extra files).
fn build(spec: &Spec, opts: &Options, k: &KicbaseOptions) -> Result<Build, image::kicbase::KicbaseError> {
    image::kicbase::build(spec, opts, k, &[ArchTarget::new(Arch::X86_64)])
}

fn one(b: &Build) -> &ArchBuild {
    assert_eq!(b.arches.len(), 1);
    &b.arches[0]
}

fn layer_digests(b: &Build) -> Vec<String> {
    one(b).image.layers.iter().map(|l| l.digest.clone()).collect()
}

#[test]
fn small_kicbase_is_reproducible_layered_and_readable() {
    let (dir, spec) = spec_dir();
    let work = dir.path().join("work");
    let agent_v1 = b"#!/bin/sh\necho agent v1\n".to_vec();

    // Two builds from scratch (separate stores, no layer cache shared): identical bytes.
    let a = build(&spec, &options(EPOCH, &agent_v1, "abc123"), &kopts(&work.join("a"), dir.path().join("a/kicbase.tar"))).unwrap();
    let b = build(&spec, &options(EPOCH, &agent_v1, "abc123"), &kopts(&work.join("b"), dir.path().join("b/kicbase.tar"))).unwrap();
    assert_eq!(one(&a).image.manifest_digest, one(&b).image.manifest_digest, "same inputs, same manifest digest");
    assert_eq!(a.archive.sha256, b.archive.sha256, "same inputs, same archive bytes");
    assert_eq!(one(&a).cached_layers, vec![false; 4]);
    assert_eq!(one(&a).image.layers.len(), 4);
    assert_eq!(a.layer_names, ["base", "runtimes", "system", "ours"]);

    // Where things went: runc in the runtimes layer, the agent and overlay in ours.
    let store = image::oci::BlobStore::open(work.join("a")).unwrap();
    let names: Vec<Vec<String>> = one(&a).image.layers.iter().map(|l| layer_paths(&store.blob_path(&l.digest))).collect();
    assert!(names[0].iter().any(|p| p == "usr/lib/x86_64-linux-gnu/libc.so.6"), "libc in base");
    assert!(names[1].iter().any(|p| p == "usr/sbin/runc"), "runc in runtimes: {:?}", &names[1]);
    assert!(!names[0].iter().any(|p| p == "usr/sbin/runc"));
    assert!(names[2].iter().any(|p| p == "etc/passwd"), "generated accounts in system");
    for p in ["usr/bin/minikube-agent", "etc/systemd/journald.conf.d/10-kicbase.conf", "opt/cni/bin", "version.json", "etc/VERSION"] {
        assert!(names[3].iter().any(|x| x == p), "{p} in the top layer: {:?}", &names[3]);
    }

    // An agent change in a later commit (new SOURCE_DATE_EPOCH): only the top layer changes,
    // and the three lower ones come from the layer cache.
    let agent_v2 = b"#!/bin/sh\necho agent v2\n".to_vec();
    let c = build(&spec, &options(EPOCH + 3600, &agent_v2, "def456"), &kopts(&work.join("a"), dir.path().join("a/kicbase.tar"))).unwrap();
    assert_eq!(layer_digests(&c)[..3], layer_digests(&a)[..3], "lower layers unchanged by an agent change");
    assert_ne!(layer_digests(&c)[3], layer_digests(&a)[3]);
    assert_eq!(one(&c).cached_layers, vec![true, true, true, false]);
    let reshipped: u64 = one(&c).image.layers[3].size;
    let total: u64 = one(&c).image.layers.iter().map(|l| l.size).sum();
    assert!(reshipped * 4 < total, "top layer {reshipped} bytes is a small part of {total}");
    // The old top layer was pruned from the store, the new image is complete.
    assert!(!store.blob_path(&layer_digests(&a)[3]).exists());
    for d in one(&c).image.blob_digests() {
        assert!(store.blob_path(&d).exists(), "{d} in the store");
    }

    // The archive, read back by us: every blob's name is its sha256, index -> manifest -> config.
    let files = archive_files(&c.archive.path);
    for (p, data) in &files {
        if let Some(hex) = p.strip_prefix("blobs/sha256/") {
            assert_eq!(hex::encode(Sha256::digest(data)), hex, "blob {p} digest");
        }
    }
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(mdigest, one(&c).image.manifest_digest);
    assert_eq!(index["manifests"][0]["annotations"]["io.containerd.image.name"], "kicbase:v0.1.0");
    let manifest: serde_json::Value = serde_json::from_slice(&files[&format!("blobs/sha256/{}", &mdigest[7..])]).unwrap();
    let ann = &manifest["annotations"];
    assert_eq!(ann["org.opencontainers.image.version"], "v0.1.0");
    assert_eq!(ann["org.opencontainers.image.revision"], "def456");
    assert_eq!(ann["org.opencontainers.image.created"], image::oci::rfc3339(EPOCH + 3600));
    for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(l["digest"], one(&c).image.layers[i].digest);
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        assert_eq!(l["size"].as_u64().unwrap(), files[&format!("blobs/sha256/{}", &one(&c).image.layers[i].digest[7..])].len() as u64);
    }

    // The real consumers: skopeo, through both doors of the archive.
    let oci_ref = format!("oci-archive:{}", c.archive.path.display());
    let docker_ref = format!("docker-archive:{}", c.archive.path.display());
    let info: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args(["inspect", &oci_ref]))).unwrap();
    assert_eq!(info["Digest"], one(&c).image.manifest_digest.as_str());
    let layers: Vec<&str> = info["Layers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(layers, layer_digests(&c).iter().map(String::as_str).collect::<Vec<_>>());
    let dinfo: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args(["inspect", &docker_ref]))).unwrap();
    let dlayers: Vec<&str> = dinfo["Layers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(dlayers.len(), 4);
    for reference in [&oci_ref, &docker_ref] {
        let cfg: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args(["inspect", "--config", reference]))).unwrap();
        let conf = &cfg["config"];
        assert!(conf["Env"].as_array().unwrap().iter().any(|e| e == "container=docker"), "{reference}: {conf}");
        assert_eq!(conf["StopSignal"], "SIGRTMIN+3");
        assert_eq!(conf["Entrypoint"], serde_json::json!(["/usr/bin/minikube-agent", "entrypoint", "--", "/sbin/init"]));
        for p in ["22/tcp", "2376/tcp", "7443/tcp", "8443/tcp"] {
            assert!(conf["ExposedPorts"].get(p).is_some(), "{reference}: port {p} exposed");
        }
        assert_eq!(conf["Labels"]["org.opencontainers.image.version"], "v0.1.0");
        assert_eq!(conf["Labels"]["org.opencontainers.image.revision"], "def456");
        assert_eq!(cfg["created"], image::oci::rfc3339(EPOCH + 3600));
        let diff_ids: Vec<&str> = cfg["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(diff_ids, one(&c).image.layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>());
    }

    // Package list and SBOM name every package with version and the .deb's SHA-256.
    let list = std::fs::read_to_string(&one(&c).package_list).unwrap();
    let sbom: serde_json::Value = serde_json::from_slice(&std::fs::read(&one(&c).sbom).unwrap()).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let comps = sbom["components"].as_array().unwrap();
    assert_eq!(comps.len(), one(&c).packages.len());
    for p in &one(&c).packages {
        assert!(list.contains(&format!("ii  {} {} {}", p.name, p.version, p.arch)), "{} in the list", p.name);
        let comp = comps.iter().find(|x| x["name"] == p.name.as_str()).unwrap_or_else(|| panic!("{} in the SBOM", p.name));
        assert_eq!(comp["version"], p.version.as_str());
        assert_eq!(comp["hashes"][0]["content"], p.sha256.as_str());
        assert_eq!(p.sha256.len(), 64);
    }
    assert!(one(&c).packages.iter().any(|p| p.name == "runc"));
}

/// Paths in a gzip layer blob.
fn layer_paths(blob: &Path) -> Vec<String> {
    let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(blob).unwrap());
    let mut a = tar::Archive::new(gz);
    a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().trim_end_matches('/').to_string()).collect()
}

#[test]
fn a_spec_with_a_kernel_or_without_a_container_section_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("spec.toml");
    let kernel = "\n[kernel]\npackage = \"linux-image-amd64\"\nmodules = []\n";
    std::fs::write(&p, format!("{SPEC}{kernel}")).unwrap();
    let spec = Spec::load(&p).unwrap();
    let e = build(&spec, &options(EPOCH, b"x", "c"), &kopts(&d.path().join("w"), d.path().join("o.tar"))).unwrap_err();
    assert!(e.to_string().contains("[kernel]"), "{e}");
    // With [container] too, the spec is refused when read.
    std::fs::write(&p, format!("{SPEC}{CONTAINER}{kernel}")).unwrap();
    let e = Spec::load(&p).unwrap_err().to_string();
    assert!(e.contains("spec.toml") && e.contains("[container]") && e.contains("[kernel]"), "{e}");
    // Without [container] there is no entrypoint and no layers to build.
    std::fs::write(&p, SPEC).unwrap();
    let spec = Spec::load(&p).unwrap();
    let e = build(&spec, &options(EPOCH, b"x", "c"), &kopts(&d.path().join("w"), d.path().join("o.tar"))).unwrap_err();
    assert!(e.to_string().contains("[container]"), "{e}");
}

#[test]
fn real_kicbase_spec_parses_and_has_no_kernel() {
    let spec = Spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../kicbase/spec.toml")).unwrap();
    assert!(spec.kernel.is_none() && spec.boot.is_none());
    for p in ["systemd", "containerd", "docker.io", "podman", "crun", "containernetworking-plugins", "openssh-server", "sudo"] {
        assert!(spec.packages.include.iter().any(|x| x == p), "{p} in kicbase/spec.toml");
    }
    assert!(spec.systemd.enable.iter().any(|u| u == "minikube-agent.service"));
    assert!(spec.systemd.mask.iter().any(|u| u == "systemd-binfmt.service"));
    assert_eq!(spec.container.as_ref().unwrap().layers, ["base", "runtimes", "system", "ours"]);
}

/// Two architectures in one build (given arm64 first): built in amd64, arm64 order into one
/// store, each from its own Debian index with its own agent, one archive with a nested index,
/// side files per architecture, every blob of both kept by the prune; the same build again is
/// the same bytes with every layer from the cache.
#[test]
fn amd64_and_arm64_share_the_store_and_keep_their_blobs() {
    let (dir, spec) = spec_dir();
    let work = dir.path().join("work");
    let out = dir.path().join("multi/kicbase.tar");
    let mut arm = ArchTarget::new(Arch::Aarch64);
    arm.extra_files.insert("/usr/bin/minikube-agent".into(), (b"#!/bin/sh\necho arm64 agent\n".to_vec(), 0o755));
    let targets = [arm, ArchTarget::new(Arch::X86_64)];
    let opts = options(EPOCH, b"#!/bin/sh\necho amd64 agent\n", "abc123");
    let b = image::kicbase::build(&spec, &opts, &kopts(&work, out.clone()), &targets).unwrap();
    assert_eq!(b.arches.iter().map(|a| a.arch).collect::<Vec<_>>(), [Arch::X86_64, Arch::Aarch64]);
    let (amd, arm) = (&b.arches[0], &b.arches[1]);
    assert_eq!((amd.image.architecture.as_str(), arm.image.architecture.as_str()), ("amd64", "arm64"));
    let libc = arm.packages.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(libc.arch, "arm64", "arm64's packages from Debian's arm64 index");

    let store = image::oci::BlobStore::open(&work).unwrap();
    let paths = |ab: &ArchBuild, i: usize| layer_paths(&store.blob_path(&ab.image.layers[i].digest));
    assert!(paths(arm, 0).iter().any(|p| p == "usr/lib/aarch64-linux-gnu/libc.so.6"), "arm64 libc in arm64's base layer");
    assert!(paths(amd, 0).iter().any(|p| p == "usr/lib/x86_64-linux-gnu/libc.so.6"));
    // Each image has its own agent in its top layer.
    let agent_of = |ab: &ArchBuild| {
        let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(store.blob_path(&ab.image.layers[3].digest)).unwrap());
        let mut a = tar::Archive::new(gz);
        let mut e = a.entries().unwrap().map(Result::unwrap).find(|e| e.path().unwrap().to_string_lossy() == "usr/bin/minikube-agent").unwrap();
        let mut v = String::new();
        e.read_to_string(&mut v).unwrap();
        v
    };
    assert!(agent_of(arm).contains("arm64 agent") && agent_of(amd).contains("amd64 agent"));

    // Side files: amd64 keeps the archive's stem, arm64 adds -arm64.
    let d = out.parent().unwrap();
    assert_eq!((amd.package_list.clone(), amd.sbom.clone()), (d.join("kicbase.packages.txt"), d.join("kicbase.sbom.json")));
    assert_eq!((arm.package_list.clone(), arm.sbom.clone()), (d.join("kicbase-arm64.packages.txt"), d.join("kicbase-arm64.sbom.json")));
    assert!(std::fs::read_to_string(&arm.package_list).unwrap().contains(&format!("ii  libc6 {} arm64", libc.version)));

    // The archive: index.json -> the nested index (amd64, arm64); the store kept every blob.
    let files = archive_files(&b.archive.path);
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    assert_eq!(index["manifests"][0]["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(index["manifests"][0]["digest"], b.archive.manifest_digest.as_str());
    let nested: serde_json::Value = serde_json::from_slice(&files[&format!("blobs/sha256/{}", &b.archive.manifest_digest[7..])]).unwrap();
    let listed: Vec<&str> = nested["manifests"].as_array().unwrap().iter().map(|m| m["platform"]["architecture"].as_str().unwrap()).collect();
    assert_eq!(listed, ["amd64", "arm64"]);
    for ab in &b.arches {
        for digest in ab.image.blob_digests() {
            assert!(store.blob_path(&digest).exists(), "{} blob {digest} kept", ab.arch.debian());
        }
    }
    assert!(store.blob_path(&b.archive.manifest_digest).exists(), "the index blob kept");

    // Again: every layer of both from the cache, the same archive bytes.
    let again = image::kicbase::build(&spec, &opts, &kopts(&work, out.clone()), &targets).unwrap();
    assert!(again.arches.iter().all(|a| a.cached_layers == [true; 4]), "{:?}", again.arches.iter().map(|a| &a.cached_layers).collect::<Vec<_>>());
    assert_eq!(again.archive.sha256, b.archive.sha256);

    // An architecture twice is refused, naming the spec.
    let e = image::kicbase::build(&spec, &opts, &kopts(&work, out), &[ArchTarget::new(Arch::X86_64), ArchTarget::new(Arch::X86_64)]).unwrap_err().to_string();
    assert!(e.contains("spec.toml") && e.contains("amd64 asked for twice"), "{e}");
}
