//! Building the static guest binaries (glibc static-pie), as they run in every image: the agent
//! and the squashfs root's `/init` (minikube-init), in one cargo invocation.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use xshell::{cmd, Shell};

pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The static binaries' paths.
pub struct GuestBinaries {
    pub agent: PathBuf,
    pub init: PathBuf,
}

/// The cargo running xtask (`$CARGO`), else the one in PATH.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The workspace's target directory, as cargo reports it (honours CARGO_TARGET_DIR).
pub fn target_dir() -> Result<PathBuf> {
    let sh = Shell::new()?;
    let cargo = cargo();
    let json = crate::read(cmd!(sh, "{cargo} metadata --format-version 1 --no-deps"))?;
    let v: serde_json::Value = serde_json::from_str(&json).context("read cargo metadata")?;
    let dir = v["target_directory"].as_str().context("cargo metadata: no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// `cargo build --release -p agent -p minikube-init --target x86_64-unknown-linux-gnu` with
/// `+crt-static`. The explicit `--target` keeps the static flag away from build scripts and
/// proc-macros.
pub fn build_guest() -> Result<GuestBinaries> {
    let sh = Shell::new()?;
    let cargo = cargo();
    cmd!(sh, "{cargo} build --release --quiet -p agent --bin minikube-agent -p minikube-init --bin minikube-init --target {TARGET}")
        .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", "-C target-feature=+crt-static")
        .quiet()
        .run()
        .context("building minikube-agent and minikube-init failed")?;
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
