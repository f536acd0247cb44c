//! `cargo xtask minikube`: the real minikube and its storage-provisioner image built from the Go
//! module `k8s.io/minikube` into `out/tools/` (`bundle::minikube`), and with `--home`, a minikube
//! home filled from the Kubernetes bundle so that `minikube start` downloads nothing.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct MinikubeArgs {
    /// The minikube release (v1.38.N or later: earlier go.mod files have replace lines).
    #[arg(long, default_value = bundle::minikube::DEFAULT_VERSION)]
    version: String,
    /// Where minikube and the storage-provisioner archive go.
    #[arg(long, default_value = "out/tools")]
    out_dir: PathBuf,
    /// Generated modules (other versions) and the image's blob store (default: minikube/ in
    /// cargo's target dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also fill this MINIKUBE_HOME's binary and image caches from the Kubernetes bundle
    /// (`cargo xtask kubernetes`) and the storage-provisioner archive.
    #[arg(long)]
    home: Option<PathBuf>,
    /// The bundle's Kubernetes version, for --home.
    #[arg(long, default_value = bundle::DEFAULT_VERSION)]
    kubernetes_version: String,
    /// The launcher's cache holding the bundle, for --home (default: `minikube-node start`'s).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

struct Lines;

impl bundle::Progress for Lines {
    fn start(&mut self, stage: &str, detail: &str) {
        eprintln!("==> {stage}: {detail} ...");
    }
    fn finish(&mut self, stage: &str, took: Duration) {
        eprintln!("    {stage} done in {:.1} s", took.as_secs_f64());
    }
}

/// Build (or reuse) minikube; its paths.
pub fn build(a: &MinikubeArgs) -> Result<bundle::minikube::Built> {
    let arch = platform::Arch::host().context("minikube is built for the host: an amd64 or arm64 host")?;
    let o = bundle::minikube::Options {
        version: a.version.clone(),
        arch,
        source_dir: PathBuf::from("bundle"),
        out_dir: a.out_dir.clone(),
        work_dir: match &a.work_dir {
            Some(d) => d.clone(),
            None => crate::agent_build::target_dir()?.join("minikube"),
        },
    };
    bundle::minikube::build(&o, &mut Lines).with_context(|| format!("building minikube {} into {}", o.version, o.out_dir.display()))
}

/// The cache `cargo xtask kubernetes` builds the bundle into by default.
fn default_cache() -> Result<PathBuf> {
    use clap::Parser;
    #[derive(Parser)]
    struct K {
        #[command(flatten)]
        k: crate::kubernetes::KubernetesArgs,
    }
    Ok(crate::kubernetes::options(&K::parse_from(["kubernetes"]).k)?.cache)
}

pub fn run(a: MinikubeArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let b = build(&a)?;
    let s = &b.stamp;
    println!(
        "{} (minikube {}, iso {}, commit {}, {}) {} in {:.1?}",
        b.minikube.display(),
        s.version,
        s.iso_version,
        &s.commit[..s.commit.len().min(12)],
        s.go_version,
        if b.reused { "reused (same key)" } else { "built" },
        started.elapsed()
    );
    println!("{} ({} {})", b.storage_provisioner.display(), s.image_reference, s.image_manifest_digest);
    if let Some(home) = &a.home {
        let cache = match &a.cache_dir {
            Some(c) => c.clone(),
            None => default_cache()?,
        };
        let arch = platform::Arch::host().context("an amd64 or arm64 host")?;
        let f = bundle::minikube::fill_home(home, &cache, arch, &a.kubernetes_version, &b.storage_provisioner)
            .with_context(|| format!("filling minikube's caches in {}", home.display()))?;
        for (_, to) in &f.files {
            println!("  {}", to.display());
        }
        println!("MINIKUBE_HOME={}: {} files from the bundle in {}", home.display(), f.files.len(), cache.display());
    }
    Ok(())
}
