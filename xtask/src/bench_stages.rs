//! `cargo xtask bench launcher --stage-runs N [--baseline-iso OLD]`: where a qemu node's boot
//! goes, stage by stage, fresh and restarted, for the ISO and (in the same run, alternating) a
//! baseline ISO.
//!
//! The stages come from the guest itself: `/init`'s console lines carry the guest's uptime, and
//! systemd's monotonic timestamps (same clock) say when the boot step started and ended and when
//! the agent's unit started. The host adds what precedes the kernel (firmware, bootloader) and
//! the launcher's polling, as its qemu start → agent answering minus the guest's uptime when the
//! agent's unit turned active (it listens then: `Type=notify`; a baseline's `Type=simple` agent
//! turns active as it starts). The agent starts beside the boot step, so the last row overlaps
//! the one before it. Also counted: systemd reloads in this boot, starts of containerd, and the boot
//! step's node-document line (what it changed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use launcher::driver::qemu::machine;
use launcher::report::{Output, Reporter};
use launcher::resources::state::Home;
use launcher::{driver, start};
use platform::stats::median;

use crate::bench_launcher::{exec, fresh_vm_options};

/// The rows of the table, in boot order.
pub const STAGES: [&str; 9] = [
    "firmware, bootloader, polling (host)",
    "kernel -> /init",
    "/init: modules",
    "/init: find the medium",
    "/init: check the layers",
    "/init: mount the root",
    "systemd -> boot step",
    "boot step",
    "boot step start -> agent listening",
];

/// One boot, measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Boot {
    /// Seconds per [`STAGES`] row.
    pub stages: Vec<f64>,
    /// The launcher's qemu start → agent answering.
    pub to_agent: f64,
    /// The launcher's whole `start`.
    pub provisioned: f64,
    /// `systemctl daemon-reload`s in this boot (systemd's "Reloading" lines).
    pub reloads: usize,
    /// Starts of containerd.service in this boot.
    pub containerd_starts: usize,
    /// The guest's memory in use (MemTotal - MemAvailable) when systemd finished the boot, from
    /// the ISO's ready line.
    pub memory_mb: f64,
    /// The boot step's console lines: what it did (with its parts' times), and the node
    /// document's line (what it changed).
    pub document: String,
}

/// `/init`'s console lines as (text, guest uptime): `minikube-init: TEXT [12.34s]`.
pub fn init_marks(console: &str) -> Vec<(String, f64)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix(minikube_init::CONSOLE_PREFIX)?.trim();
            let (text, t) = rest.rsplit_once(" [")?;
            Some((text.to_string(), t.strip_suffix("s]")?.parse().ok()?))
        })
        .collect()
}

/// `systemctl show` output (`Key=value` lines) as microseconds, for `key`.
fn usec(show: &str, key: &str) -> Option<f64> {
    show.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.trim().parse::<f64>().ok()).filter(|v| *v > 0.0).map(|v| v / 1e6)
}

/// The stages of one boot from its console text and the guest's `systemctl show` of the boot
/// step's and the agent's units; `to_agent` is the host's qemu start → agent answering.
pub fn stages(console: &str, boot_unit: &str, agent_unit: &str, to_agent: f64) -> Result<Vec<f64>> {
    let marks = init_marks(console);
    let at = |text: &str| marks.iter().find(|(t, _)| t.contains(text)).map(|(_, s)| *s);
    let first = marks.first().map(|(_, s)| *s).context("no `minikube-init:` line on the console")?;
    let modules = at("modules loaded").context("no `modules loaded` line")?;
    let medium = at("medium ").context("no `medium` line")?;
    // The line after the check: this ISO's or the baseline's wording.
    let checked = at("hash trees match").or_else(|| at("layers verified")).context("no line for the layer check")?;
    let root = at("root ready").context("no `root ready` line")?;
    let boot_start = usec(boot_unit, "ExecMainStartTimestampMonotonic").context("the boot step's start time")?;
    let boot_end = usec(boot_unit, "ExecMainExitTimestampMonotonic").context("the boot step's end time")?;
    let agent = usec(agent_unit, "ActiveEnterTimestampMonotonic").context("the agent's time of turning active")?;
    Ok(vec![
        to_agent - agent,
        first,
        modules - first,
        medium - modules,
        checked - medium,
        root - checked,
        boot_start - root,
        boot_end - boot_start,
        agent - boot_start,
    ])
}

/// Start (fresh or again) the machine `name` from `iso`, and measure that boot.
fn measured_start(home: &Home, name: &str, iso: &Path) -> Result<Boot> {
    let m = home.machine(name)?;
    let opts = fresh_vm_options(name, iso.to_path_buf());
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
    start::start(home, &opts, &mut rep).with_context(|| format!("starting {name} from {}", iso.display()))?;
    let secs = |step: &str| rep.events.iter().filter(|e| e.step == step).map(|e| e.seconds).sum::<f64>();
    let to_agent = secs("boot") + secs("agent");
    let provisioned = rep.events.iter().map(|e| e.seconds).sum();
    let mut c = driver::agent::connect_existing(home, &m)?;
    let show = |u: &str| format!("systemctl show -p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic -p ActiveEnterTimestampMonotonic {u}");
    let boot_unit = exec(&mut c, &show("minikube-agent-boot.service"))?;
    let agent_unit = exec(&mut c, &show("minikube-agent.service"))?;
    let journal = exec(&mut c, "journalctl -b -o cat _PID=1")?;
    let memory_mb = ready_memory(&m.console_log(), Duration::from_secs(120))?;
    let console = std::fs::read_to_string(m.console_log()).with_context(|| format!("{}", m.console_log().display()))?;
    let line = |marker: &str, none: &str| console.lines().rfind(|l| l.contains(marker)).unwrap_or(none).trim().to_string();
    // What the boot step did and how long each part took, then what the document changed.
    let document = format!("{}; {}", line("minikube-agent: boot done", "(no boot-done line)"), line(agent::DOCUMENT_MARKER, "(no node-document line)"));
    Ok(Boot {
        stages: stages(&console, &boot_unit, &agent_unit, to_agent)?,
        to_agent,
        provisioned,
        reloads: journal.lines().filter(|l| l.starts_with("Reloading")).count(),
        containerd_starts: journal.lines().filter(|l| l.starts_with("Starting containerd.service")).count(),
        memory_mb,
        document,
    })
}

/// The table's rows after [`STAGES`].
const TOTALS: [&str; 4] = ["qemu start -> agent answering", "start -> provisioned", "systemd reloads (count)", "guest memory at ready (MB)"];

/// A boot's figures in table order: [`STAGES`], then [`TOTALS`].
fn figures(b: &Boot) -> Vec<f64> {
    b.stages.iter().copied().chain([b.to_agent, b.provisioned, b.reloads as f64, b.memory_mb]).collect()
}

/// The memory figure of the ISO's ready line (`minikube-iso: ready (..., memory used N MB)`),
/// `N` from the console's last such line, waited for up to `timeout` (systemd ends its boot
/// after the agent has answered).
pub fn ready_memory_in(console: &str) -> Option<f64> {
    crate::bench_iso::ready_number(console.lines().rfind(|l| l.contains("minikube-iso: ready"))?, "memory used")
}

fn ready_memory(console: &Path, timeout: Duration) -> Result<f64> {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(console).with_context(|| format!("{}", console.display()))?;
        if let Some(mb) = ready_memory_in(&text) {
            return Ok(mb);
        }
        ensure!(start.elapsed() < timeout, "{}: no `minikube-iso: ready ... memory used` line within {:?}", console.display(), timeout);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `runs` rounds; each round, for each ISO (alternating which goes first): a fresh machine, then
/// a stop and a start of it. Prints every boot and the medians per stage.
pub fn run(runs: usize, iso: PathBuf, baseline: Option<PathBuf>) -> Result<()> {
    let mut isos = vec![("this ISO", iso)];
    if let Some(b) = baseline {
        isos.insert(0, ("baseline", b));
    }
    for (_, p) in &isos {
        ensure!(p.is_file(), "{}: no ISO (run `cargo xtask iso`)", p.display());
    }
    let tmp = tempfile::tempdir()?;
    let home = Home::at(tmp.path());
    // (iso index, restart?) -> boots
    let mut boots: Vec<(usize, bool, Boot)> = Vec::new();
    for round in 0..runs.max(1) {
        let mut order: Vec<usize> = (0..isos.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (label, iso) = &isos[i];
            let name = format!("stages{i}");
            let m = home.machine(&name)?;
            let result = (|| -> Result<()> {
                for restart in [false, true] {
                    if restart {
                        machine::stop(&m, Duration::from_secs(120))?;
                    }
                    let b = measured_start(&home, &name, iso)?;
                    println!(
                        "round {} {label:<9} {:<7} qemu start -> agent {:5.1} s, start -> provisioned {:5.1} s, reloads {}, containerd starts {}, memory at ready {} MB; {}",
                        round + 1,
                        if restart { "restart" } else { "fresh" },
                        b.to_agent,
                        b.provisioned,
                        b.reloads,
                        b.containerd_starts,
                        b.memory_mb,
                        b.document
                    );
                    boots.push((i, restart, b));
                }
                Ok(())
            })();
            let _ = machine::delete(&m, Duration::from_secs(30));
            result?;
        }
    }
    let med = |i: usize, restart: bool, k: usize| median(boots.iter().filter(|(j, r, _)| *j == i && *r == restart).map(|(_, _, b)| figures(b)[k]).collect());
    for restart in [false, true] {
        println!(
            "\n{} boots, medians of {} (seconds){}",
            if restart { "restarted" } else { "fresh" },
            runs.max(1),
            if isos.len() > 1 { "; ratio = this ISO / baseline" } else { "" }
        );
        print!("{:<38}", "stage");
        for (label, _) in &isos {
            print!(" {label:>10}");
        }
        println!("{}", if isos.len() > 1 { "      ratio" } else { "" });
        for (k, what) in STAGES.iter().chain(&TOTALS).enumerate() {
            print!("{what:<38}");
            let v: Vec<f64> = (0..isos.len()).map(|i| med(i, restart, k)).collect();
            for x in &v {
                print!(" {x:>10.2}");
            }
            if v.len() > 1 {
                print!(" {:>9.2}x", v[1] / v[0].max(0.001));
            }
            println!();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
[    0.000000] Linux version 6.1.0
minikube-init: kernel 6.1.0-57-amd64, 2 layers [2.10s]
minikube-init: 29 modules loaded [3.30s]
minikube-init: medium /dev/sr0 [3.50s]
minikube-init: hash trees match the plan [3.52s]
minikube-init: root ready [3.60s]
minikube-agent: node document applied from qemu fw_cfg: changed: hostname
";

    #[test]
    fn stages_come_from_init_lines_and_unit_times() {
        let marks = init_marks(CONSOLE);
        assert_eq!(marks.len(), 5);
        assert_eq!(marks[1], ("29 modules loaded".to_string(), 3.30));
        let boot = "ExecMainStartTimestampMonotonic=8000000\nExecMainExitTimestampMonotonic=10500000\n";
        // The agent listens (turns active) while the boot step still runs.
        let agent = "ExecMainStartTimestampMonotonic=8100000\nExecMainExitTimestampMonotonic=0\nActiveEnterTimestampMonotonic=9000000\n";
        let s = stages(CONSOLE, boot, agent, 12.4).unwrap();
        let want = [3.4, 2.1, 1.2, 0.2, 0.02, 0.08, 4.4, 2.5, 1.0];
        assert_eq!(s.len(), STAGES.len());
        for (got, want) in s.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{s:?}");
        }
        // A console without /init's lines (not our ISO) is an error naming what is missing.
        let e = stages("nothing\n", boot, agent, 12.4).unwrap_err().to_string();
        assert!(e.contains("minikube-init"), "{e}");
        assert_eq!(ready_memory_in("x\nminikube-iso: ready (system running, uptime 20.1s, memory used 288 MB)\n"), Some(288.0));
        assert_eq!(ready_memory_in("minikube-iso: ready (system running)\n"), None);
        // A unit that never ran has no time.
        assert!(stages(CONSOLE, "ExecMainStartTimestampMonotonic=0\n", agent, 12.4).is_err());
    }
}
