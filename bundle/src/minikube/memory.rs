//! Memory figures of the race ([`super::race`]): what a node costs the host while it starts
//! ([`Sampler`]) and what it uses at Ready ([`container_memory`], [`meminfo_used`]). A node's
//! host processes are found from a [`NodeProcess`]: a podman container's conmon, or a VM's
//! qemu through its pidfile.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::run::podman;

/// Where a node's processes are on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeProcess {
    /// The podman container of this name: its conmon and all its descendants.
    Container(String),
    /// The qemu whose pid this file holds (minikube's `machines/P/qemu.pid`, the launcher's
    /// machine pidfile).
    Pidfile(PathBuf),
}

impl NodeProcess {
    /// The node's root process on the host, if it runs now.
    pub fn pid(&self) -> Option<u32> {
        match self {
            NodeProcess::Container(name) => conmon_pid(name),
            NodeProcess::Pidfile(p) => std::fs::read_to_string(p).ok()?.trim().parse().ok().filter(|pid| alive(*pid)),
        }
    }

    /// Whether `pid`, found by [`Self::pid`], is still that process.
    fn still(&self, pid: u32) -> bool {
        match self {
            NodeProcess::Container(_) => is_conmon(pid),
            NodeProcess::Pidfile(_) => alive(pid),
        }
    }
}

/// The pid of the podman container's conmon (the parent of its init), if it runs.
pub fn conmon_pid(name: &str) -> Option<u32> {
    let (ok, text) = podman(&["container", "inspect", "--format", "{{.State.ConmonPid}}", name]);
    text.trim().parse().ok().filter(|p| ok && *p != 0 && is_conmon(*p))
}

fn is_conmon(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains("(conmon)"))
}

/// A process that exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

/// One process of `/proc`: its parent and resident bytes.
struct Proc {
    pid: u32,
    ppid: u32,
    rss: u64,
}

fn page_size() -> u64 {
    // The kernel's page size, as /proc/self/smaps reports it (4 KiB when unreadable).
    std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("KernelPageSize:").map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())).flatten())
        .map_or(4096, |kb| kb * 1024)
}

fn processes(page: u64) -> Vec<Proc> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return v };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let base = e.path();
        let Ok(stat) = std::fs::read_to_string(base.join("stat")) else { continue };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let ppid = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let rss =
            std::fs::read_to_string(base.join("statm")).ok().and_then(|s| s.split_whitespace().nth(1).and_then(|r| r.parse::<u64>().ok())).unwrap_or(0) * page;
        v.push(Proc { pid, ppid, rss });
    }
    v
}

/// The sum of the RSS of `roots` and all their descendants.
fn tree_rss(procs: &[Proc], roots: &[u32]) -> u64 {
    let mut tree: std::collections::HashSet<u32> = roots.iter().copied().filter(|p| *p != 0).collect();
    // Parents may come after children in /proc's order: repeat until stable.
    loop {
        let before = tree.len();
        for p in procs {
            if tree.contains(&p.ppid) {
                tree.insert(p.pid);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    procs.iter().filter(|p| tree.contains(&p.pid)).map(|p| p.rss).sum()
}

/// The host memory one side of the race uses, sampled every 250 ms on its own thread: the sum
/// of the resident set sizes (RSS) of the command's process and all its descendants (minikube
/// and the podman, ssh, kubectl it runs; for the launcher, the process it runs in and what it
/// runs) plus the node's root process and all its descendants ([`NodeProcess`]: a container's
/// conmon, its init and every process of the node; a VM's qemu, whose RSS holds the guest's
/// touched memory). The peak of those sums. Shared pages count once per process that maps
/// them, for both sides alike.
pub struct Sampler {
    root: Arc<AtomicU32>,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Sampling starts at once for the process tree of `root` (0: none yet, see
    /// [`Self::set_root`]) and the node's (looked up every second until it runs).
    pub fn start(root: u32, node: NodeProcess) -> Sampler {
        let (r, peak, stop) = (Arc::new(AtomicU32::new(root)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (r2, p2, s2) = (r.clone(), peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let page = page_size();
            let mut found: Option<u32> = None;
            let mut looked = Instant::now() - Duration::from_secs(10);
            while !s2.load(Ordering::Relaxed) {
                if found.is_some_and(|p| !node.still(p)) {
                    found = None;
                }
                if found.is_none() && looked.elapsed() >= Duration::from_secs(1) {
                    found = node.pid();
                    looked = Instant::now();
                }
                let sum = tree_rss(&processes(page), &[r2.load(Ordering::Relaxed), found.unwrap_or(0)]);
                p2.fetch_max(sum, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Sampler { root: r, peak, stop, thread: Some(thread) }
    }

    /// The command's process, once it runs.
    pub fn set_root(&self, pid: u32) {
        self.root.store(pid, Ordering::Relaxed);
    }

    /// Stop sampling: the peak, in bytes.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The memory a container node's processes use now: the sum of the RSS of every process of the
/// running podman container `name` (its init and all descendants: systemd, containerd, the
/// kubelet, the control plane's containers), conmon not counted. `None` if the container does
/// not run.
///
/// Not the memory cgroup of the container's init: on this cgroup v1 host (the node in the host's
/// cgroup namespace) that one held about 3 MB at Ready, the node's services being in other
/// cgroups.
pub fn container_memory(name: &str) -> Option<u64> {
    let conmon = conmon_pid(name)?;
    let procs = processes(page_size());
    let own = procs.iter().find(|p| p.pid == conmon).map_or(0, |p| p.rss);
    Some(tree_rss(&procs, &[conmon]).saturating_sub(own))
}

/// The memory a VM's kernel says is in use, from its `/proc/meminfo`: `MemTotal - MemAvailable`,
/// in bytes. `None` if either line is missing.
pub fn meminfo_used(meminfo: &str) -> Option<u64> {
    let kb = |key: &str| meminfo.lines().find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    Some(kb("MemTotal:")?.saturating_sub(kb("MemAvailable:")?) * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampler_counts_this_process() {
        let s = Sampler::start(std::process::id(), NodeProcess::Container("no-such-container-of-this-test".into()));
        std::thread::sleep(Duration::from_millis(400));
        let peak = s.finish();
        assert!(peak > 1 << 20, "{peak}");
    }

    #[test]
    fn a_pidfile_names_a_live_process_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("qemu.pid");
        assert_eq!(NodeProcess::Pidfile(p.clone()).pid(), None, "no file");
        std::fs::write(&p, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(NodeProcess::Pidfile(p.clone()).pid(), Some(std::process::id()));
        std::fs::write(&p, "not a pid").unwrap();
        assert_eq!(NodeProcess::Pidfile(p).pid(), None);
    }

    #[test]
    fn meminfo_used_is_total_minus_available() {
        let m = "MemTotal:        3000000 kB\nMemFree:          100 kB\nMemAvailable:    2000000 kB\n";
        assert_eq!(meminfo_used(m), Some(1_000_000 * 1024));
        assert_eq!(meminfo_used("MemTotal: 5 kB\n"), None);
    }
}
