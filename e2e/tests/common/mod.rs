//! What several e2e test binaries share: a container image built by `image::oci` around a
//! static binary, for either architecture (arm64 cross-compiled with Debian's
//! gcc-aarch64-linux-gnu as the linker; nothing of arm64 runs on the host).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use image::oci::{build_image, write_archive, write_layer, BlobStore, Compression, ImageConfig, ImageMeta};
use image::rootfs::{Entry, Tree};
use agent::api::ExecRequest;
use agent::client::Client;
use launcher::machine;
use launcher::provision::{self, Output, Reporter, StartOptions, StepEvent};
use launcher::state::Home;
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
    if let Err(e) = provision::start(home, opts, &mut rep) {
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
