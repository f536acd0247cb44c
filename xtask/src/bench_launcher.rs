//! `cargo xtask bench launcher`: boots of the ISO through `minikube-node start`, timed per step.
//!
//! One machine in a temporary home: a fresh start (disk formatted, everything provisioned),
//! then `BENCH_LAUNCHER_BOOTS - 1` stop/start cycles (default 3 boots in all), and one start on
//! the running machine (nothing to do). Prints each run's steps and the median per step, the
//! median time from qemu's start to the agent answering, and to a provisioned node. The ISO is
//! `MINIKUBE_ISO`, default `out/minikube.iso`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use launcher::machine;
use launcher::provision::{self, Output, Reporter, StartOptions, StepEvent};
use launcher::state::Home;

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn secs(events: &[StepEvent], step: &str) -> f64 {
    events.iter().filter(|e| e.step == step).map(|e| e.seconds).sum()
}

pub fn run() -> Result<()> {
    let iso = std::env::var_os("MINIKUBE_ISO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("out/minikube.iso"));
    ensure!(iso.is_file(), "{}: no ISO (run `cargo xtask iso` or set MINIKUBE_ISO)", iso.display());
    let boots: usize = std::env::var("BENCH_LAUNCHER_BOOTS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let tmp = tempfile::tempdir()?;
    let home = Home::at(tmp.path());
    let m = home.machine("bench")?;
    let mut opts = StartOptions::new("bench", iso);
    opts.memory_mb = 3072;
    opts.disk_mb = 4096;
    opts.agent_timeout = Duration::from_secs(900);
    let mut runs: Vec<Vec<StepEvent>> = Vec::new();
    let result = (|| -> Result<()> {
        for i in 0..boots {
            if i > 0 {
                machine::stop(&m, Duration::from_secs(120))?;
            }
            println!("== boot {} of {boots}", i + 1);
            let mut rep = Reporter::new(Output::Text, Box::new(std::io::stdout()));
            provision::start(&home, &opts, &mut rep).with_context(|| format!("boot {}", i + 1))?;
            runs.push(rep.events);
        }
        println!("== start on the running machine");
        let mut rep = Reporter::new(Output::Text, Box::new(std::io::stdout()));
        provision::start(&home, &opts, &mut rep)?;
        let converged: f64 = rep.events.iter().map(|e| e.seconds).sum();
        println!();
        println!("{:<12} {:>10}   (median of {} boots; the first formats the data disk)", "step", "seconds", runs.len());
        for step in ["machine", "boot", "agent", "hostname", "certs", "runtime", "kubelet", "kubeconfig"] {
            println!("{step:<12} {:>10.2}", median(runs.iter().map(|r| secs(r, step)).collect()));
        }
        let ready = median(runs.iter().map(|r| secs(r, "boot") + secs(r, "agent")).collect());
        let total = median(runs.iter().map(|r| r.iter().map(|e| e.seconds).sum()).collect());
        println!("qemu start -> agent ready: {ready:.1} s (median)");
        println!("start -> provisioned:      {total:.1} s (median)");
        println!("start on a running node:   {converged:.2} s");
        Ok(())
    })();
    let _ = machine::delete(&m, Duration::from_secs(30));
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_odd_even() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(super::median(vec![]), 0.0);
    }
}
