//! Running the real minikube offline on our kicbase with podman, the one setup that
//! `e2e/tests/minikube_compat.rs` and `cargo xtask bench minikube` share ([`Minikube::prepare`]):
//!
//! - a private `MINIKUBE_HOME` in a new directory, filled from the Kubernetes bundle
//!   ([`super::fill_home`]);
//! - the kicbase archive loaded into podman, plus the bundle's crictl as one layer
//!   ([`super::kicbase_with_crictl`]), as the image `--base-image` names;
//! - this host's workarounds: a `sudo` in front of PATH that runs its command (minikube runs
//!   `sudo -n podman ...`; we are root and there is no sudo), a private `containers.conf`
//!   (`CONTAINERS_CONF`: rlimits at the hard limits, runc) and an empty `/lib/modules` when the
//!   host has none (minikube always mounts it);
//! - the start flags ([`Minikube::start_args`]): `--driver=podman --force --preload=false
//!   --container-runtime=containerd --cni=bridge`, a subnet away from 192.168.49.0/24.
//!
//! Dropping the [`Minikube`] deletes the profile, whatever podman still holds of it, the image it
//! built, the `/lib/modules` it made and its directory, even after a failure.
//!
//! [`Sampler`] and [`guest_memory`] measure memory for the race ([`super::race`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::Arch;

use super::{Filled, MinikubeError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("`{command}` could not run: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("`{command}` failed ({status}):\n{output}")]
    Failed { command: String, status: String, output: String },
    #[error("`{command}` did not finish within {secs} s (killed):\n{output}")]
    Timeout { command: String, secs: u64, output: String },
    #[error("the node of minikube profile {profile} was not Ready within {secs} s (`minikube kubectl -- get nodes`): {last}")]
    NotReady { profile: String, secs: u64, last: String },
    #[error("`podman load -i {archive}` named no image: {output}")]
    NoImageLoaded { archive: PathBuf, output: String },
    #[error("podman holds {what} of minikube profile {profile}: {items:?}")]
    Leftovers { profile: String, what: &'static str, items: Vec<String> },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Minikube(#[from] MinikubeError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io { path: path.to_path_buf(), source }
}

/// What [`Minikube::prepare`] needs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `out/tools/minikube`.
    pub minikube: PathBuf,
    /// `out/tools/storage-provisioner-v5.tar`.
    pub storage_provisioner: PathBuf,
    /// `out/kicbase.tar`.
    pub kicbase_archive: PathBuf,
    /// The launcher's cache holding the Kubernetes bundle.
    pub bundle_cache: PathBuf,
    pub arch: Arch,
    pub kubernetes: String,
    pub profile: String,
    /// Away from 192.168.49.0/24, which minikube picks first and other tests use.
    pub subnet: String,
    /// The kicbase + crictl image built for the run (removed with the [`Minikube`]).
    pub image: String,
    pub cpus: u32,
    pub memory_mb: u64,
    /// The new directory (home, shims, logs) is made in here.
    pub work_parent: PathBuf,
}

impl Setup {
    /// The defaults both users share: profile `profile`, subnet 192.168.139.0/24, 2 CPUs,
    /// 3072 MB, the directory under /var/tmp.
    pub fn new(
        profile: &str,
        minikube: PathBuf,
        storage_provisioner: PathBuf,
        kicbase_archive: PathBuf,
        bundle_cache: PathBuf,
        arch: Arch,
        kubernetes: &str,
    ) -> Setup {
        Setup {
            minikube,
            storage_provisioner,
            kicbase_archive,
            bundle_cache,
            arch,
            kubernetes: kubernetes.to_string(),
            profile: profile.to_string(),
            subnet: "192.168.139.0/24".into(),
            image: format!("localhost/minikube-compat-kicbase:{profile}"),
            cpus: 2,
            memory_mb: 3072,
            work_parent: PathBuf::from("/var/tmp"),
        }
    }
}

/// A minikube of its own home and profile, ready to start (see the module's documentation).
#[derive(Debug)]
pub struct Minikube {
    pub setup: Setup,
    pub filled: Filled,
    /// The image `podman load` reported for the kicbase archive.
    pub kicbase: String,
    dir: PathBuf,
    home: PathBuf,
    path: String,
    logs: PathBuf,
    containers_conf: PathBuf,
    made_modules: bool,
    built_image: bool,
}

impl Minikube {
    /// Everything minikube needs to start offline (see the module's documentation). Fails if
    /// podman already holds something of the profile (another run's, which this one would take
    /// over or remove).
    pub fn prepare(setup: &Setup) -> Result<Minikube, RunError> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = setup.work_parent.join(format!("minikube-{}-{}-{stamp:x}", setup.profile, std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let home = dir.join("home/.minikube");
        let logs = dir.join("logs");
        let shims = dir.join("bin");
        let containers_conf = dir.join("containers.conf");
        let mut mk = Minikube {
            setup: setup.clone(),
            filled: Filled { mini_path: home.clone(), files: Vec::new() },
            kicbase: String::new(),
            path: format!("{}:{}", shims.display(), std::env::var("PATH").unwrap_or_default()),
            dir,
            home,
            logs,
            containers_conf,
            made_modules: false,
            built_image: false,
        };
        // From here on a failure drops `mk`, which undoes what was done.
        let left = mk.leftovers();
        if !left.is_empty() {
            // Not ours to remove: keep Drop from deleting it.
            mk.setup.profile.clear();
            return Err(RunError::Leftovers { profile: setup.profile.clone(), what: "already", items: left });
        }
        mk.filled = super::fill_home(&mk.home, &setup.bundle_cache, setup.arch, &setup.kubernetes, &setup.storage_provisioner)?;
        for d in [&shims, &mk.logs] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let sudo = shims.join("sudo");
        std::fs::write(
            &sudo,
            "#!/bin/sh\n# root already: run the command without sudo's options\nwhile [ \"${1#-}\" != \"$1\" ]; do shift; done\nexec \"$@\"\n",
        )
        .map_err(io(&sudo))?;
        std::fs::set_permissions(&sudo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(io(&sudo))?;
        std::fs::write(&mk.containers_conf, containers_conf_text()).map_err(io(&mk.containers_conf))?;
        // minikube always mounts the host's /lib/modules read-only; a host that is itself a
        // container or a VM without modules has none, and podman refuses the missing source. An
        // empty directory stands in for the run.
        let modules = Path::new("/lib/modules");
        if !modules.exists() {
            std::fs::create_dir(modules).map_err(io(modules))?;
            mk.made_modules = true;
        }
        mk.kicbase = load(&setup.kicbase_archive)?;
        mk.built_image = true;
        super::kicbase_with_crictl("podman", &mk.kicbase, &setup.bundle_cache, setup.arch, &setup.kubernetes, &setup.image, &mk.dir)?;
        Ok(mk)
    }

    /// The run's directory (home, shims, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `minikube --profile=P ARGS` with the run's environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.setup.minikube);
        // The profile first: anything after `--` goes to kubectl or ssh.
        c.arg(format!("--profile={}", self.setup.profile))
            .args(args)
            .env("MINIKUBE_HOME", &self.home)
            .env("CONTAINERS_CONF", &self.containers_conf)
            .env("PATH", &self.path)
            .env("MINIKUBE_IN_STYLE", "false")
            .env("MINIKUBE_WANTUPDATENOTIFICATION", "false")
            .env("MINIKUBE_SUPPRESS_DOCKER_PERFORMANCE", "true")
            .env("HOME", self.home.parent().unwrap_or(Path::new("/")));
        c
    }

    /// `minikube ARGS`, which must succeed within `limit`: its stdout and stderr. The output is
    /// also kept in `logs/<n>-<first arg>.log`. `spawned` is told the process's id.
    pub fn run_watched(&self, args: &[&str], limit: Duration, spawned: &dyn Fn(u32)) -> Result<String, RunError> {
        let command = format!("minikube --profile={} {}", self.setup.profile, args.join(" "));
        let n = std::fs::read_dir(&self.logs).map(|d| d.count()).unwrap_or(0);
        let log = self.logs.join(format!("{n:02}-{}.log", args.first().unwrap_or(&"minikube")));
        let mut child = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RunError::Spawn { command: command.clone(), source })?;
        spawned(child.id());
        let (mut out, mut err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(source) => return Err(RunError::Spawn { command, source }),
            }
        };
        let text = format!("{}{}", t_out.join().unwrap_or_default(), t_err.join().unwrap_or_default());
        let _ = std::fs::write(&log, &text);
        match status {
            Some(st) if st.success() => Ok(text),
            Some(st) => Err(RunError::Failed { command, status: st.to_string(), output: tail(&text, 60) }),
            None => Err(RunError::Timeout { command, secs: limit.as_secs(), output: tail(&text, 60) }),
        }
    }

    /// [`Self::run_watched`] without a watcher.
    pub fn run(&self, args: &[&str], limit: Duration) -> Result<String, RunError> {
        self.run_watched(args, limit, &|_| {})
    }

    /// `minikube start` with the offline flags (see the module's documentation).
    pub fn start_args(&self) -> Vec<String> {
        let s = &self.setup;
        vec![
            "start".into(),
            "--driver=podman".into(),
            format!("--base-image={}", s.image),
            "--force".into(),
            "--preload=false".into(),
            format!("--kubernetes-version={}", s.kubernetes),
            "--container-runtime=containerd".into(),
            // minikube's default for kic with containerd is kindnet, whose image is not in the
            // bundle.
            "--cni=bridge".into(),
            format!("--subnet={}", s.subnet),
            format!("--cpus={}", s.cpus),
            format!("--memory={}", s.memory_mb),
            "--interactive=false".into(),
            "--wait=apiserver,system_pods,node_ready".into(),
            "--alsologtostderr".into(),
            "-v=1".into(),
        ]
    }

    /// `minikube start` (see [`Self::start_args`]) to completion, `spawned` told its process id.
    pub fn start(&self, limit: Duration, spawned: &dyn Fn(u32)) -> Result<String, RunError> {
        let args = self.start_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_watched(&args, limit, spawned)
    }

    /// The node's Ready condition through `minikube kubectl`, polled every second until `limit`:
    /// how long it took.
    pub fn wait_ready(&self, limit: Duration) -> Result<Duration, RunError> {
        let t = Instant::now();
        let mut last = String::new();
        while t.elapsed() < limit {
            match self.run(
                &[
                    "kubectl",
                    "--",
                    "get",
                    "nodes",
                    "-o",
                    r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
                ],
                Duration::from_secs(60),
            ) {
                Ok(text) if text.lines().any(|l| l.ends_with("=True")) => return Ok(t.elapsed()),
                Ok(text) => last = text,
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        Err(RunError::NotReady { profile: self.setup.profile.clone(), secs: limit.as_secs(), last: tail(&last, 20) })
    }

    /// What podman holds of the profile: containers, networks, volumes.
    pub fn leftovers(&self) -> Vec<String> {
        let p = &self.setup.profile;
        let mut left = Vec::new();
        let (_, c) = podman(&["ps", "-a", "--filter", &format!("label=name.minikube.sigs.k8s.io={p}"), "--format", "{{.Names}}"]);
        left.extend(c.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("container {l}")));
        let (_, c) = podman(&["ps", "-a", "--format", "{{.Names}}"]);
        let named: Vec<String> = c.lines().filter(|l| l.trim() == p).map(|l| format!("container {l}")).filter(|l| !left.contains(l)).collect();
        left.extend(named);
        let (_, n) = podman(&["network", "ls", "--format", "{{.Name}}"]);
        left.extend(n.lines().filter(|l| l.trim() == p).map(|l| format!("network {l}")));
        let (_, v) = podman(&["volume", "ls", "--format", "{{.Name}}"]);
        left.extend(v.lines().filter(|l| l.trim() == p).map(|l| format!("volume {l}")));
        left
    }

    /// `minikube delete`, then nothing of the profile may be left in podman.
    pub fn delete(&self, limit: Duration) -> Result<(), RunError> {
        self.run(&["delete"], limit)?;
        let left = self.leftovers();
        if left.is_empty() {
            Ok(())
        } else {
            Err(RunError::Leftovers { profile: self.setup.profile.clone(), what: "after `minikube delete`", items: left })
        }
    }
}

impl Drop for Minikube {
    fn drop(&mut self) {
        if self.made_modules {
            let _ = std::fs::remove_dir("/lib/modules");
        }
        let p = self.setup.profile.clone();
        if !p.is_empty() {
            if !self.leftovers().is_empty() {
                let _ = self.run(&["delete"], Duration::from_secs(120));
            }
            let _ = podman(&["rm", "-f", "-v", &p]);
            let _ = podman(&["network", "rm", "-f", &p]);
            let _ = podman(&["volume", "rm", "-f", &p]);
        }
        if self.built_image {
            let _ = podman(&["rmi", "-f", &self.setup.image]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `podman ARGS`: (success, stdout+stderr); a podman that cannot run is a failure.
pub fn podman(args: &[&str]) -> (bool, String) {
    match Command::new("podman").args(args).stdin(Stdio::null()).output() {
        Ok(out) => (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))),
        Err(e) => (false, format!("podman: {e}")),
    }
}

/// `podman load -i ARCHIVE`: the image it names.
fn load(archive: &Path) -> Result<String, RunError> {
    let (ok, text) = podman(&["load", "-i", &archive.display().to_string()]);
    if !ok {
        return Err(RunError::Failed { command: format!("podman load -i {}", archive.display()), status: "failed".into(), output: tail(&text, 20) });
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("Loaded image: ").or_else(|| l.strip_prefix("Loaded image(s): ")))
        .next()
        .and_then(|l| l.split(',').next())
        .map(|s| s.trim().to_string())
        .ok_or_else(|| RunError::NoImageLoaded { archive: archive.to_path_buf(), output: text.clone() })
}

/// podman's configuration for minikube's runs, for hosts like CI's (a container or VM whose
/// capability bounding set lacks CAP_SYS_RESOURCE, with cgroup v1 or hybrid cgroups): minikube
/// runs `podman run --privileged` with podman's default rlimits, which the OCI runtime cannot set
/// above the host's hard limits ("setrlimit RLIMIT_NOFILE: Operation not permitted"), and crun
/// refuses hybrid cgroups. So: nofile at the hard limit, nproc at most 32768, runc. minikube has
/// no flag for either; podman reads `CONTAINERS_CONF`.
pub fn containers_conf_text() -> String {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard =
        |name: &str| limits.lines().find(|l| l.starts_with(name)).and_then(|l| l[name.len()..].split_whitespace().nth(1)).and_then(|h| h.parse::<u64>().ok());
    let nofile = hard("Max open files").unwrap_or(1_048_576);
    let nproc = hard("Max processes").map_or(32768, |h| h.min(32768));
    format!("[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\n[engine]\nruntime = \"runc\"\n")
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")))
}

/// The pid of the podman container's conmon (the parent of its init), if it runs.
pub fn conmon_pid(name: &str) -> Option<u32> {
    let (ok, text) = podman(&["container", "inspect", "--format", "{{.State.ConmonPid}}", name]);
    text.trim().parse().ok().filter(|p| ok && *p != 0 && is_conmon(*p))
}

fn is_conmon(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains("(conmon)"))
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
/// runs) plus the node container's conmon and all its descendants (the container's init and
/// every process of the node: systemd, containerd, the kubelet, the control plane). The peak
/// of those sums. Shared pages count once per process that maps them, for both sides alike.
pub struct Sampler {
    root: Arc<AtomicU32>,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Sampling starts at once for the process tree of `root` (0: none yet, see
    /// [`Self::set_root`]) and the podman container `container` (its conmon looked up every
    /// second until it runs).
    pub fn start(root: u32, container: &str) -> Sampler {
        let (r, peak, stop) = (Arc::new(AtomicU32::new(root)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (r2, p2, s2, name) = (r.clone(), peak.clone(), stop.clone(), container.to_string());
        let thread = std::thread::spawn(move || {
            let page = page_size();
            let mut conmon: Option<u32> = None;
            let mut looked = Instant::now() - Duration::from_secs(10);
            while !s2.load(Ordering::Relaxed) {
                if conmon.is_some_and(|p| !is_conmon(p)) {
                    conmon = None;
                }
                if conmon.is_none() && looked.elapsed() >= Duration::from_secs(1) {
                    conmon = conmon_pid(&name);
                    looked = Instant::now();
                }
                let sum = tree_rss(&processes(page), &[r2.load(Ordering::Relaxed), conmon.unwrap_or(0)]);
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

/// The memory the node's processes use now: the sum of the RSS of every process of the running
/// podman container `name` (its init and all descendants: systemd, containerd, the kubelet, the
/// control plane's containers), conmon not counted. `None` if the container does not run.
///
/// Not the memory cgroup of the container's init: on this cgroup v1 host (the node in the host's
/// cgroup namespace) that one held about 3 MB at Ready, the node's services being in other
/// cgroups.
pub fn guest_memory(name: &str) -> Option<u64> {
    let conmon = conmon_pid(name)?;
    let procs = processes(page_size());
    let own = procs.iter().find(|p| p.pid == conmon).map_or(0, |p| p.rss);
    Some(tree_rss(&procs, &[conmon]).saturating_sub(own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampler_counts_this_process() {
        let s = Sampler::start(std::process::id(), "no-such-container-of-this-test");
        std::thread::sleep(Duration::from_millis(400));
        let peak = s.finish();
        assert!(peak > 1 << 20, "{peak}");
    }

    #[test]
    fn the_containers_conf_sets_runc_and_limits() {
        let t = containers_conf_text();
        assert!(t.contains("runtime = \"runc\""), "{t}");
        assert!(t.contains("nofile="), "{t}");
    }
}
