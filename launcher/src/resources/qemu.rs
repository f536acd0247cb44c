//! The qemu driver's machine layer: pick an accelerator (KVM when a short probe proves it works,
//! HVF on macOS, else TCG), build qemu's command line, follow the serial console through its log
//! file, and stop the guest cleanly over QMP (`system_powerdown`, then `quit` after a timeout).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("{binary} not found: install qemu-system-x86 / qemu-system-arm (Debian/Ubuntu) or qemu (macOS)")]
    NotInstalled { binary: String },
    #[error("qemu failed to start: {0}")]
    Start(String),
    #[error("timed out after {secs}s waiting for {what:?} on the console; last lines of {log}:\n{tail}")]
    ConsoleTimeout { what: String, secs: u64, log: String, tail: String },
    #[error("QMP {socket}: {message}")]
    Qmp { socket: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Hardware acceleration used for a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Hvf,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Hvf => "hvf",
            Accel::Tcg => "tcg",
        }
    }
}

pub use platform::Arch;

/// The qemu of amd64 guests (`MINIKUBE_QEMU` overrides it).
pub fn qemu_binary() -> String {
    qemu_binary_for(Arch::X86_64)
}

/// The qemu that runs `arch`'s guests: `qemu-system-x86_64` or `qemu-system-aarch64`
/// (`MINIKUBE_QEMU` overrides it).
pub fn qemu_binary_for(arch: Arch) -> String {
    std::env::var("MINIKUBE_QEMU").unwrap_or_else(|_| arch.qemu_system().into())
}

/// UEFI firmware for arm64 guests (Debian's qemu-efi-aarch64, AAVMF): the virt machine has no
/// BIOS, and the arm64 ISO boots through El Torito EFI only.
pub const AARCH64_FIRMWARE: &str = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";

/// CPU model for an accelerator: the host's CPU under hardware acceleration, else qemu's `max`.
fn cpu_model(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm | Accel::Hvf => "host",
        Accel::Tcg => "max",
    }
}

/// A 512-byte boot sector that enters 32-bit protected mode (no paging), returns to itself
/// through an `iretd`, then writes 0x31 to qemu's isa-debug-exit port (qemu then exits with
/// status (0x31 << 1) | 1 = 99) and halts. A guest that gets this far under an accelerator runs
/// what isolinux runs: on some nested KVM hosts a plain boot sector runs, but KVM cannot emulate
/// a protected-mode `iret` without paging ("KVM internal error. Suberror: 1", the guest paused
/// for good), which isolinux does before it loads the kernel.
fn probe_boot_sector() -> Vec<u8> {
    // cli; ds=0; lgdt; cr0.PE=1; ljmp 8:pm; (32-bit) ds=ss=0x10; esp=0x7000; pushfd; push 8;
    // push after; iretd; after: mov al,0x31; out 0xf4,al; hlt; jmp $; then the GDT (null, flat
    // code, flat data) and its descriptor. Assembled with `as --32` from the listing above.
    const CODE: [u8; 94] = [
        0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0x66, 0x0F, 0x01, 0x16, 0x58, 0x7C, 0x0F, 0x20, 0xC0, 0x66, 0x83, 0xC8, 0x01, 0x0F, 0x22, 0xC0, 0x66, 0xEA, 0x1D, 0x7C,
        0x00, 0x00, 0x08, 0x00, 0x66, 0xB8, 0x10, 0x00, 0x8E, 0xD8, 0x8E, 0xD0, 0xBC, 0x00, 0x70, 0x00, 0x00, 0x9C, 0x6A, 0x08, 0x68, 0x33, 0x7C, 0x00, 0x00,
        0xCF, 0xB0, 0x31, 0xE6, 0xF4, 0xF4, 0xEB, 0xFE, 0x8D, 0xB6, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00,
        0x00, 0x00, 0x9A, 0xCF, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x92, 0xCF, 0x00, 0x17, 0x00, 0x40, 0x7C, 0x00, 0x00,
    ];
    let mut s = vec![0u8; 512];
    s[..CODE.len()].copy_from_slice(&CODE);
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

/// An arm64 kernel image of four instructions for the virt machine: PSCI SYSTEM_OFF through
/// `hvc` (qemu then exits with status 0), else spin. If a guest under an accelerator gets this
/// far, the accelerator runs guest code.
fn probe_arm64_image() -> Vec<u8> {
    // movz w0, #0x0008 ; movk w0, #0x8400, lsl #16 (w0 = 0x84000008, SYSTEM_OFF) ; hvc #0 ; b .
    [0x5280_0100u32, 0x72b0_8000, 0xd400_0002, 0x1400_0000].iter().flat_map(|i| i.to_le_bytes()).collect()
}

/// Does `accel` run an amd64 guest here? See [`accel_works_for`].
pub fn accel_works(accel: Accel, timeout: Duration) -> bool {
    accel_works_for(Arch::X86_64, accel, timeout)
}

/// Does `accel` run an `arch` guest here? Boots the probe (a boot sector on amd64, a tiny
/// kernel image on arm64) with a short timeout.
pub fn accel_works_for(arch: Arch, accel: Accel, timeout: Duration) -> bool {
    let Ok(dir) = tempfile::tempdir() else { return false };
    let img = dir.path().join("probe.img");
    let (bytes, ok_status) = match arch {
        Arch::X86_64 => (probe_boot_sector(), 99),
        Arch::Aarch64 => (probe_arm64_image(), 0),
    };
    if std::fs::write(&img, bytes).is_err() {
        return false;
    }
    // Same CPU model as real guests: on this kind of host plain KVM runs a boot sector but
    // `-cpu host` aborts ("failed to set MSR 0x10a"), and real kernels hang.
    let mut cmd = Command::new(qemu_binary_for(arch));
    cmd.args(["-accel", accel.name(), "-cpu", cpu_model(accel), "-display", "none", "-nodefaults", "-no-user-config", "-m", "64"]);
    match arch {
        Arch::X86_64 => {
            cmd.arg("-drive").arg(format!("file={},format=raw,if=ide", img.display()));
            cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-boot", "c"]);
        }
        Arch::Aarch64 => {
            cmd.args(["-M", "virt", "-kernel"]).arg(&img);
        }
    }
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st.code() == Some(ok_status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Whether KVM runs the probe here, probed once per boot of this host: the verdict is kept in the
/// temp directory under the host's boot id, since a failing probe costs its whole timeout.
fn kvm_works(arch: Arch) -> bool {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let file = std::env::temp_dir().join(format!("minikube-node-kvm-probe-{}-{}", arch.debian(), boot.trim()));
    match std::fs::read_to_string(&file).as_deref().map(str::trim) {
        Ok("kvm") if !boot.is_empty() => return true,
        Ok("tcg") if !boot.is_empty() => return false,
        _ => {}
    }
    let works = accel_works_for(arch, Accel::Kvm, Duration::from_secs(5));
    if !boot.is_empty() {
        let _ = pki::atomic::write_atomic(&file, if works { b"kvm\n" } else { b"tcg\n" }, 0o644);
    }
    works
}

/// The accelerator to use for an `arch` guest: `MINIKUBE_ACCEL` if set (kvm, hvf, tcg); TCG for
/// a guest of another architecture than this machine's; else HVF on macOS, KVM when /dev/kvm
/// exists and the probe boots under it (on an arm64 host the probe is the arm64 one), else TCG.
pub fn choose_accel_for(arch: Arch) -> Accel {
    match std::env::var("MINIKUBE_ACCEL").as_deref() {
        Ok("kvm") => return Accel::Kvm,
        Ok("hvf") => return Accel::Hvf,
        Ok("tcg") => return Accel::Tcg,
        _ => {}
    }
    if Arch::host() != Some(arch) {
        tracing::info!(guest = %arch, "a guest of another architecture: TCG (software emulation)");
        return Accel::Tcg;
    }
    if cfg!(target_os = "macos") {
        return Accel::Hvf;
    }
    if Path::new("/dev/kvm").exists() && kvm_works(arch) {
        return Accel::Kvm;
    }
    tracing::info!("KVM unavailable or not working here: using TCG (software emulation)");
    Accel::Tcg
}

/// How the guest boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootMedium {
    /// The ISO as a CD (`-cdrom`, `-boot d`).
    Cdrom(PathBuf),
    /// The ISO (hybrid) as a raw disk.
    RawDisk(PathBuf),
}

/// Everything qemu needs for one guest.
#[derive(Clone, Debug)]
pub struct VmConfig {
    pub name: String,
    /// The guest's architecture: the qemu binary, machine type and devices follow it.
    pub arch: Arch,
    pub accel: Accel,
    pub memory_mb: u32,
    pub cpus: u32,
    pub boot: BootMedium,
    /// UEFI firmware (e.g. OVMF's `OVMF.fd`) instead of the default BIOS (SeaBIOS).
    pub firmware: Option<PathBuf>,
    /// The medium's kernel started by qemu (`-kernel`), the medium still attached; x86 only,
    /// without `firmware` (the bootloader's path is kept for UEFI and arm64).
    pub kernel: Option<crate::resources::kernel::DirectKernel>,
    /// Extra disks (virtio), e.g. the persistent data disk (format from the extension: qcow2/raw).
    pub disks: Vec<PathBuf>,
    /// fw_cfg blobs: (name, host file), e.g. ("opt/io.minikube/agent/ca.crt", path).
    pub fw_cfg: Vec<(String, PathBuf)>,
    /// User-mode networking forwards: (host port on 127.0.0.1, guest port).
    pub hostfwd: Vec<(u16, u16)>,
    /// A second NIC on a cluster's shared segment: (multicast `group:port`, MAC).
    pub cluster_nic: Option<(String, String)>,
    pub serial_log: PathBuf,
    pub qmp_socket: PathBuf,
    pub pidfile: PathBuf,
    /// Detach (`-daemonize`) instead of staying a child of the caller.
    pub daemonize: bool,
}

impl VmConfig {
    /// The machine, its firmware and the boot medium, per architecture.
    fn machine_args(&self, c: &mut Command) {
        match (self.arch, &self.boot) {
            // The virt machine: UEFI (AAVMF) only, and no IDE: the ISO is a SCSI CD on
            // virtio-scsi (or a virtio disk); fw_cfg, virtio-net and the PL011 UART as on x86.
            (Arch::Aarch64, boot) => {
                c.args(["-M", "virt"]);
                c.arg("-bios").arg(self.firmware.clone().unwrap_or_else(|| AARCH64_FIRMWARE.into()));
                match boot {
                    BootMedium::Cdrom(iso) => {
                        c.args(["-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-cd,drive=cd0"]);
                        c.arg("-drive").arg(format!("if=none,id=cd0,file={},format=raw,media=cdrom,readonly=on", iso.display()));
                    }
                    BootMedium::RawDisk(iso) => {
                        c.arg("-drive").arg(format!("file={},format=raw,readonly=on,if=virtio", iso.display()));
                    }
                }
            }
            (Arch::X86_64, boot) => {
                if let Some(fw) = &self.firmware {
                    c.arg("-bios").arg(fw);
                }
                match boot {
                    BootMedium::Cdrom(iso) => match self.direct_kernel() {
                        // The ISO (its root layers) is then a read-only virtio disk, after the
                        // data disks ([`VmConfig::command`]): /init finds it with the virtio
                        // driver it loads anyway, without the CD and ATA drivers and their probing.
                        Some(k) => {
                            c.arg("-kernel").arg(&k.kernel).arg("-initrd").arg(&k.initrd).arg("-append").arg(&k.cmdline);
                        }
                        None => {
                            c.arg("-drive").arg(format!("file={},media=cdrom,readonly=on,if=ide,index=2", iso.display()));
                            c.args(["-boot", "d"]);
                        }
                    },
                    BootMedium::RawDisk(iso) => {
                        // IDE disks cannot be read-only: snapshot=on keeps the ISO file unchanged instead.
                        c.arg("-drive").arg(format!("file={},format=raw,snapshot=on,if=ide,index=0", iso.display()));
                        c.args(["-boot", "c"]);
                    }
                }
            }
        }
    }

    /// The kernel qemu starts itself: x86 from the CD's ISO, without firmware of its own.
    fn direct_kernel(&self) -> Option<&crate::resources::kernel::DirectKernel> {
        match (self.arch, &self.boot) {
            (Arch::X86_64, BootMedium::Cdrom(_)) => self.kernel.as_ref().filter(|_| self.firmware.is_none()),
            _ => None,
        }
    }

    /// The qemu command line.
    pub fn command(&self) -> Command {
        let mut c = Command::new(qemu_binary_for(self.arch));
        c.args(["-name", &self.name, "-accel", self.accel.name(), "-m", &self.memory_mb.to_string()]);
        c.args(["-smp", &self.cpus.to_string(), "-nodefaults", "-no-user-config", "-display", "none"]);
        c.args(["-cpu", cpu_model(self.accel)]);
        self.machine_args(&mut c);
        for d in &self.disks {
            let fmt = if d.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" };
            c.arg("-drive").arg(format!("file={},format={fmt},if=virtio,cache=unsafe", d.display()));
        }
        if let (Some(_), BootMedium::Cdrom(iso)) = (self.direct_kernel(), &self.boot) {
            // After the data disks, so that the first of them stays /dev/vda.
            c.arg("-drive").arg(format!("file={},format=raw,if=virtio,readonly=on", iso.display()));
        }
        for (name, path) in &self.fw_cfg {
            c.arg("-fw_cfg").arg(format!("name={name},file={}", path.display()));
        }
        let mut net = String::from("user,id=net0");
        for (h, g) in &self.hostfwd {
            net.push_str(&format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"));
        }
        c.arg("-netdev").arg(net);
        c.arg("-device").arg(format!("virtio-net-pci,netdev=net0,mac={}", crate::model::USER_NIC_MAC));
        c.args(["-device", "virtio-rng-pci"]);
        if let Some((mcast, mac)) = &self.cluster_nic {
            // qemu's multicast socket: every VM of the cluster joins one group on the loopback.
            c.arg("-netdev").arg(format!("socket,id=net1,mcast={mcast},localaddr=127.0.0.1"));
            c.arg("-device").arg(format!("virtio-net-pci,netdev=net1,mac={mac}"));
        }
        c.arg("-serial").arg(format!("file:{}", self.serial_log.display()));
        c.arg("-qmp").arg(format!("unix:{},server=on,wait=off", self.qmp_socket.display()));
        c.arg("-pidfile").arg(&self.pidfile);
        if self.daemonize {
            c.arg("-daemonize");
        }
        c.stdin(Stdio::null());
        c
    }
}

/// A started guest.
#[derive(Debug)]
pub struct Vm {
    pub config: VmConfig,
    pub pid: u32,
    child: Option<std::process::Child>,
}

/// Start qemu. With `daemonize`, returns once qemu detached and wrote its pidfile.
pub fn start(config: VmConfig) -> Result<Vm, QemuError> {
    let _ = std::fs::remove_file(&config.qmp_socket);
    let _ = std::fs::remove_file(&config.pidfile);
    if let Some(d) = config.serial_log.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&config.serial_log, b"")?;
    let mut cmd = config.command();
    tracing::debug!(?cmd, "starting qemu");
    if config.daemonize {
        let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().map_err(|e| start_err(e, config.arch))?;
        if !out.status.success() {
            return Err(QemuError::Start(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        let pid = read_pidfile(&config.pidfile).ok_or_else(|| QemuError::Start("no pidfile after -daemonize".into()))?;
        Ok(Vm { config, pid, child: None })
    } else {
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|e| start_err(e, config.arch))?;
        let pid = child.id();
        let mut vm = Vm { config, pid, child: Some(child) };
        // Fail early when qemu rejects its command line.
        std::thread::sleep(Duration::from_millis(300));
        if let Some(c) = vm.child.as_mut() {
            if let Ok(Some(_)) = c.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = c.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(QemuError::Start(err.trim().to_string()));
            }
        }
        Ok(vm)
    }
}

fn start_err(e: std::io::Error, arch: Arch) -> QemuError {
    if e.kind() == std::io::ErrorKind::NotFound {
        QemuError::NotInstalled { binary: qemu_binary_for(arch) }
    } else {
        QemuError::Start(e.to_string())
    }
}

pub fn read_pidfile(p: &Path) -> Option<u32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Is a process with this pid alive (and not a zombie)?
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

impl Vm {
    pub fn alive(&mut self) -> bool {
        if let Some(c) = self.child.as_mut() {
            return matches!(c.try_wait(), Ok(None));
        }
        pid_alive(self.pid)
    }

    /// Wait until the console shows a line containing `needle`; returns that line.
    pub fn wait_for_console(&mut self, needle: &str, timeout: Duration) -> Result<String, QemuError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = find_line(&self.config.serial_log, needle) {
                return Ok(l);
            }
            if !self.alive() {
                let mut err = String::new();
                if let Some(e) = self.child.as_mut().and_then(|c| c.stderr.as_mut()) {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(QemuError::Start(format!(
                    "qemu exited before {needle:?} appeared: {}\nlast console lines:\n{}",
                    err.trim(),
                    console_tail(&self.config.serial_log, 15)
                )));
            }
            if Instant::now() >= deadline {
                return Err(QemuError::ConsoleTimeout {
                    what: needle.into(),
                    secs: timeout.as_secs(),
                    log: self.config.serial_log.display().to_string(),
                    tail: console_tail(&self.config.serial_log, 15),
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Clean ACPI power-off; `quit` (hard stop) after `timeout`. Returns true when clean.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<bool, QemuError> {
        let clean = powerdown(&self.config.qmp_socket, self.pid, timeout)?;
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        Ok(clean)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The first console line containing `needle` (console output has CR and escape codes).
pub fn find_line(log: &Path, needle: &str) -> Option<String> {
    let data = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(&data);
    text.split(['\n', '\r']).find(|l| l.contains(needle)).map(|l| {
        let start = l.find(needle).unwrap_or(0);
        l[start..].trim().to_string()
    })
}

/// Every console line containing `needle`.
pub fn find_lines(log: &Path, needle: &str) -> Vec<String> {
    let data = std::fs::read(log).unwrap_or_default();
    String::from_utf8_lossy(&data).split(['\n', '\r']).filter(|l| l.contains(needle)).map(|l| l[l.find(needle).unwrap_or(0)..].trim().to_string()).collect()
}

/// The last `n` non-empty lines of the console log.
pub fn console_tail(log: &Path, n: usize) -> String {
    let data = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&data);
    let lines: Vec<&str> = text.split(['\n', '\r']).map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A minimal QMP client: greeting, capabilities negotiation, commands.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    socket: String,
}

impl Qmp {
    pub fn connect(socket: &Path) -> Result<Qmp, QemuError> {
        let s = socket.display().to_string();
        let qerr = |m: String| QemuError::Qmp { socket: s.clone(), message: m };
        let stream = UnixStream::connect(socket).map_err(|e| qerr(e.to_string()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let writer = stream.try_clone()?;
        let mut q = Qmp { reader: BufReader::new(stream), writer, socket: s.clone() };
        let greeting = q.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(qerr(format!("unexpected greeting {greeting}")));
        }
        q.execute("qmp_capabilities")?;
        Ok(q)
    }

    fn read_message(&mut self) -> Result<serde_json::Value, QemuError> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line)?;
        if n == 0 {
            return Err(QemuError::Qmp { socket: self.socket.clone(), message: "connection closed".into() });
        }
        serde_json::from_str(&line).map_err(|e| QemuError::Qmp { socket: self.socket.clone(), message: e.to_string() })
    }

    /// Run a command without arguments; returns its `return` value (events are skipped).
    pub fn execute(&mut self, command: &str) -> Result<serde_json::Value, QemuError> {
        writeln!(self.writer, "{}", serde_json::json!({ "execute": command }))?;
        loop {
            let m = self.read_message()?;
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                return Err(QemuError::Qmp { socket: self.socket.clone(), message: format!("{command}: {e}") });
            }
        }
    }

    /// `query-status`'s `status` ("running", "paused", ...).
    pub fn status(&mut self) -> Result<String, QemuError> {
        let r = self.execute("query-status")?;
        Ok(r.get("status").and_then(|s| s.as_str()).unwrap_or("unknown").to_string())
    }
}

/// How often [`powerdown`] presses the ACPI power button again while the guest runs.
pub const POWER_BUTTON_REPEAT: Duration = Duration::from_secs(5);

/// Ask the guest to power off (ACPI, the button pressed again every [`POWER_BUTTON_REPEAT`]);
/// after `timeout`, `quit` qemu. True when the guest went down by itself.
pub fn powerdown(socket: &Path, pid: u32, timeout: Duration) -> Result<bool, QemuError> {
    if !pid_alive(pid) {
        return Ok(true);
    }
    let mut q = Qmp::connect(socket)?;
    q.execute("system_powerdown")?;
    let deadline = Instant::now() + timeout;
    let mut pressed = Instant::now();
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return Ok(true);
        }
        // A press before logind watches the button (a node still booting) is lost: press
        // again, as a person would. One during the shutdown changes nothing.
        if pressed.elapsed() >= POWER_BUTTON_REPEAT {
            let _ = q.execute("system_powerdown");
            pressed = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    tracing::warn!(pid, "guest did not power off in {timeout:?}: stopping qemu");
    let _ = q.execute("quit");
    let hard_deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) && Instant::now() < hard_deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if pid_alive(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sector_is_bootable() {
        let s = probe_boot_sector();
        assert_eq!(s.len(), 512);
        assert_eq!(&s[510..], &[0x55, 0xAA]);
    }

    #[test]
    fn tcg_runs_the_probe() {
        // The probe must succeed under plain emulation, or it would prove nothing about KVM.
        assert!(accel_works(Accel::Tcg, Duration::from_secs(20)), "qemu-system-x86_64 -accel tcg did not run the probe sector");
    }

    #[test]
    fn tcg_runs_the_arm64_probe() {
        // qemu-system-aarch64 (package qemu-system-arm): the PSCI probe powers the virt machine off.
        assert!(
            accel_works_for(Arch::Aarch64, Accel::Tcg, Duration::from_secs(20)),
            "qemu-system-aarch64 -accel tcg did not run the arm64 probe (bash scripts/setup.sh installs qemu-system-arm)"
        );
        // A foreign guest is always emulated.
        if Arch::host() == Some(Arch::X86_64) && std::env::var_os("MINIKUBE_ACCEL").is_none() {
            assert_eq!(choose_accel_for(Arch::Aarch64), Accel::Tcg);
        }
    }

    /// A guest of `arch` booting `iso` from a CD, with no disks, forwards or fw_cfg entries.
    fn sample(arch: Arch, iso: &str) -> VmConfig {
        VmConfig {
            name: "t".into(),
            arch,
            accel: Accel::Tcg,
            memory_mb: 2048,
            cpus: 2,
            boot: BootMedium::Cdrom(iso.into()),
            firmware: None,
            kernel: None,
            disks: vec![],
            fw_cfg: vec![],
            cluster_nic: None,
            hostfwd: vec![],
            serial_log: "/x/console.log".into(),
            qmp_socket: "/x/qmp.sock".into(),
            pidfile: "/x/qemu.pid".into(),
            daemonize: false,
        }
    }

    #[test]
    fn arm64_command_line_is_the_virt_machine_with_uefi_and_a_scsi_cd() {
        let cfg = sample(Arch::Aarch64, "/x/minikube-arm64.iso");
        let c = cfg.command();
        assert!(c.get_program().to_string_lossy().ends_with("aarch64") || std::env::var_os("MINIKUBE_QEMU").is_some());
        let joined = c.get_args().map(|a| a.to_string_lossy().to_string()).collect::<Vec<_>>().join(" ");
        assert!(joined.contains("-M virt") && joined.contains(&format!("-bios {AARCH64_FIRMWARE}")), "{joined}");
        assert!(joined.contains("scsi-cd,drive=cd0") && joined.contains("file=/x/minikube-arm64.iso,format=raw,media=cdrom"), "{joined}");
        assert!(!joined.contains("if=ide") && !joined.contains("-boot"), "{joined}");
    }

    #[test]
    fn command_line_has_forwards_fwcfg_and_console() {
        let cfg = VmConfig {
            disks: vec!["/x/disk.qcow2".into()],
            fw_cfg: vec![("opt/io.minikube/agent/ca.crt".into(), "/x/ca.crt".into())],
            hostfwd: vec![(40001, 7443)],
            daemonize: true,
            ..sample(Arch::X86_64, "/x/minikube.iso")
        };
        let c = cfg.command();
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().to_string()).collect();
        let joined = args.join(" ");
        assert!(joined.contains("hostfwd=tcp:127.0.0.1:40001-:7443"), "{joined}");
        assert!(joined.contains("name=opt/io.minikube/agent/ca.crt,file=/x/ca.crt"));
        assert!(joined.contains("file=/x/disk.qcow2,format=qcow2,if=virtio"));
        assert!(joined.contains("-boot d"));
        let mut disk = cfg.clone();
        disk.boot = BootMedium::RawDisk("/x/minikube.iso".into());
        let dj: Vec<String> = disk.command().get_args().map(|a| a.to_string_lossy().to_string()).collect();
        assert!(dj.join(" ").contains("file=/x/minikube.iso,format=raw,snapshot=on,if=ide"), "{dj:?}");
        assert!(joined.contains("file:/x/console.log"));
        assert!(args.contains(&"-daemonize".to_string()));
    }

    #[test]
    fn a_direct_kernel_replaces_the_bootloader_but_not_the_medium_nor_uefi() {
        let k = crate::resources::kernel::DirectKernel { kernel: "/c/k.pvh.elf".into(), initrd: "/c/i.initrd".into(), cmdline: "console=ttyS0 quiet".into() };
        let cfg = VmConfig { kernel: Some(k), disks: vec!["/m/disk.qcow2".into()], ..sample(Arch::X86_64, "/x/minikube.iso") };
        let args: Vec<String> = cfg.command().get_args().map(|a| a.to_string_lossy().to_string()).collect();
        let at = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].clone());
        assert_eq!(at("-kernel").as_deref(), Some("/c/k.pvh.elf"));
        assert_eq!(at("-initrd").as_deref(), Some("/c/i.initrd"));
        assert_eq!(at("-append").as_deref(), Some("console=ttyS0 quiet"), "the command line is one argument");
        // The ISO is a read-only virtio disk after the data disk (which stays /dev/vda), not a CD.
        let drives: Vec<&String> = args.iter().enumerate().filter(|(i, _)| *i > 0 && args[i - 1] == "-drive").map(|(_, a)| a).collect();
        assert_eq!(drives.last().map(|d| d.as_str()), Some("file=/x/minikube.iso,format=raw,if=virtio,readonly=on"), "{args:?}");
        assert!(drives.len() >= 2 && drives[0].contains("if=virtio,cache=unsafe"), "the data disk first: {drives:?}");
        assert!(!args.iter().any(|a| a.contains("media=cdrom") || a.contains("if=ide")), "{args:?}");
        assert!(!args.contains(&"-boot".to_string()), "{args:?}");
        let uefi = VmConfig { firmware: Some("/x/OVMF.fd".into()), ..cfg };
        let args: Vec<String> = uefi.command().get_args().map(|a| a.to_string_lossy().to_string()).collect();
        assert!(!args.contains(&"-kernel".to_string()) && args.contains(&"-boot".to_string()), "UEFI boots through the medium: {args:?}");
    }
}
