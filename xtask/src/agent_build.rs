//! Building the static guest binaries (glibc static-pie), as they run in every image: the agent
//! and the squashfs root's `/init` (minikube-init), in one cargo invocation.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The static binaries' paths.
pub struct GuestBinaries {
    pub agent: PathBuf,
    pub init: PathBuf,
}

/// The workspace's target directory, as cargo reports it (honours CARGO_TARGET_DIR).
pub fn target_dir() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("read cargo metadata")?;
    let dir = v["target_directory"].as_str().context("cargo metadata: no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// `cargo build --release -p agent -p minikube-init --target x86_64-unknown-linux-gnu` with
/// `+crt-static`. The explicit `--target` keeps the static flag away from build scripts and
/// proc-macros.
pub fn build_guest() -> Result<GuestBinaries> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "agent", "--bin", "minikube-agent", "-p", "minikube-init", "--bin", "minikube-init", "--target", TARGET])
        .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .context("run cargo to build the agent and minikube-init")?;
    if !status.success() {
        bail!("building minikube-agent and minikube-init failed");
    }
    let dir = target_dir()?.join(TARGET).join("release");
    let b = GuestBinaries { agent: dir.join("minikube-agent"), init: dir.join("minikube-init") };
    for p in [&b.agent, &b.init] {
        if !p.exists() {
            bail!("{} missing after the build", p.display());
        }
    }
    Ok(b)
}

/// The static agent only.
pub fn build_static() -> Result<PathBuf> {
    Ok(build_guest()?.agent)
}
