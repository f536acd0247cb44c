//! The real minikube (`k8s.io/minikube`, built from its Go module by `cargo xtask minikube`)
//! drives our kicbase with the podman driver, offline: its binary and image caches are filled
//! from the Kubernetes bundle (`bundle::minikube::fill_home`), the storage-provisioner image is
//! built from minikube's own module, `--preload=false`, and `--base-image` names our kicbase
//! (plus the bundle's crictl: minikube runs `crictl` on the node and Debian bookworm has none).
//!
//! One profile, in order: `minikube start` → `minikube kubectl -- get nodes` Ready, with the
//! control plane's images the ones from minikube's image cache (ours); `minikube ssh -- ...`;
//! `minikube stop` / `start` → Ready again; `minikube delete` leaves no container, network or
//! volume of the profile behind.
//!
//! Needs root, podman, the kicbase archive, the bundle and minikube (`cargo xtask test` builds
//! them all); a missing one fails the test naming it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROFILE: &str = "mkcompat";
/// Away from 192.168.49.0/24, which minikube picks first and other tests use.
const SUBNET: &str = "192.168.139.0/24";
const IMAGE: &str = "localhost/minikube-compat-kicbase:test";
const KUBERNETES: &str = platform::bundle::DEFAULT_KUBERNETES_VERSION;

/// A minikube of its own home, with a `sudo` that is a no-op for root in front of PATH (minikube
/// runs `sudo -n podman ...` for the podman driver; this machine has no sudo and we are root).
struct Minikube {
    bin: PathBuf,
    home: PathBuf,
    path: String,
    logs: PathBuf,
    /// A containers.conf for minikube's podman (see [`containers_conf_text`]).
    containers_conf: PathBuf,
}

impl Minikube {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        // The profile first: anything after `--` goes to kubectl or ssh.
        c.arg(format!("--profile={PROFILE}"))
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

    /// Run `minikube ARGS` to completion within `limit`: (success, stdout+stderr). Its output is
    /// also kept in `logs/<n>-<first arg>.log`.
    fn run(&self, args: &[&str], limit: Duration) -> (bool, String) {
        let n = std::fs::read_dir(&self.logs).map(|d| d.count()).unwrap_or(0);
        let log = self.logs.join(format!("{n:02}-{}.log", args.first().unwrap_or(&"minikube")));
        let mut child = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.bin.display()));
        let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
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
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let text = format!("{}{}", t_out.join().unwrap_or_default(), t_err.join().unwrap_or_default());
        let _ = std::fs::write(&log, &text);
        match status {
            Some(st) => (st.success(), text),
            None => (false, format!("{text}\n(minikube {} killed after {limit:?})", args.join(" "))),
        }
    }

    /// `minikube ARGS`, which must succeed; its output.
    fn ok(&self, args: &[&str], limit: Duration) -> String {
        let (ok, text) = self.run(args, limit);
        assert!(ok, "`minikube {}` failed:\n{}", args.join(" "), tail(&text, 60));
        text
    }

    /// The node's Ready condition through `minikube kubectl`, polled until `limit`.
    fn wait_ready(&self, limit: Duration) -> Duration {
        let t = Instant::now();
        let mut last = String::new();
        while t.elapsed() < limit {
            let (ok, text) = self.run(&["kubectl", "--", "get", "nodes", "-o", r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#], Duration::from_secs(60));
            if ok && text.lines().any(|l| l.ends_with("=True")) {
                return t.elapsed();
            }
            last = text;
            std::thread::sleep(Duration::from_secs(2));
        }
        panic!("the node was not Ready within {limit:?}: {}", tail(&last, 20));
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn podman(args: &[&str]) -> (bool, String) {
    let out = Command::new("podman").args(args).output().expect("podman runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// What is left of the profile in podman: containers, networks, volumes.
fn leftovers() -> Vec<String> {
    let mut left = Vec::new();
    let (_, c) = podman(&["ps", "-a", "--filter", &format!("label=name.minikube.sigs.k8s.io={PROFILE}"), "--format", "{{.Names}}"]);
    left.extend(c.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("container {l}")));
    let (_, c) = podman(&["ps", "-a", "--format", "{{.Names}}"]);
    left.extend(c.lines().filter(|l| l.trim() == PROFILE).map(|l| format!("container {l}")));
    let (_, n) = podman(&["network", "ls", "--format", "{{.Name}}"]);
    left.extend(n.lines().filter(|l| l.trim() == PROFILE).map(|l| format!("network {l}")));
    let (_, v) = podman(&["volume", "ls", "--format", "{{.Name}}"]);
    left.extend(v.lines().filter(|l| l.trim() == PROFILE).map(|l| format!("volume {l}")));
    left
}

/// Deletes the profile and anything podman still holds of it, even when the test fails; removes
/// the empty /lib/modules the test made (if it made one).
struct Cleanup<'a>(&'a Minikube, bool);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir("/lib/modules");
        }
        let _ = self.0.run(&["delete"], Duration::from_secs(120));
        let _ = podman(&["rm", "-f", "-v", PROFILE]);
        let _ = podman(&["network", "rm", "-f", PROFILE]);
        let _ = podman(&["volume", "rm", "-f", PROFILE]);
        let _ = podman(&["rmi", "-f", IMAGE]);
    }
}

/// The image name `podman load` reports for the archive.
fn load(archive: &Path) -> String {
    let (ok, text) = podman(&["load", "-i", &archive.display().to_string()]);
    assert!(ok, "podman load -i {}: {text}", archive.display());
    text.lines().filter_map(|l| l.strip_prefix("Loaded image: ").or_else(|| l.strip_prefix("Loaded image(s): "))).next().unwrap_or_else(|| panic!("podman load named no image: {text}")).split(',').next().unwrap().trim().to_string()
}

#[test]
fn minikube_starts_stops_and_deletes_a_podman_node_of_our_kicbase() {
    let _guard = e2e::GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let kicbase = e2e::kicbase_archive(&["podman"]);
    let cache = e2e::kubernetes_bundle();
    let (bin, storage_provisioner) = e2e::minikube_tools();
    let arch = platform::Arch::host().expect("an amd64 or arm64 host");
    assert!(is_root(), "minikube's podman driver runs podman as root (--force): run the test as root");

    let dir = tempfile::Builder::new().prefix("minikube-compat").tempdir_in("/var/tmp").unwrap();
    let home = dir.path().join("home/.minikube");
    let filled = bundle::minikube::fill_home(&home, &cache, arch, KUBERNETES, &storage_provisioner).expect("minikube's caches from the bundle");
    assert_eq!(filled.files.len(), 3 + 7 + 1, "kubelet, kubeadm, kubectl, seven control-plane images, the storage-provisioner");
    let shims = dir.path().join("bin");
    std::fs::create_dir_all(&shims).unwrap();
    let sudo = shims.join("sudo");
    std::fs::write(&sudo, "#!/bin/sh\n# root already: run the command without sudo's options\nwhile [ \"${1#-}\" != \"$1\" ]; do shift; done\nexec \"$@\"\n").unwrap();
    std::fs::set_permissions(&sudo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let containers_conf = dir.path().join("containers.conf");
    std::fs::write(&containers_conf, containers_conf_text()).unwrap();
    let mk = Minikube { bin, home, path: format!("{}:{}", shims.display(), std::env::var("PATH").unwrap_or_default()), logs, containers_conf };
    // minikube always mounts the host's /lib/modules read-only; a host that is itself a container
    // or a VM without modules (CI's) has none, and podman refuses the missing source. An empty
    // directory stands in for the run.
    let made_modules = !Path::new("/lib/modules").exists();
    if made_modules {
        std::fs::create_dir("/lib/modules").expect("mkdir /lib/modules");
    }
    let _cleanup = Cleanup(&mk, made_modules);
    assert!(leftovers().is_empty(), "podman already holds a {PROFILE} profile: {:?}", leftovers());

    let version = mk.ok(&["version", "--short"], Duration::from_secs(30));
    assert!(version.contains(bundle::minikube::DEFAULT_VERSION), "minikube version: {version}");

    // Our kicbase, plus the bundle's crictl (one layer), as the image minikube runs.
    let loaded = load(&kicbase);
    bundle::minikube::kicbase_with_crictl("podman", &loaded, &cache, arch, KUBERNETES, IMAGE, dir.path()).expect("kicbase + crictl");

    let start_args: Vec<String> = vec![
        "start".into(),
        "--driver=podman".into(),
        format!("--base-image={IMAGE}"),
        "--force".into(),
        "--preload=false".into(),
        format!("--kubernetes-version={KUBERNETES}"),
        "--container-runtime=containerd".into(),
        // minikube's default for kic with containerd is kindnet, whose image is not in the bundle.
        "--cni=bridge".into(),
        format!("--subnet={SUBNET}"),
        "--cpus=2".into(),
        "--memory=3072".into(),
        "--interactive=false".into(),
        "--wait=apiserver,system_pods,node_ready".into(),
        "--alsologtostderr".into(),
        "-v=1".into(),
    ];
    let start_args: Vec<&str> = start_args.iter().map(String::as_str).collect();

    // 1. start → Ready.
    let t = Instant::now();
    mk.ok(&start_args, Duration::from_secs(900));
    let ready = mk.wait_ready(Duration::from_secs(300));
    eprintln!("minikube start → Ready: {:.1} s (Ready seen {:.1} s after start returned)", t.elapsed().as_secs_f64(), ready.as_secs_f64());

    // The control plane runs the bundle's images, from minikube's image cache.
    let images = mk.ok(&["ssh", "--", "sudo", "crictl", "images"], Duration::from_secs(60));
    for name in ["registry.k8s.io/kube-apiserver", "registry.k8s.io/etcd", "registry.k8s.io/coredns/coredns", "gcr.io/k8s-minikube/storage-provisioner"] {
        assert!(images.contains(name), "{name} not in the node's images:\n{images}");
    }
    // 2. ssh: our image's identity file, read by minikube's SSH runner.
    let version_json = mk.ok(&["ssh", "--", "cat", "/version.json"], Duration::from_secs(60));
    let v: serde_json::Value = serde_json::from_str(version_json.trim()).unwrap_or_else(|e| panic!("/version.json is not JSON ({e}): {version_json}"));
    assert!(v.is_object(), "{v}");
    let uname = mk.ok(&["ssh", "--", "id", "-un"], Duration::from_secs(60));
    assert_eq!(uname.trim(), "docker", "minikube logs in as docker");

    // 3. stop, start → Ready again.
    mk.ok(&["stop"], Duration::from_secs(300));
    let (_, c) = podman(&["ps", "--filter", &format!("name=^{PROFILE}$"), "--format", "{{.Status}}"]);
    assert!(c.trim().is_empty(), "the node still runs after minikube stop: {c}");
    let t = Instant::now();
    mk.ok(&start_args, Duration::from_secs(900));
    mk.wait_ready(Duration::from_secs(300));
    eprintln!("minikube restart → Ready: {:.1} s", t.elapsed().as_secs_f64());

    // 4. delete leaves nothing of the profile.
    mk.ok(&["delete"], Duration::from_secs(300));
    assert_eq!(leftovers(), Vec::<String>::new(), "minikube delete left these behind");
}

/// podman's configuration for minikube's runs, for hosts like CI's (a container or VM whose
/// capability bounding set lacks CAP_SYS_RESOURCE, with cgroup v1 or hybrid cgroups): minikube runs
/// `podman run --privileged` with podman's default rlimits, which the OCI runtime cannot set above
/// the host's hard limits ("setrlimit RLIMIT_NOFILE: Operation not permitted"), and crun refuses
/// hybrid cgroups. So: nofile at the hard limit, nproc at most 32768, runc. minikube has no flag
/// for either; podman reads `CONTAINERS_CONF`.
fn containers_conf_text() -> String {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard = |name: &str| limits.lines().find(|l| l.starts_with(name)).and_then(|l| l[name.len()..].split_whitespace().nth(1)).and_then(|h| h.parse::<u64>().ok());
    let nofile = hard("Max open files").unwrap_or(1_048_576);
    let nproc = hard("Max processes").map_or(32768, |h| h.min(32768));
    format!("[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\n[engine]\nruntime = \"runc\"\n")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")))
}
