//! The arm64 node end to end, in one boot (about 75 s under TCG on this amd64 host): the
//! launcher reads the ISO's architecture, starts it with qemu-system-aarch64 (`-M virt`, AAVMF,
//! fw_cfg trust as on x86); the guest reaches `minikube-iso: ready` with no failed unit, from its
//! squashfs root; the node document applied at boot provisioned containerd; an arm64 image built
//! by `image::oci` around a cross-compiled static binary is imported and run with ctr; the node
//! powers off cleanly on the ACPI button, and is deleted.
//!
//! Needs qemu-system-aarch64, qemu-efi-aarch64, the aarch64 cross toolchain and rustup target, and
//! the arm64 ISO (`cargo xtask iso --arch arm64`, or `MINIKUBE_ISO_ARM64`).

use std::time::Duration;

use agent_api::api::Runtime;
use launcher::driver;
use launcher::driver::qemu::machine;
use launcher::model::Status;
use launcher::options::StartOptions;
use launcher::resources::qemu;
use launcher::resources::state::Home;
use minikube_init::{FAILED_MARKER, ROOT_READY_MARKER};
use platform::Arch;

mod common;
use common::{exec, start, GREETING, IMAGE_NAME, IMAGE_TAG};

const PROFILE: &str = "e2e-arm64";

#[test]
fn arm64_node_boots_provisions_containerd_runs_an_arm64_image_and_powers_off() {
    let _guest = e2e::GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let iso = e2e::arm64_iso();
    let tmp = tempfile::tempdir().unwrap();
    let archive = common::hello_archive(tmp.path(), Arch::Aarch64);
    let home = Home::at(tmp.path().join("home"));
    let _cleanup = common::Cleanup(&home, PROFILE);
    let m = home.machine(PROFILE).unwrap();
    assert_eq!(machine::iso_arch(&iso).unwrap(), Arch::Aarch64, "the ISO's /version.json names arm64");

    let mut opts = StartOptions::new(PROFILE, iso);
    opts.kubelet_test_double = true;
    opts.memory_mb = 2048;
    opts.disk_mb = 4096;
    opts.runtime = Runtime::Containerd;
    opts.agent_timeout = Duration::from_secs(900);
    let events = start(&home, &opts);
    let state = m.load().unwrap();
    assert_eq!(state.arch, Arch::Aarch64, "state.json records the node's architecture");
    let boot = events.iter().find(|e| e.step == "boot").expect("a boot step");
    eprintln!("boot: {}", boot.detail);
    let document = events.iter().find(|e| e.step == "document").expect("a document step");
    assert!(document.detail.contains("node document applied at boot"), "{document:?}");
    let total: f64 = events.iter().map(|e| e.seconds).sum();
    eprintln!("FIGURE arm64 (TCG) start -> provisioned {total:.1} s");

    // The guest: arm64, from the squashfs root, every unit up.
    let log = m.console_log();
    // The agent answers before systemd has finished starting everything: wait for the marker.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let ready = loop {
        if let Some(line) = qemu::find_line(&log, "minikube-iso: ready") {
            break line;
        }
        assert!(std::time::Instant::now() < deadline, "no ready marker:\n{}", qemu::console_tail(&log, 40));
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(ready.contains("system running"), "{ready}");
    let failed = qemu::find_lines(&log, "minikube-iso: failed unit");
    assert!(failed.is_empty(), "failed units: {failed:?}\n{}", qemu::find_lines(&log, "minikube-iso:   ").join("\n"));
    assert!(qemu::find_line(&log, ROOT_READY_MARKER).is_some(), "no {ROOT_READY_MARKER:?}:\n{}", qemu::console_tail(&log, 40));
    assert!(qemu::find_line(&log, FAILED_MARKER).is_none(), "{:?}", qemu::find_line(&log, FAILED_MARKER));
    let mut c = driver::agent::connect_existing(&home, &m).unwrap();
    assert_eq!(exec(&mut c, &["uname", "-m"]).trim(), "aarch64");
    assert_eq!(exec(&mut c, &["hostname"]).trim(), PROFILE);
    assert_eq!(exec(&mut c, &["findmnt", "-n", "-o", "FSTYPE", "/"]).trim(), "overlay");
    assert_eq!(exec(&mut c, &["systemctl", "is-active", "containerd"]).trim(), "active");
    assert!(exec(&mut c, &["cat", "/var/lib/minikube/certs/apiserver.crt"]).contains("BEGIN CERTIFICATE"));

    // An arm64 image built by image::oci, imported into containerd and run.
    let bytes = std::fs::read(&archive).unwrap();
    c.upload_bytes("/var/lib/minikube/images/e2e-hello.tar", &bytes, 0o644, None).unwrap();
    exec(&mut c, &["ctr", "-n", "k8s.io", "images", "import", "/var/lib/minikube/images/e2e-hello.tar"]);
    let reference = format!("{IMAGE_NAME}:{IMAGE_TAG}");
    let out = exec(&mut c, &["ctr", "-n", "k8s.io", "run", "--rm", &reference, "e2e-hello-arm64", "/hello"]);
    assert_eq!(out.trim(), GREETING);
    drop(c);

    // A clean power-off on the ACPI button, then delete.
    let clean = machine::stop(&m, Duration::from_secs(120)).unwrap();
    assert_eq!(clean, Some(true), "the guest did not power off on the ACPI button:\n{}", qemu::console_tail(&log, 20));
    assert_eq!(machine::status(&m), Status::Stopped);
    machine::delete(&m, Duration::from_secs(5)).unwrap();
    assert_eq!(machine::status(&m), Status::Nonexistent);
}
