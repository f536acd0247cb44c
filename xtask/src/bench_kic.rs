//! `cargo xtask bench launcher` (its kic part): the two container drivers side by side on one
//! machine, from the same kicbase archive. podman is the host's; docker is a dockerd of our own
//! ([`e2e::Dockerd`], the one the end-to-end tests use), which `DOCKER_HOST` points the launcher
//! at. Each engine loads the image once (not counted); then `runs` rounds, in alternating order,
//! of a fresh `start` to a provisioned node (kubelet test double: the figure is the driver's and
//! the agent steps', not Kubernetes') and a `delete`. Printed: each driver's median per step,
//! its median start → provisioned, and the ratio docker / podman.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use launcher::model::Driver;
use launcher::options::StartOptions;
use launcher::report::{Output, Reporter, StepEvent};
use launcher::resources::state::Home;

use platform::stats::median;

/// One fresh start → provisioned of `driver`, then its deletion: the steps and the total.
fn once(home: &Home, driver: Driver, archive: &str) -> Result<(Vec<StepEvent>, f64)> {
    let name = format!("bench-{}", driver.name());
    let mut opts = StartOptions::kic(&name, driver, archive);
    opts.kubelet_test_double = true;
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
    let t = Instant::now();
    let started = launcher::start::start(home, &opts, &mut rep).with_context(|| format!("{driver} start"));
    let total = t.elapsed().as_secs_f64();
    launcher::cluster::delete_all(home, &name, Duration::from_secs(30)).with_context(|| format!("{driver} delete"))?;
    started?;
    Ok((rep.events, total))
}

pub fn run(runs: usize) -> Result<()> {
    let archive = std::env::var_os("MINIKUBE_KICBASE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("out/kicbase.tar"));
    ensure!(archive.is_file(), "{}: no kicbase archive (run `cargo xtask kicbase` or set MINIKUBE_KICBASE)", archive.display());
    let archive = std::fs::canonicalize(&archive)?.to_string_lossy().into_owned();
    let dockerd = e2e::Dockerd::start();
    // The launcher's docker client honours DOCKER_HOST.
    std::env::set_var("DOCKER_HOST", &dockerd.host);
    let tmp = tempfile::tempdir()?;
    let home = Home::at(tmp.path());
    let drivers = [Driver::Podman, Driver::Docker];
    for d in drivers {
        // The image loaded once into each engine: the rounds measure a start with it in place.
        once(&home, d, &archive).with_context(|| format!("loading the image into {d}"))?;
    }
    let mut results: Vec<(Driver, Vec<StepEvent>, f64)> = Vec::new();
    for i in 0..runs.max(1) {
        let order = if i % 2 == 0 { drivers } else { [drivers[1], drivers[0]] };
        for d in order {
            let (events, total) = once(&home, d, &archive)?;
            println!("run {} {d:<6} start -> provisioned {total:6.2} s", i + 1);
            results.push((d, events, total));
        }
    }
    println!("\nkic drivers, {} runs each (medians):", runs.max(1));
    let steps = ["machine", "image", "boot", "agent", "document", "hostname", "certs", "runtime", "kubelet", "kubeconfig"];
    print!("{:<8}", "driver");
    for s in steps {
        print!("{s:>11}");
    }
    println!("{:>12}", "total");
    let mut totals = Vec::new();
    for d in drivers {
        let mine: Vec<&(Driver, Vec<StepEvent>, f64)> = results.iter().filter(|r| r.0 == d).collect();
        print!("{:<8}", d.name());
        for s in steps {
            let v: Vec<f64> = mine.iter().map(|r| r.1.iter().filter(|e| e.step == s).map(|e| e.seconds).sum()).collect();
            print!("{:>10.2}s", median(v));
        }
        let t = median(mine.iter().map(|r| r.2).collect());
        println!("{t:>11.2}s");
        totals.push(t);
    }
    println!("docker / podman, start -> provisioned: {:.2}x (goal: within 1.5x)", totals[1] / totals[0]);
    drop(dockerd);
    Ok(())
}
