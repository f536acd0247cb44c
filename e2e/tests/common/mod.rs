//! What several e2e test binaries share: a container image built by `image::oci` around a
//! static binary, for either architecture (arm64 cross-compiled with Debian's
//! gcc-aarch64-linux-gnu as the linker; nothing of arm64 runs on the host).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_api::api::ExecRequest;
use agent_api::client::Client;
use image::oci::{build_image, write_archive, write_layer, BlobStore, Compression, ImageConfig, ImageMeta};
use image::rootfs::{Entry, Tree};
use launcher::driver::qemu::machine;
use launcher::options::StartOptions;
use launcher::report::{Output, Reporter, StepEvent};
use launcher::resources::state::Home;
use launcher::start;
use platform::Arch;

pub const IMAGE_NAME: &str = "localhost/e2e-hello";
pub const IMAGE_TAG: &str = "v1";
pub const GREETING: &str = "hello from a static binary in an image built by image::oci";

/// A static binary printing GREETING, compiled for `arch` with the toolchain running the tests.
pub fn static_hello(dir: &Path, arch: Arch) -> Vec<u8> {
    let src = dir.join("hello.rs");
    std::fs::write(&src, format!("fn main() {{ println!(\"{GREETING}\"); }}")).unwrap();
    let bin = dir.join(format!("hello-{}", arch.debian()));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args(["--edition", "2021", "-O", "-C", "target-feature=+crt-static", "-C", "strip=symbols", "--target", arch.rust_target()]);
    if Arch::host() != Some(arch) {
        cmd.arg("-C").arg(format!("linker={}-gcc", arch.gnu_triplet()));
    }
    let out = cmd.arg("-o").arg(&bin).arg(&src).output().expect("rustc runs");
    assert!(
        out.status.success(),
        "rustc --target {}: {}\n(the cross toolchain and rustup target come from `bash scripts/setup.sh`)",
        arch.rust_target(),
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(bin).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), arch.elf_machine(), "an ELF for {arch}");
    bytes
}

/// An OCI archive (also a docker-archive) holding /hello for `arch`; its config says `arch`.
pub fn hello_archive(dir: &Path, arch: Arch) -> PathBuf {
    let mut tree = Tree::new();
    let mut hello = Entry::file(static_hello(dir, arch), 0o755);
    hello.mtime = 1_700_000_000;
    tree.insert("/hello", hello);
    let store = BlobStore::open(dir.join("store")).unwrap();
    let layer = write_layer(&store, &tree, Compression::default(), "e2e hello").unwrap();
    let mut config = ImageConfig::linux(arch.debian());
    config.cmd = vec!["/hello".into()];
    let meta = ImageMeta { name: IMAGE_NAME.into(), tag: IMAGE_TAG.into(), epoch: 1_700_000_000, ..Default::default() };
    let image = build_image(&store, vec![layer], &config, &meta).unwrap();
    let out = dir.join(format!("hello-{}.tar", arch.debian()));
    write_archive(&image, &out).unwrap();
    out
}

/// Run `argv` on the node through the agent; it must succeed. Returns its stdout.
pub fn exec(c: &mut Client, argv: &[&str]) -> String {
    let r = c
        .exec(&ExecRequest { argv: argv.iter().map(|s| s.to_string()).collect(), timeout_secs: Some(600), ..Default::default() })
        .unwrap_or_else(|e| panic!("exec {argv:?}: {e}"));
    assert_eq!(r.exit_code, Some(0), "{argv:?} failed: stdout {}\nstderr {}", r.stdout, r.stderr);
    r.stdout
}

/// `start` with its steps reported on stderr; a failure shows the console's last lines.
pub fn start(home: &Home, opts: &StartOptions) -> Vec<StepEvent> {
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    let m = home.machine(&opts.name).unwrap();
    if let Err(e) = start::start(home, opts, &mut rep) {
        panic!("start failed: {e}\nconsole:\n{}", machine::console_tail(&m, 40));
    }
    rep.events
}

/// Deletes the machine when dropped, so that a failing test leaves no qemu behind.
pub struct Cleanup<'a>(pub &'a Home, pub &'static str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Ok(m) = self.0.machine(self.1) {
            let _ = machine::delete(&m, std::time::Duration::from_secs(5));
        }
    }
}

/// kubectl of the bundle against the profile's kubeconfig.
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn try_run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut child = Command::new(&self.bin)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(text) = stdin {
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("kubectl {args:?}: {}{}", stdout, String::from_utf8_lossy(&out.stderr)))
        }
    }

    pub fn run(&self, args: &[&str]) -> String {
        self.try_run(args, None).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn apply(&self, yaml: &str) {
        self.try_run(&["apply", "-f", "-"], Some(yaml)).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    }

    /// Poll `probe` (every second) until it returns Some, or fail after `secs`, showing the
    /// cluster's pods.
    pub fn wait<T>(&self, what: &str, secs: u64, mut probe: impl FnMut(&Kubectl) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = probe(self) {
                return v;
            }
            if Instant::now() > deadline {
                let pods = self.try_run(&["get", "pods", "-A", "-o", "wide"], None).unwrap_or_else(|e| e);
                let events = self.try_run(&["get", "events", "-A", "--sort-by=.lastTimestamp"], None).unwrap_or_else(|e| e);
                panic!("{what}: not within {secs} s\npods:\n{pods}\nevents:\n{events}");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The nodes and whether each is Ready.
    pub fn nodes(&self) -> Vec<(String, bool)> {
        let out =
            self.run(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"]);
        out.lines().filter_map(|l| l.split_once(' ')).map(|(n, s)| (n.to_string(), s == "True")).collect()
    }

    /// Wait until pod `name` (default namespace) has phase `phase`; a pod that fails instead
    /// fails the test at once, with its logs and what the cluster's DNS and Services looked like.
    pub fn wait_phase(&self, name: &str, phase: &str, secs: u64) {
        self.wait(&format!("pod {name} {phase}"), secs, |k| {
            let now = k.try_run(&["get", "pod", name, "-o", "jsonpath={.status.phase}"], None).ok()?;
            if now == "Failed" && phase != "Failed" {
                panic!("pod {name} Failed:\n{}", k.diagnostics(name));
            }
            (now == phase).then_some(())
        });
    }

    /// A failed pod's logs, the Services and their endpoints, CoreDNS's and kube-proxy's logs.
    pub fn diagnostics(&self, pod: &str) -> String {
        let run = |args: &[&str]| self.try_run(args, None).unwrap_or_else(|e| e);
        [
            format!("logs {pod}:\n{}", run(&["logs", pod])),
            format!("pods:\n{}", run(&["get", "pods", "-A", "-o", "wide"])),
            format!("services and endpoints:\n{}{}", run(&["get", "svc", "-A"]), run(&["get", "endpointslices", "-A"])),
            format!("coredns:\n{}", run(&["-n", "kube-system", "logs", "-l", "k8s-app=kube-dns", "--tail", "30"])),
            format!("kube-proxy:\n{}", run(&["-n", "kube-system", "logs", "-l", "k8s-app=kube-proxy", "--tail", "30"])),
        ]
        .join("\n")
    }
}
