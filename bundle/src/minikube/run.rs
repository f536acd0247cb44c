//! Running the real minikube offline on our images, the one setup that
//! `e2e/tests/minikube_compat.rs` and `cargo xtask bench minikube` share ([`Minikube::prepare`]),
//! on our kicbase with podman or on our ISO with qemu2 ([`NodeImage`]):
//!
//! - a private `MINIKUBE_HOME` in a new directory, filled from the Kubernetes bundle
//!   ([`super::fill_home`]);
//! - kic: the kicbase archive loaded into podman and tagged as the image `--base-image` names (it
//!   has crictl, which minikube runs on the node, as the ISO has);
//! - this host's workarounds: a `sudo` in front of PATH that runs its command (minikube runs
//!   `sudo -n podman ...`; we are root and there is no sudo), a private `containers.conf`
//!   (`CONTAINERS_CONF`: rlimits at the hard limits, runc), an empty `/lib/modules` when the host
//!   has none (minikube's kic always mounts it) and, for a VM on a host whose KVM does not run
//!   guests, a `qemu-system-*` in front of PATH that turns minikube's `-accel kvm` into `tcg`
//!   (minikube asks for KVM whenever `/dev/kvm` exists, and has no flag against it);
//! - the start flags ([`Setup::start_args`]): `--force --preload=false
//!   --container-runtime=containerd --cni=bridge`; kic: `--driver=podman`, a subnet away from
//!   192.168.49.0/24; VM: `--driver=qemu2 --iso-url=file://... --network=builtin` (user-mode
//!   networking: no socket_vmnet here).
//!
//! Dropping the [`Minikube`] deletes the profile, whatever podman or qemu still holds of it, the
//! image it tagged, the `/lib/modules` it made and its directory, even after a failure.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use platform::Arch;

use super::memory::NodeProcess;
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
    #[error("the host holds {what} of minikube profile {profile}: {items:?}")]
    Leftovers { profile: String, what: &'static str, items: Vec<String> },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Minikube(#[from] MinikubeError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io { path: path.to_path_buf(), source }
}

/// What minikube's node is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeImage {
    /// `--driver=podman --base-image=...`: a kicbase archive (`out/kicbase.tar`).
    Kic(PathBuf),
    /// `--driver=qemu2 --iso-url=file://...`: an ISO (`out/minikube.iso`); `tcg`: this host's
    /// KVM does not run guests, so minikube's qemu gets TCG instead (see the module's
    /// documentation).
    Iso { iso: PathBuf, tcg: bool },
}

impl NodeImage {
    /// As minikube names the driver.
    pub fn driver(&self) -> &'static str {
        match self {
            NodeImage::Kic(_) => "podman",
            NodeImage::Iso { .. } => "qemu2",
        }
    }
}

/// What [`Minikube::prepare`] needs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `out/tools/minikube`.
    pub minikube: PathBuf,
    /// `out/tools/storage-provisioner-v5.tar`.
    pub storage_provisioner: PathBuf,
    pub node: NodeImage,
    /// The launcher's cache holding the Kubernetes bundle.
    pub bundle_cache: PathBuf,
    pub arch: Arch,
    pub kubernetes: String,
    pub profile: String,
    /// Away from 192.168.49.0/24, which minikube picks first and other tests use.
    pub subnet: String,
    /// The tag the loaded kicbase gets for the run (removed with the [`Minikube`]; kic only).
    pub image: String,
    pub cpus: u32,
    pub memory_mb: u64,
    /// The new directory (home, shims, logs) is made in here.
    pub work_parent: PathBuf,
}

impl Setup {
    /// The defaults both users share: profile `profile`, subnet 192.168.139.0/24, 2 CPUs,
    /// 3072 MB, the directory under /var/tmp.
    pub fn new(profile: &str, minikube: PathBuf, storage_provisioner: PathBuf, node: NodeImage, bundle_cache: PathBuf, arch: Arch, kubernetes: &str) -> Setup {
        Setup {
            minikube,
            storage_provisioner,
            node,
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

    /// `minikube start` with the offline flags (see the module's documentation).
    pub fn start_args(&self) -> Vec<String> {
        let s = self;
        let mut args = vec!["start".to_string(), format!("--driver={}", s.node.driver())];
        match &s.node {
            NodeImage::Kic(_) => args.extend([format!("--base-image={}", s.image), format!("--subnet={}", s.subnet)]),
            NodeImage::Iso { iso, .. } => args.extend([format!("--iso-url=file://{}", iso.display()), "--network=builtin".into()]),
        }
        args.extend([
            "--force".into(),
            "--preload=false".into(),
            format!("--kubernetes-version={}", s.kubernetes),
            "--container-runtime=containerd".into(),
            // minikube's default with containerd is kindnet, whose image is not in the bundle.
            "--cni=bridge".into(),
            format!("--cpus={}", s.cpus),
            format!("--memory={}", s.memory_mb),
            "--interactive=false".into(),
            "--wait=apiserver,system_pods,node_ready".into(),
            "--alsologtostderr".into(),
            "-v=1".into(),
        ]);
        args
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
        std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).map_err(io(&sudo))?;
        std::fs::write(&mk.containers_conf, containers_conf_text()).map_err(io(&mk.containers_conf))?;
        // minikube always mounts the host's /lib/modules read-only; a host that is itself a
        // container or a VM without modules has none, and podman refuses the missing source. An
        // empty directory stands in for the run.
        match &setup.node {
            NodeImage::Kic(archive) => {
                let modules = Path::new("/lib/modules");
                if !modules.exists() {
                    std::fs::create_dir(modules).map_err(io(modules))?;
                    mk.made_modules = true;
                }
                mk.kicbase = load(archive)?;
                mk.built_image = true;
                let (ok, out) = podman(&["tag", &mk.kicbase, &setup.image]);
                if !ok {
                    return Err(RunError::Failed { command: format!("podman tag {} {}", mk.kicbase, setup.image), status: "failed".into(), output: out });
                }
            }
            NodeImage::Iso { tcg: true, .. } => {
                let name = setup.arch.qemu_system();
                let real = on_path(name, &std::env::var("PATH").unwrap_or_default()).ok_or_else(|| RunError::Spawn {
                    command: name.to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "not on PATH (minikube's qemu2 driver runs it)"),
                })?;
                let shim = shims.join(name);
                std::fs::write(&shim, tcg_shim(&real)).map_err(io(&shim))?;
                std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).map_err(io(&shim))?;
            }
            NodeImage::Iso { tcg: false, .. } => {}
        }
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

    /// `minikube start` (see [`Setup::start_args`]) to completion, `spawned` told its process id.
    pub fn start(&self, limit: Duration, spawned: &dyn Fn(u32)) -> Result<String, RunError> {
        let args = self.setup.start_args();
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

    /// Where the node's processes are on the host, for the race's memory figures.
    pub fn node_process(&self) -> NodeProcess {
        match self.setup.node {
            NodeImage::Kic(_) => NodeProcess::Container(self.setup.profile.clone()),
            NodeImage::Iso { .. } => NodeProcess::Pidfile(self.machine_dir().join("qemu.pid")),
        }
    }

    /// minikube's directory of the profile's machine.
    fn machine_dir(&self) -> PathBuf {
        self.home.join("machines").join(&self.setup.profile)
    }

    /// The qemu processes that run the profile's machine (their command line names its
    /// directory).
    fn qemu_pids(&self) -> Vec<u32> {
        let dir = self.machine_dir().display().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
        procs
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    args.first().is_some_and(|a| a.windows(11).any(|w| w == b"qemu-system"))
                        && args.iter().any(|a| String::from_utf8_lossy(a).contains(dir.as_str()))
                })
            })
            .collect()
    }

    /// What the host holds of the profile: podman's containers, networks and volumes (kic), or
    /// qemu processes (VM).
    pub fn leftovers(&self) -> Vec<String> {
        let p = &self.setup.profile;
        if let NodeImage::Iso { .. } = self.setup.node {
            return self.qemu_pids().into_iter().map(|pid| format!("qemu process {pid}")).collect();
        }
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

    /// `minikube delete`, then nothing of the profile may be left in podman or qemu. A VM's
    /// qemu may still be exiting when the command returns: it has [`QEMU_EXIT`] to go.
    pub fn delete(&self, limit: Duration) -> Result<(), RunError> {
        self.run(&["delete"], limit)?;
        let since = std::time::Instant::now();
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return Ok(());
            }
            if since.elapsed() > QEMU_EXIT {
                return Err(RunError::Leftovers { profile: self.setup.profile.clone(), what: "after `minikube delete`", items: left });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// How long a VM's qemu may take to exit after `minikube delete` returned.
pub const QEMU_EXIT: Duration = Duration::from_secs(60);

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
            if let NodeImage::Kic(_) = self.setup.node {
                let _ = podman(&["rm", "-f", "-v", &p]);
                let _ = podman(&["network", "rm", "-f", &p]);
                let _ = podman(&["volume", "rm", "-f", &p]);
            }
            for pid in self.qemu_pids() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
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

/// The first executable `name` in the directories of `path`.
fn on_path(name: &str, path: &str) -> Option<PathBuf> {
    std::env::split_paths(path).map(|d| d.join(name)).find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// A `qemu-system-*` that runs `real` with every `kvm` argument (minikube's `-accel kvm`) made
/// `tcg`.
fn tcg_shim(real: &Path) -> String {
    format!(
        "#!/bin/sh\n# this host's KVM does not run guests: minikube's -accel kvm becomes tcg\nfor a; do shift; if [ \"$a\" = kvm ]; then set -- \"$@\" tcg; else set -- \"$@\" \"$a\"; fi; done\nexec '{}' \"$@\"\n",
        real.display()
    )
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tcg_shim_turns_kvm_into_tcg_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("qemu-system-x86_64");
        std::fs::write(&shim, tcg_shim(Path::new("/bin/echo"))).unwrap();
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new(&shim).args(["-accel", "kvm", "-name", "a b", "-cpu", "host"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "-accel tcg -name a b -cpu host\n");
        assert_eq!(on_path("qemu-system-x86_64", &dir.path().display().to_string()), Some(shim));
        assert_eq!(on_path("no-such-program-here", &dir.path().display().to_string()), None);
    }

    #[test]
    fn the_start_flags_follow_the_node_image() {
        let mut s = Setup::new("p", "/mk".into(), "/sp.tar".into(), NodeImage::Kic("/k.tar".into()), "/c".into(), Arch::X86_64, "v1.34.4");
        let a = s.start_args();
        assert!(a.contains(&"--driver=podman".to_string()) && a.iter().any(|x| x.starts_with("--base-image=")), "{a:?}");
        s.node = NodeImage::Iso { iso: "/o/minikube.iso".into(), tcg: true };
        let a = s.start_args();
        assert!(a.contains(&"--driver=qemu2".to_string()) && a.contains(&"--iso-url=file:///o/minikube.iso".to_string()), "{a:?}");
        assert!(!a.iter().any(|x| x.starts_with("--base-image") || x.starts_with("--subnet")), "{a:?}");
    }

    #[test]
    fn the_containers_conf_sets_runc_and_limits() {
        let t = containers_conf_text();
        assert!(t.contains("runtime = \"runc\""), "{t}");
        assert!(t.contains("nofile="), "{t}");
    }
}
