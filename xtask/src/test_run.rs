//! `cargo xtask test`'s guard rails: a free-space check before anything is built, and a deadline
//! on `cargo test`. A full disk does not fail fast here: qemu pauses a guest whose disk write gets
//! ENOSPC, and the test waiting for it would wait until CI's own limit killed everything without
//! a word. Both guards turn that into an error that says what to do.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Free space a test run needs, per filesystem: the target directory (a fresh build of the
/// workspace and the test binaries is about 8 GiB) and the temporary directory (VM disks, image
/// copies, unpacked layers).
const NEED_TARGET_GIB: u64 = 12;
const NEED_TMP_GIB: u64 = 4;

/// The deadline of `cargo test`, in minutes, unless `MINIKUBE_TEST_TIMEOUT_MIN` says otherwise.
const DEFAULT_TIMEOUT_MIN: u64 = 70;

fn free_bytes(p: &Path) -> Result<u64> {
    let s = nix::sys::statvfs::statvfs(p).with_context(|| format!("statvfs {}", p.display()))?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Fail when a filesystem the tests write to has less free space than they need.
pub fn preflight() -> Result<()> {
    let target = crate::agent_build::target_dir()?;
    let tmp = std::env::temp_dir();
    let mut checked: Vec<(u64, u64, PathBuf)> = Vec::new();
    for (path, gib) in [(target, NEED_TARGET_GIB), (tmp, NEED_TMP_GIB)] {
        let at = if path.exists() { path } else { path.parent().map(Path::to_path_buf).unwrap_or(path) };
        let dev = std::fs::metadata(&at).with_context(|| format!("stat {}", at.display()))?.dev();
        match checked.iter_mut().find(|(d, _, _)| *d == dev) {
            // Two needs on one filesystem add up.
            Some(entry) => entry.1 += gib,
            None => checked.push((dev, gib, at)),
        }
    }
    for (_, gib, at) in checked {
        let free = free_bytes(&at)?;
        if free < gib << 30 {
            bail!(
                "{} has {:.1} GiB free; the tests need {gib} GiB there (a full disk pauses qemu guests and \
                 stalls the run). Free space, e.g. old clones' target directories or `cargo clean`",
                at.display(),
                free as f64 / (1u64 << 30) as f64
            );
        }
    }
    Ok(())
}

/// Every descendant of `pid`, children first found first.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parent_of.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out.remove(0);
    out
}

/// `cargo test --workspace ARGS`, killed with its whole process tree at the deadline, after
/// printing that tree (what was still running is where it hung).
pub fn cargo_test(args: &[String], iso: &Path, arm64_iso: &Path) -> Result<()> {
    let minutes = match std::env::var("MINIKUBE_TEST_TIMEOUT_MIN") {
        Ok(v) => v.parse::<u64>().with_context(|| format!("MINIKUBE_TEST_TIMEOUT_MIN={v}: not a number of minutes"))?,
        Err(_) => DEFAULT_TIMEOUT_MIN,
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = std::process::Command::new(cargo)
        .args(["test", "--workspace"])
        .args(args)
        .env("MINIKUBE_ISO", iso)
        .env("MINIKUBE_ISO_ARM64", arm64_iso)
        .spawn()
        .context("run cargo test")?;
    let deadline = Instant::now() + Duration::from_secs(minutes * 60);
    loop {
        if let Some(status) = child.try_wait().context("wait for cargo test")? {
            if !status.success() {
                bail!("tests failed");
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let tree = std::process::Command::new("ps").args(["-eo", "pid,ppid,etime,stat,args", "--forest"]).output();
    if let Ok(o) = tree {
        eprintln!("cargo test still running after {minutes} min; the processes at that moment:\n{}", String::from_utf8_lossy(&o.stdout));
    }
    for pid in descendants(child.id()).into_iter().rev() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("cargo test did not finish within {minutes} min (MINIKUBE_TEST_TIMEOUT_MIN); killed it and its processes")
}
