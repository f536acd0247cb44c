//! `cargo xtask lock [--update] [--spec PATH]...`: argument parsing only; the work is
//! `image::lock::make::lock`.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// The specs whose locks are committed.
const SPECS: [&str; 3] = ["iso/spec.toml", "iso/spec-arm64.toml", "kicbase/spec.toml"];

#[derive(clap::Args)]
pub struct LockArgs {
    /// The spec whose lock (beside it, `.lock`) to write or check; repeatable (default: the
    /// ISO specs, amd64 and arm64, and kicbase's).
    #[arg(long)]
    spec: Vec<PathBuf>,
    /// Write today's resolution over an existing lock (without it, an existing lock is only
    /// checked against its spec and compared with today's resolution; a missing one is written).
    #[arg(long)]
    update: bool,
    #[command(flatten)]
    common: crate::CommonArgs,
}

pub fn run(a: LockArgs) -> Result<()> {
    let specs: Vec<PathBuf> = if a.spec.is_empty() { SPECS.iter().map(PathBuf::from).collect() } else { a.spec };
    let opts = crate::options(&a.common)?;
    for path in specs {
        let spec = image::spec::Spec::load(&path)?;
        let out = image::lock::make::lock(&spec, None, a.update, &opts).with_context(|| format!("locking {}", path.display()))?;
        println!("{out}");
    }
    Ok(())
}
