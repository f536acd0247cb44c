//! Extra signed apt repositories (`[[source.repos]]`) against repositories this test builds,
//! signs with throwaway keys and serves on 127.0.0.1: one flat (like pkgs.k8s.io) and one
//! Debian-style. Needs gpg, gpgv and dpkg-deb (scripts/setup.sh installs them): a missing tool
//! fails the test, it is never skipped.

mod signed_repo;

use fetch::{Cache, FetchError, Http};
use image::apt::{AptError, Index};
use image::spec::Spec;
use signed_repo::*;
use std::io::Write;
use std::path::Path;

/// Repositories served from one root:
/// - `/k8s` flat (`path = "/"`): hello-k8s 1.0-1 and 2.0-1 for amd64, 3.0-1 for arm64 only;
/// - `/deb` Debian-style, suite `stable`, component `main` (gzipped index): `tool`, which
///   depends on hello-k8s, so resolution crosses repositories;
/// - `/evil` flat, signed by the other key;
/// - `/badsum` flat, its Packages lists a wrong SHA256 for the .deb;
/// - `/tampered` flat, its Packages changed after InRelease was signed.
struct Fixture {
    gpg: Gpg,
    dir: tempfile::TempDir,
    base: String,
}

impl Fixture {
    fn new() -> Fixture {
        let gpg = Gpg::new();
        let dir = tempfile::tempdir().unwrap();
        let (work, root) = (dir.path().join("work"), dir.path().join("www"));
        std::fs::create_dir_all(&work).unwrap();
        put(dir.path(), "keys/good.asc", &gpg.export(GOOD));

        let mut k8s = String::new();
        for (v, arch) in [("1.0-1", "amd64"), ("2.0-1", "amd64"), ("3.0-1", "arm64")] {
            let f = format!("pool/hello-k8s_{v}_{arch}.deb");
            let (bytes, control) = deb(&work, "hello-k8s", v, arch, "");
            put(&root, &format!("k8s/{f}"), &bytes);
            k8s.push_str(&stanza(&bytes, &control, &f, None));
            k8s.push('\n');
        }
        put(&root, "k8s/Packages", k8s.as_bytes());
        put(&root, "k8s/InRelease", &inrelease(&gpg, GOOD, &[("Packages", k8s.as_bytes())]));

        let f = "pool/main/t/tool/tool_0.1_amd64.deb";
        let (bytes, control) = deb(&work, "tool", "0.1", "amd64", "hello-k8s (>= 1.0)");
        put(&root, &format!("deb/{f}"), &bytes);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(stanza(&bytes, &control, f, None).as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        put(&root, "deb/dists/stable/main/binary-amd64/Packages.gz", &gz);
        put(&root, "deb/dists/stable/InRelease", &inrelease(&gpg, GOOD, &[("main/binary-amd64/Packages.gz", &gz)]));

        put(&root, "evil/Packages", k8s.as_bytes());
        put(&root, "evil/InRelease", &inrelease(&gpg, EVIL, &[("Packages", k8s.as_bytes())]));

        let f = "pool/hello-k8s_1.0-1_amd64.deb";
        let wrong = "0".repeat(64);
        let (bytes, control) = deb(&work, "hello-k8s", "1.0-1", "amd64", "");
        let listed = stanza(&bytes, &control, f, Some(&wrong));
        put(&root, &format!("badsum/{f}"), &bytes);
        put(&root, "badsum/Packages", listed.as_bytes());
        put(&root, "badsum/InRelease", &inrelease(&gpg, GOOD, &[("Packages", listed.as_bytes())]));

        put(&root, "tampered/InRelease", &inrelease(&gpg, GOOD, &[("Packages", k8s.as_bytes())]));
        put(&root, "tampered/Packages", k8s.replace("2.0-1", "2.0-9").as_bytes());

        let base = serve(root);
        Fixture { gpg, dir, base }
    }

    /// A spec beside `keys/good.asc` with `repos` (TOML tables) and `include`.
    fn spec(&self, repos: &str, include: &str) -> Spec {
        let text = format!("[image]\nname = \"t\"\n\n{repos}\n[packages]\ninclude = [{include}]\n");
        let path = self.dir.path().join("spec.toml");
        std::fs::write(&path, &text).unwrap();
        Spec::parse(&text, &path).unwrap()
    }

    fn flat(&self, name: &str) -> String {
        format!("[[source.repos]]\nuri = \"{}/{name}/\"\npath = \"/\"\nkey = \"keys/good.asc\"\n", self.base)
    }

    /// The spec's index: an empty stand-in for Debian plus its extra repositories.
    fn index(&self, spec: &Spec, cache: &Cache) -> Result<Index, AptError> {
        let mut index = Index::parse("", "http://debian.invalid", "bookworm", "amd64").unwrap();
        image::repo::merge_repos(&mut index, spec, &Http::default(), cache)?;
        Ok(index)
    }
}

#[test]
fn good_signature_packages_resolve_pinned_across_repositories_and_unpack() {
    let fx = Fixture::new();
    let deb_repo = format!("[[source.repos]]\nuri = \"{}/deb\"\nsuite = \"stable\"\ncomponents = [\"main\"]\nkey = \"keys/good.asc\"\n", fx.base);
    let spec = fx.spec(&format!("{}\n{deb_repo}", fx.flat("k8s")), "\"tool\", \"hello-k8s=1.0-1\"");
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let index = fx.index(&spec, &cache).unwrap();
    // The arm64-only version of the flat repository's one index is not offered for amd64.
    let versions: Vec<String> = index.by_name("hello-k8s").iter().map(|p| p.version.to_string()).collect();
    assert_eq!(versions, ["2.0-1", "1.0-1"]);

    let set = image::assemble::resolve_spec(&spec, &index).unwrap();
    let got: Vec<String> = set.iter().map(|p| format!("{}={}", p.name, p.version)).collect();
    assert_eq!(got, ["hello-k8s=1.0-1", "tool=0.1"]);
    assert_eq!(index.url(set[1]), format!("{}/deb/pool/main/t/tool/tool_0.1_amd64.deb", fx.base));

    let items: Vec<_> = set.iter().map(|p| index.item(p)).collect();
    let paths = cache.fetch_all(&Http::default(), &items, 2).unwrap();
    let mut tree = image::rootfs::Tree::new();
    for (p, path) in set.iter().zip(paths) {
        image::deb::unpack(&path, &p.name, &mut tree).unwrap();
    }
    let file = |p: &str| match &tree.get(p).unwrap_or_else(|| panic!("{p} in the tree")).kind {
        image::rootfs::Kind::File(data) => String::from_utf8_lossy(data).to_string(),
        k => panic!("{p}: {k:?}"),
    };
    assert_eq!(file("/usr/bin/hello-k8s"), "hello-k8s 1.0-1\n");
    assert_eq!(file("/usr/bin/tool"), "tool 0.1\n");

    // Unpinned, the newest amd64 version wins.
    let spec = fx.spec(&fx.flat("k8s"), "\"hello-k8s\"");
    let index = fx.index(&spec, &cache).unwrap();
    let set = image::assemble::resolve_spec(&spec, &index).unwrap();
    assert_eq!(set[0].version.to_string(), "2.0-1");
}

#[test]
fn signature_by_another_key_is_an_error_naming_repository_and_key() {
    let fx = Fixture::new();
    let spec = fx.spec(&fx.flat("evil"), "\"hello-k8s\"");
    let e = fx.index(&spec, &Cache::new(fx.dir.path().join("cache"))).unwrap_err();
    assert!(matches!(e, AptError::RepoSignature { .. }), "{e:?}");
    let s = e.to_string();
    let key = fx.dir.path().join("keys/good.asc");
    assert!(s.contains(&format!("{}/evil/InRelease", fx.base)) && s.contains(&key.display().to_string()), "{s}");
    // The same repository verifies once its own key is the one named.
    put(fx.dir.path(), "keys/good.asc", &fx.gpg.export(EVIL));
    assert!(fx.index(&spec, &Cache::new(fx.dir.path().join("cache"))).is_ok());
}

#[test]
fn deb_checksum_mismatch_is_an_error_naming_its_url() {
    let fx = Fixture::new();
    let spec = fx.spec(&fx.flat("badsum"), "\"hello-k8s\"");
    let cache = Cache::new(fx.dir.path().join("cache"));
    let index = fx.index(&spec, &cache).unwrap();
    let set = image::assemble::resolve_spec(&spec, &index).unwrap();
    let e = cache.fetch_all(&Http::default(), &[index.item(set[0])], 1).unwrap_err();
    assert!(matches!(e, FetchError::Checksum { .. }), "{e:?}");
    let s = e.to_string();
    assert!(s.contains(&format!("{}/badsum/pool/hello-k8s_1.0-1_amd64.deb", fx.base)) && s.contains(&"0".repeat(64)), "{s}");
}

#[test]
fn packages_index_not_matching_the_signed_release_is_refused() {
    let fx = Fixture::new();
    let spec = fx.spec(&fx.flat("tampered"), "\"hello-k8s\"");
    let e = fx.index(&spec, &Cache::new(fx.dir.path().join("cache"))).unwrap_err().to_string();
    assert!(e.contains(&format!("{}/tampered/Packages", fx.base)) && e.contains("does not match the Release file"), "{e}");
    // A repository that is not there names the URL it tried.
    let spec = fx.spec(&fx.flat("nosuch"), "\"hello-k8s\"");
    let e = fx.index(&spec, &Cache::new(fx.dir.path().join("cache"))).unwrap_err().to_string();
    assert!(e.contains(&format!("{}/nosuch/InRelease", fx.base)) && e.contains("not found"), "{e}");
}

/// The shipped example parses once throwaway keys stand in for the real ones, and stays
/// iso/spec.toml plus Kubernetes (every package of the ISO spec is still included).
#[test]
fn kubernetes_example_spec_parses_with_substituted_keys() {
    let iso = Path::new(env!("CARGO_MANIFEST_DIR")).join("../iso");
    let text = std::fs::read_to_string(iso.join("kubernetes.example.toml")).unwrap();
    let raw: toml::Table = toml::from_str(&text).unwrap();
    let keys: Vec<String> = raw["source"]["repos"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap().to_string()).collect();
    assert_eq!(keys.len(), 2);

    // Without the real keys the example names the missing file; with them it loads.
    match Spec::load(&iso.join("kubernetes.example.toml")) {
        Ok(_) => assert!(keys.iter().all(|k| iso.join(k).exists())),
        Err(e) => assert!(e.to_string().contains("source.repos[") && e.to_string().contains(".asc"), "{e}"),
    }

    let gpg = Gpg::new();
    let dir = tempfile::tempdir().unwrap();
    for k in &keys {
        put(dir.path(), k, &gpg.export(GOOD));
    }
    let spec = Spec::parse(&text, &dir.path().join("kubernetes.example.toml")).unwrap();
    let uris: Vec<&str> = spec.source.repos.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(uris, ["https://pkgs.k8s.io/core:/stable:/v1.34/deb", "https://pkgs.k8s.io/addons:/cri-o:/stable:/v1.34/deb"]);
    assert_eq!(spec.source.repos[0].release_dir(), "https://pkgs.k8s.io/core:/stable:/v1.34/deb");
    for name in ["kubelet", "kubeadm", "kubectl", "cri-tools"] {
        let p = spec.packages.include.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} included"));
        assert!(p.version.is_some(), "{name} is pinned");
    }
    let base = Spec::load(&iso.join("spec.toml")).unwrap();
    for p in &base.packages.include {
        assert!(spec.packages.include.iter().any(|q| q.name == p.name), "{} from iso/spec.toml", p.name);
    }
}
