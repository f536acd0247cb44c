//! `cargo xtask bench kubernetes`: real clusters from the bundle in the launcher's cache (built by
//! `cargo xtask kubernetes`), timed from `start` to the node's Ready condition:
//!
//! - kic (podman), one node: `runs` fresh starts, each followed by a stop/start (restart → Ready);
//! - kic (podman), `--nodes N` (default 3): one start → every node Ready;
//! - qemu (TCG here), one node: `qemu` fresh starts (0 to skip);
//! - the bundle: each binary's and image's size, and with `--build` a build into an empty cache
//!   with Go's caches as they are (warm after `cargo xtask kubernetes`) and, with `--cold`, with
//!   empty Go caches too (the module download and every compile).
//!
//! Medians, with each run's steps (the `images` step is the preload, `kubeadm` is `kubeadm init`,
//! `join` is `kubeadm join`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use launcher::model::Driver;
use launcher::options::StartOptions;
use launcher::report::{Output, Reporter, StepEvent};
use launcher::resources::state::Home;
use launcher::start;

use platform::stats::median;

pub struct Args {
    pub runs: usize,
    pub nodes: u32,
    pub qemu: usize,
    pub build: bool,
    pub cold: bool,
}

fn step(events: &[StepEvent], name: &str) -> f64 {
    events.iter().filter(|e| e.step == name).map(|e| e.seconds).sum()
}

fn steps_line(events: &[StepEvent]) -> String {
    events.iter().filter(|e| e.seconds >= 0.05).map(|e| format!("{} {:.1}", e.step, e.seconds)).collect::<Vec<_>>().join(", ")
}

/// `kubectl get nodes` until `n` nodes are Ready.
fn wait_ready(kubectl: &Path, kubeconfig: &Path, n: usize, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let out = std::process::Command::new(kubectl)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["get", "nodes", "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"])
            .output()?;
        let ready = String::from_utf8_lossy(&out.stdout).lines().filter(|l| *l == "True").count();
        if ready >= n {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{ready} of {n} nodes Ready after {} s", limit.as_secs());
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn run(a: Args) -> Result<()> {
    let cache = launcher::resources::state::Home::from_env()?.cache();
    let arch = platform::Arch::host().context("an amd64 or arm64 host")?;
    let version = platform::bundle::DEFAULT_KUBERNETES_VERSION;
    let manifest_path = platform::bundle::manifest_path(&cache, arch, version);
    let manifest: platform::bundle::BundleManifest = serde_json::from_slice(
        &std::fs::read(&manifest_path).with_context(|| format!("{}: no bundle (run `cargo xtask kubernetes`)", manifest_path.display()))?,
    )?;
    let kubectl = platform::bundle::version_dir(&cache, arch, version).join("kubectl");
    println!("bundle {version} ({}, {}):", arch.debian(), manifest.go_version);
    for b in &manifest.binaries {
        println!("  {:24} {:>6.1} MB", b.name, b.size as f64 / 1e6);
    }
    for i in &manifest.images {
        println!("  {:48} {:>6.1} MB (OCI archive)", i.reference, i.size as f64 / 1e6);
    }
    if a.build {
        build_times(a.cold)?;
    }

    let kic = PathBuf::from("out/kicbase.tar");
    ensure!(kic.is_file(), "out/kicbase.tar: missing (cargo xtask kicbase)");
    let (mut fresh, mut restart) = (Vec::new(), Vec::new());
    for i in 0..a.runs {
        let tmp = tempfile::tempdir()?;
        let home = Home::at(tmp.path());
        let name = format!("bench{i}");
        let mut opts = StartOptions::kic(&name, Driver::Podman, &kic.to_string_lossy());
        opts.cache_dir = Some(cache.clone());
        let result = (|| -> Result<()> {
            let t = Instant::now();
            let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
            start::start(&home, &opts, &mut rep)?;
            let secs = t.elapsed().as_secs_f64();
            println!("kic start -> Ready, run {}: {secs:.1} s ({})", i + 1, steps_line(&rep.events));
            fresh.push(secs);
            launcher::driver::stop(&home.machine(&name)?, Duration::from_secs(60))?;
            let t = Instant::now();
            let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
            start::start(&home, &opts, &mut rep)?;
            wait_ready(&kubectl, &home.machine(&name)?.kubeconfig(), 1, Duration::from_secs(300))?;
            let secs = t.elapsed().as_secs_f64();
            println!("kic restart -> Ready, run {}: {secs:.1} s ({})", i + 1, steps_line(&rep.events));
            restart.push(secs);
            Ok(())
        })();
        let _ = launcher::cluster::delete_all(&home, &name, Duration::from_secs(30));
        result?;
    }

    let mut multi = None;
    if a.nodes > 1 {
        let tmp = tempfile::tempdir()?;
        let home = Home::at(tmp.path());
        let mut opts = StartOptions::kic("benchm", Driver::Podman, &kic.to_string_lossy());
        opts.cache_dir = Some(cache.clone());
        let result = (|| -> Result<()> {
            let t = Instant::now();
            let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
            launcher::cluster::start(&home, &opts, a.nodes, &mut rep)?;
            wait_ready(&kubectl, &home.machine("benchm")?.kubeconfig(), a.nodes as usize, Duration::from_secs(300))?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "kic {} nodes start -> all Ready: {secs:.1} s (images {:.1} s, kubeadm {:.1} s, join {:.1} s in all)",
                a.nodes,
                step(&rep.events, "images"),
                step(&rep.events, "kubeadm"),
                step(&rep.events, "join")
            );
            multi = Some(secs);
            Ok(())
        })();
        let _ = launcher::cluster::delete_all(&home, "benchm", Duration::from_secs(30));
        result?;
    }

    let mut vm = Vec::new();
    for i in 0..a.qemu {
        let iso = PathBuf::from("out/minikube.iso");
        ensure!(iso.is_file(), "out/minikube.iso: missing (cargo xtask iso)");
        let tmp = tempfile::tempdir()?;
        let home = Home::at(tmp.path());
        let mut opts = StartOptions::new("benchq", iso);
        opts.cache_dir = Some(cache.clone());
        opts.disk_mb = 8192;
        let result = (|| -> Result<()> {
            let t = Instant::now();
            let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
            start::start(&home, &opts, &mut rep)?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "qemu ({}) start -> Ready, run {}: {secs:.1} s ({})",
                launcher::resources::qemu::choose_accel_for(arch).name(),
                i + 1,
                steps_line(&rep.events)
            );
            vm.push(secs);
            Ok(())
        })();
        let _ = launcher::driver::qemu::machine::delete(&home.machine("benchq")?, Duration::from_secs(30));
        result?;
    }

    println!("\nmedians ({} kic runs, {} qemu runs):", a.runs, a.qemu);
    if !fresh.is_empty() {
        println!("  kic start -> node Ready       {:>6.1} s (goal <= 30 s)", median(fresh));
        println!("  kic restart -> node Ready     {:>6.1} s", median(restart));
    }
    if let Some(m) = multi {
        println!("  kic {} nodes -> all Ready      {m:>6.1} s (goal <= 60 s)", a.nodes);
    }
    if !vm.is_empty() {
        println!("  qemu start -> node Ready      {:>6.1} s (goal <= 150 s)", median(vm));
    }
    Ok(())
}

/// The bundle built into an empty cache: Go's caches as they are, and with `cold` empty ones.
fn build_times(cold: bool) -> Result<()> {
    #[derive(clap::Parser)]
    struct B {
        #[command(flatten)]
        b: crate::kubernetes::KubernetesArgs,
    }
    use clap::Parser;
    let tmp = tempfile::tempdir()?;
    let mut kinds = vec![("warm Go caches", None)];
    if cold {
        kinds.push(("empty Go caches", Some(tmp.path().join("go"))));
    }
    for (i, (label, gocache)) in kinds.into_iter().enumerate() {
        let cache = tmp.path().join(format!("cache{i}"));
        let work = tmp.path().join(format!("work{i}"));
        let args = B::parse_from(["kubernetes", "--cache-dir", &cache.to_string_lossy(), "--work-dir", &work.to_string_lossy()]).b;
        let o = crate::kubernetes::options(&args)?;
        if let Some(g) = &gocache {
            std::env::set_var("GOCACHE", g.join("build"));
            std::env::set_var("GOMODCACHE", g.join("mod"));
        }
        let t = Instant::now();
        struct Quiet;
        impl bundle::Progress for Quiet {
            fn start(&mut self, _: &str, _: &str) {}
            fn finish(&mut self, _: &str, _: Duration) {}
        }
        let b = bundle::build(&o, &mut Quiet)?;
        let stages = b.stages.iter().map(|(s, d)| format!("{s} {:.1}", d.as_secs_f64())).collect::<Vec<_>>().join(", ");
        println!("bundle build, {label}: {:.1} s ({stages})", t.elapsed().as_secs_f64());
        if gocache.is_some() {
            // Module caches are read-only files: make them removable with the temp dir.
            let _ = std::process::Command::new("chmod").args(["-R", "u+w"]).arg(tmp.path()).status();
            std::env::remove_var("GOCACHE");
            std::env::remove_var("GOMODCACHE");
        }
    }
    Ok(())
}
