//! Building the static guest binaries (glibc, statically linked), as they run in every image: the
//! agent and the squashfs root's `/init` (minikube-init), in one cargo invocation, for amd64 or
//! arm64. A target other than this machine's is cross-built with Debian's cross toolchain
//! (`gcc-aarch64-linux-gnu`, `libc6-dev-arm64-cross`: the same glibc as the native build); nothing
//! of the target is run. amd64's are static-pie; arm64's are static non-PIE executables, as
//! rustc's aarch64-unknown-linux-gnu target does not do static-pie.

use anyhow::{bail, Context, Result};
pub use image::arch::Arch;
use std::path::PathBuf;
use xshell::{cmd, Shell};

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

/// `cargo build --release -p agent -p minikube-init --target <arch's triple>` with
/// `+crt-static`. The explicit `--target` keeps the static flag away from build scripts and
/// proc-macros.
pub fn build_guest_for(arch: Arch) -> Result<GuestBinaries> {
    if is_cross(arch) {
        check_cross_toolchain(arch)?;
    }
    let sh = Shell::new()?;
    let cargo = cargo();
    let target = arch.rust_target();
    let mut c = cmd!(sh, "{cargo} build --release --quiet -p agent --bin minikube-agent -p minikube-init --bin minikube-init --target {target}");
    for (k, v) in build_env(arch) {
        c = c.env(k, v);
    }
    c.quiet().run().with_context(|| format!("building minikube-agent and minikube-init for {} failed", arch.debian()))?;
    let dir = target_dir()?.join(target).join("release");
    let b = GuestBinaries { agent: dir.join("minikube-agent"), init: dir.join("minikube-init") };
    for p in [&b.agent, &b.init] {
        if !p.exists() {
            bail!("{} missing after the build", p.display());
        }
    }
    Ok(b)
}

/// Whether `arch` is not this machine's (its binaries are then cross-built).
fn is_cross(arch: Arch) -> bool {
    Arch::host() != Some(arch)
}

/// The environment of [`build_env`] on a `host` machine.
fn env_on(host: Option<Arch>, arch: Arch) -> Vec<(String, String)> {
    let upper = arch.rust_target().to_uppercase().replace('-', "_");
    let mut env = vec![(format!("CARGO_TARGET_{upper}_RUSTFLAGS"), "-C target-feature=+crt-static".to_string())];
    if host != Some(arch) {
        let gnu = arch.gnu_triplet();
        let lower = arch.rust_target().replace('-', "_");
        env.push((format!("CARGO_TARGET_{upper}_LINKER"), format!("{gnu}-gcc")));
        env.push((format!("CC_{lower}"), format!("{gnu}-gcc")));
        env.push((format!("AR_{lower}"), format!("{gnu}-ar")));
    }
    env
}

/// The variables of the build for `arch`: `+crt-static` for the target only; for a cross build,
/// the target's gcc (`aarch64-linux-gnu-gcc`) as linker and as the C compiler of build scripts
/// that compile C/asm for the target (ring), with its ar.
pub fn build_env(arch: Arch) -> Vec<(String, String)> {
    env_on(Arch::host(), arch)
}

/// The cross compiler in PATH and Rust's standard library for the target, else an error naming
/// what is missing and `bash scripts/setup.sh`.
fn check_cross_toolchain(arch: Arch) -> Result<()> {
    let gcc = format!("{}-gcc", arch.gnu_triplet());
    let target = arch.rust_target();
    let mut missing = Vec::new();
    let in_path = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&gcc).is_file()));
    if !in_path {
        missing.push(format!("{gcc} (not in PATH)"));
    }
    let sh = Shell::new()?;
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = crate::read(cmd!(sh, "{rustc} --print target-libdir --target {target}"))?;
    let has_std = std::fs::read_dir(&libdir).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-"))));
    if !has_std {
        missing.push(format!("Rust's standard library for {target} (not in {libdir})"));
    }
    if !missing.is_empty() {
        bail!("building for {} needs {}: run `bash scripts/setup.sh` (as root) to install the cross toolchain", arch.debian(), missing.join(" and "));
    }
    Ok(())
}

/// `--arch amd64|arm64` (Debian's names) as an [`Arch`], with the names in `--help`.
pub fn arch_parser() -> impl clap::builder::TypedValueParser<Value = Arch> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Arch::ALL.map(Arch::debian)).map(|s| s.parse::<Arch>().expect("a Debian architecture name"))
}

/// The static amd64 agent only.
pub fn build_static() -> Result<PathBuf> {
    build_static_for(Arch::X86_64)
}

/// The static agent only, for `arch`.
pub fn build_static_for(arch: Arch) -> Result<PathBuf> {
    Ok(build_guest_for(arch)?.agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_env_is_the_static_flag_alone() {
        let env = env_on(Some(Arch::X86_64), Arch::X86_64);
        assert_eq!(env, [("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS".to_string(), "-C target-feature=+crt-static".to_string())]);
        assert_eq!(env_on(Some(Arch::Aarch64), Arch::Aarch64).len(), 1);
    }

    #[test]
    fn arm64_env_on_amd64_names_the_cross_gcc() {
        let env: std::collections::BTreeMap<_, _> = env_on(Some(Arch::X86_64), Arch::Aarch64).into_iter().collect();
        assert_eq!(env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS"], "-C target-feature=+crt-static");
        assert_eq!(env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"], "aarch64-linux-gnu-gcc");
        assert_eq!(env["CC_aarch64_unknown_linux_gnu"], "aarch64-linux-gnu-gcc");
        assert_eq!(env["AR_aarch64_unknown_linux_gnu"], "aarch64-linux-gnu-ar");
    }
}
