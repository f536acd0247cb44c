//! The built ISO boots under real qemu, from CD and as a raw disk (hybrid MBR), reaches
//! `minikube-iso: ready` with no failed unit, and powers off cleanly over ACPI.

use launcher::qemu::{self, BootMedium, VmConfig};
use std::time::{Duration, Instant};

fn boot(medium: fn(std::path::PathBuf) -> BootMedium, label: &str) {
    let _one = e2e::GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let iso = e2e::iso_path();
    let dir = tempfile::tempdir().unwrap();
    let accel = qemu::choose_accel();
    let cfg = VmConfig {
        name: format!("e2e-{label}"),
        accel,
        memory_mb: 2048,
        cpus: 2,
        boot: medium(iso),
        disks: vec![],
        fw_cfg: vec![],
        hostfwd: vec![],
        serial_log: dir.path().join("console.log"),
        qmp_socket: dir.path().join("qmp.sock"),
        pidfile: dir.path().join("qemu.pid"),
        daemonize: false,
    };
    let t = Instant::now();
    let mut vm = qemu::start(cfg).expect("qemu starts");
    let ready = vm.wait_for_console("minikube-iso: ready", Duration::from_secs(420)).unwrap();
    let boot_time = t.elapsed();
    let log = vm.config.serial_log.clone();
    let failed = qemu::find_lines(&log, "minikube-iso: failed unit");
    let detail = qemu::find_lines(&log, "minikube-iso:   ");
    eprintln!("[{label}] {ready} after {boot_time:.1?} wall ({})", accel.name());
    assert!(failed.is_empty(), "[{label}] failed units: {failed:?}\n{}", detail.join("\n"));
    assert!(ready.contains("system running"), "[{label}] {ready}");
    // Without trust material the agent must refuse to serve, and say so on the console.
    assert!(
        qemu::find_line(&log, "minikube-agent").is_some(),
        "[{label}] the agent said nothing on the console:\n{}",
        qemu::console_tail(&log, 30)
    );
    let clean = vm.shutdown(Duration::from_secs(120)).unwrap();
    assert!(clean, "[{label}] the guest did not power off on the ACPI button:\n{}", qemu::console_tail(&log, 20));
}

#[test]
fn boots_from_cdrom_to_ready_and_powers_off() {
    boot(BootMedium::Cdrom, "cdrom");
}

#[test]
fn boots_as_raw_disk_to_ready_and_powers_off() {
    boot(BootMedium::RawDisk, "disk");
}
