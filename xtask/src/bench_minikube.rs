//! `cargo xtask bench minikube`: the real minikube (`out/tools/minikube`, `cargo xtask
//! minikube`) against `minikube-node` on one kic node with podman, same kicbase
//! (`out/kicbase.tar`, or `MINIKUBE_KICBASE`), same Kubernetes bundle, same CPUs and memory, `--runs` rounds in
//! alternating order: start → Ready, stop, start → Ready (restart), delete. The race, the
//! offline minikube setup and the memory figures are `bundle::minikube::{race, run}`; this file
//! is the `minikube-node` side (the launcher library, real Kubernetes from the bundle).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bundle::minikube::race::{self, Contender, StepError};
use bundle::minikube::run::{self, Minikube, Sampler, Setup};
use launcher::model::Driver;
use launcher::options::StartOptions;
use launcher::report::{Output, Reporter};
use launcher::resources::state::Home;

/// `minikube-node start --driver podman --image out/kicbase.tar`, in this process.
struct Launcher {
    home: Home,
    opts: StartOptions,
    kubectl: PathBuf,
    _dir: tempfile::TempDir,
}

impl Contender for Launcher {
    fn name(&self) -> &str {
        "minikube-node"
    }

    fn container(&self) -> &str {
        &self.opts.name
    }

    fn start(&mut self, _again: bool, _sampler: &Sampler) -> Result<(), StepError> {
        let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
        launcher::start::start(&self.home, &self.opts, &mut rep).context("minikube-node start")?;
        // start returns with the node Ready; asked once more as minikube's side is.
        race::kubectl_ready(&self.kubectl, &self.home.machine(&self.opts.name)?.kubeconfig(), Duration::from_secs(300))?;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), StepError> {
        launcher::driver::stop(&self.home.machine(&self.opts.name)?, Duration::from_secs(60)).context("minikube-node stop")?;
        Ok(())
    }

    fn delete(&mut self) -> Result<(), StepError> {
        launcher::cluster::delete_all(&self.home, &self.opts.name, Duration::from_secs(60)).context("minikube-node delete")?;
        Ok(())
    }
}

pub fn run(runs: usize) -> Result<()> {
    ensure!(run::is_root(), "minikube's podman driver runs podman as root (--force): run the bench as root");
    let kicbase = std::env::var_os("MINIKUBE_KICBASE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("out/kicbase.tar"));
    let kicbase =
        std::fs::canonicalize(&kicbase).with_context(|| format!("{}: no kicbase archive (cargo xtask kicbase, or set MINIKUBE_KICBASE)", kicbase.display()))?;
    let bin = std::fs::canonicalize("out/tools/minikube").context("out/tools/minikube: missing (cargo xtask minikube)")?;
    let storage_provisioner = bin.with_file_name("storage-provisioner-v5.tar");
    ensure!(storage_provisioner.is_file(), "{}: missing (cargo xtask minikube)", storage_provisioner.display());
    let cache = Home::from_env()?.cache();
    let arch = platform::Arch::host().context("an amd64 or arm64 host")?;
    let version = platform::bundle::DEFAULT_KUBERNETES_VERSION;
    let kubectl = platform::bundle::version_dir(&cache, arch, version).join("kubectl");
    ensure!(kubectl.is_file(), "{}: no Kubernetes bundle {version} (cargo xtask kubernetes)", kubectl.display());

    let setup = Setup::new("mkrace", bin, storage_provisioner, kicbase.clone(), cache.clone(), arch, version);
    let mk = Minikube::prepare(&setup).context("minikube's offline setup")?;
    let mk_version = mk.run(&["version", "--short"], Duration::from_secs(30))?;
    let mut minikube = race::MinikubeSide::new(mk);

    let dir = tempfile::tempdir()?;
    let mut opts = StartOptions::kic("mknrace", Driver::Podman, &kicbase.to_string_lossy());
    opts.cache_dir = Some(cache);
    // minikube's side runs with --cpus=2 --memory=3072.
    opts.cpus = setup.cpus;
    opts.memory_mb = setup.memory_mb;
    let mut node = Launcher { home: Home::at(dir.path()), opts, kubectl, _dir: dir };

    println!(
        "minikube {} (podman, kic {}, --cni=bridge, containerd, --preload=false) vs minikube-node (podman, {}); Kubernetes {version}; {} CPUs, {} MB each; {runs} runs, alternating",
        mk_version.trim(),
        setup.image,
        kicbase.display(),
        setup.cpus,
        setup.memory_mb
    );
    let results = race::race(&mut minikube, &mut node, runs, &mut |l| println!("{l}"))?;
    println!();
    for l in results.summary() {
        println!("{l}");
    }
    println!("ratio: minikube-node / minikube. start -> Ready: from the command to the node's Ready condition (kubectl get nodes); restart: after a stop, start again -> Ready.");
    println!("peak host memory: sampled every 250 ms while starting, the sum of the RSS of the starting command's process tree (minikube and what it runs; minikube-node: this process) and of the node container's conmon and its descendants.");
    println!("guest memory: at Ready, the sum of the RSS of the node container's processes (its init and all descendants, conmon not counted).");
    drop(minikube);
    Ok(())
}
