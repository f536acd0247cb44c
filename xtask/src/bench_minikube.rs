//! `cargo xtask bench minikube`: the real minikube (`out/tools/minikube`, `cargo xtask
//! minikube`) against `minikube-node`, same Kubernetes bundle, same CPUs and memory, `--runs`
//! rounds in alternating order: start → Ready, stop, start → Ready (restart), delete. Once per
//! driver asked for: kic on podman (minikube `--driver=podman --base-image` and `minikube-node
//! --driver podman`, the same kicbase: `out/kicbase.tar` or `MINIKUBE_KICBASE`) and VM
//! (minikube `--driver=qemu2 --iso-url` and `minikube-node --driver qemu`, the same ISO:
//! `out/minikube.iso` or `MINIKUBE_ISO`; TCG for both where the launcher's probe finds KVM
//! unusable). The race, the offline minikube setup and the memory figures are
//! `bundle::minikube::{race, run, memory}`; this file is the `minikube-node` side (the launcher
//! library, real Kubernetes from the bundle).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bundle::minikube::memory::{container_memory, meminfo_used, NodeProcess, Sampler};
use bundle::minikube::race::{self, Contender, StepError};
use bundle::minikube::run::{self, Minikube, NodeImage, Setup};
use launcher::model::Driver;
use launcher::options::StartOptions;
use launcher::report::{Output, Reporter};
use launcher::resources::state::Home;

/// Which races `--driver` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Race {
    /// kic on podman.
    Podman,
    /// A VM with qemu (minikube's qemu2).
    Qemu,
    /// Both, podman first.
    All,
}

/// `minikube-node start --driver D`, in this process.
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

    fn node(&self) -> NodeProcess {
        match self.opts.driver {
            Driver::Qemu => NodeProcess::Pidfile(self.home.machine(&self.opts.name).map(|m| m.pidfile()).unwrap_or_default()),
            _ => NodeProcess::Container(self.opts.name.clone()),
        }
    }

    fn guest_memory(&mut self) -> Option<u64> {
        match self.opts.driver {
            Driver::Qemu => {
                let m = self.home.machine(&self.opts.name).ok()?;
                let mut c = launcher::driver::agent::connect_existing(&self.home, &m).ok()?;
                meminfo_used(&crate::bench_launcher::exec(&mut c, "cat /proc/meminfo").ok()?)
            }
            _ => container_memory(&self.opts.name),
        }
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

/// `path`, or the environment variable's, made absolute; it must exist.
fn artifact(var: &str, default: &str, how: &str) -> Result<PathBuf> {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    std::fs::canonicalize(&p).with_context(|| format!("{}: missing ({how}, or set {var})", p.display()))
}

pub fn run(runs: usize, which: Race) -> Result<()> {
    ensure!(run::is_root(), "minikube's podman driver runs podman as root (--force), and its qemu2 driver sudo: run the bench as root");
    let bin = std::fs::canonicalize("out/tools/minikube").context("out/tools/minikube: missing (cargo xtask minikube)")?;
    let storage_provisioner = bin.with_file_name("storage-provisioner-v5.tar");
    ensure!(storage_provisioner.is_file(), "{}: missing (cargo xtask minikube)", storage_provisioner.display());
    let cache = Home::from_env()?.cache();
    let arch = platform::Arch::host().context("an amd64 or arm64 host")?;
    let version = platform::bundle::DEFAULT_KUBERNETES_VERSION;
    let kubectl = platform::bundle::version_dir(&cache, arch, version).join("kubectl");
    ensure!(kubectl.is_file(), "{}: no Kubernetes bundle {version} (cargo xtask kubernetes)", kubectl.display());

    let mut drivers = Vec::new();
    if which != Race::Qemu {
        drivers.push(Driver::Podman);
    }
    if which != Race::Podman {
        drivers.push(Driver::Qemu);
    }
    for driver in drivers {
        let (node, opts) = match driver {
            Driver::Qemu => {
                let iso = artifact("MINIKUBE_ISO", launcher::options::DEFAULT_ISO, "cargo xtask iso")?;
                let accel = launcher::resources::qemu::choose_accel_for(arch);
                let tcg = accel == launcher::resources::qemu::Accel::Tcg;
                (NodeImage::Iso { iso: iso.clone(), tcg }, StartOptions::new("mknrace", iso))
            }
            _ => {
                let kicbase = artifact("MINIKUBE_KICBASE", launcher::options::DEFAULT_KIC_IMAGE, "cargo xtask kicbase")?;
                (NodeImage::Kic(kicbase.clone()), StartOptions::kic("mknrace", Driver::Podman, &kicbase.to_string_lossy()))
            }
        };
        one_driver(Setup::new("mkrace", bin.clone(), storage_provisioner.clone(), node, cache.clone(), arch, version), opts, &kubectl, runs)?;
    }
    Ok(())
}

fn one_driver(setup: Setup, mut opts: StartOptions, kubectl: &std::path::Path, runs: usize) -> Result<()> {
    let mk = Minikube::prepare(&setup).context("minikube's offline setup")?;
    let mk_version = mk.run(&["version", "--short"], Duration::from_secs(30))?;
    let mut minikube = race::MinikubeSide::new(mk);

    let dir = tempfile::tempdir()?;
    opts.cache_dir = Some(setup.bundle_cache.clone());
    // The same CPUs and memory as minikube's side.
    opts.cpus = setup.cpus;
    opts.memory_mb = setup.memory_mb;
    let mut node = Launcher { home: Home::at(dir.path()), opts, kubectl: kubectl.to_path_buf(), _dir: dir };

    let what = match &setup.node {
        NodeImage::Kic(archive) => format!("podman, kic {} from {}", setup.image, archive.display()),
        NodeImage::Iso { iso, tcg } => format!("qemu2/qemu, {}{}", iso.display(), if *tcg { ", TCG" } else { "" }),
    };
    println!(
        "minikube {} vs minikube-node ({what}; containerd, minikube --cni=bridge --preload=false); Kubernetes {}; {} CPUs, {} MB each; {runs} runs, alternating",
        mk_version.trim(),
        setup.kubernetes,
        setup.cpus,
        setup.memory_mb
    );
    let results = race::race(&mut minikube, &mut node, runs, &mut |l| println!("{l}"))?;
    println!();
    for l in results.summary() {
        println!("{l}");
    }
    println!("ratio: minikube-node / minikube. start -> Ready: from the command to the node's Ready condition (kubectl get nodes); restart: after a stop, start again -> Ready.");
    println!("peak host memory: sampled every 250 ms while starting, the sum of the RSS of the starting command's process tree (minikube and what it runs; minikube-node: this process) and of the node's: a container's conmon and its descendants, a VM's qemu.");
    match setup.node {
        NodeImage::Kic(_) => {
            println!("guest memory: at Ready, the sum of the RSS of the node container's processes (its init and all descendants, conmon not counted).")
        }
        NodeImage::Iso { .. } => println!("guest memory: at Ready, MemTotal - MemAvailable of the VM's /proc/meminfo (minikube ssh; the agent)."),
    }
    println!();
    Ok(())
}
