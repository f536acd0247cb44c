//! The race of `cargo xtask bench minikube`: two ways of bringing up a one-node cluster (kic or
//! VM) on the same machine, image and Kubernetes version, each a [`Contender`] (minikube's is
//! [`MinikubeSide`]; `minikube-node`'s lives with the launcher, which this crate does not
//! depend on). For each of `runs` rounds, in alternating order (so both see the same noise from
//! the rest of the machine): fresh start → node Ready, stop, start → Ready again (restart),
//! delete. Timed from the command's start to the node's Ready condition; memory sampled on the
//! way ([`Sampler`]) and read at Ready ([`Contender::guest_memory`]). The first contender is the baseline of
//! the ratios.

use std::path::Path;
use std::time::{Duration, Instant};

use super::memory::{container_memory, meminfo_used, NodeProcess, Sampler};
use super::run::{Minikube, NodeImage, RunError};
use platform::stats::median;

/// What a contender's step failed with.
pub type StepError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum RaceError {
    #[error("{contender}, run {run}: {step}: {source}")]
    Step { contender: String, run: usize, step: &'static str, source: StepError },
    #[error("`kubectl --kubeconfig {kubeconfig} get nodes`: the node was not Ready within {secs} s: {last}")]
    NotReady { kubeconfig: String, secs: u64, last: String },
}

/// One way of running a node.
pub trait Contender {
    /// As printed.
    fn name(&self) -> &str;
    /// Where its node's processes are on the host (for the peak host memory).
    fn node(&self) -> NodeProcess;
    /// The memory its node uses now, bytes: a container's processes' RSS
    /// ([`container_memory`]), a VM's kernel's `MemTotal - MemAvailable` ([`meminfo_used`]).
    fn guest_memory(&mut self) -> Option<u64>;
    /// Start → node Ready; `again` after a stop. The sampler is told the process that runs the
    /// start (minikube's; the launcher runs in this process, the sampler's default root).
    fn start(&mut self, again: bool, sampler: &Sampler) -> Result<(), StepError>;
    fn stop(&mut self) -> Result<(), StepError>;
    /// Delete the node and everything of it; called after every round, even a failed one.
    fn delete(&mut self) -> Result<(), StepError>;
}

/// One round of one contender.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub fresh_secs: f64,
    pub restart_secs: f64,
    /// Peak host memory while starting (see [`Sampler`]), bytes.
    pub fresh_peak: u64,
    pub restart_peak: u64,
    /// The node's memory at Ready (see [`Contender::guest_memory`]), bytes.
    pub fresh_guest: u64,
    pub restart_guest: u64,
}

/// Every round of both contenders, in the order given to [`race`].
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub names: [String; 2],
    pub rounds: [Vec<Round>; 2],
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn one(c: &mut dyn Contender, run: usize) -> Result<Round, RaceError> {
    let step = |step: &'static str, name: &str| {
        let contender = name.to_string();
        move |source: StepError| RaceError::Step { contender, run, step, source }
    };
    let name = c.name().to_string();
    let mut r = Round::default();
    let timed = |c: &mut dyn Contender, again: bool| -> Result<(f64, u64, u64), StepError> {
        let sampler = Sampler::start(std::process::id(), c.node());
        let t = Instant::now();
        let started = c.start(again, &sampler);
        let secs = t.elapsed().as_secs_f64();
        let peak = sampler.finish();
        started?;
        Ok((secs, peak, c.guest_memory().unwrap_or(0)))
    };
    (r.fresh_secs, r.fresh_peak, r.fresh_guest) = timed(c, false).map_err(step("start -> Ready", &name))?;
    c.stop().map_err(step("stop", &name))?;
    (r.restart_secs, r.restart_peak, r.restart_guest) = timed(c, true).map_err(step("restart -> Ready", &name))?;
    Ok(r)
}

/// `runs` rounds of each, alternating which goes first; each round's line goes to `out` as it
/// ends.
pub fn race(a: &mut dyn Contender, b: &mut dyn Contender, runs: usize, out: &mut dyn FnMut(&str)) -> Result<Results, RaceError> {
    let mut res = Results { names: [a.name().to_string(), b.name().to_string()], rounds: [Vec::new(), Vec::new()] };
    let sides: [&mut dyn Contender; 2] = [a, b];
    for run in 1..=runs.max(1) {
        let order = if run % 2 == 1 { [0, 1] } else { [1, 0] };
        for i in order {
            let c = &mut *sides[i];
            let round = one(c, run);
            let deleted = c.delete();
            let r = round?;
            // The round's figures are printed before a failed delete is reported.
            out(&format!(
                "run {run} {:<14} start -> Ready {:6.1} s (peak host {:5.0} MB, guest {:5.0} MB at Ready); restart -> Ready {:6.1} s (peak host {:5.0} MB, guest {:5.0} MB)",
                c.name(),
                r.fresh_secs,
                mb(r.fresh_peak),
                mb(r.fresh_guest),
                r.restart_secs,
                mb(r.restart_peak),
                mb(r.restart_guest)
            ));
            deleted.map_err(|source| RaceError::Step { contender: c.name().to_string(), run, step: "delete", source })?;
            res.rounds[i].push(r);
        }
    }
    Ok(res)
}

impl Results {
    fn med(&self, i: usize, f: fn(&Round) -> f64) -> f64 {
        median(self.rounds[i].iter().map(f).collect())
    }

    /// The medians of both, the ratio second / first and the goals, as lines.
    pub fn summary(&self) -> Vec<String> {
        let n = self.rounds[0].len().min(self.rounds[1].len());
        let mut lines = vec![format!("medians of {n} runs each {:>22} {:>14} {:>8}   goal", self.names[0], self.names[1], "ratio")];
        type Row = (&'static str, fn(&Round) -> f64, &'static str, &'static str);
        let rows: [Row; 6] = [
            ("start -> node Ready (fresh)", |r| r.fresh_secs, "s", "<= 0.5x"),
            ("restart -> node Ready", |r| r.restart_secs, "s", "<= 0.3x"),
            ("peak host memory, fresh", |r| mb(r.fresh_peak), "MB", ""),
            ("peak host memory, restart", |r| mb(r.restart_peak), "MB", ""),
            ("guest memory at Ready, fresh", |r| mb(r.fresh_guest), "MB", ""),
            ("guest memory at Ready, restart", |r| mb(r.restart_guest), "MB", ""),
        ];
        for (what, f, unit, goal) in rows {
            let (x, y) = (self.med(0, f), self.med(1, f));
            let ratio = if x > 0.0 { format!("{:.2}x", y / x) } else { "-".into() };
            let prec = if unit == "s" { 1 } else { 0 };
            lines.push(format!("{what:<31} {:>13.prec$} {unit:<2} {:>11.prec$} {unit:<2} {ratio:>8}   {goal}", x, y));
        }
        lines
    }
}

/// `kubectl --kubeconfig K get nodes` every 250 ms until a node is Ready.
pub fn kubectl_ready(kubectl: &Path, kubeconfig: &Path, limit: Duration) -> Result<Duration, RaceError> {
    let t = Instant::now();
    loop {
        let out = std::process::Command::new(kubectl)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["get", "nodes", "-o", r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#])
            .output();
        let last = match out {
            Ok(o) if String::from_utf8_lossy(&o.stdout).lines().any(|l| l == "True") => return Ok(t.elapsed()),
            Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            Err(e) => format!("{}: {e}", kubectl.display()),
        };
        if t.elapsed() > limit {
            return Err(RaceError::NotReady { kubeconfig: kubeconfig.display().to_string(), secs: limit.as_secs(), last: super::run::tail(&last, 10) });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The real minikube in the race: `minikube start` (the offline flags of
/// [`super::run::Setup::start_args`], which waits for the node itself) then `minikube kubectl
/// -- get nodes` Ready; `minikube stop`; `minikube delete`, which must leave nothing in podman
/// or qemu.
pub struct MinikubeSide {
    pub mk: Minikube,
    pub name: String,
    pub limit: Duration,
}

impl MinikubeSide {
    pub fn new(mk: Minikube) -> MinikubeSide {
        MinikubeSide { mk, name: "minikube".into(), limit: Duration::from_secs(900) }
    }
}

impl Contender for MinikubeSide {
    fn name(&self) -> &str {
        &self.name
    }

    fn node(&self) -> NodeProcess {
        self.mk.node_process()
    }

    fn guest_memory(&mut self) -> Option<u64> {
        match self.mk.setup.node {
            NodeImage::Kic(_) => container_memory(&self.mk.setup.profile),
            NodeImage::Iso { .. } => meminfo_used(&self.mk.run(&["ssh", "--", "cat", "/proc/meminfo"], Duration::from_secs(60)).ok()?),
        }
    }

    fn start(&mut self, _again: bool, sampler: &Sampler) -> Result<(), StepError> {
        // The sampler follows minikube's process tree (this process is not counted; the
        // `minikube kubectl` polls after it are not either).
        self.mk.start(self.limit, &|pid| sampler.set_root(pid))?;
        self.mk.wait_ready(Duration::from_secs(300))?;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), StepError> {
        self.mk.run(&["stop"], Duration::from_secs(300))?;
        Ok(())
    }

    fn delete(&mut self) -> Result<(), StepError> {
        self.mk.delete(Duration::from_secs(300)).map_err(|e: RunError| e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(&'static str, Vec<String>, f64);
    impl Contender for Fake {
        fn name(&self) -> &str {
            self.0
        }
        fn node(&self) -> NodeProcess {
            NodeProcess::Container("no-such-container-of-the-race-test".into())
        }
        fn guest_memory(&mut self) -> Option<u64> {
            None
        }
        fn start(&mut self, again: bool, _: &Sampler) -> Result<(), StepError> {
            self.1.push(format!("start {again}"));
            std::thread::sleep(Duration::from_secs_f64(if again { self.2 / 2.0 } else { self.2 }));
            Ok(())
        }
        fn stop(&mut self) -> Result<(), StepError> {
            self.1.push("stop".into());
            Ok(())
        }
        fn delete(&mut self) -> Result<(), StepError> {
            self.1.push("delete".into());
            Ok(())
        }
    }

    #[test]
    fn rounds_alternate_and_the_ratio_is_second_over_first() {
        let (mut a, mut b) = (Fake("a", Vec::new(), 0.2), Fake("b", Vec::new(), 0.1));
        let mut order = Vec::new();
        let res = race(&mut a, &mut b, 2, &mut |l| order.push(l.split_whitespace().nth(2).unwrap_or("").to_string())).unwrap();
        assert_eq!(order, ["a", "b", "b", "a"]);
        assert_eq!(a.1, ["start false", "stop", "start true", "delete", "start false", "stop", "start true", "delete"]);
        let s = res.summary();
        let fresh = s.iter().find(|l| l.starts_with("start -> node Ready")).unwrap();
        let ratio: f64 = fresh.split_whitespace().rev().nth(2).unwrap().trim_end_matches('x').parse().unwrap();
        assert!((0.3..0.8).contains(&ratio), "{fresh}");
        assert!(res.rounds[0][0].fresh_peak > 0, "this process is sampled");
    }

    #[test]
    fn a_failed_round_still_deletes() {
        struct Failing(bool);
        impl Contender for Failing {
            fn name(&self) -> &str {
                "f"
            }
            fn node(&self) -> NodeProcess {
                NodeProcess::Container("none".into())
            }
            fn guest_memory(&mut self) -> Option<u64> {
                None
            }
            fn start(&mut self, _: bool, _: &Sampler) -> Result<(), StepError> {
                Err("boom".into())
            }
            fn stop(&mut self) -> Result<(), StepError> {
                Ok(())
            }
            fn delete(&mut self) -> Result<(), StepError> {
                self.0 = true;
                Ok(())
            }
        }
        let (mut a, mut b) = (Failing(false), Fake("b", Vec::new(), 0.0));
        let e = race(&mut a, &mut b, 1, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("f, run 1: start -> Ready: boom"), "{e}");
        assert!(a.0);
    }
}
