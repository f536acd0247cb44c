//! `/init` of the minikube ISO's small initramfs (PID 1 until systemd takes over).
//!
//! 1. mounts /proc, /sys and /dev (devtmpfs);
//! 2. loads the plan's modules (virtio disk, iso9660, squashfs, overlay, loop, dm-verity, ext4)
//!    from the initramfs, dependencies first, as `modules.dep` says;
//! 3. finds the medium: every block device is tried as iso9660 until one holds the plan's layers
//!    (a virtio disk when qemu starts the kernel itself, a CD with `-cdrom`, the hybrid ISO as a
//!    raw disk, or either under UEFI); when none does at once, the plan's fallback modules (CD,
//!    SATA, SCSI) are loaded and the devices tried again until one does;
//! 4. checks the top block of each layer's dm-verity hash tree against the plan's root hash;
//! 5. mounts each layer read-only through a loop device and a dm-verity device (every block is
//!    checked against the tree when it is first read: a bad one is an I/O error, never data),
//!    stacks them with overlayfs under a
//!    writable layer on /sysroot (on the data disk when one carries its label, so what a boot
//!    writes is there at the next; else a tmpfs), moves /dev, /proc and /sys into the new root, makes it `/`
//!    and executes systemd there (its own mounts stay behind, hidden under the new root). `/` is then a real mount
//!    with a parent, so runc's pivot_root works.
//!
//! Any failure prints one line starting with `minikube-init: FAILED:` naming what was looked for
//! and where, then runs an emergency shell on the console (never a bare kernel panic).

// The workspace denies unsafe_code; /init is PID 1 and calls the kernel directly (mount,
// umount2, finit_module, the loop ioctls, chroot, execv) through libc. Each block says why it
// is sound.
#![allow(unsafe_code)]

mod dm;

use minikube_init::data::{ext4_label, DATA_LABEL, ROOT_LAYERS_DIR};
use minikube_init::{load_waves, parse_modules_dep, verity, Plan, FAILED_MARKER, MODULES_DIR, PLAN_PATH, ROOT_READY_MARKER, SHELL};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

const MEDIUM: &str = "/run/minikube/medium";
const LAYERS: &str = "/run/minikube/layers";
const RW: &str = "/run/minikube/rw";
/// Where the data disk is mounted when it carries the root's writable layer.
const DATA: &str = "/run/minikube/data";
const SYSROOT: &str = "/sysroot";
const SYSTEMD: &str = "/usr/lib/systemd/systemd";
/// How long block devices get to appear.
const MEDIUM_WAIT: Duration = Duration::from_secs(30);

fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime").ok().and_then(|s| s.split_whitespace().next().map(str::to_string)).unwrap_or_default()
}

fn say(msg: &str) {
    println!("minikube-init: {msg} [{}s]", uptime());
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in paths")
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn mount(src: &str, target: &str, fstype: Option<&str>, flags: libc::c_ulong, data: Option<&str>) -> Result<(), String> {
    let _ = std::fs::create_dir_all(target);
    let (s, t) = (cstr(src), cstr(target));
    let f = fstype.map(cstr);
    let d = data.map(cstr);
    // SAFETY: every pointer is a NUL-terminated CString (or null where mount(2) takes null)
    // that lives until the call returns; mount(2) does not keep them.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            d.as_ref().map_or(std::ptr::null(), |c| c.as_ptr() as *const libc::c_void),
        )
    };
    if rc != 0 {
        return Err(format!("mount {src} on {target} ({}): {}", fstype.unwrap_or("move/bind"), errno()));
    }
    Ok(())
}

fn umount(target: &str) {
    let t = cstr(target);
    // SAFETY: `t` is a NUL-terminated CString alive for the call.
    unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
}

fn early_mounts() -> Result<(), String> {
    mount("proc", "/proc", Some("proc"), libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, None)?;
    mount("sysfs", "/sys", Some("sysfs"), libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, None)?;
    // The kernel may have mounted devtmpfs already (CONFIG_DEVTMPFS_MOUNT applies only with root=).
    if let Err(e) = mount("devtmpfs", "/dev", Some("devtmpfs"), libc::MS_NOSUID, Some("mode=0755")) {
        if !Path::new("/dev/null").exists() {
            return Err(e);
        }
    }
    Ok(())
}

/// Load the plan's modules, dependencies first: in waves ([`minikube_init::load_waves`]), the
/// modules of a wave two at a time (each on its own thread: the kernel links, checks and
/// initialises modules in parallel, and under emulation that halves this stage on two CPUs).
/// Built-in modules need no file.
fn load_modules(kernel: &str, modules: &[String]) -> Result<usize, String> {
    let dir = format!("{MODULES_DIR}/{kernel}");
    let dep_path = format!("{dir}/modules.dep");
    let dep_text = std::fs::read_to_string(&dep_path).map_err(|e| format!("module index {dep_path}: {e}"))?;
    let dep = parse_modules_dep(&dep_text);
    let (waves, missing) = load_waves(&dep, modules);
    let builtin = std::fs::read_to_string(format!("{dir}/modules.builtin")).unwrap_or_default();
    for m in missing {
        if !builtin.lines().any(|l| minikube_init::module_name(l).as_deref() == Some(m.as_str())) {
            return Err(format!("module {m}: not in {dep_path} nor built into kernel {kernel}"));
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    for wave in &waves {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads.min(wave.len()))
                .map(|t| {
                    let dir = &dir;
                    s.spawn(move || wave.iter().skip(t).step_by(threads).try_for_each(|rel| load_module(dir, rel)))
                })
                .collect();
            handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err("a module loader thread panicked".into())))
        })?;
    }
    Ok(waves.iter().map(Vec::len).sum())
}

/// finit_module one module file (EEXIST is success: loaded already).
fn load_module(dir: &str, rel: &str) -> Result<(), String> {
    let path = format!("{dir}/{rel}");
    let f = std::fs::File::open(&path).map_err(|e| format!("module {path}: {e}"))?;
    let flags = if rel.ends_with(".ko") {
        0
    } else {
        4 /* MODULE_INIT_COMPRESSED_FILE */
    };
    let empty = cstr("");
    // SAFETY: finit_module(fd, params, flags): `f` is an open file for the whole call and
    // `empty` a NUL-terminated CString (no module parameters).
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), empty.as_ptr(), flags) };
    if rc != 0 {
        let e = errno();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("module {path}: the kernel refused it: {e}"));
        }
    }
    Ok(())
}

/// Whole-disk and CD devices, CDs first (partitions are skipped: an ISO starts at sector 0).
fn block_devices() -> Vec<String> {
    let mut devs: Vec<String> =
        std::fs::read_dir("/sys/block").map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect()).unwrap_or_default();
    devs.retain(|d| !["loop", "ram", "zram", "dm-", "md", "nbd"].iter().any(|p| d.starts_with(p)));
    devs.sort_by_key(|d| (!d.starts_with("sr"), d.clone()));
    devs
}

/// Mount the medium that holds every layer; returns the device. Tried until `wait` has passed
/// (once with a zero wait).
fn find_medium(plan: &Plan, wait: Duration) -> Result<String, String> {
    let start = Instant::now();
    let mut tried: Vec<String>;
    loop {
        tried = Vec::new();
        for d in block_devices() {
            let dev = format!("/dev/{d}");
            match mount(&dev, MEDIUM, Some("iso9660"), libc::MS_RDONLY, None) {
                Err(e) => tried.push(format!("{dev} ({})", e.rsplit(": ").next().unwrap_or(&e))),
                Ok(()) => {
                    let missing: Vec<&str> = plan.layers.iter().filter(|l| !Path::new(MEDIUM).join(&l.path).exists()).map(|l| l.path.as_str()).collect();
                    if missing.is_empty() {
                        return Ok(dev);
                    }
                    tried.push(format!("{dev} (iso9660 without {})", missing.join(", ")));
                    umount(MEDIUM);
                }
            }
        }
        if start.elapsed() >= wait {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let want: Vec<&str> = plan.layers.iter().map(|l| l.path.as_str()).collect();
    Err(format!(
        "no medium holds {} after {}s; tried: {}",
        want.join(", "),
        wait.as_secs(),
        if tried.is_empty() { "no block device appeared".to_string() } else { tried.join(", ") }
    ))
}

/// Check each layer's length and the top block of its dm-verity tree against the plan's root
/// hash (one 4 KiB block each: the rest is checked by the kernel as it is read).
fn verify_tops(plan: &Plan, dev: &str) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    for l in &plan.layers {
        let p = Path::new(MEDIUM).join(&l.path);
        let f = std::fs::File::open(&p).map_err(|e| format!("opening {} on {dev}: {e}", l.path))?;
        let len = f.metadata().map_err(|e| format!("{} on {dev}: {e}", l.path))?.len();
        let want = l.data_bytes + verity::tree_bytes(l.data_bytes);
        if len != want {
            return Err(format!(
                "checksum mismatch: {} on {dev} is {len} bytes, the image recorded {want} (data and hash tree): the medium is corrupt",
                l.path
            ));
        }
        let mut top = vec![0u8; verity::BLOCK as usize];
        f.read_exact_at(&mut top, l.data_bytes).map_err(|e| format!("reading {} on {dev} at byte {}: {e}", l.path, l.data_bytes))?;
        let salt = hex::decode(&l.salt).map_err(|e| format!("{} salt: {e}", l.path))?;
        let got = hex::encode(verity::block_hash(&salt, &top));
        if got != l.root_hash {
            return Err(format!(
                "checksum mismatch: {} on {dev}: its hash tree's top block hashes to {got}, the image recorded root hash {}: the medium is corrupt",
                l.path, l.root_hash
            ));
        }
    }
    Ok(())
}

// <linux/loop.h>
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_SET_DIRECT_IO: libc::c_ulong = 0x4C08;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

/// Attach `file` read-only to a free loop device; returns its path.
fn loop_attach(file: &Path) -> Result<String, String> {
    let ctl = std::fs::OpenOptions::new().read(true).write(true).open("/dev/loop-control").map_err(|e| format!("/dev/loop-control: {e}"))?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument; `ctl` is an open /dev/loop-control.
    let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    if n < 0 {
        return Err(format!("no free loop device: {}", errno()));
    }
    let dev = format!("/dev/loop{n}");
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let lo = std::fs::File::open(&dev).map_err(|e| format!("{dev}: {e}"))?;
    // SAFETY: LOOP_SET_FD takes a file descriptor by value; `lo` and `f` are open files.
    if unsafe { libc::ioctl(lo.as_raw_fd(), LOOP_SET_FD as _, f.as_raw_fd()) } != 0 {
        return Err(format!("attaching {} to {dev}: {}", file.display(), errno()));
    }
    // Skip the loop device's own page cache when the medium's filesystem allows it (saves RAM).
    // SAFETY: LOOP_SET_DIRECT_IO takes an integer by value; `lo` is an open loop device.
    unsafe { libc::ioctl(lo.as_raw_fd(), LOOP_SET_DIRECT_IO as _, 1 as libc::c_ulong) };
    Ok(dev)
}

fn mount_root(plan: &Plan) -> Result<(), String> {
    let mut lowers = Vec::new();
    for (i, l) in plan.layers.iter().enumerate() {
        let lo = loop_attach(&Path::new(MEDIUM).join(&l.path))?;
        // Data and tree on the same loop device; a block that fails its check reads as EIO.
        let node = format!("/run/minikube/verity{i}");
        dm::create_verity(&format!("minikube-layer{i}"), l.data_bytes / 512, &verity::table_params(&lo, l.data_bytes, &l.root_hash, &l.salt), &node)
            .map_err(|e| format!("{} ({lo}): {e}", l.path))?;
        let at = format!("{LAYERS}/{i}");
        mount(&node, &at, Some("squashfs"), libc::MS_RDONLY | libc::MS_NODEV, None)
            .map_err(|e| format!("{} ({lo} through dm-verity) is not a readable squashfs: {e}", l.path))?;
        lowers.push(at);
    }
    // overlayfs lists the uppermost lower layer first.
    lowers.reverse();
    let rw = writable_layer(plan)?;
    let opts = format!("lowerdir={},upperdir={rw}/upper,workdir={rw}/work", lowers.join(":"));
    mount("overlay", SYSROOT, Some("overlay"), 0, Some(&opts))?;
    // /dev, /proc and /sys move into the new root. The medium, the layers and the tmpfs stay
    // mounted where they are, in the initramfs, which the new root hides: systemd never sees
    // them, so it never tries (and fails) to unmount them at shutdown while the root uses them.
    for m in ["/dev", "/proc", "/sys"] {
        mount(m, &format!("{SYSROOT}{m}"), None, libc::MS_MOVE, None)?;
    }
    Ok(())
}

/// The device (a whole disk or a partition) whose ext4 label is [`DATA_LABEL`], if any.
fn data_device() -> Option<String> {
    for d in block_devices().into_iter().filter(|d| !d.starts_with("sr")) {
        let mut names = vec![d.clone()];
        if let Ok(rd) = std::fs::read_dir(format!("/sys/block/{d}")) {
            let mut parts: Vec<String> =
                rd.filter_map(|e| e.ok()).filter(|e| e.path().join("partition").exists()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            parts.sort();
            names.extend(parts);
        }
        if let Some(n) = names.into_iter().find(|n| ext4_label(Path::new(&format!("/dev/{n}"))).as_deref() == Some(DATA_LABEL)) {
            return Some(format!("/dev/{n}"));
        }
    }
    None
}

/// The root's writable layer on the data disk: `.minikube-root/KEY` for this ISO's root images
/// (another key's layer belongs to another ISO, whose files would shadow this one's: it is
/// removed). `None` without a data disk (a new minikube disk is formatted later, by the agent).
fn data_layer(plan: &Plan) -> Result<Option<(String, String)>, String> {
    let Some(dev) = data_device() else { return Ok(None) };
    mount(&dev, DATA, Some("ext4"), libc::MS_NOATIME, None)?;
    let base = format!("{DATA}/{ROOT_LAYERS_DIR}");
    let key = plan.root_key();
    let made = (|| -> std::io::Result<()> {
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.filter_map(|e| e.ok()).filter(|e| e.file_name() != key.as_str()) {
                say(&format!("removing the writable layer of other root images, {}", e.path().display()));
                std::fs::remove_dir_all(e.path())?;
            }
        }
        for d in ["upper", "work"] {
            std::fs::create_dir_all(format!("{base}/{key}/{d}"))?;
        }
        Ok(())
    })();
    if let Err(e) = made {
        umount(DATA);
        return Err(format!("{base}/{key} on {dev}: {e}"));
    }
    Ok(Some((format!("{base}/{key}"), dev)))
}

/// Where the root's writes go: the data disk's layer (what the last boot of this ISO wrote is
/// there), else a tmpfs. A data disk that cannot hold it is said on the console, not fatal: the
/// boot step applies the node's state to a fresh layer as well.
fn writable_layer(plan: &Plan) -> Result<String, String> {
    match data_layer(plan) {
        Ok(Some((dir, dev))) => {
            say(&format!("writable layer on {dev} ({dir})"));
            return Ok(dir);
        }
        Ok(None) => say("no data disk yet: writable layer in memory"),
        Err(e) => say(&format!("data disk not used for the root ({e}): writable layer in memory")),
    }
    mount("tmpfs", RW, Some("tmpfs"), 0, Some("mode=0755"))?;
    for d in ["upper", "work"] {
        std::fs::create_dir_all(format!("{RW}/{d}")).map_err(|e| format!("{RW}/{d}: {e}"))?;
    }
    Ok(RW.to_string())
}

/// Free the initramfs's files (modules, shell) before leaving it, as switch_root does.
fn free_initramfs() {
    let _ = std::fs::remove_dir_all(MODULES_DIR);
}

fn enter_root() -> Result<std::convert::Infallible, String> {
    std::env::set_current_dir(SYSROOT).map_err(|e| format!("chdir {SYSROOT}: {e}"))?;
    mount(".", "/", None, libc::MS_MOVE, None)?;
    let dot = cstr(".");
    // SAFETY: `dot` is a NUL-terminated CString alive for the call.
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        return Err(format!("chroot {SYSROOT}: {}", errno()));
    }
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    let prog = cstr(SYSTEMD);
    let args: Vec<CString> = std::iter::once(SYSTEMD.to_string()).chain(std::env::args().skip(1)).map(|a| cstr(&a)).collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: `prog` and every element of `args` are NUL-terminated CStrings that outlive the
    // call, and `argv` points at them followed by a null pointer, as execv(3) requires.
    unsafe { libc::execv(prog.as_ptr(), argv.as_ptr()) };
    Err(format!("exec {SYSTEMD} in the new root: {}", errno()))
}

fn run() -> Result<std::convert::Infallible, String> {
    early_mounts()?;
    let text = std::fs::read_to_string(PLAN_PATH).map_err(|e| format!("{PLAN_PATH}: {e}"))?;
    let plan = Plan::parse(&text).map_err(|e| e.to_string())?;
    say(&format!("kernel {}, {} layers", plan.kernel, plan.layers.len()));
    let n = load_modules(&plan.kernel, &plan.modules)?;
    say(&format!("{n} modules loaded"));
    let dev = match find_medium(&plan, Duration::ZERO) {
        Ok(dev) => dev,
        Err(first) if !plan.fallback.is_empty() => {
            // Not on a virtio disk: a CD, SATA or SCSI device, whose drivers probe it as they load.
            let n = load_modules(&plan.kernel, &plan.fallback)?;
            say(&format!("no device holds the layers yet ({}); {n} more modules loaded", first.rsplit("tried: ").next().unwrap_or(&first)));
            find_medium(&plan, MEDIUM_WAIT)?
        }
        Err(_) => find_medium(&plan, MEDIUM_WAIT)?,
    };
    say(&format!("medium {dev}"));
    verify_tops(&plan, &dev)?;
    say("hash trees match the plan");
    let up = uptime();
    mount_root(&plan)?;
    free_initramfs();
    println!("{ROOT_READY_MARKER} [{up}s]");
    enter_root()
}

/// Run the emergency shell on the console, again whenever it exits (PID 1 must not exit).
fn emergency() -> ! {
    loop {
        if !Path::new(SHELL).exists() {
            println!("minikube-init: no emergency shell at {SHELL}; halting");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        println!("minikube-init: starting an emergency shell ({SHELL}); `exit` starts a new one");
        match std::process::Command::new(SHELL).env("PATH", "/usr/bin:/usr/sbin").status() {
            Ok(_) => {}
            Err(e) => {
                println!("minikube-init: {SHELL}: {e}");
                std::thread::sleep(Duration::from_secs(5));
            }
        }
    }
}

fn main() {
    let Err(e) = run();
    println!("{FAILED_MARKER} {e}");
    emergency();
}
