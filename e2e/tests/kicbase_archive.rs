//! The kicbase archive without running a node: what `cargo xtask test` builds holds amd64 and
//! arm64 (a nested image index) and the arm64 image is arm64's through and through (read with GNU
//! tar, no daemon); docker gets the host's architecture through the launcher, on the kicbase
//! archive and on a tiny two-architecture one, with a dockerd of our own (this sandbox refuses
//! `--privileged`, so docker runs no node here).
//!
//! Needs root, dockerd and docker (Debian's docker.io), GNU tar, and the image (`cargo xtask
//! kicbase --arch amd64,arm64`, or `KICBASE_ARCHIVE`).

use std::process::Command;
use std::time::Instant;

use image::oci::{build_image, write_layer, BlobStore, Compression, ImageConfig, ImageMeta};
use image::rootfs::{Entry, Tree};
use launcher::resources::kic::Engine;

/// The engine client of a [`e2e::Dockerd`], as the launcher uses it.
fn docker_engine(d: &e2e::Dockerd) -> Engine {
    Engine { program: "docker".into(), global_args: vec!["-H".into(), d.host.clone()] }
}

/// The kicbase archive through the launcher's docker path: the host's architecture alone is
/// loaded (docker 20.10 would load every entry of the multi-arch archive's manifest.json).
#[test]
fn docker_loads_kicbase() {
    let archive = e2e::kicbase_archive(&["dockerd", "docker"]);
    let d = e2e::Dockerd::start();
    let engine = docker_engine(&d);
    let t = Instant::now();
    let ready = engine.ensure_image(&launcher::resources::kic::ImageSource::Archive(archive.clone())).unwrap();
    eprintln!("FIGURE docker: kicbase loaded by the launcher in {:.1} s", t.elapsed().as_secs_f64());
    assert!(ready.loaded);
    let reference = ready.reference;
    assert!(reference.starts_with("kicbase:"), "{reference}");
    let inspect = d.docker(&["image", "inspect", &reference]);
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v[0]["Architecture"], platform::Arch::host().unwrap().debian());
    let ids = launcher::resources::kic::read_archive(&archive).unwrap().ids;
    assert_eq!(v[0]["Id"].as_str().unwrap().trim_start_matches("sha256:"), ids[0], "the host's config");
    let cfg = &v[0]["Config"];
    assert_eq!(cfg["StopSignal"], "SIGRTMIN+3");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/usr/bin/minikube-agent", "entrypoint", "--", "/sbin/init"]));
    assert!(cfg["Env"].as_array().unwrap().iter().any(|e| e == "container=docker"));
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 4, "base, runtimes, system, ours");
    let listed = d.docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), reference, "one image, no other architecture's");
    eprintln!("FIGURE docker image size (unpacked): {:.1} MB", v[0]["Size"].as_u64().unwrap() as f64 / 1e6);
}

/// A one-layer image for `arch` (/arch holds its name) in `store`.
fn tiny_image(store: &BlobStore, arch: &str) -> image::oci::Image {
    let mut t = Tree::new();
    let mut e = Entry::file(format!("{arch}\n").into_bytes(), 0o644);
    e.mtime = 1_700_000_000;
    t.insert("/arch", e);
    let layer = write_layer(store, &t, Compression::Gzip { level: 6, threads: 0 }, "tiny").unwrap();
    let meta = ImageMeta { name: "localhost/kic-multi".into(), tag: "v1".into(), epoch: 1_700_000_000, ..Default::default() };
    build_image(store, vec![layer], &ImageConfig::linux(arch), &meta).unwrap()
}

/// A tiny two-architecture archive (arm64 listed first) through the launcher's docker path:
/// docker ends with the host's image under the plain name, and nothing of arm64; a second
/// `ensure_image` finds it loaded.
#[test]
fn docker_gets_the_host_architecture_of_a_multi_arch_archive() {
    e2e::require(&["dockerd", "docker"]);
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path().join("store")).unwrap();
    let images = vec![tiny_image(&store, "arm64"), tiny_image(&store, "amd64")];
    let index = image::oci::build_index(images.clone()).unwrap();
    let path = dir.path().join("multi.tar");
    image::oci::write_index_archive(&index, &path).unwrap();

    let d = e2e::Dockerd::start();
    let engine = docker_engine(&d);
    let src = launcher::resources::kic::ImageSource::Archive(path.clone());
    let ready = engine.ensure_image(&src).unwrap();
    assert_eq!((ready.reference.as_str(), ready.loaded), ("localhost/kic-multi:v1", true));
    let host = platform::Arch::host().unwrap().debian();
    let arch = d.docker(&["image", "inspect", "--format", "{{.Architecture}} {{.Id}}", "localhost/kic-multi:v1"]);
    assert!(arch.status.success(), "{}", String::from_utf8_lossy(&arch.stderr));
    let want = images.iter().find(|i| i.architecture == host).unwrap();
    assert_eq!(String::from_utf8_lossy(&arch.stdout).trim(), format!("{host} {}", want.config_digest));
    let listed = d.docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "localhost/kic-multi:v1", "nothing of another architecture");
    let again = engine.ensure_image(&src).unwrap();
    assert!(!again.loaded, "the host's image is found by its ID");
}

/// What `cargo xtask test` builds: out/kicbase.tar holds amd64 and arm64 (a nested index), and
/// the arm64 image is arm64 through and through: its config, and its agent an aarch64 ELF
/// (read from the archive with GNU tar, no daemon).
#[test]
fn kicbase_archive_holds_amd64_and_arm64() {
    let archive = e2e::kicbase_archive(&["tar"]);
    let read = |member: &str| -> Vec<u8> {
        let o = Command::new("tar").arg("-xOf").arg(&archive).arg(member).output().unwrap();
        assert!(o.status.success(), "tar {member}: {}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
    let blob = |digest: &str| read(&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")));
    let index = json(&read("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    let top = &index["manifests"][0];
    assert_eq!(top["mediaType"], "application/vnd.oci.image.index.v1+json", "a multi-arch archive (cargo xtask kicbase --arch amd64,arm64)");
    assert!(top["annotations"]["io.containerd.image.name"].as_str().unwrap().starts_with("kicbase:"));
    let nested = json(&blob(top["digest"].as_str().unwrap()));
    let archs: Vec<&str> = nested["manifests"].as_array().unwrap().iter().map(|m| m["platform"]["architecture"].as_str().unwrap()).collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    let arm = &nested["manifests"][1];
    let manifest = json(&blob(arm["digest"].as_str().unwrap()));
    let config = json(&blob(manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["os"], "linux");
    // The agent, from the top layer down: the first layer that has it.
    let agent = manifest["layers"].as_array().unwrap().iter().rev().find_map(|l| {
        let member = format!("blobs/sha256/{}", l["digest"].as_str().unwrap().trim_start_matches("sha256:"));
        let mut outer = Command::new("tar").arg("-xOf").arg(&archive).arg(&member).stdout(std::process::Stdio::piped()).spawn().unwrap();
        let o = Command::new("tar").args(["-xzOf", "-", "usr/bin/minikube-agent"]).stdin(outer.stdout.take().unwrap()).output().unwrap();
        let _ = outer.wait();
        (o.status.success() && !o.stdout.is_empty()).then_some(o.stdout)
    });
    let agent = agent.expect("/usr/bin/minikube-agent in a layer of the arm64 image");
    assert_eq!(&agent[..4], b"\x7fELF", "an ELF file");
    let machine = u16::from_le_bytes([agent[18], agent[19]]);
    assert_eq!(machine, platform::Arch::Aarch64.elf_machine(), "e_machine of the arm64 image's agent");
}
