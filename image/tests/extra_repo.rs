//! Extra signed apt repositories (`[[source.repos]]`) against repositories this test builds,
//! signs with throwaway keys and serves on 127.0.0.1: one flat (like pkgs.k8s.io) and one
//! Debian-style. Needs gpg, gpgv and dpkg-deb (scripts/setup.sh installs them): a missing tool
//! fails the test, it is never skipped.

use fetch::{Cache, FetchError, Http};
use image::apt::{AptError, Index};
use image::spec::Spec;
use pki::digest::sha256_hex;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const GOOD: &str = "good@repo.test";
const EVIL: &str = "evil@repo.test";

/// A GNUPGHOME with two throwaway signing keys (no passphrase); its agent is stopped on drop.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        let g = Gpg { home };
        for uid in [GOOD, EVIL] {
            g.run(&["--passphrase", "", "--quick-gen-key", &format!("Test <{uid}>"), "ed25519", "sign", "never"], None);
        }
        g
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--quiet", "--yes"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpg runs (scripts/setup.sh installs gnupg)");
        child.stdin.take().unwrap().write_all(stdin.unwrap_or_default()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    fn export(&self, uid: &str) -> Vec<u8> {
        self.run(&["--armor", "--export", uid], None)
    }

    fn clearsign(&self, uid: &str, text: &str) -> Vec<u8> {
        self.run(&["--local-user", uid, "--clearsign"], Some(text.as_bytes()))
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").env("GNUPGHOME", self.home.path()).args(["--kill", "gpg-agent"]).status();
    }
}

/// A .deb built by dpkg-deb holding `/usr/bin/<name>` that reads "<name> <version>", and its
/// control fields.
fn deb(work: &Path, name: &str, version: &str, arch: &str, depends: &str) -> (Vec<u8>, String) {
    let src = work.join(format!("src-{name}-{version}-{arch}"));
    std::fs::create_dir_all(src.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(src.join("usr/bin")).unwrap();
    let deps = if depends.is_empty() { String::new() } else { format!("Depends: {depends}\n") };
    let control = format!("Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Test <t@repo.test>\n{deps}Description: test package\n");
    std::fs::write(src.join("DEBIAN/control"), &control).unwrap();
    std::fs::write(src.join("usr/bin").join(name), format!("{name} {version}\n")).unwrap();
    let out = work.join(format!("{name}_{version}_{arch}.deb"));
    let st = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&src)
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("dpkg-deb runs (scripts/setup.sh installs dpkg)");
    assert!(st.success());
    (std::fs::read(&out).unwrap(), control)
}

/// The Packages stanza of a .deb at `filename` (`sha256` overrides its real hash).
fn stanza(bytes: &[u8], control: &str, filename: &str, sha256: Option<&str>) -> String {
    let sha = sha256_hex(bytes);
    format!("{control}Filename: {filename}\nSize: {}\nSHA256: {}\n", bytes.len(), sha256.unwrap_or(&sha))
}

/// A clearsigned InRelease listing `files` (relative path, bytes) by SHA256.
fn inrelease(gpg: &Gpg, signer: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut r = String::from("Origin: test\nLabel: test\nDate: Thu, 01 Jan 2026 00:00:00 UTC\nArchitectures: amd64 arm64\nSHA256:\n");
    for (name, data) in files {
        r.push_str(&format!(" {} {} {name}\n", sha256_hex(data), data.len()));
    }
    gpg.clearsign(signer, &r)
}

fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Serve files under `root` over HTTP/1.1 GET (one response per connection) until the test ends.
fn serve(root: PathBuf) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let root = root.clone();
            std::thread::spawn(move || {
                let mut rd = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                let _ = rd.read_line(&mut line);
                let mut h = String::new();
                while rd.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
                let file = (!path.split('/').any(|c| c == "..")).then(|| std::fs::read(root.join(&path)).ok()).flatten();
                let (status, body) = match file {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", b"not found\n".to_vec()),
                };
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = c.write_all(head.as_bytes()).and_then(|_| c.write_all(&body));
            });
        }
    });
    format!("http://{addr}")
}

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
