//! The built ISO boots under real qemu from CD, as a raw disk (hybrid MBR) and through UEFI
//! (OVMF), mounts its squashfs root, reaches `minikube-iso: ready` with no failed unit, and powers
//! off cleanly over ACPI. A corrupted root image fails closed: a bad hash tree stops `/init` at
//! its checksum line, a bad data block is an I/O error when first read, never a kernel panic.
//! (The arm64 ISO's boot is checked in `launcher_arm64.rs`, in the same boot that provisions it.)

use launcher::resources::qemu::{self, BootMedium, VmConfig};
use minikube_init::{FAILED_MARKER, ROOT_READY_MARKER};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

fn config(dir: &Path, label: &str, boot: BootMedium, firmware: Option<PathBuf>) -> VmConfig {
    VmConfig {
        name: format!("e2e-{label}"),
        arch: qemu::Arch::X86_64,
        accel: qemu::choose_accel_for(qemu::Arch::X86_64),
        memory_mb: 2048,
        cpus: 2,
        boot,
        firmware,
        kernel: None,
        disks: vec![],
        fw_cfg: vec![],
        hostfwd: vec![],
        cluster_nic: None,
        serial_log: dir.join("console.log"),
        qmp_socket: dir.join("qmp.sock"),
        pidfile: dir.join("qemu.pid"),
        daemonize: false,
    }
}

fn boot(medium: fn(PathBuf) -> BootMedium, label: &str, firmware: Option<PathBuf>) {
    let _one = e2e::GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let iso = e2e::iso_with(firmware.iter().map(|f| e2e::Need::file("the UEFI firmware (package ovmf)", f)).collect());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), label, medium(iso), firmware);
    let accel = cfg.accel;
    let t = Instant::now();
    let mut vm = qemu::start(cfg).expect("qemu starts");
    let ready = vm.wait_for_console("minikube-iso: ready", Duration::from_secs(600)).unwrap();
    let boot_time = t.elapsed();
    let log = vm.config.serial_log.clone();
    let failed = qemu::find_lines(&log, "minikube-iso: failed unit");
    let detail = qemu::find_lines(&log, "minikube-iso:   ");
    eprintln!("[{label}] {ready} after {boot_time:.1?} wall ({})", accel.name());
    assert!(failed.is_empty(), "[{label}] failed units: {failed:?}\n{}", detail.join("\n"));
    assert!(ready.contains("system running"), "[{label}] {ready}");
    // The root came from the squashfs layers, through the small initramfs.
    let root = qemu::find_line(&log, ROOT_READY_MARKER);
    assert!(root.is_some(), "[{label}] no {ROOT_READY_MARKER:?} on the console:\n{}", qemu::console_tail(&log, 40));
    assert!(qemu::find_line(&log, FAILED_MARKER).is_none(), "[{label}] {:?}", qemu::find_line(&log, FAILED_MARKER));
    // Without trust material the agent must refuse to serve, and say so on the console: its
    // not-serving line naming the missing trust, never its ready line (any other agent line,
    // such as the boot step's, proves nothing about serving).
    let not_serving = qemu::find_line(&log, agent_api::NOT_SERVING_MARKER);
    assert!(
        not_serving.as_deref().is_some_and(|l| l.contains("no TLS trust material")),
        "[{label}] no {:?} line naming the missing trust on the console ({not_serving:?}):\n{}",
        agent_api::NOT_SERVING_MARKER,
        qemu::console_tail(&log, 30)
    );
    let ready_agent = qemu::find_line(&log, agent_api::READY_MARKER);
    assert!(ready_agent.is_none(), "[{label}] the agent serves without trust material: {ready_agent:?}");
    let clean = vm.shutdown(Duration::from_secs(120)).unwrap();
    assert!(clean, "[{label}] the guest did not power off on the ACPI button:\n{}", qemu::console_tail(&log, 20));
}

#[test]
fn boots_from_cdrom_to_ready_and_powers_off() {
    boot(BootMedium::Cdrom, "cdrom", None);
}

#[test]
fn boots_as_raw_disk_to_ready_and_powers_off() {
    boot(BootMedium::RawDisk, "disk", None);
}

#[test]
fn boots_through_uefi_to_ready_and_powers_off() {
    boot(BootMedium::Cdrom, "uefi", Some(OVMF.into()));
}

/// Start LBA and size of a file in the ISO, as xorriso reports them.
fn extent(iso: &Path, path: &str) -> (u64, u64) {
    let out = std::process::Command::new("xorriso").arg("-indev").arg(iso).args(["-find", path, "-exec", "report_lba"]).output().expect("xorriso is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("File data lba:")).unwrap_or_else(|| panic!("{path} not in the ISO:\n{text}"));
    let f: Vec<&str> = line.trim_start_matches("File data lba:").split(',').map(str::trim).collect();
    (f[1].parse().unwrap(), f[3].parse().unwrap())
}

/// A copy of the ISO with one bit flipped in `/boot/root.sqfs`, at the offset `at` picks from the
/// image's data length (its squashfs superblock's `bytes_used`, padded to 4 KiB; the dm-verity
/// tree follows), booted until `/init`'s failure line; returns that line and the console log.
fn boot_flipped(label: &str, at: fn(u64) -> u64) -> (String, PathBuf, tempfile::TempDir) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("corrupt.iso");
    std::fs::copy(e2e::iso_with(vec![e2e::Need::program("xorriso")]), &iso).unwrap();
    let (lba, _) = extent(&iso, "/boot/root.sqfs");
    let start = lba * 2048;
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&iso).unwrap();
    let mut used = [0u8; 8];
    f.seek(SeekFrom::Start(start + 40)).unwrap();
    f.read_exact(&mut used).unwrap();
    let data_bytes = u64::from_le_bytes(used).div_ceil(4096) * 4096;
    let pos = start + at(data_bytes);
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.write_all(&[b[0] ^ 0x01]).unwrap();
    drop(f);
    let mut vm = qemu::start(config(dir.path(), label, BootMedium::Cdrom(iso), None)).expect("qemu starts");
    let line = vm.wait_for_console(FAILED_MARKER, Duration::from_secs(300)).unwrap();
    let log = vm.config.serial_log.clone();
    // Then the emergency shell, never a panic, and never the root.
    vm.wait_for_console("emergency shell", Duration::from_secs(30)).unwrap();
    assert!(qemu::find_line(&log, "Kernel panic").is_none(), "{}", qemu::console_tail(&log, 20));
    assert!(qemu::find_line(&log, ROOT_READY_MARKER).is_none());
    (line, log, dir)
}

/// The top block of the hash tree no longer hashes to the plan's root hash: `/init` stops at its
/// checksum line before anything is mounted.
#[test]
fn a_corrupt_hash_tree_stops_at_the_checksum_line() {
    let _one = e2e::GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (line, _, _dir) = boot_flipped("corrupt-tree", |data_bytes| data_bytes + 100);
    assert!(line.contains("checksum mismatch") && line.contains("boot/root.sqfs") && line.contains("root hash"), "{line}");
}

/// A data block read at boot (the squashfs superblock, read by the mount) fails its dm-verity
/// check on that first read: an I/O error for the mount and the kernel's verity line, never the
/// corrupt bytes.
#[test]
fn a_corrupt_data_block_fails_closed_when_first_read() {
    let _one = e2e::GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (line, log, _dir) = boot_flipped("corrupt-data", |_| 8);
    assert!(line.contains("boot/root.sqfs") && line.contains("through dm-verity) is not a readable squashfs"), "{line}");
    let verity = qemu::find_line(&log, "verity");
    assert!(verity.as_deref().is_some_and(|l| l.contains("corrupted")), "no kernel verity line ({verity:?}):\n{}", qemu::console_tail(&log, 30));
}
