//! The build driver's parts that run without buildroot: command lines, release checks, the
//! git fallback's error, the atomic install.

use buildroot::driver::{self, Arch, DriverError, Engine, Layout};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

fn args(inv: &driver::Invocation) -> Vec<String> {
    inv.args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
}

#[test]
fn make_runs_out_of_tree_with_kept_caches() {
    let layout = Layout::new(Path::new("/w"));
    let inv = driver::make_invocation(Path::new("/br"), &layout, Arch::Aarch64, &["minikube_rs_aarch64_defconfig"]);
    assert_eq!(inv.program, "make");
    assert_eq!(args(&inv), ["-C", "/br", "O=/w/out/buildroot/aarch64", "BR2_EXTERNAL=/w/buildroot-external", "minikube_rs_aarch64_defconfig"]);
    assert_eq!(
        inv.env,
        [("BR2_DL_DIR".to_string(), OsString::from("/w/out/buildroot/dl")), ("BR2_CCACHE_DIR".to_string(), OsString::from("/w/out/buildroot/ccache")),]
    );
    assert_eq!(layout.built_iso(Arch::X86_64), PathBuf::from("/w/out/buildroot/x86_64/images/rootfs.iso9660"));
    assert_eq!(Arch::X86_64.defconfig(), "minikube_rs_x86_64_defconfig");
    // Every defconfig the driver can ask for exists in the tree.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for arch in [Arch::X86_64, Arch::Aarch64] {
        assert!(Layout::new(repo).external().join("configs").join(arch.defconfig()).is_file(), "{arch}");
    }
}

#[test]
fn the_container_runs_the_same_make_as_the_workspace_owner() {
    let layout = Layout::new(Path::new("/w"));
    let make = driver::make_invocation(Path::new("/br"), &layout, Arch::X86_64, &[]);
    let mounts = [PathBuf::from("/w"), PathBuf::from("/br")];
    let podman = driver::container_invocation(Engine::Podman, &make, &mounts, Path::new("/w"), 1000, 100);
    assert_eq!(podman.program, "podman");
    assert_eq!(
        args(&podman),
        [
            "run",
            "--rm",
            "--user",
            "1000:100",
            "--userns=keep-id",
            "-e",
            "HOME=/tmp",
            "-e",
            "BR2_DL_DIR=/w/out/buildroot/dl",
            "-e",
            "BR2_CCACHE_DIR=/w/out/buildroot/ccache",
            "-v",
            "/w:/w",
            "-v",
            "/br:/br",
            "-w",
            "/w",
            driver::BUILDER_IMAGE,
            "make",
            "-C",
            "/br",
            "O=/w/out/buildroot/x86_64",
            "BR2_EXTERNAL=/w/buildroot-external",
        ]
    );
    let docker = driver::container_invocation(Engine::Docker, &make, &mounts, Path::new("/w"), 1000, 100);
    assert!(!args(&docker).contains(&"--userns=keep-id".to_string()));
    let build = driver::builder_image_invocation(Engine::Docker, Path::new("/w/buildroot-external"));
    assert_eq!(args(&build)[..4], ["build", "-t", driver::BUILDER_IMAGE, "-f"]);
    let file = String::from_utf8(build.stdin.unwrap()).unwrap();
    assert!(file.starts_with("FROM docker.io/library/debian:bookworm\n"));
    for p in ["build-essential", "cpio", "rsync", "bc", "file", "unzip", "wget", "python3", "git"] {
        assert!(file.split_whitespace().any(|w| w == p), "{p} missing from\n{file}");
    }
}

fn fake_tree(release: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("Makefile"), format!("all:\nexport BR2_VERSION := {release}\nX = 1\n")).unwrap();
    dir
}

#[test]
fn the_release_of_a_given_tree_is_checked() {
    let good = fake_tree(buildroot::PINNED_RELEASE);
    let layout = Layout::new(Path::new("/nonexistent"));
    assert_eq!(driver::tree_release(good.path()).unwrap(), buildroot::PINNED_RELEASE);
    assert_eq!(driver::ensure_checkout(Some(good.path()), &layout, "unused").unwrap(), good.path());

    let old = fake_tree("2024.02.9");
    let err = driver::ensure_checkout(Some(old.path()), &layout, "unused").unwrap_err();
    assert!(matches!(err, DriverError::Release { ref found, .. } if found == "2024.02.9"), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&old.path().join("Makefile").display().to_string()) && msg.contains(buildroot::PINNED_RELEASE), "{msg}");

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(driver::tree_release(empty.path()), Err(DriverError::NotBuildroot { .. })));
}

#[test]
fn without_a_checkout_or_network_the_error_says_what_to_do() {
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::new(work.path());
    // A clone source that cannot answer, like a machine without network access.
    let url = format!("file://{}/no-such-repository.git", work.path().display());
    let err = driver::ensure_checkout(None, &layout, &url).unwrap_err();
    let DriverError::NoCheckout { detail, dir, .. } = &err else { panic!("{err}") };
    assert!(!detail.is_empty());
    assert_eq!(dir, &layout.checkout());
    let msg = err.to_string();
    assert!(msg.contains("--buildroot DIR") && msg.contains(&url) && msg.contains(buildroot::PINNED_RELEASE), "{msg}");
    // Nothing half-cloned is left behind.
    let leftovers: Vec<_> = fs::read_dir(work.path().join("out/buildroot")).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_local_git_mirror_of_the_release_is_cloned_and_reused() {
    // A real git repository with the pinned tag, cloned the way the driver clones buildroot.
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("mirror");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("Makefile"), format!("export BR2_VERSION := {}\n", buildroot::PINNED_RELEASE)).unwrap();
    let git = |args: &[&str]| {
        let st = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(&src)
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "Makefile"]);
    git(&["commit", "-q", "-m", "release"]);
    git(&["tag", buildroot::PINNED_RELEASE]);
    let layout = Layout::new(&work.path().join("ws"));
    let url = format!("file://{}", src.display());
    let dir = driver::ensure_checkout(None, &layout, &url).unwrap();
    assert_eq!(dir, layout.checkout());
    assert!(dir.join(".git").is_dir());
    // Second run: reused, no network needed.
    let again = driver::ensure_checkout(None, &layout, "file:///nowhere").unwrap();
    assert_eq!(again, dir);
}

#[test]
fn the_iso_is_installed_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("rootfs.iso9660");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&src, &data).unwrap();
    let dst = dir.path().join("out/minikube.iso");
    fs::create_dir_all(dst.parent().unwrap()).unwrap();
    fs::write(&dst, b"old").unwrap();
    driver::install_atomically(&src, &dst).unwrap();
    assert_eq!(fs::read(&dst).unwrap(), data);
    let names: Vec<String> = fs::read_dir(dst.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["minikube.iso"], "no temporary file left beside the ISO");
    let err = driver::install_atomically(&dir.path().join("missing.iso"), &dst).unwrap_err();
    assert!(err.to_string().contains("missing.iso"), "{err}");
    assert_eq!(fs::read(&dst).unwrap(), data, "a failed install leaves the old ISO alone");
}

#[test]
fn arch_and_engine_names() {
    assert_eq!("arm64".parse::<Arch>().unwrap(), Arch::Aarch64);
    assert_eq!("amd64".parse::<Arch>().unwrap(), Arch::X86_64);
    assert!("riscv64".parse::<Arch>().unwrap_err().contains("riscv64"));
    assert_eq!("podman".parse::<Engine>().unwrap(), Engine::Podman);
    assert!("lxc".parse::<Engine>().is_err());
}
