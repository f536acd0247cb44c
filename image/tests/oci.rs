//! OCI image layer: checked by our own reading of the bytes and by the real consumers (GNU tar,
//! skopeo, umoci, podman). Needs root for umoci's device nodes/owners and rootful podman.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use image::oci::{
    build_image, split_layers, stack_layers, write_archive, write_layer, write_layout, BlobStore, Compression, Image, ImageConfig, ImageMeta, GZIP_CHUNK,
};
use image::rootfs::{Entry, Kind, Tree};
use sha2::{Digest, Sha256};

const MTIME: u64 = 1_600_000_000;
const EPOCH: u64 = 1_700_000_000;
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ndocker:x:1000:1000::/home/docker:/bin/sh\n";
const HELLO: &str = "hello from an image built without a daemon\n";

fn long_dir() -> String {
    format!("/usr/share/{}", "a-rather-long-directory-name-".repeat(3))
}
fn long_file() -> String {
    format!("{}/{}", long_dir(), "and-an-equally-long-file-name-to-push-past-one-hundred-bytes.txt")
}
fn long_target() -> String {
    format!("../../..{}", long_file())
}

fn timed(mut e: Entry) -> Entry {
    e.mtime = MTIME;
    e
}

/// The small tree every test uses. `cat` is the content of /bin/cat (a real binary for the
/// podman run, a placeholder elsewhere).
fn test_tree(cat: Vec<u8>) -> Tree {
    let mut t = Tree::new();
    for (d, mode) in [("/bin", 0o755), ("/etc", 0o755), ("/usr", 0o755), ("/usr/bin", 0o755), ("/home", 0o755)] {
        t.insert(d, timed(Entry::dir(mode)));
    }
    t.insert("/tmp", timed(Entry::dir(0o1777)));
    t.insert("/dev", timed(Entry::dir(0o755)));
    t.insert("/home/docker", timed(Entry::dir(0o750).with_owner(1000, 1000)));
    t.insert("/home/docker/owned", timed(Entry::file(b"mine\n".to_vec(), 0o640).with_owner(1000, 1000)));
    t.insert("/hello", timed(Entry::file(HELLO.as_bytes().to_vec(), 0o644)));
    t.insert("/bin/cat", timed(Entry::file(cat, 0o755)));
    t.insert("/usr/bin/cat", timed(Entry::symlink("../../bin/cat")));
    t.insert("/usr/bin/suid", timed(Entry::file(b"#!/bin/sh\n".to_vec(), 0o4755)));
    t.insert("/dev/testnull", timed(Entry { kind: Kind::CharDev { major: 1, minor: 3 }, ..Entry::dir(0o666) }));
    t.insert("/dev/testfifo", timed(Entry { kind: Kind::Fifo, ..Entry::dir(0o600) }));
    t.insert("/etc/os-release", timed(Entry::file(b"ID=test\n".to_vec(), 0o644)));
    // `User: root` is resolved through the image's own passwd/group by podman and umoci.
    t.insert("/etc/passwd", timed(Entry::file(PASSWD.as_bytes().to_vec(), 0o644)));
    t.insert("/etc/group", timed(Entry::file(b"root:x:0:\ndocker:x:1000:\n".to_vec(), 0o644)));
    for d in ["/usr/share", &long_dir()] {
        t.insert(d, timed(Entry::dir(0o755)));
    }
    t.insert(&long_file(), timed(Entry::file(b"long\n".to_vec(), 0o644)));
    t.insert("/usr/bin/long-link", timed(Entry::symlink(long_target())));
    // Spans several members of a parallel gzip layer, so every consumer reads multi-member gzip.
    let big: Vec<u8> = (0..(GZIP_CHUNK * 5 / 2) as u32).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 27) as u8).collect();
    t.insert("/usr/share/big", timed(Entry::file(big, 0o644)));
    t
}

/// Base (everything else) / packages (/usr) / ours (/hello, /bin/cat).
fn classify(path: &str, _: &Entry) -> usize {
    if path == "/hello" || path == "/bin/cat" {
        2
    } else if path.starts_with("/usr/") {
        1
    } else {
        0
    }
}

fn config() -> ImageConfig {
    let mut c = ImageConfig::linux(arch());
    c.env = vec!["container=docker".into(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
    c.entrypoint = vec!["/bin/cat".into()];
    c.cmd = vec!["/hello".into()];
    c.stop_signal = Some("SIGRTMIN+3".into());
    c.exposed_ports = vec!["22".into(), "2376/tcp".into(), "8443".into(), "7443".into()];
    c.labels = BTreeMap::from([("io.minikube.test".to_string(), "yes".to_string())]);
    c.working_dir = Some("/".into());
    c.user = Some("root".into());
    c
}

fn meta(tag: &str) -> ImageMeta {
    ImageMeta {
        name: "localhost/minikube-oci-test".into(),
        tag: tag.into(),
        version: "v0.0.1-test".into(),
        revision: "0123456789abcdef0123456789abcdef01234567".into(),
        source: "https://github.com/kubernetes/minikube".into(),
        epoch: EPOCH,
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn build(store_dir: &Path, tree: &Tree, compression: Compression, tag: &str) -> Image {
    let store = BlobStore::open(store_dir).unwrap();
    let names = ["base files", "package files", "our files (agent + overlay)"];
    let parts = split_layers(tree, 3, classify).unwrap();
    let layers = parts.iter().zip(names).map(|(t, n)| write_layer(&store, t, compression, n).unwrap()).collect();
    build_image(&store, layers, &config(), &meta(tag)).unwrap()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (apt-get install skopeo umoci podman runc)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// All entries of a tar stream: path -> (header, link target, data).
fn read_tar(r: impl Read) -> Vec<(String, tar::Header, Option<String>, Vec<u8>)> {
    let mut a = tar::Archive::new(r);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let link = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, h, link, data)
        })
        .collect()
}

#[test]
fn split_layers_stack_back_to_the_final_tree() {
    let tree = test_tree(b"cat".to_vec());
    let parts = split_layers(&tree, 3, classify).unwrap();
    assert_eq!(stack_layers(&parts), tree);
    // Disjoint except for shared parent directories, which carry the final metadata.
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for (i, p) in parts.iter().enumerate() {
        for (k, e) in p.iter() {
            assert_eq!(Some(e), tree.get(k), "layer {i} {k} differs from the final tree");
            if e.kind != Kind::Dir {
                assert!(owner.insert(k.clone(), i).is_none(), "{k} in two layers");
            }
        }
    }
    assert_eq!(owner["/hello"], 2);
    assert_eq!(owner["/usr/bin/cat"], 1);
    // The top layer holds only what it needs: its two files, /bin and the root.
    let top: Vec<&str> = parts[2].iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(top, ["/", "/bin", "/bin/cat", "/hello"]);
    assert_eq!(parts[2].get("/bin").unwrap().mtime, MTIME);
    let bad = split_layers(&tree, 2, classify).unwrap_err();
    assert!(bad.to_string().contains("/bin/cat"), "{bad}");
}

#[test]
fn layer_tar_has_exact_headers_and_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path()).unwrap();
    let tree = test_tree(b"cat".to_vec());
    let layer = write_layer(&store, &tree, Compression::Gzip { level: 6, threads: 0 }, "all").unwrap();
    assert_eq!(layer.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    let blob = fs::read(store.blob_path(&layer.digest)).unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&blob)), layer.digest);
    assert_eq!(blob.len() as u64, layer.size);
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(blob.as_slice()).read_to_end(&mut tar_bytes).unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&tar_bytes)), layer.diff_id);
    assert_eq!(tar_bytes.len() as u64, layer.tar_size);

    let entries = read_tar(tar_bytes.as_slice());
    assert_eq!(entries.len(), tree.len() - 1, "every entry but the root");
    assert_eq!(layer.entries, entries.len());
    let by_path: BTreeMap<_, _> = entries.iter().map(|(p, h, l, d)| (p.trim_end_matches('/').to_string(), (p, h, l, d))).collect();
    for (k, e) in tree.iter().filter(|(k, _)| *k != "/") {
        let (raw, h, link, data) = by_path[&k[1..]];
        assert_eq!(h.mode().unwrap(), e.mode, "{k} mode");
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (e.uid as u64, e.gid as u64), "{k} owner");
        assert_eq!(h.mtime().unwrap(), e.mtime, "{k} mtime");
        assert_eq!(h.username_bytes().unwrap_or_default(), b"", "{k}: no user names");
        match &e.kind {
            Kind::Dir => assert!(raw.ends_with('/') && h.entry_type().is_dir(), "{k}"),
            Kind::File(c) => assert_eq!(data.as_slice(), c.as_slice(), "{k}"),
            Kind::Symlink(t) => assert_eq!(link.as_deref(), Some(t.as_str()), "{k}"),
            Kind::CharDev { major, minor } => {
                assert!(h.entry_type().is_character_special());
                assert_eq!((h.device_major().unwrap(), h.device_minor().unwrap()), (Some(*major), Some(*minor)));
            }
            Kind::Fifo => assert!(h.entry_type().is_fifo()),
            Kind::BlockDev { .. } => unreachable!(),
        }
    }

    // GNU tar, an independent reader, sees the same names, owners, devices and long names.
    let tar_path = tmp.path().join("layer.tar");
    fs::write(&tar_path, &tar_bytes).unwrap();
    let listing = run(Command::new("tar").args(["--numeric-owner", "-tvf"]).arg(&tar_path));
    for needle in [
        "drwxrwxrwt 0/0",
        "-rw-r----- 1000/1000",
        "crw-rw-rw- 0/0",
        "1,3",
        "-rwsr-xr-x 0/0",
        "prw------- 0/0",
        &long_file()[1..],
        &format!("usr/bin/long-link -> {}", long_target()),
        "usr/bin/cat -> ../../bin/cat",
    ] {
        assert!(listing.contains(needle), "GNU tar listing lacks {needle:?}:\n{listing}");
    }
}

/// Reads the archive as a consumer would and checks every hash; returns (manifest digest, config JSON).
fn verify_archive(path: &Path) -> (String, serde_json::Value) {
    let entries = read_tar(fs::File::open(path).unwrap());
    let names: Vec<&str> = entries.iter().map(|(p, ..)| p.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "archive entries are sorted");
    assert_eq!(names[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(names[names.len() - 3..], ["index.json", "manifest.json", "oci-layout"]);
    let files: BTreeMap<&str, &Vec<u8>> = entries.iter().map(|(p, _, _, d)| (p.as_str(), d)).collect();
    for (p, h, _, d) in &entries {
        assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()), (0, 0, EPOCH), "{p}");
        if let Some(hex) = p.strip_prefix("blobs/sha256/").filter(|s| !s.is_empty()) {
            assert_eq!(sha256_hex(d), hex, "blob {p} content matches its name");
        }
    }
    let json = |p: &str| -> serde_json::Value { serde_json::from_slice(files[p]).unwrap() };
    assert_eq!(json("oci-layout")["imageLayoutVersion"], "1.0.0");
    let index = json("index.json");
    let mdesc = &index["manifests"][0];
    assert_eq!(mdesc["annotations"]["org.opencontainers.image.ref.name"], "v1");
    assert_eq!(mdesc["annotations"]["io.containerd.image.name"], "localhost/minikube-oci-test:v1");
    let mdigest = mdesc["digest"].as_str().unwrap().to_string();
    let blob = |d: &str| files[format!("blobs/sha256/{}", d.trim_start_matches("sha256:")).as_str()];
    let manifest: serde_json::Value = serde_json::from_slice(blob(&mdigest)).unwrap();
    assert_eq!(mdesc["size"].as_u64().unwrap(), blob(&mdigest).len() as u64);
    let ann = &manifest["annotations"];
    assert_eq!(ann["org.opencontainers.image.created"], "2023-11-14T22:13:20Z");
    assert_eq!(ann["org.opencontainers.image.version"], "v0.0.1-test");
    assert_eq!(ann["org.opencontainers.image.revision"], "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(ann["org.opencontainers.image.source"], "https://github.com/kubernetes/minikube");
    assert_eq!(ann["org.opencontainers.image.ref.name"], "v1");
    let cdigest = manifest["config"]["digest"].as_str().unwrap();
    let config: serde_json::Value = serde_json::from_slice(blob(cdigest)).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(diff_ids.len(), 3);
    for (l, diff_id) in layers.iter().zip(diff_ids) {
        let data = blob(l["digest"].as_str().unwrap());
        assert_eq!(l["size"].as_u64().unwrap(), data.len() as u64);
        let mut tar_bytes = Vec::new();
        match l["mediaType"].as_str().unwrap() {
            "application/vnd.oci.image.layer.v1.tar+gzip" => {
                flate2::read::MultiGzDecoder::new(data.as_slice()).read_to_end(&mut tar_bytes).unwrap();
            }
            "application/vnd.oci.image.layer.v1.tar+zstd" => tar_bytes = zstd::decode_all(data.as_slice()).unwrap(),
            other => panic!("unexpected layer media type {other}"),
        }
        assert_eq!(diff_id.as_str().unwrap(), format!("sha256:{}", sha256_hex(&tar_bytes)));
    }
    // The docker-archive manifest points at the same blobs.
    let docker = json("manifest.json");
    assert_eq!(docker[0]["RepoTags"][0], "localhost/minikube-oci-test:v1");
    assert_eq!(docker[0]["Config"].as_str().unwrap(), format!("blobs/sha256/{}", cdigest.trim_start_matches("sha256:")));
    let docker_layers: Vec<String> = docker[0]["Layers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let oci_layers: Vec<String> = layers.iter().map(|l| format!("blobs/sha256/{}", l["digest"].as_str().unwrap().trim_start_matches("sha256:"))).collect();
    assert_eq!(docker_layers, oci_layers);
    (mdigest, config)
}

#[test]
fn archive_hashes_check_out_and_config_has_the_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let image = build(&tmp.path().join("store"), &test_tree(b"cat".to_vec()), Compression::default(), "v1");
    let out = tmp.path().join("out/kicbase.tar");
    let summary = write_archive(&image, &out).unwrap();
    assert_eq!(fs::metadata(&out).unwrap().len(), summary.size);
    assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(format!("sha256:{}", sha256_hex(&fs::read(&out).unwrap())), summary.sha256);
    let (mdigest, config) = verify_archive(&out);
    assert_eq!(mdigest, image.manifest_digest);
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["architecture"], arch());
    assert_eq!(config["os"], "linux");
    let c = &config["config"];
    assert_eq!(c["StopSignal"], "SIGRTMIN+3");
    assert_eq!(c["Env"][0], "container=docker");
    assert_eq!(c["Entrypoint"][0], "/bin/cat");
    let ports: Vec<&String> = c["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(ports, ["22/tcp", "2376/tcp", "7443/tcp", "8443/tcp"]);
    assert_eq!(c["Labels"]["io.minikube.test"], "yes");
    assert_eq!(config["history"][2]["created_by"], "our files (agent + overlay)");
    // No temporary files left beside the target.
    let left: Vec<_> = fs::read_dir(tmp.path().join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["kicbase.tar"]);
}

#[test]
fn same_inputs_give_identical_bytes() {
    // Pairs built in separate stores; parallel modes also vary the worker count, which must not
    // change a byte.
    let tree = test_tree(b"cat".to_vec());
    for (first, second) in [
        (Compression::Gzip { level: 6, threads: 0 }, Compression::Gzip { level: 6, threads: 0 }),
        (Compression::Gzip { level: 6, threads: 1 }, Compression::Gzip { level: 6, threads: 3 }),
        (Compression::Zstd { level: 3, threads: 1 }, Compression::Zstd { level: 3, threads: 2 }),
        (Compression::Zstd { level: 3, threads: 0 }, Compression::Zstd { level: 3, threads: 0 }),
    ] {
        let mut results = Vec::new();
        for compression in [first, second] {
            let tmp = tempfile::tempdir().unwrap();
            let image = build(&tmp.path().join("store"), &tree, compression, "v1");
            let out = tmp.path().join("image.tar");
            let summary = write_archive(&image, &out).unwrap();
            verify_archive(&out);
            results.push((image.manifest_digest.clone(), summary.sha256, fs::read(&out).unwrap()));
        }
        assert_eq!(results[0].0, results[1].0, "{first:?} vs {second:?}: manifest digest");
        assert_eq!(results[0].1, results[1].1, "{first:?} vs {second:?}: archive digest");
        assert!(results[0].2 == results[1].2, "{first:?} vs {second:?}: archive bytes");
    }
    // A different epoch changes the image (the config's created time), not the layers.
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path()).unwrap();
    let parts = split_layers(&test_tree(b"cat".to_vec()), 3, classify).unwrap();
    let layers: Vec<_> = parts.iter().map(|t| write_layer(&store, t, Compression::default(), "x").unwrap()).collect();
    let a = build_image(&store, layers.clone(), &config(), &meta("v1")).unwrap();
    let b = build_image(&store, layers, &config(), &ImageMeta { epoch: EPOCH + 1, ..meta("v1") }).unwrap();
    assert_ne!(a.manifest_digest, b.manifest_digest);
}

#[test]
fn agent_change_reships_only_the_top_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let a = build(&tmp.path().join("a"), &test_tree(b"agent v1".to_vec()), Compression::default(), "v1");
    let b = build(&tmp.path().join("b"), &test_tree(b"agent v2".to_vec()), Compression::default(), "v1");
    let digests = |i: &Image| i.layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>();
    let (da, db) = (digests(&a), digests(&b));
    assert_eq!(da[..2], db[..2], "lower layers unchanged");
    assert_ne!(da[2], db[2], "top layer changed");
    assert_ne!(a.manifest_digest, b.manifest_digest);
}

#[test]
fn failed_write_leaves_the_old_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let image = build(&tmp.path().join("store"), &test_tree(b"cat".to_vec()), Compression::default(), "v1");
    let out = tmp.path().join("image.tar");
    fs::write(&out, b"previous").unwrap();
    fs::remove_file(image.store.blob_path(&image.layers[1].digest)).unwrap();
    let err = write_archive(&image, &out).unwrap_err();
    assert!(err.to_string().contains(&image.layers[1].digest), "{err}");
    assert_eq!(fs::read(&out).unwrap(), b"previous");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2, "only store/ and image.tar");
}

#[test]
fn skopeo_reads_oci_archive_and_docker_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let image = build(&tmp.path().join("store"), &test_tree(b"cat".to_vec()), Compression::default(), "v1");
    let out = tmp.path().join("image.tar");
    write_archive(&image, &out).unwrap();
    for transport in ["oci-archive", "docker-archive"] {
        let r = format!("{transport}:{}", out.display());
        let info: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args(["inspect", &r]))).unwrap();
        assert_eq!(info["Architecture"], arch(), "{transport}");
        assert_eq!(info["Labels"]["io.minikube.test"], "yes", "{transport}");
        assert_eq!(info["Env"][0], "container=docker", "{transport}");
        assert_eq!(info["Layers"].as_array().unwrap().len(), 3, "{transport}");
        assert_eq!(info["Created"], "2023-11-14T22:13:20Z", "{transport}");
        let cfg: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args(["inspect", "--config", &r]))).unwrap();
        assert_eq!(cfg["config"]["StopSignal"], "SIGRTMIN+3", "{transport}");
        assert_eq!(cfg["config"]["ExposedPorts"].as_object().unwrap().len(), 4, "{transport}");
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 3, "{transport}");
        if transport == "oci-archive" {
            assert_eq!(info["Digest"].as_str().unwrap(), image.manifest_digest);
        }
        // A copy re-reads every blob and checks it against its digest / diff_id.
        let dst = tmp.path().join(format!("copy-{transport}"));
        run(Command::new("skopeo").args(["copy", "--quiet", &r]).arg(format!("oci:{}:v1", dst.display())));
    }
    // The layout directory reads too.
    let layout = tmp.path().join("layout");
    write_layout(&image, &layout).unwrap();
    let info = run(Command::new("skopeo").args(["inspect"]).arg(format!("oci:{}:v1", layout.display())));
    assert!(info.contains(&image.manifest_digest), "{info}");
}

#[test]
fn umoci_unpack_reproduces_files_modes_and_owners() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = test_tree(b"cat".to_vec());
    let image = build(&tmp.path().join("store"), &tree, Compression::default(), "v1");
    let layout = tmp.path().join("layout");
    write_layout(&image, &layout).unwrap();
    // Writing again replaces the directory atomically.
    write_layout(&image, &layout).unwrap();
    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:v1", layout.display())).arg(&bundle));
    let rootfs = bundle.join("rootfs");
    for (k, e) in tree.iter().filter(|(k, _)| *k != "/") {
        let p = rootfs.join(&k[1..]);
        let m = fs::symlink_metadata(&p).unwrap_or_else(|err| panic!("{k}: {err}"));
        assert_eq!((m.uid(), m.gid()), (e.uid, e.gid), "{k} owner");
        assert_eq!(m.mtime() as u64, e.mtime, "{k} mtime");
        match &e.kind {
            Kind::Dir => assert!(m.is_dir(), "{k}"),
            Kind::File(c) => assert_eq!(&fs::read(&p).unwrap(), c.as_ref(), "{k}"),
            Kind::Symlink(t) => assert_eq!(fs::read_link(&p).unwrap(), PathBuf::from(t), "{k}"),
            Kind::CharDev { major, minor } => {
                assert!(m.file_type().is_char_device(), "{k}");
                let rdev = m.rdev();
                let (ma, mi) = (((rdev >> 8) & 0xfff) as u32, ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as u32);
                assert_eq!((ma, mi), (*major, *minor), "{k}");
            }
            Kind::Fifo => assert!(m.file_type().is_fifo(), "{k}"),
            Kind::BlockDev { .. } => unreachable!(),
        }
        if !matches!(e.kind, Kind::Symlink(_)) {
            assert_eq!(m.permissions().mode() & 0o7777, e.mode, "{k} mode");
        }
    }
}

/// Compiles a static `cat` (so the image needs no libc) with the toolchain running the tests.
fn static_cat(dir: &Path) -> Vec<u8> {
    let src = dir.join("cat.rs");
    fs::write(
        &src,
        "fn main() { let mut out = std::io::stdout(); for a in std::env::args().skip(1) { \
         std::io::copy(&mut std::fs::File::open(&a).expect(&a), &mut out).unwrap(); } }",
    )
    .unwrap();
    let bin = dir.join("cat");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    run(Command::new(rustc)
        .args(["--edition", "2021", "-O", "-C", "target-feature=+crt-static", "-C", "strip=symbols", "--target", &target, "-o"])
        .arg(&bin)
        .arg(&src));
    fs::read(bin).unwrap()
}

/// Removes the podman image even when the test fails.
struct PodmanImage(String);
impl Drop for PodmanImage {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "--force", &self.0]).output();
    }
}

#[test]
fn podman_loads_inspects_and_runs_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let tag = format!("t{}", std::process::id());
    let reference = format!("localhost/minikube-oci-test:{tag}");
    let tree = test_tree(static_cat(tmp.path()));
    let image = build(&tmp.path().join("store"), &tree, Compression::default(), &tag);
    let out = tmp.path().join("image.tar");
    write_archive(&image, &out).unwrap();
    let _cleanup = PodmanImage(reference.clone());
    let loaded = run(Command::new("podman").args(["load", "-i"]).arg(&out));
    assert!(loaded.contains(&reference), "podman load output: {loaded}");
    let inspect: serde_json::Value = serde_json::from_str(&run(Command::new("podman").args(["image", "inspect", &reference]))).unwrap();
    let i = &inspect[0];
    assert!(i["RepoTags"].as_array().unwrap().iter().any(|t| t == reference.as_str()), "{i}");
    assert_eq!(i["Config"]["StopSignal"], "SIGRTMIN+3");
    assert_eq!(i["Architecture"], arch());
    assert_eq!(i["RootFS"]["Layers"].as_array().unwrap().len(), 3);
    let printed = run(Command::new("podman").args([
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--network",
        "none",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        "--entrypoint",
        "/bin/cat",
        &reference,
        "/hello",
        "/home/docker/owned",
    ]));
    assert_eq!(printed, format!("{HELLO}mine\n"));
    // The image's own Entrypoint + Cmd work too.
    let printed = run(Command::new("podman").args([
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--network",
        "none",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        &reference,
    ]));
    assert_eq!(printed, HELLO);
}

/// Streams a large tree and checks the blob is never held in memory: peak RSS grows by about the
/// tree, not by the tree plus the tar.
#[test]
fn large_layer_streams_to_disk() {
    const FILES: usize = 64;
    const FILE_SIZE: usize = 2 << 20; // 128 MiB in all
    let mut t = Tree::new();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..FILES {
        let mut c = Vec::with_capacity(FILE_SIZE);
        while c.len() < FILE_SIZE {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half-compressible bytes: a small alphabet.
            c.extend((0..8).map(|j| b'a' + ((x >> (j * 8)) as u8 & 0x0f)));
        }
        t.insert(&format!("/data/{i:03}"), Entry::file(c, 0o644));
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path()).unwrap();
    let rss_before = peak_rss_kib();
    let started = std::time::Instant::now();
    let layer = write_layer(&store, &t, Compression::default(), "big").unwrap();
    let secs = started.elapsed().as_secs_f64();
    let grown_mib = (peak_rss_kib().saturating_sub(rss_before)) / 1024;
    eprintln!(
        "large layer: tar {} MiB -> gzip {} MiB in {secs:.1} s ({:.0} MiB/s), peak RSS grew {grown_mib} MiB",
        layer.tar_size >> 20,
        layer.size >> 20,
        (layer.tar_size >> 20) as f64 / secs
    );
    assert!(layer.tar_size > (FILES * FILE_SIZE) as u64);
    assert_eq!(fs::metadata(store.blob_path(&layer.digest)).unwrap().len(), layer.size);
    assert!(grown_mib < 64, "writing a 128 MiB layer grew peak RSS by {grown_mib} MiB");
}

fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
}

/// A private dockerd (Debian's docker.io, classic image store: it reads `manifest.json`), stopped
/// and its state removed when dropped.
struct Dockerd {
    child: std::process::Child,
    sock: String,
    _dir: tempfile::TempDir,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = tempfile::Builder::new().prefix("oci-dockerd").tempdir_in("/tmp").unwrap();
        let sock = format!("unix://{}/sock", dir.path().display());
        let log = fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("pid"))
            .args(["-H", &sock, "--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("dockerd: {e} (apt-get install docker.io)"));
        let d = Dockerd { child, sock, _dir: dir };
        for _ in 0..60 {
            if d.docker().arg("version").output().is_ok_and(|o| o.status.success()) {
                return d;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("dockerd did not come up: {}", fs::read_to_string(d._dir.path().join("log")).unwrap_or_default());
    }
    fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &self.sock);
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM to the daemon we started (it stops its containerd), then wait for it.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        let _ = Command::new("umount").arg("-R").arg(self._dir.path().join("data")).output();
    }
}

#[test]
fn docker_loads_and_runs_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = "localhost/minikube-oci-test:docker";
    let image = build(&tmp.path().join("store"), &test_tree(static_cat(tmp.path())), Compression::default(), "docker");
    let out = tmp.path().join("image.tar");
    write_archive(&image, &out).unwrap();
    let d = Dockerd::start();
    let loaded = run(d.docker().args(["load", "-i"]).arg(&out));
    assert!(loaded.contains(reference), "docker load output: {loaded}");
    let inspect: serde_json::Value = serde_json::from_str(&run(d.docker().args(["image", "inspect", reference]))).unwrap();
    assert_eq!(inspect[0]["Config"]["StopSignal"], "SIGRTMIN+3");
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 3);
    let printed = run(d.docker().args(["run", "--rm", "--network", "none", reference]));
    assert_eq!(printed, HELLO);
}
