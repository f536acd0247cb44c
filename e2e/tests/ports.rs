//! Two `start`s of different profiles at once in one home never pick the same host ports: each
//! chooses its ports under the home's port lock, held until its qemu has bound them. The real
//! qemu starts on the real ISO; each start is cut short once its qemu runs (the `boot` step):
//! the qemu is killed, the start then fails, and what is checked is the ports each qemu bound.

use std::collections::BTreeSet;
use std::time::Duration;

use launcher::options::StartOptions;
use launcher::report::{Output, Reporter};
use launcher::resources::state::Home;
use launcher::start;

#[test]
fn concurrent_starts_of_two_profiles_choose_disjoint_ports() {
    // Process-wide settings for every start in this test binary (it has only this test).
    std::env::set_var("MINIKUBE_ACCEL", "tcg");
    let tmp = tempfile::tempdir().unwrap();
    let iso = e2e::iso_path();
    let home = Home::at(tmp.path().join("home"));
    for round in 0..3 {
        let names = [format!("race{round}a"), format!("race{round}b")];
        let threads: Vec<_> = names
            .iter()
            .map(|name| {
                let (home, iso, name) = (home.clone(), iso.clone(), name.clone());
                std::thread::spawn(move || {
                    let mut opts = StartOptions::new(&name, iso);
                    opts.kubelet_test_double = true;
                    opts.disk_mb = 64;
                    opts.agent_timeout = Duration::from_secs(30);
                    let pidfile = home.machine(&name).unwrap().pidfile();
                    let killer = KillAtBoot { pidfile, seen: String::new(), killed: None };
                    let mut rep = Reporter::new(Output::Text, Box::new(killer));
                    let r = start::start(&home, &opts, &mut rep);
                    (r.map(drop).map_err(|e| e.to_string()), rep.events.iter().map(|e| e.step).collect::<Vec<_>>())
                })
            })
            .collect();
        for t in threads {
            let (r, steps) = t.join().unwrap();
            let e = r.expect_err("qemu was killed after its boot step");
            assert!(steps.contains(&"boot"), "qemu started and bound its ports: {steps:?}, {e}");
        }
    }
    let mut all = BTreeSet::new();
    for name in home.list().unwrap() {
        let p = home.machine(&name).unwrap().load().unwrap().ports;
        for port in [p.agent, p.apiserver, p.ssh] {
            assert!(all.insert(port), "port {port} chosen twice (by {name} and another profile)");
        }
    }
    assert_eq!(all.len(), 18);
}

/// The start's report sink: once the `boot` line is out (qemu runs, its ports are bound), kill
/// that qemu, so the start ends without a whole boot.
struct KillAtBoot {
    pidfile: std::path::PathBuf,
    seen: String,
    killed: Option<u32>,
}

impl std::io::Write for KillAtBoot {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.seen.push_str(&String::from_utf8_lossy(buf));
        if self.killed.is_none() && self.seen.lines().any(|l| l.starts_with("boot")) {
            if let Some(pid) = launcher::resources::qemu::read_pidfile(&self.pidfile) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
                self.killed = Some(pid);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for KillAtBoot {
    fn drop(&mut self) {
        // A start that failed before its boot line may still have left a qemu.
        if let (None, Some(pid)) = (self.killed, launcher::resources::qemu::read_pidfile(&self.pidfile)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}
