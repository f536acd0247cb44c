//! `cargo xtask iso --flavor buildroot`: the ISO built by buildroot from buildroot-external/.

use anyhow::Context;
use buildroot::driver::{self, Arch, BuildOptions, Engine, Layout};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct BuildrootArgs {
    /// A buildroot checkout of the pinned release (buildroot::PINNED_RELEASE). Without it the
    /// release is cloned with git into out/buildroot/ (needs network access).
    #[arg(long, value_name = "DIR")]
    pub buildroot: Option<PathBuf>,
    /// Run make inside a Debian container with buildroot's host dependencies.
    #[arg(long, value_name = "ENGINE", value_parser = ["podman", "docker"])]
    pub in_container: Option<String>,
    /// Target architecture: x86_64 (isolinux, BIOS) or aarch64 (GRUB EFI). Default: this machine's.
    #[arg(long)]
    pub arch: Option<String>,
    /// Where the ISO is written (atomically).
    #[arg(long, value_name = "FILE", default_value = "out/minikube.iso")]
    pub output: PathBuf,
    /// Git URL buildroot is cloned from when --buildroot is not given.
    #[arg(long, value_name = "URL", default_value = driver::DEFAULT_GIT_URL)]
    pub buildroot_git_url: String,
}

pub fn run(args: BuildrootArgs) -> anyhow::Result<()> {
    let repo = workspace_root();
    let arch = match &args.arch {
        Some(a) => a.parse::<Arch>().map_err(anyhow::Error::msg)?,
        None => Arch::host().context("this machine is neither x86_64 nor aarch64: pass --arch")?,
    };
    let container = args.in_container.as_deref().map(str::parse::<Engine>).transpose().map_err(anyhow::Error::msg)?;
    let absolute = |p: PathBuf| if p.is_absolute() { p } else { repo.join(p) };
    let opts = BuildOptions {
        layout: Layout::new(&repo),
        arch,
        buildroot: args.buildroot.map(absolute),
        git_url: args.buildroot_git_url,
        container,
        iso: absolute(args.output),
    };
    let iso = driver::build(&opts).with_context(|| format!("buildroot flavor, {arch}"))?;
    println!("{}", iso.display());
    Ok(())
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
