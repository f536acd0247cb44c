//! End-to-end tests live in `tests/`: they boot the ISO that `cargo xtask iso` built (path in
//! `MINIKUBE_ISO`, default `out/minikube.iso`) under real qemu, and run real containers.
//!
//! Every test that needs something from the machine asks for it here ([`iso_path`],
//! [`iso_with`], [`kicbase_archive`], [`require`]), before it starts anything. Whatever is
//! missing fails the test at once (a skipped test would count as passing), with one message that
//! names each missing file or program and the one command that prepares everything: [`PREPARE`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Installs the tools (qemu, podman, ...), builds the ISO and the kicbase image, sets
/// `MINIKUBE_ISO` and runs every test.
pub const PREPARE: &str = "bash scripts/setup.sh && cargo xtask test";

/// Something an end-to-end test needs from the machine.
pub enum Need {
    /// A program: a name looked up in PATH, or a path.
    Program(String),
    /// A file: what it is (for the message) and where it was looked for.
    File { what: String, path: PathBuf },
}

impl Need {
    pub fn program(name: &str) -> Need {
        Need::Program(name.to_string())
    }

    pub fn file(what: &str, path: impl Into<PathBuf>) -> Need {
        Need::File { what: what.to_string(), path: path.into() }
    }

    /// `None` when present, else what the failure message says about it.
    fn missing(&self) -> Option<String> {
        match self {
            Need::Program(p) if !found(p) => Some(if p.contains('/') { format!("{p} (not an executable file)") } else { format!("{p} (not found in PATH)") }),
            Need::File { what, path } if !path.is_file() => Some(format!("{what}: no file at {}", path.display())),
            _ => None,
        }
    }
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn found(program: &str) -> bool {
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

/// Fail the test, naming everything in `needs` that is missing and the command that prepares it
/// all, unless nothing is.
pub fn check(needs: &[Need]) {
    let missing: Vec<String> = needs.iter().filter_map(Need::missing).collect();
    if !missing.is_empty() {
        panic!(
            "this end-to-end test cannot run, missing: {}.\nPrepare everything and run every test with: {PREPARE}\n\
             (scripts/setup.sh installs qemu, podman and the other tools; `cargo xtask test` builds the ISO and \
             the kicbase image and sets MINIKUBE_ISO)",
            missing.join("; ")
        );
    }
}

/// Fail the test unless every program is there.
pub fn require(programs: &[&str]) {
    check(&programs.iter().map(|p| Need::program(p)).collect::<Vec<_>>());
}

/// The workspace root (the parent of this crate).
pub fn workspace() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The qemu the launcher runs: `MINIKUBE_QEMU`, else qemu-system-x86_64.
pub fn qemu() -> String {
    std::env::var("MINIKUBE_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

/// The ISO under test, with qemu and qemu-img to boot it. Fails (never skips) when any is missing.
pub fn iso_path() -> PathBuf {
    iso_with(Vec::new())
}

/// [`iso_path`], and `more` (e.g. xorriso, the UEFI firmware), checked in the same message.
pub fn iso_with(more: Vec<Need>) -> PathBuf {
    let (path, from) = match std::env::var_os("MINIKUBE_ISO") {
        Some(p) => (PathBuf::from(p), "MINIKUBE_ISO"),
        None => (workspace().join("out/minikube.iso"), "the default: MINIKUBE_ISO is not set"),
    };
    let mut needs = vec![Need::file(&format!("the ISO ({from})"), &path), Need::Program(qemu()), Need::program("qemu-img")];
    needs.extend(more);
    check(&needs);
    path
}

/// The arm64 ISO (`MINIKUBE_ISO_ARM64`, default `out/minikube-arm64.iso`), with
/// qemu-system-aarch64 and its UEFI firmware. Fails (never skips) when any is missing.
pub fn arm64_iso() -> PathBuf {
    let (path, from) = match std::env::var_os("MINIKUBE_ISO_ARM64") {
        Some(p) => (PathBuf::from(p), "MINIKUBE_ISO_ARM64"),
        None => (workspace().join("out/minikube-arm64.iso"), "the default: MINIKUBE_ISO_ARM64 is not set"),
    };
    check(&[
        Need::file(&format!("the arm64 ISO ({from}; `cargo xtask iso --arch arm64`)"), &path),
        Need::program("qemu-system-aarch64"),
        Need::file("the arm64 UEFI firmware (package qemu-efi-aarch64)", launcher::resources::qemu::AARCH64_FIRMWARE),
    ]);
    path
}

/// The kicbase image archive (`KICBASE_ARCHIVE`, default `out/kicbase.tar`) and the container
/// programs a test runs it with. Fails (never skips) when any is missing.
pub fn kicbase_archive(programs: &[&str]) -> PathBuf {
    let (path, from) = match std::env::var_os("KICBASE_ARCHIVE") {
        Some(p) => (PathBuf::from(p), "KICBASE_ARCHIVE"),
        None => (workspace().join("out/kicbase.tar"), "the default: KICBASE_ARCHIVE is not set"),
    };
    let mut needs = vec![Need::file(&format!("the kicbase image ({from})"), &path)];
    needs.extend(programs.iter().map(|p| Need::program(p)));
    check(&needs);
    path
}

/// One guest at a time: this machine has two cores, and parallel TCG guests slow each other.
pub static GUEST_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The Kubernetes bundle `cargo xtask kubernetes` built (`MINIKUBE_BUNDLE_CACHE`, default the
/// launcher's cache under `MINIKUBE_NODE_HOME`): the cache directory holding it, for
/// `StartOptions::cache_dir`. Fails (never skips) when its manifest is missing.
pub fn kubernetes_bundle() -> PathBuf {
    let cache = match std::env::var_os("MINIKUBE_BUNDLE_CACHE") {
        Some(p) => PathBuf::from(p),
        None => launcher::resources::state::Home::from_env().expect("the launcher's home").cache(),
    };
    let arch = platform::Arch::host().expect("an amd64 or arm64 host");
    let manifest = platform::bundle::manifest_path(&cache, arch, platform::bundle::DEFAULT_KUBERNETES_VERSION);
    check(&[Need::file("the Kubernetes bundle (`cargo xtask kubernetes`)", manifest), Need::program("go")]);
    cache
}

/// A static Go program of `e2e/testdata/NAME` built for the host (CGO off, Go's caches reused).
pub fn go_program(name: &str, out_dir: &Path) -> PathBuf {
    let out = out_dir.join(name);
    let st = std::process::Command::new("go")
        .current_dir(workspace().join("e2e/testdata").join(name))
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .args(["build", "-trimpath", "-o"])
        .arg(&out)
        .arg(".")
        .status()
        .expect("go runs");
    assert!(st.success(), "go build of e2e/testdata/{name} failed");
    out
}

/// A dockerd of our own (Debian's docker.io) under a temporary directory: its own data root,
/// exec root and socket, no networking of its own on the host (no iptables rules, no docker0;
/// the networks the launcher makes are its own bridges). Checked healthy before it is returned;
/// killed and unmounted when dropped. `host` is its `DOCKER_HOST`.
pub struct Dockerd {
    child: std::process::Child,
    pub host: String,
    dir: tempfile::TempDir,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        require(&["dockerd", "docker"]);
        let dir = tempfile::Builder::new().prefix("kic-dockerd").tempdir_in("/tmp").unwrap();
        let host = format!("unix://{}/docker.sock", dir.path().display());
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = std::process::Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .args(["-H", &host, "--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("dockerd: {e} (apt-get install docker.io)"));
        let d = Dockerd { child, host, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if d.docker(&["version"]).status.success() {
                return d;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        panic!("dockerd did not answer: {}", std::fs::read_to_string(d.dir.path().join("dockerd.log")).unwrap_or_default());
    }

    /// `docker -H HOST ARGS`.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("docker").arg("-H").arg(&self.host).args(args).output().expect("docker client runs")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Containers first (their mounts), then the daemon, then what is left mounted.
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", "-v", id]);
        }
        let _ = std::process::Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        let _ = std::process::Command::new("umount").arg("-R").arg(self.dir.path().join("root")).output();
        let _ = std::process::Command::new("umount").arg("-R").arg(self.dir.path().join("exec")).output();
    }
}

/// The real minikube `cargo xtask minikube` built (`MINIKUBE_BIN`, default `out/tools/minikube`)
/// and its storage-provisioner image archive beside it (`out/tools/storage-provisioner-v5.tar`).
/// Fails (never skips) when either is missing.
pub fn minikube_tools() -> (PathBuf, PathBuf) {
    let (bin, from) = match std::env::var_os("MINIKUBE_BIN") {
        Some(p) => (PathBuf::from(p), "MINIKUBE_BIN"),
        None => (workspace().join("out/tools/minikube"), "the default: MINIKUBE_BIN is not set"),
    };
    let archive = bin.with_file_name("storage-provisioner-v5.tar");
    check(&[
        Need::file(&format!("the real minikube ({from}; `cargo xtask minikube`)"), &bin),
        Need::file("minikube's storage-provisioner image (`cargo xtask minikube`)", &archive),
    ]);
    (bin, archive)
}

/// syft, the outside SBOM scanner `cargo xtask syft` built (`SYFT_BIN`, default
/// `out/tools/syft`). Fails (never skips) when it is missing.
pub fn syft() -> PathBuf {
    let (bin, from) = match std::env::var_os("SYFT_BIN") {
        Some(p) => (PathBuf::from(p), "SYFT_BIN"),
        None => (workspace().join("out/tools/syft"), "the default: SYFT_BIN is not set"),
    };
    check(&[Need::file(&format!("syft ({from}; `cargo xtask syft`)"), &bin)]);
    bin
}
