//! The container driver ("kic", Kubernetes in a container): runs the kicbase image as minikube's
//! docker/podman drivers do, and hands the agent its trust material through a bind mount.
//!
//! The container is privileged (or, where `--privileged` cannot apply capabilities, gets every
//! capability), seccomp and AppArmor unconfined, with tmpfs on /run, /run/lock and /tmp (systemd
//! needs them), a named volume on /var (the node's state survives stop/start), the host's
//! /lib/modules read-only, hostname = name, minikube's labels, and its ports published on
//! 127.0.0.1 with random host ports (read back with `podman port`). The trust directory (`ca.crt`,
//! `agent.crt`, `agent.key`) is mounted read-only on [`TRUST_MOUNT`], where the image's
//! minikube-agent.service drop-in (`--trust-dir`) looks for it. `-t` makes the container's tty
//! its /dev/console, so the agent's `minikube-agent: ready ADDR` line shows in the container's
//! logs, which is how [`Kic::wait_ready`] knows the node is up.
//!
//! Typical use:
//! ```no_run
//! # fn main() -> Result<(), launcher::resources::kic::KicError> {
//! use launcher::resources::kic::{Engine, Kic, KicConfig};
//! let mut cfg = KicConfig::new(Engine::podman(), "minikube", "kicbase:v0.1.0", "/path/to/trust");
//! cfg.runtime = Some("runc".into());
//! let node = Kic::create(&cfg)?;
//! node.wait_ready(std::time::Duration::from_secs(120))?;
//! let agent = node.agent_addr()?; // 127.0.0.1:<random port> -> 7443 in the container
//! node.stop()?;
//! node.start()?;
//! node.delete()?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::model::{GUEST_AGENT_PORT, GUEST_APISERVER_PORT, GUEST_SSH_PORT};

mod archive;
mod engine;
pub mod network;
pub mod preflight;

pub use archive::{architectures, read_archive, ArchiveImage};
pub use engine::{default_oci_runtime, loaded_reference, Engine, ImageReady, ImageSource};

/// Where the image's agent unit expects the trust material (see kicbase/overlay).
pub const TRUST_MOUNT: &str = "/etc/minikube-agent/trust";
/// Ports minikube publishes (SSH, docker TLS, API server, registry, ingress) plus the agent's.
pub const DEFAULT_PORTS: &[u16] = &[GUEST_SSH_PORT, 2376, GUEST_APISERVER_PORT, 5000, 32443, GUEST_AGENT_PORT];

#[derive(Debug, thiserror::Error)]
pub enum KicError {
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },
    #[error("trust directory {dir}: {reason}")]
    Trust { dir: PathBuf, reason: String },
    #[error("container {name}: {message}\n--- last container log lines ---\n{log_tail}")]
    NotReady { name: String, message: String, log_tail: String },
    #[error("container {name}: cannot parse `port {port}` output {output:?}")]
    Port { name: String, port: u16, output: String },
    #[error("container {name} has no IP address on any network ({output:?})")]
    NoIp { name: String, output: String },
    #[error("image archive {path}: {reason}")]
    Archive { path: PathBuf, reason: String },
    #[error("--image {0:?}: neither an existing archive nor an image reference")]
    BadImage(String),
}

/// Whether the engine said the container, volume or image does not exist.
pub fn is_missing(e: &KicError) -> bool {
    matches!(e, KicError::Command { stderr, .. } if {
        let s = stderr.to_ascii_lowercase();
        s.contains("no such") || s.contains("not known") || s.contains("not found")
    })
}

/// How privileges are granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Privileges {
    /// `--privileged` (what minikube does).
    Privileged,
    /// `--cap-add ALL --cap-drop SYS_RESOURCE` and /proc unmasked (`systempaths=unconfined`;
    /// podman: `unmask=ALL`), for dockerd where `--privileged` fails with `unable to apply caps`.
    /// Access to all devices is not granted.
    AllCaps,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct KicConfig {
    pub engine: Engine,
    /// Container name, volume name and hostname (minikube: the machine name).
    pub name: String,
    /// `name.minikube.sigs.k8s.io` label (the profile).
    pub profile: String,
    /// `role.minikube.sigs.k8s.io` label.
    pub role: String,
    /// Image reference, e.g. `kicbase:v0.1.0` (must be loaded: `podman load -i out/kicbase.tar`).
    pub image: String,
    /// Host directory with `ca.crt`, `agent.crt`, `agent.key`.
    pub trust_dir: PathBuf,
    /// Container ports published on 127.0.0.1 with random host ports.
    pub ports: Vec<u16>,
    /// `--cpus`, e.g. `2`.
    pub cpus: Option<String>,
    /// `--memory`, e.g. `2g`.
    pub memory: Option<String>,
    /// `--network` (minikube: a per-cluster bridge) and `--ip`.
    pub network: Option<String>,
    pub ip: Option<String>,
    /// OCI runtime (`--runtime`), e.g. `runc` where crun refuses the host's cgroup layout.
    pub runtime: Option<String>,
    /// `--ulimit` values (`nofile=20000:20000`); empty: the host's hard limits for nofile and
    /// nproc (rootful podman otherwise asks for limits above them and fails).
    pub ulimits: Vec<String>,
    pub privileges: Privileges,
    /// Mount the host's /lib/modules read-only (default: when the host has it; minikube always
    /// mounts it, but a host that is itself a container may have none).
    pub mount_modules: bool,
    /// Bind the host's cgroup hierarchy writable into the container, in the host's cgroup
    /// namespace (`-v /sys/fs/cgroup:/sys/fs/cgroup:rw --cgroupns host`): on a cgroup v1 host an
    /// unprivileged container's hierarchy is read-only, and systemd cannot start there.
    pub host_cgroups: bool,
    /// Extra arguments for `run`, before the image.
    pub extra_run_args: Vec<String>,
}

impl KicConfig {
    /// minikube's defaults for a control-plane node of profile `name`.
    pub fn new(engine: Engine, name: &str, image: &str, trust_dir: impl Into<PathBuf>) -> Self {
        KicConfig {
            engine,
            name: name.into(),
            profile: name.into(),
            role: "control-plane".into(),
            image: image.into(),
            trust_dir: trust_dir.into(),
            ports: DEFAULT_PORTS.to_vec(),
            cpus: None,
            memory: None,
            network: None,
            ip: None,
            runtime: None,
            ulimits: Vec::new(),
            privileges: Privileges::Privileged,
            mount_modules: Path::new("/lib/modules").is_dir(),
            host_cgroups: false,
            extra_run_args: Vec::new(),
        }
    }

    /// The `run` arguments (after the subcommand), as minikube's kic driver builds them.
    pub fn run_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["-d".into(), "-t".into()];
        match self.privileges {
            Privileges::Privileged => a.push("--privileged".into()),
            // Without --privileged the engine masks parts of /proc and mounts /proc/sys
            // read-only. The kubelet's container manager writes vm.overcommit_memory,
            // kernel.panic and kernel.panic_on_oops when they differ from what it wants, and
            // refuses to start on a read-only /proc/sys: unmask, as --privileged does (those
            // sysctls are the host kernel's, under minikube's --privileged node as here). The
            // namespaced one pod networking needs is also set by the engine.
            Privileges::AllCaps => {
                let unmask = if self.engine.is_docker() { "systempaths=unconfined" } else { "unmask=ALL" };
                a.extend(["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", unmask, "--sysctl", "net.ipv4.ip_forward=1"].map(String::from))
            }
        }
        a.extend(["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"].map(String::from));
        for t in ["/tmp", "/run", "/run/lock"] {
            a.push("--tmpfs".into());
            a.push(t.into());
        }
        if self.host_cgroups {
            a.extend(["-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns", "host"].map(String::from));
        }
        if self.mount_modules {
            a.extend(["-v".into(), "/lib/modules:/lib/modules:ro".into()]);
        }
        a.extend(["-v".into(), format!("{}:/var", self.name)]);
        a.extend(["-v".into(), format!("{}:{TRUST_MOUNT}:ro", self.trust_dir.display())]);
        a.extend(["--hostname".into(), self.name.clone(), "--name".into(), self.name.clone()]);
        for l in self.labels() {
            a.extend(["--label".into(), l]);
        }
        a.extend(["-e".into(), "container=docker".into()]);
        if let Some(n) = &self.network {
            a.extend(["--network".into(), n.clone()]);
        }
        if let Some(ip) = &self.ip {
            a.extend(["--ip".into(), ip.clone()]);
        }
        if let Some(c) = &self.cpus {
            a.push(format!("--cpus={c}"));
        }
        if let Some(m) = &self.memory {
            a.push(format!("--memory={m}"));
        }
        if let Some(r) = &self.runtime {
            a.extend(["--runtime".into(), r.clone()]);
        }
        let ulimits = if self.ulimits.is_empty() { host_ulimits() } else { self.ulimits.clone() };
        for u in ulimits {
            a.extend(["--ulimit".into(), u]);
        }
        for p in &self.ports {
            a.push(format!("--publish=127.0.0.1::{p}"));
        }
        a.extend(self.extra_run_args.iter().cloned());
        a.push(self.image.clone());
        a
    }

    fn labels(&self) -> Vec<String> {
        vec![
            "created_by.minikube.sigs.k8s.io=true".into(),
            format!("name.minikube.sigs.k8s.io={}", self.profile),
            format!("role.minikube.sigs.k8s.io={}", self.role),
        ]
    }
}

/// `nofile=N:N` and `nproc=N:N` within this process's hard limits (/proc/self/limits): nofile
/// at its hard limit, nproc at most 32768 (on this host the runtime refused the full hard limit
/// of 96365 with `error setting rlimit type 6: operation not permitted`, 32768 works).
pub fn host_ulimits() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard = |label: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(label))?;
        let fields: Vec<&str> = line[label.len()..].split_whitespace().collect();
        fields.get(1)?.parse().ok()
    };
    let mut v = Vec::new();
    if let Some(h) = hard("Max open files") {
        v.push(format!("nofile={h}:{h}"));
    }
    let nproc = hard("Max processes").map_or(32768, |h| h.min(32768));
    v.push(format!("nproc={nproc}:{nproc}"));
    v
}

/// Check the trust directory has the three files the agent reads.
pub fn check_trust_dir(dir: &Path) -> Result<(), KicError> {
    for f in ["ca.crt", "agent.crt", "agent.key"] {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(KicError::Trust { dir: dir.to_path_buf(), reason: format!("{f} is missing") });
        }
    }
    Ok(())
}

/// A node container (created by [`Kic::create`], or found again by name with [`Kic::existing`]).
#[derive(Clone, Debug)]
pub struct Kic {
    pub engine: Engine,
    pub name: String,
}

/// A container's state as the engine reports it (`inspect --format {{.State.Status}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Running,
    /// Created or configured, not started yet (it may be starting).
    Created,
    Exited,
    Paused,
    /// Anything else the engine says (`stopped`, `dead`, `removing`...), kept for messages.
    Other(String),
}

impl ContainerState {
    pub fn parse(s: &str) -> ContainerState {
        match s.trim() {
            "running" => ContainerState::Running,
            "created" | "configured" | "initialized" => ContainerState::Created,
            "exited" => ContainerState::Exited,
            "paused" => ContainerState::Paused,
            other => ContainerState::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContainerState::Running => "running",
            ContainerState::Created => "created",
            ContainerState::Exited => "exited",
            ContainerState::Paused => "paused",
            ContainerState::Other(s) => s,
        })
    }
}

impl Kic {
    /// Create the volume and start the container (nothing is waited for: see [`Kic::wait_ready`]).
    /// On failure the volume and container are removed again.
    pub fn create(cfg: &KicConfig) -> Result<Kic, KicError> {
        check_trust_dir(&cfg.trust_dir)?;
        let e = &cfg.engine;
        let kic = Kic { engine: e.clone(), name: cfg.name.clone() };
        let mut vol = vec!["volume".to_string(), "create".to_string()];
        for l in cfg.labels() {
            vol.extend(["--label".into(), l]);
        }
        vol.push(cfg.name.clone());
        // A volume left by a container removed outside the launcher keeps the node's /var: reuse
        // it (podman refuses to create it again, docker returns it).
        let volume_created = match e.run(&vol) {
            Ok(_) => true,
            Err(KicError::Command { stderr, .. }) if stderr.contains("already exists") => {
                tracing::info!("reusing volume {}", cfg.name);
                false
            }
            Err(err) => return Err(err),
        };
        let mut run = vec!["run".to_string()];
        run.extend(cfg.run_args());
        tracing::info!(name = %cfg.name, image = %cfg.image, "starting node container");
        if let Err(err) = e.run(&run) {
            let _ = e.run(&kic.args(&["rm", "-f", "-v", &kic.name]));
            if volume_created {
                let _ = e.run(&kic.args(&["volume", "rm", "-f", &kic.name]));
            }
            return Err(err);
        }
        Ok(kic)
    }

    /// [`Kic::create`]; when the engine cannot apply `--privileged` (dockerd in some nested
    /// hosts: `unable to apply caps`), again with [`Privileges::AllCaps`]. Returns the
    /// privileges used.
    pub fn create_with_fallback(cfg: &KicConfig) -> Result<(Kic, Privileges), KicError> {
        match Kic::create(cfg) {
            Err(KicError::Command { stderr, .. }) if cfg.privileges == Privileges::Privileged && stderr.contains("unable to apply caps") => {
                // Without --privileged the cgroup hierarchy is read-only on a cgroup v1 host (the
                // engine says which it has): systemd needs it writable.
                let host_cgroups = cfg.engine.cgroup_version()? == 1;
                tracing::warn!(
                    "{}: --privileged failed (unable to apply caps); using --cap-add ALL{}",
                    cfg.engine.program,
                    if host_cgroups { " with the host's cgroup v1 hierarchy writable" } else { "" }
                );
                let cfg = KicConfig { privileges: Privileges::AllCaps, host_cgroups, ..cfg.clone() };
                Ok((Kic::create(&cfg)?, Privileges::AllCaps))
            }
            other => other.map(|k| (k, cfg.privileges.clone())),
        }
    }

    /// A handle on an existing container.
    pub fn existing(engine: Engine, name: &str) -> Kic {
        Kic { engine, name: name.into() }
    }

    fn args(&self, a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// The container's logs (its console: systemd and the agent).
    pub fn logs(&self) -> Result<String, KicError> {
        self.engine.run_combined(&self.args(&["logs", &self.name]))
    }

    /// `running`, `exited`, `created`... (`inspect --format {{.State.Status}}`).
    pub fn state(&self) -> Result<ContainerState, KicError> {
        Ok(ContainerState::parse(&self.engine.run(&self.args(&["container", "inspect", "--format", "{{.State.Status}}", &self.name]))?))
    }

    /// The container's state, None when there is no such container.
    pub fn find_state(&self) -> Result<Option<ContainerState>, KicError> {
        match self.state() {
            Ok(s) => Ok(Some(s)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Fail with the last log lines when the container is not running (it exited at once: its
    /// init could not start).
    pub fn check_running(&self) -> Result<(), KicError> {
        match self.find_state()? {
            Some(ContainerState::Running) => Ok(()),
            other => Err(KicError::NotReady {
                name: self.name.clone(),
                message: format!("container is {}", other.map_or("gone".to_string(), |s| s.to_string())),
                log_tail: self.logs().map(|l| tail(&l, 40)).unwrap_or_else(|e| e.to_string()),
            }),
        }
    }

    /// The container's address on its (first) network.
    pub fn ip(&self) -> Result<String, KicError> {
        let out =
            self.engine.run(&self.args(&["container", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", &self.name]))?;
        out.split_whitespace().next().map(str::to_string).ok_or_else(|| KicError::NoIp { name: self.name.clone(), output: out.clone() })
    }

    /// How many times the agent said it was ready (across restarts, logs accumulate).
    pub fn ready_count(&self) -> Result<usize, KicError> {
        Ok(self.logs()?.matches(agent_api::READY_MARKER).count())
    }

    /// Wait until the agent's ready line appears in the logs for the first time (after
    /// [`Kic::create`]).
    pub fn wait_ready(&self, timeout: Duration) -> Result<Duration, KicError> {
        self.wait_ready_after(0, timeout)
    }

    /// Wait until the logs hold more than `seen` ready lines. Fails early when the container
    /// stops or the agent says it cannot serve.
    pub fn wait_ready_after(&self, seen: usize, timeout: Duration) -> Result<Duration, KicError> {
        let start = Instant::now();
        loop {
            let logs = self.logs()?;
            if logs.matches(agent_api::READY_MARKER).count() > seen {
                tracing::info!(name = %self.name, secs = start.elapsed().as_secs_f64(), "agent ready");
                return Ok(start.elapsed());
            }
            let fail = |message: String| KicError::NotReady { name: self.name.clone(), message, log_tail: tail(&logs, 40) };
            if logs.matches(agent_api::NOT_SERVING_MARKER).count() > 0 && logs.rfind(agent_api::NOT_SERVING_MARKER) > logs.rfind(agent_api::READY_MARKER) {
                return Err(fail("the agent cannot serve".into()));
            }
            let state = self.state()?;
            if !matches!(state, ContainerState::Running | ContainerState::Created) {
                return Err(fail(format!("container is {state}")));
            }
            if start.elapsed() > timeout {
                return Err(fail(format!("no `{}` line after {timeout:?}", agent_api::READY_MARKER)));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The host port published for `container_port` (TCP).
    pub fn host_port(&self, container_port: u16) -> Result<u16, KicError> {
        let out = self.engine.run(&self.args(&["port", &self.name, &format!("{container_port}/tcp")]))?;
        parse_port(&out).ok_or_else(|| KicError::Port { name: self.name.clone(), port: container_port, output: out.clone() })
    }

    /// The agent's address on the host: 127.0.0.1 and the port published for 7443.
    pub fn agent_addr(&self) -> Result<SocketAddr, KicError> {
        Ok(SocketAddr::from(([127, 0, 0, 1], self.host_port(agent_api::DEFAULT_PORT)?)))
    }

    /// Stop (the image's STOPSIGNAL, SIGRTMIN+3, lets systemd shut down cleanly).
    pub fn stop(&self) -> Result<(), KicError> {
        self.stop_within(Duration::from_secs(60))
    }

    /// Stop, killing the container after `timeout`.
    pub fn stop_within(&self, timeout: Duration) -> Result<(), KicError> {
        self.engine.run(&self.args(&["stop", "-t", &timeout.as_secs().to_string(), &self.name]))?;
        Ok(())
    }

    /// Start a stopped container and wait for the agent again. Host ports change: read them
    /// again with [`Kic::agent_addr`].
    pub fn start(&self) -> Result<(), KicError> {
        self.engine.run(&self.args(&["start", &self.name]))?;
        Ok(())
    }

    /// [`Kic::start`] and wait for a fresh ready line.
    pub fn start_and_wait(&self, timeout: Duration) -> Result<Duration, KicError> {
        let seen = self.ready_count()?;
        self.start()?;
        self.wait_ready_after(seen, timeout)
    }

    /// Run a command in the container (`exec`), returning stdout.
    pub fn exec(&self, cmd: &[&str]) -> Result<String, KicError> {
        let mut a = vec!["exec".to_string(), self.name.clone()];
        a.extend(cmd.iter().map(|s| s.to_string()));
        self.engine.run(&a)
    }

    /// Remove the container and its /var volume. Missing ones are not an error.
    pub fn delete(&self) -> Result<(), KicError> {
        match self.engine.run(&self.args(&["rm", "-f", "-v", &self.name])) {
            Err(e) if !is_missing(&e) => return Err(e),
            _ => {}
        }
        match self.engine.run(&self.args(&["volume", "rm", "-f", &self.name])) {
            Err(e) if !is_missing(&e) => Err(e),
            _ => Ok(()),
        }
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `127.0.0.1:43567` (possibly several lines, IPv4 and IPv6) -> 43567.
pub fn parse_port(out: &str) -> Option<u16> {
    out.lines().filter_map(|l| l.trim().rsplit_once(':')).find_map(|(_, p)| p.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_args_follow_minikube() {
        let mut c = KicConfig::new(Engine::podman(), "p1", "kicbase:v1", "/t");
        c.runtime = Some("runc".into());
        c.ulimits = vec!["nofile=20000:20000".into()];
        c.cpus = Some("2".into());
        c.mount_modules = true;
        let a = c.run_args().join(" ");
        for want in [
            "-d -t --privileged --security-opt seccomp=unconfined --security-opt apparmor=unconfined",
            "--tmpfs /tmp --tmpfs /run --tmpfs /run/lock",
            "-v /lib/modules:/lib/modules:ro -v p1:/var -v /t:/etc/minikube-agent/trust:ro",
            "--hostname p1 --name p1",
            "--label created_by.minikube.sigs.k8s.io=true --label name.minikube.sigs.k8s.io=p1 --label role.minikube.sigs.k8s.io=control-plane",
            "-e container=docker",
            "--cpus=2",
            "--runtime runc --ulimit nofile=20000:20000",
            "--publish=127.0.0.1::22 --publish=127.0.0.1::2376 --publish=127.0.0.1::8443",
            "--publish=127.0.0.1::7443 kicbase:v1",
        ] {
            assert!(a.contains(want), "{want:?} missing from {a}");
        }
        assert!(a.ends_with("kicbase:v1"));
    }

    #[test]
    fn all_caps_unmasks_proc_for_the_kubelet() {
        for (engine, unmask) in [(Engine::docker(), "systempaths=unconfined"), (Engine::podman(), "unmask=ALL")] {
            let mut c = KicConfig::new(engine, "p1", "kicbase:v1", "/t");
            c.privileges = Privileges::AllCaps;
            let a = c.run_args().join(" ");
            assert!(!a.contains("--privileged"), "{a}");
            assert!(a.contains(&format!("--cap-add ALL --cap-drop SYS_RESOURCE --security-opt {unmask} ")), "{a}");
        }
    }

    #[test]
    fn image_argument_is_archive_or_reference() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("img");
        std::fs::write(&file, b"x").unwrap();
        let f = file.to_str().unwrap();
        assert_eq!(ImageSource::parse(f).unwrap(), ImageSource::Archive(file.clone()));
        for a in ["out/kicbase.tar", "missing.tar.gz", "x.tgz", "./kicbase", "/nope/image"] {
            assert_eq!(ImageSource::parse(a).unwrap(), ImageSource::Archive(a.into()), "{a}");
        }
        for r in ["kicbase:v0.1.0", "gcr.io/k8s-minikube/kicbase:v0.0.48", "localhost/kicbase@sha256:0123"] {
            assert_eq!(ImageSource::parse(r).unwrap(), ImageSource::Reference(r.into()), "{r}");
        }
        for bad in ["", "a b", "-x"] {
            assert!(matches!(ImageSource::parse(bad), Err(KicError::BadImage(_))), "{bad:?}");
        }
    }

    fn tar_of(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        let p = dir.join("a.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.finish().unwrap();
        p
    }

    #[test]
    fn archive_name_and_ids() {
        let d = tempfile::tempdir().unwrap();
        // docker-save style manifest.json beside an OCI index (what our archives carry).
        let index = br#"{"manifests":[{"annotations":{"io.containerd.image.name":"kicbase:v1"},"digest":"sha256:aaaa"}]}"#;
        let manifest = br#"[{"Config":"blobs/sha256/cccc","RepoTags":["kicbase:v2"]}]"#;
        let p = tar_of(d.path(), &[("blobs/sha256/big", &[0u8; 4096]), ("index.json", index), ("manifest.json", manifest)]);
        let a = read_archive(&p).unwrap();
        assert_eq!(a, ArchiveImage { reference: "kicbase:v2".into(), ids: vec!["cccc".into(), "aaaa".into()] });
        // OCI only: the config digest comes from the manifest blob.
        let blob = br#"{"config":{"digest":"sha256:bbbb"}}"#;
        let p = tar_of(d.path(), &[("blobs/sha256/aaaa", blob), ("index.json", index)]);
        let a = read_archive(&p).unwrap();
        assert_eq!(a, ArchiveImage { reference: "kicbase:v1".into(), ids: vec!["bbbb".into(), "aaaa".into()] });
        // Not an image archive.
        let p = tar_of(d.path(), &[("hello", b"x")]);
        let e = read_archive(&p).unwrap_err().to_string();
        assert!(e.contains("a.tar") && e.contains("not an image archive"), "{e}");
        let e = read_archive(&d.path().join("none.tar")).unwrap_err().to_string();
        assert!(e.contains("none.tar"), "{e}");
    }

    #[test]
    fn load_output_names_the_image() {
        assert_eq!(loaded_reference("Getting image source signatures\nLoaded image: localhost/kicbase:v0.1.0\n").as_deref(), Some("localhost/kicbase:v0.1.0"));
        assert_eq!(loaded_reference("Loaded image(s): localhost/kicbase:v1,localhost/kicbase:latest\n").as_deref(), Some("localhost/kicbase:v1"));
        assert_eq!(loaded_reference("Loaded image ID: sha256:abc\n"), None);
    }

    #[test]
    fn ports_parse() {
        assert_eq!(parse_port("127.0.0.1:43567\n"), Some(43567));
        assert_eq!(parse_port("0.0.0.0:1\n[::]:1\n"), Some(1));
        assert_eq!(parse_port(""), None);
    }

    #[test]
    fn host_ulimits_are_hard_limits() {
        for u in host_ulimits() {
            let (name, v) = u.split_once('=').unwrap();
            assert!(name == "nofile" || name == "nproc");
            let (s, h) = v.split_once(':').unwrap();
            assert_eq!(s, h);
            assert!(s.parse::<u64>().is_ok(), "{u}");
        }
    }

    #[test]
    fn trust_dir_must_hold_three_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ca.crt"), "x").unwrap();
        let e = check_trust_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("agent.crt"), "{e}");
    }
}
