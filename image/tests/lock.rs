//! Lock files (`image::lock`): a build from a lock takes exactly its packages, also once the
//! repository has moved on; a version that can no longer be had is an error naming it and the
//! URL tried, with nothing written; a lock belongs to its spec's package selection. Uses the
//! Debian mirror of this machine's apt sources, and a repository this test signs and serves
//! (see signed_repo/).

mod signed_repo;

use fetch::Cache;
use image::assemble::{assemble, Options};
use image::lock::make::{lock, resolve_lock};
use image::lock::{lock_path, selection, Lock, LockError, Locked, Role};
use image::spec::Spec;
use platform::Arch;
use signed_repo::*;
use std::path::{Path, PathBuf};

const EPOCH: u64 = 1_700_000_000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn options(cache: &Path) -> Options {
    let mut o = Options::new(EPOCH);
    o.cache = Cache::new(cache);
    o.jobs = 4;
    o.commit = "0123456789ab".into();
    o
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect()
}

/// The committed locks belong to their specs as they are now (else every build fails until
/// `cargo xtask lock --update` is run), and cover the architectures the specs are built for.
#[test]
fn committed_locks_belong_to_their_specs() {
    for (spec, targets) in [("iso/spec.toml", &[Arch::X86_64][..]), ("iso/spec-arm64.toml", &[Arch::Aarch64]), ("kicbase/spec.toml", &Arch::ALL)] {
        let spec = Spec::load(&workspace().join(spec)).unwrap();
        let path = lock_path(&spec.path);
        let l = Lock::read(&path).unwrap();
        for &t in targets {
            l.check(&spec, &path, t).unwrap();
            let install = l.for_target(t).filter(|p| p.role == Role::Install).count();
            assert!(install > 100, "{}: {install} packages for {t}", path.display());
        }
        assert!(l.packages.iter().any(|p| p.suite == "bookworm-security"), "{}: nothing from the security suite", path.display());
        if spec.kernel.is_some() {
            assert!(l.packages.iter().any(|p| p.role == Role::Kernel && p.name.starts_with("linux-image-6")), "{}", path.display());
            assert!(l.packages.iter().any(|p| p.role == Role::Bootloader), "{}", path.display());
            assert!(l.packages.iter().any(|p| p.role == Role::Initrd && p.name == "busybox-static"), "{}", path.display());
        }
    }
}

/// Only the package selection belongs to the lock: an edit there is refused with the way out,
/// an edit elsewhere keeps the lock.
#[test]
fn a_lock_for_another_selection_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    let text = "[image]\nname = \"t\"\n\n[packages]\ninclude = [\"base-passwd\"]\n\n[systemd]\nenable = [\"a.service\"]\n";
    let spec = Spec::parse(text, &path).unwrap();
    let other_units = Spec::parse(&text.replace("a.service", "b.service"), &path).unwrap();
    assert_eq!(selection(&spec), selection(&other_units));
    let other_packages = Spec::parse(&text.replace("[\"base-passwd\"]", "[\"base-passwd\", \"bash\"]"), &path).unwrap();
    assert_ne!(selection(&spec), selection(&other_packages));

    Lock::new(&spec, vec![Arch::X86_64], vec![]).write(&lock_path(&path)).unwrap();
    let e = image::assemble::open_index(&other_packages, &options(&dir.path().join("cache")), &fetch::Http::default()).unwrap_err().to_string();
    assert!(e.contains(&format!("lock file {} was made for another package selection", dir.path().join("spec.lock").display())), "{e}");
    assert!(e.contains(&format!("run `cargo xtask lock --update --spec {}`", path.display())), "{e}");
    // The lock of an amd64 build does not serve an arm64 one.
    let mut arm = spec.clone();
    arm.source.arch = Arch::Aarch64;
    let e = image::assemble::open_index(&arm, &options(&dir.path().join("cache")), &fetch::Http::default()).unwrap_err().to_string();
    assert!(e.contains("has no packages for arm64 (it covers amd64)"), "{e}");
    // Nothing was downloaded for a refused lock.
    assert!(!dir.path().join("cache").exists());
}

/// A locked version the mirror no longer has (here one it never had), with an empty package
/// cache: the ISO build fails naming the package, the version and the URL, and leaves nothing in
/// its output directory.
#[test]
fn a_version_the_mirror_no_longer_serves_is_an_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = Spec::load(&workspace().join("iso/spec.toml")).unwrap();
    spec.path = dir.path().join("spec.toml");
    let gone = Locked {
        name: "base-files".into(),
        version: "12.4+deb12u0".into(),
        arch: "amd64".into(),
        target: Arch::X86_64,
        role: Role::Install,
        priority: "required".into(),
        suite: "bookworm".into(),
        filename: "pool/main/b/base-files/base-files_12.4+deb12u0_amd64.deb".into(),
        size: 70_000,
        sha256: "5".repeat(64),
    };
    let mut l = Lock::read(&workspace().join("iso/spec.lock")).unwrap();
    l.packages.retain(|p| p.name != "base-files");
    l.packages.push(gone);
    // The rest of the committed lock, but only its small packages (a few MB to fetch).
    l.packages.retain(|p| p.size < 200_000);
    l.write(&lock_path(&spec.path)).unwrap();

    let cache = dir.path().join("cache");
    let mut opts = options(&cache);
    opts.init_binary = Some(b"not needed: the build stops before /init is used".to_vec());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let e = image::isobuild::build(&spec, &opts, None, None, &out.join("minikube.iso")).unwrap_err();
    let s = e.to_string();
    println!("{s}");
    assert!(s.contains("package base-files 12.4+deb12u0"), "{s}");
    assert!(s.contains("/pool/main/b/base-files/base-files_12.4+deb12u0_amd64.deb: HTTP status 404"), "{s}");
    assert!(s.contains("not in the package cache") && s.contains("cargo xtask lock --update"), "{s}");
    let url = s.split_whitespace().find(|w| w.starts_with("http")).unwrap();
    assert!(url.starts_with("http://") || url.starts_with("https://"), "{s}");
    assert_eq!(entries(&out), Vec::<String>::new(), "the output directory stays empty");
    assert!(!Cache::new(&cache).path_of(&"5".repeat(64)).exists());
}

/// A flat repository standing in for an update suite: `lockprobe` 1.0-1, later 2.0-1 only.
struct Moving {
    gpg: Gpg,
    dir: tempfile::TempDir,
    base: String,
}

impl Moving {
    fn new() -> Moving {
        let gpg = Gpg::new();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        put(dir.path(), "keys/good.asc", &gpg.export(GOOD));
        let base = serve(dir.path().join("www"));
        let m = Moving { gpg, dir, base };
        m.publish("1.0-1");
        m
    }

    /// The repository lists only `version` of lockprobe (older .debs stay in the pool).
    fn publish(&self, version: &str) {
        let f = format!("pool/lockprobe_{version}_amd64.deb");
        let (bytes, control) = deb(&self.dir.path().join("work"), "lockprobe", version, "amd64", "");
        let www = self.dir.path().join("www/upd");
        put(&www, &f, &bytes);
        let packages = stanza(&bytes, &control, &f, None);
        put(&www, "Packages", packages.as_bytes());
        put(&www, "InRelease", &inrelease(&self.gpg, GOOD, &[("Packages", packages.as_bytes())]));
    }

    fn spec(&self) -> Spec {
        let text = format!(
            "[image]\nname = \"t\"\n\n[[source.repos]]\nuri = \"{}/upd/\"\npath = \"/\"\nkey = \"keys/good.asc\"\n\n[packages]\ninclude = [\"base-passwd\", \"lockprobe\"]\n",
            self.base
        );
        let path = self.dir.path().join("spec.toml");
        std::fs::write(&path, &text).unwrap();
        Spec::parse(&text, &path).unwrap()
    }

    /// The rootfs of a build with an empty package cache, as tar bytes, and its packages.
    fn build(&self, spec: &Spec, cache: &str) -> Result<(Vec<u8>, Vec<String>), image::assemble::AssembleError> {
        let a = assemble(spec, &options(&self.dir.path().join(cache)))?;
        let bytes = image::tarstream::write_tree(&a.tree, Vec::new(), true).unwrap().1;
        Ok((bytes, a.packages.iter().map(|p| format!("{}={}", p.name, p.version)).collect()))
    }
}

/// "Two builds of one commit a week apart give the same bytes": the lock is written, the
/// update suite moves to a new version, and a build with the lock (and an empty cache) still
/// takes the old one and gives the same bytes; `cargo xtask lock` reports the move, `--update`
/// takes it. Once the pool drops the old version, a build with an empty cache names it and the
/// URL, while one whose cache still has it builds as before.
#[test]
fn two_builds_a_week_apart_give_the_same_bytes() {
    let m = Moving::new();
    let spec = m.spec();
    let lock_opts = options(&m.dir.path().join("cache-lock"));
    let made = lock(&spec, None, false, &lock_opts).unwrap();
    assert!(made.written && !made.existed, "{made}");
    let lock_file = lock_path(&spec.path);
    let locked_text = std::fs::read_to_string(&lock_file).unwrap();
    let probe: Vec<&Locked> = made.lock.packages.iter().filter(|p| p.name == "lockprobe").collect();
    assert_eq!(probe.len(), 1);
    assert_eq!((probe[0].version.as_str(), probe[0].suite.contains("127.0.0.1")), ("1.0-1", true), "{probe:?}");
    assert!(made.lock.packages.iter().any(|p| p.name == "base-passwd" && p.suite == "bookworm"));

    let (day1, pkgs1) = m.build(&spec, "cache-day1").unwrap();
    assert!(pkgs1.contains(&"lockprobe=1.0-1".to_string()), "{pkgs1:?}");

    // A week later: the suite lists only 2.0-1.
    m.publish("2.0-1");
    let (day8, pkgs8) = m.build(&spec, "cache-day8").unwrap();
    assert_eq!(pkgs8, pkgs1);
    assert!(day8 == day1, "the same lock gave other bytes a week later");
    // Today's resolution does move: the lock is what kept the build still.
    let today = resolve_lock(&spec, &[Arch::X86_64], &lock_opts, &fetch::Http::default()).unwrap();
    assert_eq!(today.packages.iter().find(|p| p.name == "lockprobe").unwrap().version, "2.0-1");

    // `cargo xtask lock` without --update: the lock is kept, the move reported.
    let check = lock(&spec, None, false, &lock_opts).unwrap();
    assert!(check.existed && !check.written);
    assert_eq!(std::fs::read_to_string(&lock_file).unwrap(), locked_text);
    let text = check.to_string();
    println!("{text}");
    assert!(text.contains("kept") && text.contains("upgraded   lockprobe 1.0-1 → 2.0-1 (amd64, 127.0.0.1:"), "{text}");
    assert!(text.ends_with("0 added, 0 removed, 1 upgraded, 0 other changes; 0 from a security suite"), "{text}");

    // The pool drops 1.0-1: an empty cache cannot build the lock any more; a cache that has it can.
    let old = m.dir.path().join("www/upd/pool/lockprobe_1.0-1_amd64.deb");
    std::fs::remove_file(&old).unwrap();
    let e = m.build(&spec, "cache-day15").unwrap_err();
    assert!(matches!(e, image::assemble::AssembleError::Lock(LockError::Unavailable { .. })), "{e:?}");
    let s = e.to_string();
    assert!(s.contains("package lockprobe 1.0-1") && s.contains(&format!("{}/upd/pool/lockprobe_1.0-1_amd64.deb: HTTP status 404", m.base)), "{s}");
    assert!(m.build(&spec, "cache-day8").unwrap().0 == day1);

    // --update takes today's version.
    let updated = lock(&spec, None, true, &lock_opts).unwrap();
    assert!(updated.written, "{updated}");
    assert!(updated.to_string().contains("updated") && updated.diff.upgraded() == 1, "{updated}");
    let (_, pkgs) = m.build(&spec, "cache-day15").unwrap();
    assert!(pkgs.contains(&"lockprobe=2.0-1".to_string()), "{pkgs:?}");
}
