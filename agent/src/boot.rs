//! `minikube-agent boot`: the persistent data disk (minikube's scheme), bind mounts onto it, the
//! userdata tar, kernel modules for the runtimes, SSH host keys.
//!
//! Disk detection reads `/sys/block` and the device nodes under the root, so it runs against a
//! temporary directory of fake entries in tests; every tool (sfdisk, mkfs.ext4, mount, modprobe,
//! ssh-keygen) goes through [`Host`].

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::host::{run_ok, Host, HostError};
use crate::ops::ensure;
use crate::paths::GuestRoot;
use crate::userdata::{self, MAGIC};

/// The label of the data partition.
pub const DATA_LABEL: &str = userdata::DATA_LABEL;
/// Directories kept on the data disk (bind-mounted from /mnt/PART/...). `/etc/kubernetes`
/// (kubeadm's kubeconfigs and static pod manifests) is among them, so that a restart brings the
/// control plane back without `kubeadm init` on a root that is a fresh tmpfs at each boot.
pub const PERSISTENT_DIRS: &[&str] = &[
    "/etc/kubernetes",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/minikube",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/lib/boot2docker",
    "/var/lib/buildkit",
    "/var/lib/containers",
    "/var/lib/minikube-agent",
    "/var/tmp",
    "/data",
    "/tmp/hostpath_pv",
    "/tmp/hostpath-provisioner",
];
/// The userdata tar kept on the data disk (guest path, after the bind mounts).
pub const USERDATA_TAR: &str = "/var/lib/boot2docker/userdata.tar";
/// A data filesystem made on the host (the launcher's `mke2fs -d`) carries its userdata tar,
/// still to be applied, at its top under this name: the first boot takes it as a formatting
/// boot takes the tar after the magic (blobs imported, the rest kept), then removes it.
pub const FRESH_USERDATA: &str = userdata::FRESH_FILE;
/// Kernel modules loaded before the runtimes start, because nothing loads them on first use:
/// br_netfilter (the `net.bridge.*` sysctls the runtime step sets exist only with it), overlay
/// (the runtimes' snapshots) and nf_conntrack (kube-proxy sets its table size at start, before
/// any rule of its own would load it). Everything else the runtimes and Kubernetes use (bridge,
/// veth, nf_tables and iptables' tables, matches and targets) the kernel loads itself when it is
/// first used (`request_module` through kmod's modprobe); the ISO loads no list at boot. Missing ones (built into the kernel, or absent) are
/// reported, not fatal.
pub const RUNTIME_MODULES: &[&str] = &["overlay", "br_netfilter", "nf_conntrack"];
/// uid/gid of the `docker` user.
pub const DOCKER_UID: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Userdata(#[from] userdata::TarError),
    #[error("{0}")]
    Blob(String),
    #[error("{0} did not appear after partitioning")]
    NoPartition(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BootError + '_ {
    move |source| BootError::Io { path: path.display().to_string(), source }
}

/// A whole disk under /sys/block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub sectors: u64,
    pub removable: bool,
    pub read_only: bool,
    /// Partition names (`vda1`, `nvme0n1p1`...), sorted.
    pub partitions: Vec<String>,
}

fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Disks listed in `/sys/block` (loop, ram, zram, optical, floppy and device-mapper skipped),
/// sorted by name.
pub fn scan_disks(root: &GuestRoot) -> io::Result<Vec<Disk>> {
    let sys_block = root.host("/sys/block");
    let mut disks = Vec::new();
    for entry in std::fs::read_dir(&sys_block)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd"].iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let dir = entry.path();
        let mut partitions: Vec<String> = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter(|e| e.path().join("partition").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        partitions.sort();
        disks.push(Disk {
            sectors: read_number(&dir.join("size")),
            removable: read_number(&dir.join("removable")) == 1,
            read_only: read_number(&dir.join("ro")) == 1,
            partitions,
            name,
        });
    }
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(disks)
}

pub use crate::userdata::ext4_label;

fn read_head(device: &Path, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    File::open(device)?.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The device name of partition `n` of `disk` (`vda` → `vda1`, `nvme0n1` → `nvme0n1p1`).
pub fn partition_name(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

/// What to do with the disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskPlan {
    /// A partition labelled `boot2docker-data` exists: mount it.
    Use { partition: String },
    /// A disk asks to be formatted: it starts with the magic; `userdata` is its tar.
    FormatMagic { disk: String, userdata: Vec<u8> },
    /// No data disk yet: format the first empty disk.
    FormatEmpty { disk: String },
    /// Nothing usable: run from memory.
    None,
}

impl std::fmt::Display for DiskPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskPlan::Use { partition } => write!(f, "data disk /dev/{partition}"),
            DiskPlan::FormatMagic { disk, userdata } => write!(f, "formatted /dev/{disk} (userdata {} KiB)", userdata.len().div_ceil(1024)),
            DiskPlan::FormatEmpty { disk } => write!(f, "formatted empty /dev/{disk}"),
            DiskPlan::None => write!(f, "no data disk"),
        }
    }
}

/// Decide from `/sys/block` and the device contents under the root.
pub fn plan(root: &GuestRoot) -> io::Result<DiskPlan> {
    let disks = scan_disks(root)?;
    let dev = |name: &str| root.host(&format!("/dev/{name}"));
    for d in &disks {
        for p in d.partitions.iter().chain(std::iter::once(&d.name)) {
            if ext4_label(&dev(p)).as_deref() == Some(DATA_LABEL) {
                return Ok(DiskPlan::Use { partition: p.clone() });
            }
        }
    }
    let candidates = disks.iter().filter(|d| d.partitions.is_empty() && !d.read_only && !d.removable && d.sectors > 0);
    let mut empty = None;
    for d in candidates {
        let Ok(head) = read_head(&dev(&d.name), userdata::HEAD) else { continue };
        if head.starts_with(MAGIC.as_bytes()) {
            let whole = File::open(dev(&d.name)).and_then(|mut f| {
                let len = userdata::archive_len_in(&mut f).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                read_head(&dev(&d.name), len)
            });
            let userdata = match whole {
                Ok(tar) => tar,
                Err(e) => {
                    // Format anyway (the launcher's trust also arrives by fw_cfg), and say why.
                    tracing::warn!("/dev/{}: the userdata tar cannot be read whole: {e}", d.name);
                    head[..head.len().min(4096)].to_vec()
                }
            };
            return Ok(DiskPlan::FormatMagic { disk: d.name.clone(), userdata });
        }
        if empty.is_none() && head.iter().all(|b| *b == 0) {
            empty = Some(d.name.clone());
        }
    }
    Ok(empty.map_or(DiskPlan::None, |disk| DiskPlan::FormatEmpty { disk }))
}

/// Whether `guest` (mapped under the root) is a mount point, per /proc/self/mountinfo.
pub fn is_mounted(root: &GuestRoot, guest: &str) -> bool {
    let target = root.host(guest);
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| Path::new(&m.replace("\\040", " ")) == target))
}

fn wait_for_node(path: &Path, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    path.exists()
}

/// Partition `disk` (one GPT partition over the whole disk) and format it; returns the partition.
pub fn format(root: &GuestRoot, host: &dyn Host, disk: &str) -> Result<String, BootError> {
    let disk_dev = root.host(&format!("/dev/{disk}"));
    let disk_arg = disk_dev.to_string_lossy().into_owned();
    tracing::info!("partitioning {disk_arg}");
    run_ok(host, &["sfdisk", "--wipe", "always", &disk_arg], Some(b"label: gpt\n,,L\n"), Duration::from_secs(60))?;
    let _ = host.run(&["udevadm", "settle"], None, Duration::from_secs(30));
    let part = partition_name(disk, 1);
    let part_dev = root.host(&format!("/dev/{part}"));
    if !wait_for_node(&part_dev, Duration::from_secs(10)) {
        return Err(BootError::NoPartition(part_dev.display().to_string()));
    }
    let part_arg = part_dev.to_string_lossy().into_owned();
    run_ok(host, &["mkfs.ext4", "-F", "-i", "2048", "-L", DATA_LABEL, &part_arg], None, Duration::from_secs(600))?;
    Ok(part)
}

/// Mount the data partition on /mnt/PART and bind-mount the persistent directories onto it.
pub fn mount_data(root: &GuestRoot, host: &dyn Host, partition: &str) -> Result<(), BootError> {
    let mnt_guest = format!("/mnt/{partition}");
    let mnt = root.host(&mnt_guest);
    ensure::dir(&mnt).map_err(io_err(&mnt))?;
    if !is_mounted(root, &mnt_guest) {
        host.mount_fs(&root.host(&format!("/dev/{partition}")), &mnt, "ext4")?;
    }
    for dir in PERSISTENT_DIRS {
        let persistent = root.host(&format!("{mnt_guest}{dir}"));
        let target = root.host(dir);
        ensure::dir(&persistent).map_err(io_err(&persistent))?;
        ensure::dir(&target).map_err(io_err(&target))?;
        if !is_mounted(root, dir) {
            host.bind_mount(&persistent, &target)?;
        }
    }
    Ok(())
}

/// Install what the userdata tar carries: `.ssh/authorized_keys` for the docker user, and the
/// agent's trust files. Returns the number of files that changed.
pub fn apply_userdata(root: &GuestRoot, tar: &[u8]) -> Result<usize, BootError> {
    let mut changed = 0;
    // The owner the node document's file section gives the same file.
    let owner = Some(crate::accounts::resolve_owner(root.dir(), userdata::AUTHORIZED_KEYS_OWNER).unwrap_or_else(|e| {
        tracing::warn!("{}: {e}; authorized_keys owned by {DOCKER_UID}:{DOCKER_UID}", userdata::AUTHORIZED_KEYS_OWNER);
        (DOCKER_UID, DOCKER_UID)
    }));
    for entry in userdata::parse(tar)? {
        let Some(data) = entry.data else { continue };
        if entry.path == ".ssh/authorized_keys" {
            let ssh = root.host("/home/docker/.ssh");
            ensure::dir(&ssh).map_err(io_err(&ssh))?;
            let meta = std::fs::metadata(&ssh).map_err(io_err(&ssh))?;
            ensure::attributes(&ssh, &meta, 0o700, owner).map_err(io_err(&ssh))?;
            let keys = ssh.join("authorized_keys");
            changed += usize::from(ensure::file(&keys, &data, 0o600, owner).map_err(io_err(&keys))?);
        } else if let Some(name) = entry.path.strip_prefix("minikube-agent/") {
            if [crate::trust::CA_FILE, crate::trust::CERT_FILE, crate::trust::KEY_FILE].contains(&name) {
                let mode = if name == crate::trust::KEY_FILE { 0o600 } else { 0o644 };
                let path = root.host(&format!("{}/{name}", crate::trust::STATE_TRUST_DIR));
                changed += usize::from(ensure::file(&path, &data, mode, None).map_err(io_err(&path))?);
            }
        }
    }
    Ok(changed)
}

/// Move the binaries a fresh userdata tar carries into the store by SHA-256 (each verified);
/// returns the tar without them, which is what the data disk keeps.
pub fn import_blobs(root: &GuestRoot, tar: &[u8]) -> Result<Vec<u8>, BootError> {
    let entries = userdata::parse(tar)?;
    if !entries.iter().any(|e| e.path.starts_with(userdata::BLOB_PREFIX)) {
        return Ok(tar.to_vec());
    }
    let mut kept = Vec::new();
    for e in entries {
        match (e.path.strip_prefix(userdata::BLOB_PREFIX), &e.data) {
            (Some(sha), Some(data)) => {
                let sha = crate::ops::files::check_sha256("blob", sha).map_err(|err| BootError::Blob(format!("{}: {}", e.path, err.message)))?;
                let blob = crate::ops::blobs::path(root, &sha);
                if !blob.is_file() {
                    crate::ops::files::receive(&blob, &sha, 0o755, Some((0, 0)), &mut &data[..], data.len() as u64)
                        .map_err(|err| BootError::Blob(format!("userdata {}: {}", e.path, err.message)))?;
                }
            }
            (Some(_), None) => {}
            (None, _) if e.path == MAGIC => {}
            (None, _) => kept.push(e),
        }
    }
    Ok(userdata::build(&kept))
}

/// The node document in the kept userdata tar, if it has one.
pub fn userdata_document(root: &GuestRoot) -> Option<crate::ops::apply::Delivered> {
    let tar = std::fs::read(root.host(USERDATA_TAR)).ok()?;
    let name = format!("minikube-agent/{}", crate::document::FILE_NAME);
    let source = "userdata tar".to_string();
    match userdata::parse(&tar) {
        Err(e) => Some((source, Err(crate::document::DocumentError::NotJson { source_name: USERDATA_TAR.into(), message: e.to_string() }))),
        Ok(entries) => entries
            .into_iter()
            .find(|e| e.path == name)
            .and_then(|e| e.data)
            .map(|d| (source.clone(), crate::document::parse(&d, &format!("{USERDATA_TAR}:{name}")))),
    }
}

/// Load the modules with one `modprobe -a` (one process instead of one per module: about 30
/// fork/execs less at every boot); only when it fails, each module alone, to name those that
/// failed (missing from the kernel), for the log.
pub fn load_modules(host: &dyn Host, modules: &[&str]) -> Vec<String> {
    let mut all = vec!["modprobe", "-a"];
    all.extend(modules);
    if run_ok(host, &all, None, Duration::from_secs(60)).is_ok() {
        return Vec::new();
    }
    modules.iter().filter(|m| run_ok(host, &["modprobe", m], None, Duration::from_secs(30)).is_err()).map(|m| m.to_string()).collect()
}

/// The SSH host keys made at first boot: (type, file in /etc/ssh).
pub const HOST_KEYS: [(&str, &str); 2] = [("ed25519", "ssh_host_ed25519_key"), ("ecdsa", "ssh_host_ecdsa_key")];

/// Where the SSH host keys are kept (on the data disk): a node keeps its identity across
/// restarts, as minikube's do, instead of new keys on every boot's fresh root.
pub const HOST_KEYS_DIR: &str = "/var/lib/minikube-agent/ssh";

/// The SSH host keys in /etc/ssh: the kept ones when the data disk has them, else generated
/// (never shipped in the image) and kept. Whether any was generated.
pub fn ssh_host_keys(root: &GuestRoot, host: &dyn Host) -> Result<bool, BootError> {
    let ssh = root.host("/etc/ssh");
    if !ssh.is_dir() {
        return Ok(false);
    }
    let kept = root.host(HOST_KEYS_DIR);
    let files = || HOST_KEYS.iter().flat_map(|(_, f)| [(f.to_string(), 0o600), (format!("{f}.pub"), 0o644)]);
    let copy = |from: &Path, to: &Path| -> Result<(), BootError> {
        for (f, mode) in files() {
            let src = from.join(&f);
            match std::fs::read(&src) {
                Ok(bytes) => {
                    let dst = to.join(&f);
                    ensure::file(&dst, &bytes, mode, None).map_err(io_err(&dst))?;
                }
                // A public key is optional (sshd serves from the private one).
                Err(e) if e.kind() == io::ErrorKind::NotFound && f.ends_with(".pub") => {}
                Err(e) => return Err(io_err(&src)(e)),
            }
        }
        Ok(())
    };
    let complete = |dir: &Path| HOST_KEYS.iter().all(|(_, f)| dir.join(f).is_file());
    if complete(&kept) {
        copy(&kept, &ssh)?;
        return Ok(false);
    }
    let generated = !complete(&ssh);
    if generated {
        // Ed25519 and ECDSA only: an RSA key takes seconds to generate under emulation (TCG), on
        // the path to the agent answering, and every client we serve (OpenSSH, Go's
        // x/crypto/ssh) takes an Ed25519 host key. Both at once, one per CPU.
        std::thread::scope(|s| {
            let jobs: Vec<_> = HOST_KEYS
                .iter()
                .map(|(kind, file)| {
                    let path = ssh.join(file);
                    s.spawn(move || {
                        let _ = std::fs::remove_file(&path);
                        run_ok(host, &["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", &path.to_string_lossy()], None, Duration::from_secs(120))
                    })
                })
                .collect();
            jobs.into_iter().try_for_each(|j| j.join().expect("ssh-keygen thread").map(drop))
        })?;
    }
    ensure::dir(&kept).map_err(io_err(&kept))?;
    std::fs::set_permissions(&kept, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(io_err(&kept))?;
    copy(&ssh, &kept)?;
    Ok(generated)
}

/// Options of `minikube-agent boot`.
#[derive(Debug, Clone, Copy)]
pub struct BootOptions {
    /// Skip the disk (containers, `--no-disk`).
    pub skip_disk: bool,
    /// Skip kernel modules (containers cannot load them).
    pub skip_modules: bool,
    /// Leave the SSH host keys to the caller ([`ssh_host_keys`] after the node document: only
    /// sshd, which starts after the whole boot step, needs them).
    pub keys_later: bool,
}

/// A summary for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootReport {
    pub plan: String,
    pub userdata_files_changed: usize,
    pub modules_failed: Vec<String>,
    pub ssh_keys_generated: bool,
    /// How long each part took (`disk`, `userdata`, `ssh keys`, then `modules (alongside)`, which
    /// load on their own thread meanwhile), for the console line and the boot benchmark's table.
    pub took: Vec<(&'static str, Duration)>,
}

impl BootReport {
    /// `disk 0.9 s, userdata 0.1 s, ...`
    pub fn took_text(&self) -> String {
        self.took.iter().map(|(what, d)| format!("{what} {:.1} s", d.as_secs_f64())).collect::<Vec<_>>().join(", ")
    }
}

/// Run the whole boot step. The runtime modules load beside the rest (on their own thread:
/// nothing here needs them, the node document's runtime section after this step does).
pub fn run(root: &GuestRoot, host: &dyn Host, opts: BootOptions) -> Result<BootReport, BootError> {
    std::thread::scope(|s| {
        let modules = (!opts.skip_modules).then(|| {
            s.spawn(|| {
                let t = Instant::now();
                (load_modules(host, RUNTIME_MODULES), t.elapsed())
            })
        });
        let mut report = run_disk_userdata_keys(root, host, opts)?;
        if let Some(m) = modules {
            let (failed, took) = m.join().expect("module loader thread");
            report.modules_failed = failed;
            report.took.push(("modules (alongside)", took));
        }
        Ok(report)
    })
}

/// The data disk, the userdata and the SSH host keys, one after another.
fn run_disk_userdata_keys(root: &GuestRoot, host: &dyn Host, opts: BootOptions) -> Result<BootReport, BootError> {
    let mut took = Vec::new();
    let mut t = Instant::now();
    let mut lap = |what: &'static str| {
        took.push((what, t.elapsed()));
        t = Instant::now();
    };
    let mut fresh_userdata = None;
    let mut fresh_on_disk = None;
    let plan_text;
    if opts.skip_disk {
        plan_text = "disk skipped".to_string();
    } else {
        let p = plan(root).map_err(io_err(&root.host("/sys/block")))?;
        plan_text = p.to_string();
        let partition = match p {
            DiskPlan::Use { partition } => Some(partition),
            DiskPlan::FormatMagic { disk, userdata } => {
                fresh_userdata = Some(userdata);
                Some(format(root, host, &disk)?)
            }
            DiskPlan::FormatEmpty { disk } => Some(format(root, host, &disk)?),
            DiskPlan::None => {
                tracing::warn!("no data disk: state lives in memory and is lost at shutdown");
                None
            }
        };
        if let Some(part) = &partition {
            mount_data(root, host, part)?;
        }
        fresh_on_disk = partition.map(|p| root.host(&format!("/mnt/{p}/{FRESH_USERDATA}"))).filter(|f| f.is_file());
        if let (None, Some(f)) = (&fresh_userdata, &fresh_on_disk) {
            fresh_userdata = Some(std::fs::read(f).map_err(io_err(f))?);
        }
    }
    lap("disk");
    let tar_path = root.host(USERDATA_TAR);
    if let Some(tar) = &fresh_userdata {
        let kept = import_blobs(root, tar)?;
        ensure::file(&tar_path, &kept, 0o600, None).map_err(io_err(&tar_path))?;
    }
    // Applied and kept: a crash before this line takes the same tar again at the next boot.
    if let Some(f) = &fresh_on_disk {
        std::fs::remove_file(f).map_err(io_err(f))?;
    }
    let userdata_files_changed = match std::fs::read(&tar_path) {
        Ok(tar) => apply_userdata(root, &tar)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_err(&tar_path)(e)),
    };
    lap("userdata");
    let mut ssh_keys_generated = false;
    if !opts.keys_later {
        ssh_keys_generated = ssh_host_keys(root, host)?;
        lap("ssh keys");
    }
    Ok(BootReport { plan: plan_text, userdata_files_changed, modules_failed: Vec::new(), ssh_keys_generated, took })
}
