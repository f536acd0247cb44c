//! `cargo xtask kubernetes`: Kubernetes, etcd, CoreDNS, crictl and pause built from their Go
//! modules into the launcher's cache, with the control plane's images (the `bundle` crate).

use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use crate::agent_build::Arch;

#[derive(clap::Args)]
pub struct KubernetesArgs {
    /// The Kubernetes release (v1.34.N); the default's module is committed in bundle/go/.
    #[arg(long, default_value = bundle::DEFAULT_VERSION)]
    version: String,
    /// The target architecture (amd64 or arm64).
    #[arg(long, default_value = "amd64", value_parser = crate::agent_build::arch_parser())]
    arch: Arch,
    /// The launcher's cache (default: the one `minikube-node start` reads, under
    /// $MINIKUBE_NODE_HOME).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Generated modules and the images' blob store (default: bundle/ in cargo's target dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[command(flatten)]
    common: crate::CommonArgs,
}

/// Progress lines: what is being built, then how long it took.
struct Lines {
    terminal: bool,
}

impl bundle::Progress for Lines {
    fn start(&mut self, stage: &str, detail: &str) {
        if self.terminal {
            eprintln!("\x1b[1m==>\x1b[0m {stage}: {detail} ...");
        } else {
            eprintln!("==> {stage}: {detail} ...");
        }
    }
    fn finish(&mut self, stage: &str, took: Duration) {
        eprintln!("    {stage} done in {:.1} s", took.as_secs_f64());
    }
}

pub fn options(a: &KubernetesArgs) -> Result<bundle::Options> {
    let release = bundle::Release::of(&a.version)?;
    let packages = crate::options(&a.common)?;
    let cache = match &a.cache_dir {
        Some(c) => c.clone(),
        None => launcher::resources::state::Home::from_env()?.cache(),
    };
    Ok(bundle::Options {
        release,
        arch: a.arch,
        cache,
        source_dir: PathBuf::from("bundle"),
        work_dir: match &a.work_dir {
            Some(d) => d.clone(),
            None => crate::agent_build::target_dir()?.join("bundle"),
        },
        epoch: packages.epoch,
        commit: packages.commit.clone(),
        packages,
    })
}

pub fn run(a: KubernetesArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let o = options(&a)?;
    let mut progress = Lines { terminal: std::io::stderr().is_terminal() };
    let b = bundle::build(&o, &mut progress).with_context(|| format!("building the Kubernetes {} bundle for {}", o.release.kubernetes, o.arch.debian()))?;
    let dir = platform::bundle::version_dir(&o.cache, o.arch, &o.release.kubernetes);
    let m = &b.manifest;
    let prov = record(&o, m)?;
    for bin in &m.binaries {
        println!("  {:24} {:>7.1} MB  sha256:{}  {}", bin.name, bin.size as f64 / 1e6, &bin.sha256[..16], bin.module);
    }
    for i in &m.images {
        println!("  {:48} {:>7.1} MB  {}", i.reference, i.size as f64 / 1e6, i.manifest_digest);
    }
    println!(
        "{}: Kubernetes {} for {} ({} binaries, {} images, {}) {} in {:.1?}",
        dir.display(),
        m.kubernetes_version,
        m.arch.debian(),
        m.binaries.len(),
        m.images.len(),
        m.go_version,
        if b.reused { "reused (same key)" } else { "built" },
        started.elapsed()
    );
    println!("{}: provenance (in-toto, SLSA v1)", prov.display());
    Ok(())
}

/// The nodes' crictl for `arch` (`bundle::node_crictl`: the bundle's crictl build), into
/// `crictl/ARCH/` in cargo's target directory, with the workspace files it is built from (its
/// Go module's go.mod and go.sum, for the image's provenance).
pub fn node_crictl(arch: Arch, common: &crate::CommonArgs) -> Result<(image::sbom::GoBinary, Vec<PathBuf>)> {
    let a = KubernetesArgs { version: bundle::DEFAULT_VERSION.to_string(), arch, cache_dir: None, work_dir: None, common: common.clone() };
    let o = options(&a)?;
    let out = crate::agent_build::target_dir()?.join("crictl").join(arch.debian());
    let b = bundle::node_crictl(&o, &out).with_context(|| format!("building crictl for {} (bundle/go/crictl)", arch.debian()))?;
    let dir = bundle::gobuild::module_dir(&o, bundle::gobuild::Module::Crictl);
    Ok((b, vec![dir.join("go.mod"), dir.join("go.sum")]))
}

/// The bundle's provenance beside its manifest (`bundle.provenance.json`): every file of the
/// bundle, the Go modules' files, kube-proxy's spec and Cargo.lock, and the Go toolchain. Written again on reuse: it costs a read of the files.
fn record(o: &bundle::Options, m: &platform::bundle::BundleManifest) -> Result<PathBuf> {
    let root = std::env::current_dir()?;
    let mut files: Vec<PathBuf> = bundle::source_files(o).into_iter().filter(|f| root.join(f).is_file()).collect();
    files.push(root.join("Cargo.lock"));
    let files = image::provenance::collect::relative(&root, &files);
    let mut tools: Vec<&str> = image::provenance::collect::RUST_TOOLS.to_vec();
    tools.push(image::provenance::collect::GO);
    let args = vec!["--version".to_string(), o.release.kubernetes.clone(), "--arch".to_string(), o.arch.debian().to_string()];
    let manifest = platform::bundle::manifest_path(&o.cache, o.arch, &o.release.kubernetes);
    crate::verify::record_files(&manifest, &bundle::files(m), "kubernetes", args, &files, &tools, o.epoch)
}
