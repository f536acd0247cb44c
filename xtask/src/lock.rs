//! `cargo xtask lock [--update] [--spec PATH]...`: argument parsing only; the work is
//! `image::lock::make::lock`.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// The specs whose locks are committed, and the architectures a lock covers when that is not
/// the spec's own (kube-proxy's image is built for the bundle's architecture, either one).
const SPECS: [(&str, Option<&[image::arch::Arch]>); 4] =
    [("iso/spec.toml", None), ("iso/spec-arm64.toml", None), ("kicbase/spec.toml", None), ("bundle/images/kube-proxy.toml", Some(&image::arch::Arch::ALL))];

#[derive(clap::Args)]
pub struct LockArgs {
    /// The spec whose lock (beside it, `.lock`) to write or check; repeatable (default: the
    /// ISO specs, amd64 and arm64, kicbase's and the bundle's kube-proxy image's).
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
    let specs: Vec<PathBuf> = if a.spec.is_empty() { SPECS.iter().map(|(p, _)| PathBuf::from(p)).collect() } else { a.spec };
    let opts = crate::options(&a.common)?;
    for path in specs {
        let spec = image::spec::Spec::load(&path)?;
        let targets = SPECS.iter().find(|(p, _)| std::path::Path::new(p) == path).and_then(|(_, t)| *t);
        let out = image::lock::make::lock(&spec, targets, a.update, &opts).with_context(|| format!("locking {}", path.display()))?;
        println!("{out}");
    }
    Ok(())
}
