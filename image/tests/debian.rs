//! Tests against Debian's real archive (the mirror from this machine's apt sources) and real
//! packages. Downloads go to the shared package cache, so repeated runs are fast.

use fetch::{Cache, Http};
use image::apt::ArchiveConfig;
use image::assemble::Options;
use image::rootfs::Kind;
use image::spec::Spec;
use std::path::{Path, PathBuf};

fn spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/small/spec.toml")
}

fn index() -> image::apt::Index {
    let cfg = ArchiveConfig::from_machine(None, "bookworm", "amd64", &["main".to_string()]).expect("apt sources name a bookworm mirror");
    image::apt::load_index(&cfg, &Http::default(), &Cache::default_location()).expect("index loads")
}

#[test]
fn real_index_is_signed_and_resolves() {
    let idx = index();
    assert!(idx.packages.len() > 50_000, "bookworm main has >50k packages, got {}", idx.packages.len());
    match idx.signature {
        Some(image::apt::Signature::Verified { .. }) => {}
        ref other => panic!("Release signature must be verified here (keyring and gpgv are installed): {other:?}"),
    }
    let spec = Spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../iso/spec.toml")).unwrap();
    let set = image::assemble::resolve_spec(&spec, &idx).unwrap();
    let names: Vec<&str> = set.iter().map(|p| p.name.as_str()).collect();
    for must in ["systemd", "containerd", "docker.io", "runc", "libc6", "base-files", "openssh-server"] {
        assert!(names.contains(&must), "{must} missing from the resolved set");
    }
    // Every dependency group of every chosen package is satisfied inside the set.
    for p in &set {
        for group in p.depends.iter().chain(p.pre_depends.iter()) {
            let ok = group.iter().any(|d| {
                set.iter().any(|q| {
                    (q.name == d.name && d.constraint.as_ref().is_none_or(|(op, v)| op.holds(&q.version, v))) || q.provides.iter().any(|(n, _)| n == &d.name)
                })
            });
            assert!(ok, "{}: dependency {:?} not satisfied in the set", p.name, group.iter().map(|d| d.to_string()).collect::<Vec<_>>());
        }
    }
}

#[test]
fn unknown_package_names_package_and_suite() {
    let idx = index();
    let req = image::resolve::Request { include: vec!["no-such-package-xyz".into()], ..Default::default() };
    let e = image::resolve::resolve(&idx, &req).unwrap_err().to_string();
    assert!(e.contains("no-such-package-xyz") && e.contains("bookworm/amd64"), "{e}");
}

#[test]
fn corrupt_deb_in_cache_is_fetched_again() {
    let idx = index();
    let p = idx.by_name("busybox-static").into_iter().next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let item = idx.item(p);
    // A truncated (partial) file under the package's hash name.
    std::fs::create_dir_all(cache.path_of(&item.sha256).parent().unwrap()).unwrap();
    std::fs::write(cache.path_of(&item.sha256), b"partial download").unwrap();
    let got = cache.fetch(&Http::default(), &item, &|_| {}).unwrap();
    let (h, n) = pki::digest::sha256_file(&got).unwrap();
    assert_eq!((h, n), (item.sha256.clone(), item.size));
    // And the unpacked package is the real busybox.
    let mut t = image::rootfs::Tree::new();
    image::deb::unpack(&got, "busybox-static", &mut t).unwrap();
    let bb = t.get("/usr/bin/busybox").expect("busybox binary");
    assert!(matches!(bb.kind, Kind::File(_)));
    assert_eq!(&bb.content().unwrap()[..4], b"\x7fELF");
}

#[test]
fn unreachable_mirror_is_a_clear_error() {
    let spec = Spec::load(&spec_path()).unwrap();
    let mut opts = Options::new(1_700_000_000);
    opts.mirror = Some("http://127.0.0.1:9/debian".into());
    let t = std::time::Instant::now();
    let e = image::assemble::assemble(&spec, &opts).err().expect("must fail").to_string();
    assert!(t.elapsed().as_secs() < 30, "took {:?}", t.elapsed());
    assert!(e.contains("cannot reach http://127.0.0.1:9/debian"), "{e}");
}

fn build_small(out: &Path) -> image::isobuild::IsoBuild {
    let spec = Spec::load(&spec_path()).unwrap();
    let opts = Options::new(1_700_000_000);
    image::isobuild::build(&spec, &opts, None, None, out).unwrap()
}

#[test]
fn small_iso_is_reproducible_and_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.iso");
    let b = dir.path().join("b.iso");
    let ra = build_small(&a);
    build_small(&b);
    let (ha, _) = pki::digest::sha256_file(&a).unwrap();
    let (hb, _) = pki::digest::sha256_file(&b).unwrap();
    assert_eq!(ha, hb, "same spec, packages and SOURCE_DATE_EPOCH must give the same bytes");
    assert!(ra.kernel_version.ends_with("-amd64"));
    // The layout, read back by xorriso.
    let out = std::process::Command::new("xorriso").args(["-indev"]).arg(&a).args(["-find", "/", "-type", "f"]).output().expect("xorriso is installed");
    let listing = String::from_utf8_lossy(&out.stdout);
    for f in ["/boot/bzImage", "/boot/initrd", "/isolinux/isolinux.bin", "/isolinux/isolinux.cfg", "/isolinux/ldlinux.c32"] {
        assert!(listing.contains(&format!("'{f}'")), "{f} missing from ISO:\n{listing}");
    }
    // The SBOM, beside the ISO and inside it, the same bytes; the kernel and bootloader
    // packages are in it with their role.
    assert_eq!(ra.sbom, dir.path().join("a.sbom.json"));
    let beside = std::fs::read(&ra.sbom).unwrap();
    let inside = dir.path().join("inside.sbom.json");
    extract(&a, "/sbom.json", &inside);
    assert_eq!(std::fs::read(&inside).unwrap(), beside);
    let sbom: serde_json::Value = serde_json::from_slice(&beside).unwrap();
    let comps = sbom["components"].as_array().unwrap();
    assert_eq!(
        comps.len(),
        ra.packages.len() + comps.iter().filter(|c| c["properties"].as_array().unwrap().iter().any(|p| p["name"] == "minikube:role")).count()
    );
    let role = |name: &str| {
        comps
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["properties"].as_array().unwrap().iter().find(|p| p["name"] == "minikube:role").map(|p| p["value"].clone()))
    };
    assert_eq!(role("isolinux"), Some("bootloader".into()));
    assert!(
        comps
            .iter()
            .any(|c| c["name"].as_str().unwrap().starts_with("linux-image-6") && c["purl"].as_str().unwrap().starts_with("pkg:deb/debian/linux-image-6")),
        "{sbom:#}"
    );
    let el = std::process::Command::new("xorriso").args(["-indev"]).arg(&a).args(["-report_el_torito", "plain"]).output().unwrap();
    let report = String::from_utf8_lossy(&el.stdout);
    assert!(report.contains("El Torito boot img :   1  BIOS"), "{report}");
    assert!(report.contains("El Torito cat path : /boot.catalog"), "{report}");
    assert!(report.contains("El Torito img path :   1  /isolinux/isolinux.bin"), "{report}");
    assert!(report.contains("boot-info-table"), "{report}");
}

#[test]
fn small_rootfs_has_accounts_links_modules_and_status() {
    let spec = Spec::load(&spec_path()).unwrap();
    let opts = Options::new(1_700_000_000);
    let a = image::assemble::assemble(&spec, &opts).unwrap();
    let t = &a.tree;
    let passwd = String::from_utf8_lossy(t.get("/etc/passwd").unwrap().content().unwrap()).to_string();
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    assert_eq!(t.get("/etc/shadow").unwrap().mode, 0o640);
    assert!(matches!(&t.get("/bin").unwrap().kind, Kind::Symlink(s) if s == "usr/bin"));
    assert!(matches!(&t.get("/usr/bin/sh").unwrap().kind, Kind::Symlink(s) if s == "/usr/bin/busybox"));
    assert_eq!(t.get("/etc/motd").unwrap().content().unwrap(), b"small test image\n");
    assert!(!t.contains("/usr/share/man"));
    // CA bundle and OpenSSL hash links.
    let bundle = t.get("/etc/ssl/certs/ca-certificates.crt").unwrap().content().unwrap();
    assert!(bundle.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----"));
    let hash_links = t.children_of("/etc/ssl/certs").filter(|(k, _)| k.ends_with(".0")).count();
    assert!(hash_links > 100, "only {hash_links} hash links");
    // dpkg knows what is installed.
    let status = String::from_utf8_lossy(t.get("/var/lib/dpkg/status").unwrap().content().unwrap()).to_string();
    assert!(status.contains("Package: busybox-static\nStatus: install ok installed"), "{}", &status[..200.min(status.len())]);
    // Kernel modules: the asked ones, their dependencies, and a modules.dep that lists them.
    let k = a.kernel.as_ref().unwrap();
    for m in ["virtio_blk", "isofs", "nf_conntrack", "libcrc32c"] {
        assert!(k.kept.contains(m), "{m} not kept: {:?}", k.kept);
    }
    let dep = String::from_utf8_lossy(t.get(&format!("/usr/lib/modules/{}/modules.dep", k.version)).unwrap().content().unwrap()).to_string();
    assert!(dep.lines().any(|l| l.contains("nf_conntrack.ko") && l.contains("libcrc32c.ko")), "{dep}");
    assert!(t.contains(&format!("/usr/lib/modules/{}/modules.dep.bin", k.version)));
    // Every mtime is clamped to SOURCE_DATE_EPOCH.
    assert!(t.iter().all(|(_, e)| e.mtime <= 1_700_000_000));
}

#[test]
fn updates_and_security_suites_win_over_the_release() {
    let spec = Spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../iso/spec.toml")).unwrap();
    assert!(spec.source.updates.iter().any(|s| s.ends_with("-security")), "the ISO reads security updates");
    let opts = Options::new(1_700_000_000);
    let index = image::assemble::open_live_index(&spec, &opts, &Http::default()).unwrap();
    let suites: std::collections::BTreeSet<&str> = index.packages.iter().map(|p| p.suite.as_str()).collect();
    assert!(suites.contains("bookworm") && suites.contains("bookworm-security"), "{suites:?}");
    let security = index.packages.iter().find(|p| p.suite == "bookworm-security").unwrap();
    assert!(index.url(security).contains("debian-security"), "{}", index.url(security));
    // For every name the newest version comes first, whichever suite lists it.
    let mut updated = 0;
    for p in &index.packages {
        let newest = index.by_name(&p.name)[0];
        assert!(newest.version >= p.version, "{} {} before {}", p.name, newest.version, p.version);
        if newest.suite != "bookworm" && p.suite == "bookworm" {
            updated += 1;
        }
    }
    assert!(updated > 0, "no package of the release has a newer version in the update suites");
    eprintln!("{updated} release packages have newer versions in {:?}", spec.source.updates);
    // The ISO's and kicbase's package sets resolve on the merged index, with no Breaks or
    // Conflicts inside either set, and take the newest versions.
    for path in ["../iso/spec.toml", "../kicbase/spec.toml"] {
        let spec = Spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
        let set = image::assemble::resolve_spec(&spec, &index).unwrap_or_else(|e| panic!("{path}: {e}"));
        for p in &set {
            assert_eq!(p.version, index.by_name(&p.name)[0].version, "{path}: {} is not the newest", p.name);
        }
        let from_updates = set.iter().filter(|p| p.suite != "bookworm").count();
        eprintln!("{path}: {} packages, {from_updates} from the update suites", set.len());
    }
}

/// The small spec with a squashfs root, copied into `dir` (so its overlay can be changed).
fn squashfs_spec(dir: &Path) -> Spec {
    let src = spec_path().parent().unwrap().to_path_buf();
    std::fs::create_dir_all(dir.join("overlay/etc")).unwrap();
    std::fs::copy(src.join("init.sh"), dir.join("init.sh")).unwrap();
    std::fs::copy(src.join("overlay/etc/motd"), dir.join("overlay/etc/motd")).unwrap();
    let text = std::fs::read_to_string(spec_path()).unwrap().replace(
        "[boot]\n",
        "[boot]\nroot = \"squashfs\"\ninitrd_modules = [\"sr_mod\", \"isofs\", \"squashfs\", \"overlay\", \"loop\"]\ninitrd_packages = [\"busybox-static\"]\nsquashfs = { compressor = \"zstd\", level = 3 }\n",
    );
    assert!(text.contains("root = \"squashfs\""));
    let path = dir.join("spec.toml");
    std::fs::write(&path, &text).unwrap();
    Spec::load(&path).unwrap()
}

fn extract(iso: &Path, path: &str, to: &Path) {
    let st = std::process::Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", path])
        .arg(to)
        .output()
        .expect("xorriso is installed");
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
}

fn unsquashfs(args: &[&str], img: &Path, files: &[&str]) -> String {
    let out = std::process::Command::new("unsquashfs").args(args).arg(img).args(files).output().expect("squashfs-tools is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn squashfs_root_is_reproducible_and_an_overlay_change_reuses_the_package_layer() {
    let dir = tempfile::tempdir().unwrap();
    let spec = squashfs_spec(&dir.path().join("spec"));
    let mut opts = Options::new(1_700_000_000);
    // Bytes standing in for the static minikube-init binary: this test compares images, the e2e
    // tests boot the real one.
    opts.init_binary = Some(b"minikube-init stand-in for a byte comparison".to_vec());
    let (a, b, c) = (dir.path().join("a.iso"), dir.path().join("b.iso"), dir.path().join("c.iso"));
    let ra = image::isobuild::build(&spec, &opts, None, None, &a).unwrap();
    assert_eq!(ra.root, image::spec::RootMode::Squashfs);
    // Drop the cached package layer: the second build makes it again, byte for byte.
    std::fs::remove_dir_all(opts.cache.root().join("rootfs").join(&ra.base_key)).unwrap();
    let rb = image::isobuild::build(&spec, &opts, None, None, &b).unwrap();
    assert!(!rb.base_reused, "the package layer was removed from the cache");
    assert_eq!(ra.base_key, rb.base_key);
    let (ha, _) = pki::digest::sha256_file(&a).unwrap();
    let (hb, _) = pki::digest::sha256_file(&b).unwrap();
    assert_eq!(ha, hb, "same spec, packages and SOURCE_DATE_EPOCH must give the same bytes");
    assert!(ra.initrd_size < 15_000_000, "initrd {} bytes", ra.initrd_size);

    // Owners, modes and links come out of the package layer right.
    let root = dir.path().join("root.sqfs");
    extract(&b, "/boot/root.sqfs", &root);
    let listing = unsquashfs(&["-lln"], &root, &[]);
    let line = |p: &str| listing.lines().find(|l| l.ends_with(p)).unwrap_or_else(|| panic!("{p} not in the image")).to_string();
    let shadow = line("squashfs-root/etc/shadow");
    assert!(shadow.starts_with("-rw-r----- 0/42 "), "{shadow}");
    assert!(line("squashfs-root/bin -> usr/bin").starts_with("lrwxrwxrwx 0/0"));
    assert!(line("squashfs-root").starts_with("drwxr-xr-x 0/0"), "{}", line("squashfs-root"));

    // What a build killed with SIGKILL leaves beside its output: a temporary ISO and a
    // temporary layer directory. The next build removes them; the old ISOs are intact.
    let stale_file = dir.path().join(format!("{}c.iso.1234", pki::atomic::TEMP_PREFIX));
    let stale_dir = dir.path().join(format!("{}top", pki::atomic::TEMP_PREFIX));
    std::fs::write(&stale_file, b"half an ISO").unwrap();
    std::fs::create_dir_all(stale_dir.join("x")).unwrap();

    // An overlay change: the package layer is reused and the new file is in the local layer.
    std::fs::write(dir.path().join("spec/overlay/etc/motd"), "changed by the test\n").unwrap();
    let rc = image::isobuild::build(&spec, &opts, None, None, &c).unwrap();
    assert!(!stale_file.exists() && !stale_dir.exists(), "temporary files of the killed build are left");
    assert_eq!(pki::digest::sha256_file(&a).unwrap().0, ha, "an earlier ISO was touched");
    assert!(rc.base_reused, "an overlay change rebuilt the package layer");
    assert_eq!(rc.base_key, ra.base_key);
    let top = dir.path().join("top.sqfs");
    extract(&c, "/boot/top.sqfs", &top);
    assert_eq!(unsquashfs(&["-cat"], &top, &["etc/motd"]), "changed by the test\n");
    // The plan in the initramfs names the new local layer: the SHA-256 and length of its data
    // (the filesystem, padded to whole blocks), and the root hash of the dm-verity tree after it.
    let bytes = std::fs::read(&top).unwrap();
    let used = u64::from_le_bytes(bytes[40..48].try_into().unwrap());
    let data_bytes = (used.div_ceil(4096).max(2) * 4096) as usize;
    let sum = pki::digest::sha256_hex(&bytes[..data_bytes]);
    let root = hex::encode(minikube_init::verity::block_hash(&hex::decode(&sum).unwrap(), &bytes[data_bytes..data_bytes + 4096]));
    let initrd = dir.path().join("initrd");
    extract(&c, "/boot/initrd", &initrd);
    let raw = std::fs::read(&initrd).unwrap();
    let mut text = Vec::new();
    // Concatenated gzip streams (the spec's compression; cached part, then local part): the
    // plan is in the local part.
    let mut dec = flate2::read::MultiGzDecoder::new(&raw[..]);
    std::io::Read::read_to_end(&mut dec, &mut text).unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains(&format!("layer boot/top.sqfs {sum} {data_bytes} {root} {sum}\n")), "the plan does not name the new top layer");
}
