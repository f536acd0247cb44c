//! `cargo xtask bench launcher`: boots of the ISO through `minikube-node start`, timed per step,
//! then provisioning through the agent against the same steps over SSH, on the same node.
//!
//! One machine in a temporary home: a fresh start (disk formatted, everything provisioned),
//! then `boots - 1` stop/start cycles, and one start on the running machine (nothing to do).
//! Prints each run's steps and the median per step, the median time from qemu's start to the
//! agent answering, and to a provisioned node. The ISO is `MINIKUBE_ISO`, default
//! `out/minikube.iso`.
//!
//! Agent versus SSH: `rounds` times, in alternating order, the node is reset (files removed,
//! kubelet stopped, hostname back) and provisioned again from a new connection, once through
//! the agent (hostname, certs, runtime, kubelet as `start` does) and once over SSH as minikube
//! does it ([`launcher::resources::ssh::baseline`]); both write the same bytes, which is checked after each
//! round. Printed: the median per step each way and the ratio SSH / agent.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::api::ExecRequest;
use anyhow::{bail, ensure, Context, Result};
use launcher::driver::qemu::machine;
use launcher::options::StartOptions;
use launcher::report::{Output, Reporter, StepEvent};
use launcher::resources::ssh::{baseline, Ssh};
use launcher::resources::state::{Home, MachineDir};
use launcher::{driver, start};
use platform::stats::median;

fn secs(events: &[StepEvent], step: &str) -> f64 {
    events.iter().filter(|e| e.step == step).map(|e| e.seconds).sum()
}

/// The ISO the launcher benches boot: `MINIKUBE_ISO`, default `out/minikube.iso`; it must exist.
pub fn bench_iso() -> Result<PathBuf> {
    let iso = std::env::var_os("MINIKUBE_ISO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("out/minikube.iso"));
    ensure!(iso.is_file(), "{}: no ISO (run `cargo xtask iso` or set MINIKUBE_ISO)", iso.display());
    Ok(iso)
}

/// A fresh bench VM: the kubelet test double (no release host here), 3072 MiB, a 20000 MiB
/// data disk, a long agent timeout (TCG on a busy machine).
pub fn fresh_vm_options(name: &str, iso: PathBuf) -> StartOptions {
    let mut opts = StartOptions::new(name, iso);
    opts.kubelet_test_double = true;
    opts.memory_mb = 3072;
    opts.disk_mb = 20_000;
    opts.agent_timeout = Duration::from_secs(900);
    opts
}

pub fn run(boots: usize, rounds: usize, kubelet_mb: usize) -> Result<()> {
    let iso = bench_iso()?;
    let boots = boots.max(1);
    let tmp = tempfile::tempdir()?;
    let home = Home::at(tmp.path());
    let m = home.machine("bench")?;
    let mut opts = StartOptions::new("bench", iso);
    // No route to the release host here: the kubelet test double (no Kubernetes bootstrap).
    opts.kubelet_test_double = true;
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
            start::start(&home, &opts, &mut rep).with_context(|| format!("boot {}", i + 1))?;
            runs.push(rep.events);
        }
        println!("== start on the running machine");
        let mut rep = Reporter::new(Output::Text, Box::new(std::io::stdout()));
        start::start(&home, &opts, &mut rep)?;
        let converged: f64 = rep.events.iter().map(|e| e.seconds).sum();
        let steps_after_boot = ["hostname", "certs", "runtime", "kubelet"];
        let after_boot = median(runs.iter().map(|r| steps_after_boot.iter().map(|s| secs(r, s)).sum::<f64>()).collect());
        println!();
        println!("{:<12} {:>10}   (median of {} boots; the first formats the data disk)", "step", "seconds", runs.len());
        for step in ["machine", "boot", "agent", "document", "hostname", "certs", "runtime", "kubelet", "kubeconfig"] {
            println!("{step:<12} {:>10.2}", median(runs.iter().map(|r| secs(r, step)).collect()));
        }
        let ready = median(runs.iter().map(|r| secs(r, "boot") + secs(r, "agent")).collect());
        let total = median(runs.iter().map(|r| r.iter().map(|e| e.seconds).sum::<f64>()).collect());
        println!("qemu start -> agent ready: {ready:.1} s (median)");
        println!("start -> provisioned:      {total:.1} s (median)");
        println!("start on a running node:   {converged:.2} s");
        println!("provisioning after boot:   {after_boot:.2} s (median; the API steps check what the boot step applied)");
        if rounds > 0 {
            let ssh_total = compare(&home, &m, rounds, kubelet_mb, tmp.path())?;
            println!();
            println!("provisioning after boot, SSH / agent start: {:.1}x ({ssh_total:.2} s / {after_boot:.2} s)", ssh_total / after_boot.max(0.001));
            println!("start -> provisioned: agent {total:.1} s; SSH path (same boot to a reachable node, then the SSH steps) {:.1} s", ready + ssh_total);
        }
        Ok(())
    })();
    let _ = machine::delete(&m, Duration::from_secs(30));
    result
}

/// Fresh VMs with each kind of data disk, alternating, `runs` of each: minikube's magic disk
/// (partitioned and formatted by the guest at its first boot) against ours (made on the host with
/// `mke2fs -d`). Prints the medians of `machine` (host side, the disk made there), qemu start →
/// agent answering, and start → provisioned, with the ratios.
pub fn disks(runs: usize) -> Result<()> {
    use launcher::resources::disk::{DiskFormat, FORMAT_ENV};
    let iso = bench_iso()?;
    let tmp = tempfile::tempdir()?;
    let home = Home::at(tmp.path());
    let formats = [(DiskFormat::Magic, "magic"), (DiskFormat::Ext4, "ext4")];
    let mut rows: Vec<(DiskFormat, f64, f64, f64)> = Vec::new();
    for i in 0..runs.max(1) {
        let order = if i % 2 == 0 { [formats[0], formats[1]] } else { [formats[1], formats[0]] };
        for (format, env) in order {
            std::env::set_var(FORMAT_ENV, env);
            let name = format!("disk-{env}");
            let m = home.machine(&name)?;
            let opts = fresh_vm_options(&name, iso.clone());
            let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
            let started = start::start(&home, &opts, &mut rep).with_context(|| format!("fresh start with the {env} disk"));
            let _ = machine::delete(&m, Duration::from_secs(30));
            started?;
            let e = &rep.events;
            let row = (format, secs(e, "machine"), secs(e, "boot") + secs(e, "agent"), e.iter().map(|x| x.seconds).sum());
            println!("run {} {env:<6} machine {:5.2} s, qemu start -> agent {:5.1} s, start -> provisioned {:5.1} s", i + 1, row.1, row.2, row.3);
            rows.push(row);
        }
    }
    std::env::remove_var(FORMAT_ENV);
    let med = |f: DiskFormat, k: usize| median(rows.iter().filter(|r| r.0 == f).map(|r| [r.1, r.2, r.3][k]).collect());
    println!("\nfresh VMs, {} runs each (medians)   magic (guest formats)   ext4 (made on the host)   ratio", runs.max(1));
    for (k, what) in ["machine (host)", "qemu start -> agent", "start -> provisioned"].iter().enumerate() {
        let (a, b) = (med(DiskFormat::Magic, k), med(DiskFormat::Ext4, k));
        println!("{what:<32} {a:>10.2} s {b:>22.2} s {:>12.2}x", b / a.max(0.001));
    }
    Ok(())
}

/// A stand-in kubelet of `mb` MiB: the test double's script, then filler bytes after its `exit`
/// (never read by the shell), so both ways copy a kubelet-sized file that still answers.
fn stand_in_kubelet(dir: &Path, version: &str, mb: usize) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BENCH_KUBELET") {
        return Ok(PathBuf::from(p));
    }
    let mut bytes = launcher::resources::kubelet::test_double_script(version).into_bytes();
    bytes.extend_from_slice(b"exit 0\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < mb << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    let p = dir.join(launcher::resources::kubelet::TEST_DOUBLE_NAME);
    std::fs::write(&p, bytes)?;
    Ok(p)
}

/// Run `script` with `sh -c` on the node; its stdout, or an error with its output.
pub fn exec(c: &mut agent::client::Client, script: &str) -> Result<String> {
    let r = c.exec(&ExecRequest { argv: vec!["sh".into(), "-c".into(), script.into()], timeout_secs: Some(300), ..Default::default() })?;
    if r.exit_code != Some(0) {
        bail!("`{}` on the node failed: {}{}", script.chars().take(120).collect::<String>(), r.stdout, r.stderr);
    }
    Ok(r.stdout)
}

/// What the steps wrote, as one text (owners, modes, content hashes, hostname) to compare.
fn fingerprint(c: &mut agent::client::Client, plan: &baseline::Plan) -> Result<String> {
    let list = plan.written_paths().join(" ");
    exec(
        c,
        &format!(
            "hostname; cat /etc/hostname; grep '^127.0.1.1' /etc/hosts | tr -s ' \\t' ' '; stat -c '%a %u:%g %n' {list}; sha256sum {list}; \
                      for n in {}; do readlink /etc/ssl/certs/$n; done; systemctl is-enabled kubelet containerd",
            plan.certs.trust.iter().map(|c| c.name.clone()).collect::<Vec<_>>().join(" ")
        ),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Agent,
    Ssh,
}

/// Provisioning through the agent and over SSH, alternating, on the running machine. Returns
/// the median SSH total.
fn compare(home: &Home, m: &MachineDir, rounds: usize, kubelet_mb: usize, tmp: &Path) -> Result<f64> {
    let state = m.load()?;
    let cas = launcher::resources::certs::shared_cas(&home.shared_certs())?;
    let pc = launcher::resources::certs::ensure_profile(&cas, &m.certs_dir(), &m.trust_dir(), &state.node_ip)?;
    let binary = stand_in_kubelet(tmp, &state.kubernetes_version, kubelet_mb)?;
    let bytes = std::fs::read(&binary)?;
    let sha = pki::digest::sha256_hex(&bytes);
    // The same requests `start` sends: the node document's sections.
    let (key, _) = launcher::resources::ssh::ensure_key(m, &format!("minikube-node@{}", state.name))?;
    let sections = launcher::resources::node_doc::build(
        &state,
        &pc,
        &key,
        Some(&launcher::resources::node_doc::Binary::of(&binary)?),
        launcher::topology::hosts(std::slice::from_ref(&state)),
    );
    let (certs, runtime) = (sections.certs, sections.runtime);
    let kubelet = sections.kubelet.context("the document names a kubelet")?;
    let plan = baseline::Plan {
        hostname: &state.name,
        certs: &certs,
        extra_files: vec![(launcher::resources::certs::GUEST_SA_PUB.to_string(), pc.sa_pub_pem.as_bytes().to_vec(), 0o644)],
        runtime: &runtime,
        kubelet_binary: &binary,
        kubelet: &kubelet,
    };
    let ssh = Ssh::for_machine(m, state.ports.ssh);
    let waited = ssh.wait(Duration::from_secs(120)).context("ssh to the node with the machine's key")?;
    println!("\n== agent vs SSH: {rounds} rounds, kubelet {} MiB (ssh answered after {:.1}s)", bytes.len() >> 20, waited.as_secs_f64());
    let mut admin = driver::agent::connect_existing(home, m)?;
    let reset = baseline::reset_script(&plan);
    let steps = ["hostname", "certs", "runtime", "kubelet"];
    let mut agent_runs: Vec<Vec<f64>> = Vec::new();
    let mut ssh_runs: Vec<Vec<f64>> = Vec::new();
    let mut sessions = 0;
    let mut prints: Vec<(Way, String)> = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 { [Way::Agent, Way::Ssh] } else { [Way::Ssh, Way::Agent] };
        for way in order {
            exec(&mut admin, &reset)?;
            ssh.close();
            let times = match way {
                Way::Agent => {
                    let mut t = Vec::new();
                    let s = Instant::now();
                    // A new connection each round, as SSH gets one: the handshake counts in the first step.
                    let mut c = driver::agent::connect_existing(home, m)?;
                    c.hostname(&state.name)?;
                    t.push(s.elapsed().as_secs_f64());
                    let s = Instant::now();
                    c.certs(&certs)?;
                    c.upload_bytes(launcher::resources::certs::GUEST_SA_PUB, pc.sa_pub_pem.as_bytes(), 0o644, None)?;
                    t.push(s.elapsed().as_secs_f64());
                    let s = Instant::now();
                    c.runtime(&runtime)?;
                    t.push(s.elapsed().as_secs_f64());
                    let s = Instant::now();
                    c.upload_binary(&kubelet.version, "kubelet", &sha, &mut &bytes[..], bytes.len() as u64)?;
                    c.kubelet(&kubelet)?;
                    t.push(s.elapsed().as_secs_f64());
                    agent_runs.push(t.clone());
                    t
                }
                Way::Ssh => {
                    let r = baseline::provision(&ssh, &plan)?;
                    sessions = r.iter().map(|s| s.sessions).sum::<u32>();
                    let t: Vec<f64> = r.iter().map(|s| s.seconds).collect();
                    ssh_runs.push(t.clone());
                    t
                }
            };
            let name = if way == Way::Agent { "agent" } else { "ssh" };
            println!(
                "round {} {name:<5} {}  total {:.2}s",
                round + 1,
                steps.iter().zip(&times).map(|(s, t)| format!("{s} {t:.2}s")).collect::<Vec<_>>().join(", "),
                times.iter().sum::<f64>()
            );
            prints.push((way, fingerprint(&mut admin, &plan)?));
        }
    }
    ssh.close();
    let a = prints.iter().find(|p| p.0 == Way::Agent).map(|p| p.1.clone()).unwrap_or_default();
    let same = prints.iter().all(|p| p.1 == a);
    println!();
    println!("{:<10} {:>10} {:>10} {:>10}   (medians of {rounds} rounds)", "step", "agent s", "ssh s", "ssh/agent");
    for (i, step) in steps.iter().enumerate() {
        let am = median(agent_runs.iter().map(|r| r[i]).collect());
        let sm = median(ssh_runs.iter().map(|r| r[i]).collect());
        println!("{step:<10} {am:>10.2} {sm:>10.2} {:>10.2}", sm / am);
    }
    let at = median(agent_runs.iter().map(|r| r.iter().sum::<f64>()).collect());
    let st = median(ssh_runs.iter().map(|r| r.iter().sum()).collect());
    println!("{:<10} {at:>10.2} {st:>10.2} {:>10.2}", "total", st / at);
    println!("SSH sessions per provisioning: {sessions}; agent requests: 7");
    println!("same files, modes, owners, links and hostname both ways: {}", if same { "yes" } else { "NO" });
    if !same {
        for (w, p) in &prints {
            if p != &a {
                eprintln!("differs ({}):\n{p}\nagent:\n{a}", if *w == Way::Agent { "agent" } else { "ssh" });
                break;
            }
        }
        bail!("the SSH baseline and the agent left different files: the comparison is not like for like");
    }
    Ok(st)
}
