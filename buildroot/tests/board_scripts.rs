//! The board's post-build.sh run for real (bash, the host's systemctl) on a small target tree.

mod common;

use common::{copy_dir, repo};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn write_unit(target: &Path, name: &str) {
    let p = target.join("usr/lib/systemd/system").join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, "[Unit]\nDescription=test\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n").unwrap();
}

#[test]
fn post_build_installs_init_sudoers_and_enables_units() {
    let external = repo().join("buildroot-external");
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("target");
    let host_bin = work.path().join("host/bin");
    fs::create_dir_all(&host_bin).unwrap();
    // HOST_DIR/bin/systemctl: buildroot builds host-systemd; the host's systemctl does the same job.
    std::os::unix::fs::symlink("/usr/bin/systemctl", host_bin.join("systemctl")).unwrap();

    // What the overlays bring (copied as buildroot would), plus stand-ins for the units that the
    // buildroot packages (containerd, docker-engine, openssh) install, which cannot be built here.
    for overlay in ["overlay", "iso/overlay"] {
        copy_dir(&repo().join(overlay), &target);
    }
    let list = fs::read_to_string(external.join("board/minikube-rs/systemd-enable.txt")).unwrap();
    let units: Vec<&str> = list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for unit in &units {
        if !target.join("usr/lib/systemd/system").join(unit).exists() {
            write_unit(&target, unit);
        }
    }
    fs::create_dir_all(target.join("etc")).unwrap();

    let out = Command::new("bash")
        .arg(external.join("board/minikube-rs/post-build.sh"))
        .arg(&target)
        .env("BR2_EXTERNAL_MINIKUBE_RS_PATH", &external)
        .env("HOST_DIR", work.path().join("host"))
        .output()
        .unwrap();
    assert!(out.status.success(), "post-build.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let init = target.join("init");
    assert_eq!(fs::read(&init).unwrap(), fs::read(repo().join("iso/init.sh")).unwrap());
    assert_eq!(fs::metadata(&init).unwrap().permissions().mode() & 0o777, 0o755);
    let sudoers = target.join("etc/sudoers.d/wheel");
    assert_eq!(fs::read_to_string(&sudoers).unwrap(), "%wheel ALL=(ALL:ALL) NOPASSWD: ALL\n");
    assert_eq!(fs::metadata(&sudoers).unwrap().permissions().mode() & 0o777, 0o440);
    for unit in &units {
        let link = target.join("etc/systemd/system/multi-user.target.wants").join(unit);
        assert!(link.symlink_metadata().is_ok(), "{unit} not enabled ({})", link.display());
    }
}

#[test]
fn post_build_fails_loudly_without_the_init_script() {
    let work = tempfile::tempdir().unwrap();
    // A tree whose workspace has no iso/init.sh.
    let external = work.path().join("ws/buildroot-external");
    fs::create_dir_all(external.join("board/minikube-rs")).unwrap();
    fs::copy(repo().join("buildroot-external/board/minikube-rs/post-build.sh"), external.join("board/minikube-rs/post-build.sh")).unwrap();
    let out = Command::new("bash")
        .arg(external.join("board/minikube-rs/post-build.sh"))
        .arg(work.path().join("target"))
        .env("BR2_EXTERNAL_MINIKUBE_RS_PATH", &external)
        .env("HOST_DIR", work.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("iso/init.sh is missing"), "{err}");
}
