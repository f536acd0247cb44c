//! The `minikube-node` binary without booting anything: profiles, errors, list, delete.

use std::process::{Command, Output};

fn node(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minikube-node")).env("MINIKUBE_NODE_HOME", home).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
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
    // With an ISO file present but unbootable as a VM (qemu is told not to run), the machine
    // is created: certificates, disk, state.
    std::fs::write(&iso, b"not an iso").unwrap();
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
    let o = node(d.path(), &["list", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], "t1");
    assert_eq!(v[0]["runtime"], "containerd");
    assert_eq!(text(&node(d.path(), &["ip", "-p", "t1"])).trim(), "10.0.2.15");
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
    let iso = d.path().join("x.iso");
    std::fs::write(&iso, b"not an iso").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_minikube-node"))
        .env("MINIKUBE_NODE_HOME", d.path())
        .env("MINIKUBE_QEMU", "false")
        .args(["start", "--iso", iso.to_str().unwrap(), "-p", "t2", "--disk-size", "64"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let t = text(&o);
    let arch = launcher::binaries::go_arch();
    for want in [&format!("https://dl.k8s.io/release/v1.34.1/bin/linux/{arch}/kubelet") as &str, "--kubelet PATH", "--binary-mirror URL", "--cache-dir"] {
        assert!(t.contains(want), "{want:?} missing in: {t}");
    }
    assert!(!t.contains("kubelet-test-double") && !d.path().join("machines/t2/kubelet-test-double").exists(), "never a silent test double: {t}");
}
