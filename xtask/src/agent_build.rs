//! Building the agent as a static binary (glibc static-pie), as it runs in every image.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// `cargo build --release -p agent --target x86_64-unknown-linux-gnu` with `+crt-static`.
/// The explicit `--target` keeps the static flag away from build scripts and proc-macros.
pub fn build_static() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "agent", "--bin", "minikube-agent", "--target", TARGET])
        .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .context("run cargo to build the agent")?;
    if !status.success() {
        bail!("building minikube-agent failed");
    }
    let p = PathBuf::from(format!("target/{TARGET}/release/minikube-agent"));
    if !p.exists() {
        bail!("{} missing after the build", p.display());
    }
    Ok(p)
}
