//! Two `start`s at once in one home never pick the same host ports: each chooses its ports under
//! the home's port lock, held until its qemu has bound them. qemu is `qemu-test-double` here
//! (it binds the forwarded ports and writes its pidfile, as `qemu -daemonize` does, and boots
//! nothing), so each start then fails waiting for an agent that never comes; what is checked is
//! the ports.

use std::collections::BTreeSet;
use std::time::Duration;

use launcher::provision::{self, Output, Reporter, StartOptions};
use launcher::state::Home;

#[test]
fn concurrent_starts_choose_disjoint_ports_with_the_qemu_test_double() {
    // Process-wide settings for every start in this test binary (it has only this test).
    std::env::set_var("MINIKUBE_QEMU", env!("CARGO_BIN_EXE_qemu-test-double"));
    std::env::set_var("MINIKUBE_ACCEL", "tcg");
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("x.iso");
    std::fs::write(&iso, b"never booted").unwrap();
    let home = Home::at(tmp.path().join("home"));
    let mut daemons = Vec::new();
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
                    opts.agent_timeout = Duration::from_secs(1);
                    let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
                    let r = provision::start(&home, &opts, &mut rep);
                    (r.map(drop).map_err(|e| e.to_string()), rep.events.iter().map(|e| e.step).collect::<Vec<_>>())
                })
            })
            .collect();
        for t in threads {
            let (r, steps) = t.join().unwrap();
            let e = r.expect_err("no agent answers the test double");
            assert!(e.contains("did not answer"), "{e}");
            assert!(steps.contains(&"boot"), "qemu (the double) started: {steps:?}, {e}");
        }
        for name in &names {
            daemons.push(home.machine(name).unwrap().pidfile());
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
    for pidfile in daemons {
        if let Some(pid) = launcher::qemu::read_pidfile(&pidfile) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}
