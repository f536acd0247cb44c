//! The `minikube-node` binary without booting anything: profiles, errors, list, delete.

use std::process::{Command, Output};

fn node(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minikube-node")).env("MINIKUBE_NODE_HOME", home).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A small real ISO (made by xorriso) holding only `/version.json` for `arch`: enough for the
/// launcher to read its architecture; qemu is not run in these tests.
fn tiny_iso(dir: &std::path::Path, arch: platform::Arch) -> std::path::PathBuf {
    let content = dir.join("iso-content");
    std::fs::create_dir_all(&content).unwrap();
    let v = platform::ImageVersion {
        image: "minikube-iso".into(),
        version: "v0".into(),
        commit: "test".into(),
        base: "Debian bookworm".into(),
        arch,
        source_date_epoch: 0,
        boot: None,
    };
    std::fs::write(content.join("version.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    let iso = dir.join(format!("tiny-{}.iso", arch.debian()));
    let o = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-iso-level", "3", "-R", "-o"])
        .arg(&iso)
        .arg(&content)
        .output()
        .expect("xorriso runs (apt-get install xorriso)");
    assert!(o.status.success(), "xorriso: {}", String::from_utf8_lossy(&o.stderr));
    iso
}

#[test]
fn missing_iso_is_a_clear_error_and_creates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let iso = d.path().join("nope.iso");
    let o = node(d.path(), &["start", "--iso", iso.to_str().unwrap(), "-p", "t1"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("nope.iso: no such file") && t.contains("cargo xtask iso"), "{t}");
    assert!(!d.path().join("machines/t1").exists(), "nothing created for a missing ISO");
    // A file that is not an ISO: an error naming it, and still nothing created.
    std::fs::write(&iso, b"not an iso").unwrap();
    let o = node(d.path(), &["start", "--iso", iso.to_str().unwrap(), "-p", "t1", "--kubelet-test-double"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("nope.iso: not an ISO 9660 image") && t.contains("/version.json"), "{t}");
    assert!(!d.path().join("machines/t1/state.json").exists(), "no state for an unreadable ISO");
    // With an ISO present but unbootable as a VM (qemu is told not to run), the machine is
    // created: certificates, disk, state, and the ISO's architecture.
    let iso = tiny_iso(d.path(), platform::Arch::X86_64);
    let o = Command::new(env!("CARGO_BIN_EXE_minikube-node"))
        .env("MINIKUBE_NODE_HOME", d.path())
        .env("MINIKUBE_QEMU", "false")
        .args(["start", "--iso", iso.to_str().unwrap(), "-p", "t1", "--disk-size", "64", "--kubelet-test-double"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("qemu failed to start"), "{}", text(&o));
    let o = node(d.path(), &["status", "-p", "t1", "-o", "json"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["host"], "Stopped");
    assert_eq!(v["nodes"][0]["arch"], "amd64", "{v}");
    let o = node(d.path(), &["list", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], "t1");
    assert_eq!(v[0]["runtime"], "containerd");
    assert_eq!(v[0]["arch"], "amd64", "the ISO's architecture");
    assert_eq!(text(&node(d.path(), &["ip", "-p", "t1"])).trim(), "10.0.2.15");
    // Started again without --iso (and from a directory with no out/minikube.iso): the ISO
    // recorded in the profile is used, and `start` says so.
    let o = Command::new(env!("CARGO_BIN_EXE_minikube-node"))
        .env("MINIKUBE_NODE_HOME", d.path())
        .env("MINIKUBE_QEMU", "false")
        .current_dir(d.path())
        .args(["start", "-p", "t1", "--kubelet-test-double"])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(t.contains(&format!("t1: the ISO recorded in the profile, {}", iso.display())) && t.contains("qemu failed to start"), "{t}");
    assert!(!t.contains("out/minikube.iso"), "{t}");
    for f in ["ca.crt", "ca.key", "proxy-client-ca.crt", "agent-ca.crt"] {
        assert!(d.path().join("certs").join(f).is_file(), "{f}");
    }
    let o = node(d.path(), &["delete", "-p", "t1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!d.path().join("machines/t1").exists());
    assert!(d.path().join("certs/ca.crt").is_file(), "shared CAs are kept for other profiles");
}

#[test]
fn unknown_profile_and_bad_names() {
    let d = tempfile::tempdir().unwrap();
    let o = node(d.path(), &["status", "-p", "ghost"]);
    assert_eq!(o.status.code(), Some(85));
    assert!(text(&o).contains("Nonexistent"));
    let o = node(d.path(), &["exec", "-p", "ghost", "--", "true"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no machine named \"ghost\""), "{}", text(&o));
    let o = node(d.path(), &["ip", "-p", "Bad_Name"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("profile name \"Bad_Name\""), "{}", text(&o));
}

#[test]
fn no_route_to_the_release_host_names_the_url_and_the_ways_out() {
    // No flags: the kubelet is downloaded by version, and this machine has no route to the
    // release host. The error names the URL and the flags that get around it; no test double.
    let d = tempfile::tempdir().unwrap();
    let iso = tiny_iso(d.path(), platform::Arch::X86_64);
    let o = Command::new(env!("CARGO_BIN_EXE_minikube-node"))
        .env("MINIKUBE_NODE_HOME", d.path())
        .env("MINIKUBE_QEMU", "false")
        .args(["start", "--iso", iso.to_str().unwrap(), "-p", "t2", "--disk-size", "64"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let t = text(&o);
    let arch = launcher::resources::binaries::go_arch();
    for want in [
        &format!("https://dl.k8s.io/release/{}/bin/linux/{arch}/kubelet", launcher::resources::kubelet::DEFAULT_VERSION) as &str,
        "--kubelet PATH",
        "--binary-mirror URL",
        "--cache-dir",
    ] {
        assert!(t.contains(want), "{want:?} missing in: {t}");
    }
    assert!(!t.contains("kubelet-test-double") && !d.path().join("machines/t2/kubelet-test-double").exists(), "never a silent test double: {t}");
}

/// `--rootless` is checked on the host before the engine is asked anything, and refused with one
/// error naming what is missing: as root (CI runs as root), and as an unprivileged user without
/// subordinate ids (run with setpriv as `nobody`). Nothing of the profile is left behind.
#[test]
fn rootless_is_checked_first_and_refused_with_what_is_missing() {
    let d = tempfile::tempdir().unwrap();
    let args = ["start", "--driver", "podman", "--rootless", "--image", "/nonexistent/kicbase.tar", "-p", "rl"];
    let o = node(d.path(), &args);
    assert!(!o.status.success());
    let t = text(&o);
    if nix::unistd::getuid().is_root() {
        assert!(t.contains("DRV_ROOTLESS_AS_ROOT") && t.contains("run it as that user"), "{t}");
        // The same as `nobody`, who has no subordinate ids here.
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let o = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_minikube-node"))
            .env("MINIKUBE_NODE_HOME", home.path())
            .args(args)
            .output()
            .expect("setpriv (util-linux) runs");
        assert!(!home.path().join("machines/rl").exists(), "nothing of the profile is made");
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains("DRV_ROOTLESS_NO_SUBUID: user nobody has no subordinate id range in /etc/subuid") && t.contains("usermod --add-subuids"), "{t}");
    } else {
        assert!(t.contains("DRV_ROOTLESS_"), "{t}");
    }
    assert!(!d.path().join("machines/rl").exists(), "nothing of the profile is made");
    let o = node(d.path(), &["start", "--rootless", "-p", "vm"]);
    assert!(!o.status.success() && text(&o).contains("--rootless is for the podman and docker drivers"), "{}", text(&o));
}
