//! The outside check of our SBOMs (issue 26): syft, a scanner that is not ours (built from its
//! pinned module by `cargo xtask syft`), reads each artifact and its package list is compared with
//! our SBOM's. Any package one side has and the other lacks fails the test, unless it is one of
//! the accepted differences below, each checked against the artifact rather than filtered by name
//! (the README lists them too):
//!
//! 1. `OffRoot`: the ISO's kernel, bootloader and initramfs packages (our SBOM marks them with a
//!    `minikube:role`) are on the boot medium or in the initramfs, not in the root image's dpkg
//!    database, which is what syft reads.
//! 2. `KernelModule`: syft lists each kernel module (`.ko`) as a package; they are files of the
//!    kernel package, which our SBOM lists with the role `kernel`. Accepted only under
//!    `/usr/lib/modules/` and when the SBOM has a `kernel` component.
//! 3. `InDebianBinary`: Go modules compiled into binaries that Debian packages ship (containerd,
//!    runc, docker, podman, the CNI plugins). Our SBOM's unit there is the Debian package, as
//!    Debian's own metadata is. Accepted only when every file syft found the module in is listed
//!    by a Debian package of the image (`/var/lib/dpkg/info/*.list`).
//! 4. `ClassifiedDebianFile`: syft's binary classifier names software by a file's bytes (bash,
//!    curl, openssl...). It drops such guesses when the package database says which package owns
//!    the file, by `info/*.md5sums`, which our dpkg database does not write (it writes the
//!    `.list` files). Accepted only when every file is listed by a Debian package of the image.
//!
//! One spelling is made the same, not accepted: a main module built from a local checkout (our
//! pause, `minikube.local/bundle/pause`) has no module version; Go's build info says `(devel)`, which
//! our SBOM keeps, and syft writes `UNKNOWN` for it ([`go_version`]).
//!
//! Everything else must match by (kind, name, version): every Debian package of the image's dpkg
//! database, syft's Debian packages from ELF package notes, and for the Kubernetes bundle every Go
//! module of every binary (no accepted difference there).

#[path = "../../image/tests/common/cyclonedx.rs"]
mod cyclonedx;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// syft's version of a Go module in Go's spelling: `UNKNOWN` is syft's word for the build info's
/// `(devel)` (a main module built from a local checkout, not a tagged module).
fn go_version(syft: &str) -> String {
    if syft == "UNKNOWN" {
        "(devel)".to_string()
    } else {
        syft.to_string()
    }
}

/// A package as both sides name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Deb { name: String, version: String },
    Go { path: String, version: String },
}

/// Our SBOM: the packages it lists in the artifact, and those it lists with a role (not in the
/// root image).
struct Ours {
    listed: BTreeSet<Key>,
    off_root: BTreeMap<Key, String>,
}

/// Read and schema-check our SBOM.
fn ours(path: &Path) -> Ours {
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap();
    let errs = cyclonedx::errors(&cyclonedx::validator(), &doc);
    assert!(errs.is_empty(), "{}: not CycloneDX 1.5: {errs:?}", path.display());
    let mut o = Ours { listed: BTreeSet::new(), off_root: BTreeMap::new() };
    for c in doc["components"].as_array().unwrap_or_else(|| panic!("{}: no components", path.display())) {
        let purl = c["purl"].as_str().unwrap_or_default();
        let (name, version) = (c["name"].as_str().unwrap().to_string(), c["version"].as_str().unwrap().to_string());
        let key = if purl.starts_with("pkg:deb/") {
            Key::Deb { name, version }
        } else if purl.starts_with("pkg:golang/") {
            Key::Go { path: name, version }
        } else {
            // A binary of ours (type application, no purl): a file with its SHA-256, whose
            // modules are listed as Go components.
            assert_eq!(c["type"], "application", "{}: a component that is neither a package nor a binary: {c}", path.display());
            continue;
        };
        let role = c["properties"].as_array().into_iter().flatten().find(|p| p["name"] == "minikube:role").and_then(|p| p["value"].as_str());
        if let Some(r) = role {
            o.off_root.insert(key, r.to_string());
        } else {
            o.listed.insert(key);
        }
    }
    o
}

/// A package syft found.
#[derive(Debug, Clone)]
struct Found {
    kind: String,
    found_by: String,
    name: String,
    version: String,
    paths: Vec<String>,
}

/// `syft scan SOURCE` (syft's own JSON), each package with the files it was found in.
fn scan(syft: &Path, source: &str, extra: &[&str], work: &Path) -> Vec<Found> {
    let out = work.join("syft.json");
    let t = std::time::Instant::now();
    let o = Command::new(syft)
        .args(["scan", source, "-q", "-o"])
        .arg(format!("syft-json={}", out.display()))
        .args(extra)
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .expect("syft runs");
    assert!(o.status.success(), "syft scan {source}: {}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    eprintln!("syft scan {source}: {:.1} s", t.elapsed().as_secs_f64());
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    doc["artifacts"]
        .as_array()
        .expect("syft's JSON has artifacts")
        .iter()
        .map(|a| Found {
            kind: a["type"].as_str().unwrap_or_default().to_string(),
            found_by: a["foundBy"].as_str().unwrap_or_default().to_string(),
            name: a["name"].as_str().unwrap_or_default().to_string(),
            version: a["version"].as_str().unwrap_or_default().to_string(),
            paths: a["locations"].as_array().into_iter().flatten().filter_map(|l| l["path"].as_str().map(str::to_string)).collect(),
        })
        .collect()
}

/// Every path a Debian package of the image at `root` lists (`var/lib/dpkg/info/*.list`), under
/// both of its names where merged /usr gives it two (`/bin/bash` is `/usr/bin/bash`).
fn debian_files(root: &Path) -> BTreeSet<String> {
    let dir = root.join("var/lib/dpkg/info");
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        if e.path().extension().is_some_and(|x| x == "list") {
            for line in std::fs::read_to_string(e.path()).unwrap().lines() {
                if ["/bin/", "/sbin/", "/lib/", "/lib64/"].iter().any(|p| line.starts_with(p)) {
                    out.insert(format!("/usr{line}"));
                }
                out.insert(line.to_string());
            }
        }
    }
    assert!(!out.is_empty(), "{}: no .list files", dir.display());
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Accepted {
    OffRoot,
    KernelModule,
    InDebianBinary,
    ClassifiedDebianFile,
}

/// The comparison: matched, accepted (by kind), and what one side has and the other lacks.
#[derive(Debug, Default)]
struct Outcome {
    ours: usize,
    syft: usize,
    matched: usize,
    accepted: BTreeMap<Accepted, usize>,
    only_ours: Vec<Key>,
    only_syft: Vec<String>,
}

fn compare(ours: &Ours, found: &[Found], debian_files: &BTreeSet<String>) -> Outcome {
    let mut o = Outcome { ours: ours.listed.len() + ours.off_root.len(), syft: found.len(), ..Outcome::default() };
    let owned = |f: &Found| !f.paths.is_empty() && f.paths.iter().all(|p| debian_files.contains(p));
    let has_kernel = ours.off_root.values().any(|r| r == "kernel");
    let mut seen: BTreeSet<Key> = BTreeSet::new();
    for f in found {
        let key = match f.kind.as_str() {
            "deb" => Key::Deb { name: f.name.clone(), version: f.version.clone() },
            "go-module" => Key::Go { path: f.name.clone(), version: go_version(&f.version) },
            "linux-kernel-module" if has_kernel && f.paths.iter().all(|p| p.starts_with("/usr/lib/modules/")) => {
                *o.accepted.entry(Accepted::KernelModule).or_default() += 1;
                continue;
            }
            "binary" if owned(f) => {
                *o.accepted.entry(Accepted::ClassifiedDebianFile).or_default() += 1;
                continue;
            }
            _ => {
                o.only_syft.push(format!("{} {} {} (by {}, in {:?})", f.kind, f.name, f.version, f.found_by, f.paths));
                continue;
            }
        };
        if ours.listed.contains(&key) {
            seen.insert(key);
        } else if matches!(key, Key::Go { .. }) && owned(f) {
            *o.accepted.entry(Accepted::InDebianBinary).or_default() += 1;
        } else {
            o.only_syft.push(format!("{key:?} (by {}, in {:?})", f.found_by, f.paths));
        }
    }
    o.matched = seen.len();
    o.only_ours = ours.listed.difference(&seen).cloned().collect();
    // Not in the root image: accepted only while syft does not see them there either (it would
    // have matched them as listed packages, which they are not).
    for key in ours.off_root.keys() {
        if found.iter().any(|f| f.kind == "deb" && matches!(key, Key::Deb { name, version } if *name == f.name && *version == f.version)) {
            o.only_syft.push(format!("{key:?}: our SBOM says it is not in the root image, syft found it there"));
        } else {
            *o.accepted.entry(Accepted::OffRoot).or_default() += 1;
        }
    }
    o
}

fn assert_agree(what: &str, o: &Outcome) {
    eprintln!(
        "{what}: our SBOM {} packages, syft {}; {} matched, accepted {:?}, only ours {}, only syft {}",
        o.ours,
        o.syft,
        o.matched,
        o.accepted,
        o.only_ours.len(),
        o.only_syft.len()
    );
    assert!(
        o.only_ours.is_empty() && o.only_syft.is_empty(),
        "{what}: our SBOM and syft disagree.\nonly in our SBOM: {:#?}\nonly in syft's: {:#?}",
        o.only_ours,
        o.only_syft
    );
    assert!(o.matched > 0, "{what}: nothing matched");
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let o = Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(o.status.success(), "{program} {args:?}: {}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
}

/// The ISO's root as the node sees it: the package layer, then the local layer over it.
fn iso_root(iso: &Path, work: &Path) -> PathBuf {
    let iso = iso.to_str().unwrap();
    run("xorriso", &["-osirrox", "on", "-indev", iso, "-extract", "/boot/root.sqfs", "root.sqfs", "-extract", "/boot/top.sqfs", "top.sqfs"], work);
    run("unsquashfs", &["-q", "-n", "-d", "root", "root.sqfs"], work);
    run("unsquashfs", &["-q", "-n", "-f", "-d", "root", "top.sqfs"], work);
    work.join("root")
}

/// The ISO's root image against the SBOM beside the ISO.
fn check_iso(iso: &Path, what: &str) {
    let syft = e2e::syft();
    let ours = ours(&iso.with_extension("sbom.json"));
    let d = tempfile::tempdir().unwrap();
    let root = iso_root(iso, d.path());
    let found = scan(&syft, &format!("dir:{}", root.display()), &[], d.path());
    let o = compare(&ours, &found, &debian_files(&root));
    assert_agree(what, &o);
    // The difference the ISO must have: its kernel and bootloader are off the root.
    assert!(o.accepted.get(&Accepted::OffRoot).is_some_and(|n| *n >= 2), "{what}: {:?}", o.accepted);
}

#[test]
fn syft_agrees_with_the_iso_sbom() {
    let iso = e2e::iso_with(vec![e2e::Need::program("xorriso"), e2e::Need::program("unsquashfs")]);
    check_iso(&iso, "the ISO (amd64)");
}

#[test]
fn syft_agrees_with_the_arm64_iso_sbom() {
    // syft reads the arm64 files as files: nothing of the image runs here.
    let iso = e2e::arm64_iso();
    check_iso(&iso, "the ISO (arm64)");
}

/// An image's files (the tag ending in `tag_suffix`) from the archive's docker-archive side (`manifest.json`), its layers
/// unpacked in order (ours have no whiteouts).
fn kicbase_root(archive: &Path, tag_suffix: &str, work: &Path) -> PathBuf {
    let m = Command::new("tar").arg("-xOf").arg(archive).arg("manifest.json").output().unwrap();
    let manifest: Value = serde_json::from_slice(&m.stdout).expect("the archive's manifest.json");
    let entry = manifest
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["RepoTags"].as_array().into_iter().flatten().any(|t| t.as_str().is_some_and(|t| t.ends_with(tag_suffix))))
        .unwrap_or_else(|| panic!("no {tag_suffix} image in {manifest}"));
    let root = work.join("root");
    std::fs::create_dir_all(&root).unwrap();
    for layer in entry["Layers"].as_array().unwrap() {
        let mut outer = Command::new("tar").arg("-xOf").arg(archive).arg(layer.as_str().unwrap()).stdout(Stdio::piped()).spawn().unwrap();
        let o = Command::new("tar").args(["-xzf", "-", "--no-same-owner", "-C"]).arg(&root).stdin(outer.stdout.take().unwrap()).output().unwrap();
        assert!(outer.wait().unwrap().success() && o.status.success(), "{layer}: {}", String::from_utf8_lossy(&o.stderr));
    }
    root
}

/// One architecture's image of the kicbase archive against its SBOM.
fn check_kicbase(arch: platform::Arch) {
    let archive = e2e::kicbase_archive(&["tar"]);
    let syft = e2e::syft();
    let what = format!("kicbase ({})", arch.debian());
    let ours = ours(&image::kicbase::side_file(&archive, arch, "sbom.json"));
    let d = tempfile::tempdir().unwrap();
    // syft reads the OCI archive itself (the layout's nested index, the platform's manifest).
    let found = scan(&syft, &format!("oci-archive:{}", archive.display()), &["--platform", &format!("linux/{}", arch.debian())], d.path());
    let root = kicbase_root(&archive, &format!("-{}", arch.debian()), d.path());
    let o = compare(&ours, &found, &debian_files(&root));
    assert_agree(&what, &o);
    assert!(!o.accepted.contains_key(&Accepted::OffRoot), "{what}: kicbase's SBOM has no packages with a role");
}

#[test]
fn syft_agrees_with_the_kicbase_sbom() {
    check_kicbase(platform::Arch::X86_64);
}

#[test]
fn syft_agrees_with_the_arm64_kicbase_sbom() {
    check_kicbase(platform::Arch::Aarch64);
}

#[test]
fn syft_agrees_with_the_kubernetes_bundle_sbom() {
    let cache = e2e::kubernetes_bundle();
    let syft = e2e::syft();
    let arch = platform::Arch::host().unwrap();
    let version = platform::bundle::DEFAULT_KUBERNETES_VERSION;
    let dir = platform::bundle::version_dir(&cache, arch, version);
    let ours = ours(&dir.join(platform::bundle::SBOM));
    assert!(ours.off_root.is_empty());
    let manifest: platform::bundle::BundleManifest = serde_json::from_slice(&std::fs::read(dir.join(platform::bundle::MANIFEST)).unwrap()).unwrap();
    let d = tempfile::tempdir().unwrap();
    // The binaries where they lie (crictl in its own directory), then kube-proxy's image for its
    // Debian packages.
    let mut found = Vec::new();
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for b in &manifest.binaries {
        dirs.insert(dir.join(&b.file).parent().unwrap().to_path_buf());
    }
    for (i, bin_dir) in dirs.iter().enumerate() {
        let work = d.path().join(format!("dir{i}"));
        std::fs::create_dir_all(&work).unwrap();
        found.extend(scan(&syft, &format!("dir:{}", bin_dir.display()), &[], &work));
    }
    let proxy = manifest.images.iter().find(|i| i.reference.contains("/kube-proxy:")).expect("a kube-proxy image");
    found.extend(scan(&syft, &format!("oci-archive:{}", dir.join(&proxy.file).display()), &[], d.path()));
    // No accepted difference: no Debian file list counts here.
    let o = compare(&ours, &found, &BTreeSet::new());
    assert_agree("the Kubernetes bundle", &o);
    assert!(o.accepted.is_empty(), "{:?}", o.accepted);
    assert!(o.matched > 300, "the bundle's modules and kube-proxy's packages: {}", o.matched);
}
