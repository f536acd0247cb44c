//! The launcher end to end, in one test to save boots (each is about 80 s under TCG): start a
//! node from the ISO with containerd, log in over SSH with the profile's key, import and run an
//! OCI image we build, stop, start again (image, kubelet binary and the agent's trust survived
//! on the data disk), switch the node to docker through `start` and run the image there too,
//! kill qemu in the middle of provisioning and recover with the next `start`, then delete.
//!
//! Needs qemu-system-x86, qemu-utils and the ISO (`cargo xtask iso`, or `MINIKUBE_ISO`).

use std::time::{Duration, Instant};

use agent_api::api::{ExecRequest, Runtime};
use agent_api::client::Client;
use launcher::driver::qemu::machine;
use launcher::model::Status;
use launcher::options::StartOptions;
use launcher::report::{Output, Reporter, StepEvent};
use launcher::resources::state::Home;
use launcher::{driver, start};

mod common;
use common::{exec, start, GREETING, IMAGE_NAME, IMAGE_TAG};

const PROFILE: &str = "e2e-node";

fn secs(events: &[StepEvent], step: &str) -> f64 {
    events.iter().find(|e| e.step == step).map_or(0.0, |e| e.seconds)
}

/// The reporter's output, which kills qemu (SIGKILL, by its pidfile) once a step's line shows:
/// a crash in the middle of provisioning.
struct KillQemuAfter {
    step: &'static str,
    pidfile: std::path::PathBuf,
    seen: String,
    killed: bool,
}

impl std::io::Write for KillQemuAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.seen.push_str(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(buf)?;
        if !self.killed && self.seen.lines().any(|l| l.starts_with(self.step)) {
            let pid = std::fs::read_to_string(&self.pidfile).unwrap_or_default();
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                self.killed = true;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// After a boot, the API steps found the node as the boot step left it.
fn assert_boot_applied(events: &[StepEvent]) {
    for step in ["machine", "boot", "agent", "document", "hostname", "certs", "runtime", "kubelet"] {
        assert!(events.iter().any(|e| e.step == step), "no {step} step: {events:?}");
    }
    let document = events.iter().find(|e| e.step == "document").unwrap();
    assert!(document.detail.contains("node document applied at boot"), "{document:?}");
    let changed: Vec<_> = events.iter().filter(|e| e.changed && ["hostname", "certs", "runtime", "kubelet"].contains(&e.step)).collect();
    assert!(changed.is_empty(), "the boot step applied the document, yet the API changed {changed:?}");
    let total: f64 = events.iter().map(|e| e.seconds).sum();
    let ready = secs(events, "machine") + secs(events, "boot") + secs(events, "agent");
    eprintln!("FIGURE start -> provisioned {total:.1} s = agent answering {ready:.1} s + {:.1} s", total - ready);
}

/// systemd loaded its units once in this boot: the boot step chose them before they started.
fn assert_no_reload(c: &mut Client) {
    let journal = exec(c, &["journalctl", "-b", "-o", "cat", "_PID=1"]);
    let reloads: Vec<&str> = journal.lines().filter(|l| l.starts_with("Reloading")).collect();
    assert!(reloads.is_empty(), "systemd reloaded in this boot: {reloads:?}");
}

/// The root's writable layer is on the data disk (what a boot writes is there at the next).
fn assert_root_on_data_disk(c: &mut Client) {
    let opts = exec(c, &["findmnt", "-n", "-o", "OPTIONS", "/"]);
    assert!(opts.contains(&format!("upperdir=/run/minikube/data/{}/", minikube_init::data::ROOT_LAYERS_DIR)), "{opts}");
}

/// qemu started the ISO's kernel itself (no isolinux on the console; the kernel unpacked into
/// the launcher's cache), and the NIC to the host got its static address from the boot step,
/// which networkd then manages from the same file.
fn assert_direct_boot_and_static_uplink(home: &Home, m: &launcher::resources::state::MachineDir, c: &mut Client) {
    let console = std::fs::read_to_string(m.console_log()).unwrap();
    assert!(!console.contains("ISOLINUX"), "isolinux ran: the kernel was not started by qemu");
    // The ISO is a virtio disk then: /init found the layers without its CD and ATA drivers.
    assert!(console.contains("minikube-init: medium /dev/vd"), "the medium was not a virtio disk:\n{console}");
    assert!(!console.contains("more modules loaded"), "/init needed its fallback modules:\n{console}");
    let kernels: Vec<String> = std::fs::read_dir(home.kernels()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(kernels.iter().any(|k| k.ends_with(".pvh.elf")), "no unpacked kernel in the cache: {kernels:?}");
    let route = exec(c, &["ip", "route", "show", "default"]);
    assert!(route.contains(&format!("via {}", launcher::model::USER_NET_GATEWAY)), "{route}");
    let nic = exec(c, &["sh", "-c", &format!("grep -l -i {} /sys/class/net/*/address", launcher::model::USER_NIC_MAC)]);
    let nic = nic.trim().trim_start_matches("/sys/class/net/").trim_end_matches("/address").to_string();
    // networkd takes the NIC over once udev has seen it (the boot step did not wait for that).
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let status = exec(c, &["networkctl", "status", "--no-pager", &nic]);
        if (status.contains("05-minikube-uplink.network") && status.contains("configured")) || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(
        status.contains("05-minikube-uplink.network") && status.contains("configured") && status.contains(launcher::model::GUEST_IP),
        "networkd does not manage {nic} from the uplink file:\n{status}"
    );
}

/// `unit` was started once in this boot and never restarted.
fn assert_started_once(c: &mut Client, unit: &str) {
    let journal = exec(c, &["journalctl", "-b", "-o", "cat", "-u", unit]);
    let starts = journal.lines().filter(|l| l.starts_with("Starting ") || l.starts_with("Started ")).count();
    assert_eq!(starts, 2, "{unit} should start once (one Starting, one Started line):\n{journal}");
    assert_eq!(exec(c, &["systemctl", "show", "--property=NRestarts", "--value", unit]).trim(), "0");
}

#[test]
fn start_provision_run_image_stop_restart_docker_delete() {
    let _guest = e2e::GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let iso = e2e::iso_with(vec![e2e::Need::program("ssh")]);
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path().join("home"));
    let _cleanup = common::Cleanup(&home, PROFILE);
    let m = home.machine(PROFILE).unwrap();
    let archive = common::hello_archive(tmp.path(), platform::Arch::X86_64);
    let archive_bytes = std::fs::read(&archive).unwrap();
    let mut opts = StartOptions::new(PROFILE, iso);
    opts.kubelet_test_double = true;
    opts.memory_mb = 3072;
    opts.disk_mb = 4096;
    opts.runtime = Runtime::Containerd;
    opts.agent_timeout = Duration::from_secs(900);
    let mut boots = Vec::new();

    // 1. First start: the machine is created and boots; the node document (fw_cfg, and the new
    //    disk's userdata with the kubelet) was applied at boot, so the API steps only check.
    let first = start(&home, &opts);
    assert_boot_applied(&first);
    assert_eq!(machine::status(&m), Status::Running);
    assert!(driver::qemu::agent_ready_line(&m).is_some(), "console shows the agent's ready line");
    boots.push(first.clone());
    let agent_crt = std::fs::read(m.trust_dir().join("agent.crt")).unwrap();
    let mut c = driver::agent::connect_existing(&home, &m).unwrap();
    assert_started_once(&mut c, "containerd.service");
    assert_no_reload(&mut c);
    assert_root_on_data_disk(&mut c);
    assert_direct_boot_and_static_uplink(&home, &m, &mut c);
    assert_eq!(exec(&mut c, &["hostname"]).trim(), PROFILE);
    assert!(exec(&mut c, &["cat", "/var/lib/minikube/certs/apiserver.crt"]).contains("BEGIN CERTIFICATE"));
    assert!(exec(&mut c, &["cat", "/etc/hosts"]).contains("control-plane.minikube.internal"));
    // The root is the squashfs layers under a writable layer on the data disk, stacked by overlayfs; ping has its
    // capability from the image (no setuid), so the docker user can ping.
    assert_eq!(exec(&mut c, &["findmnt", "-n", "-o", "FSTYPE", "/"]).trim(), "overlay");
    let ping = exec(&mut c, &["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--", "ping", "-c", "1", "-W", "5", "127.0.0.1"]);
    assert!(ping.contains("1 received"), "{ping}");
    let used = exec(&mut c, &["sh", "-c", "awk '/^MemTotal:/{t=$2} /^MemAvailable:/{a=$2} END{print int((t-a)/1024)}' /proc/meminfo"]);
    eprintln!("memory used after provisioning: {} MB", used.trim());
    let kubelet = exec(&mut c, &[&format!("/var/lib/minikube/binaries/{}/kubelet", launcher::resources::kubelet::DEFAULT_VERSION), "--version"]);
    assert!(kubelet.contains(launcher::resources::kubelet::TEST_DOUBLE_NAME), "{kubelet}");
    let kubeconfig = std::fs::read_to_string(m.kubeconfig()).unwrap();
    let state = m.load().unwrap();
    assert!(kubeconfig.contains(&format!("https://127.0.0.1:{}", state.ports.apiserver)));

    // SSH: the profile's key (carried by the data disk) logs in as docker, with sudo.
    let ssh = launcher::resources::ssh::Ssh::for_machine(&m, state.ports.ssh);
    ssh.wait(Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    let out = ssh.run("hostname && id -un && sudo -n cat /var/lib/minikube/certs/apiserver.crt", None).unwrap_or_else(|e| panic!("{e}"));
    let out = String::from_utf8_lossy(&out.stdout);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(PROFILE), "{out}");
    assert_eq!(lines.next(), Some("docker"), "{out}");
    assert!(out.contains("BEGIN CERTIFICATE"), "{out}");
    ssh.close();

    // 2. Our image, imported into containerd and run with ctr.
    c.upload_bytes("/var/lib/minikube/images/e2e-hello.tar", &archive_bytes, 0o644, None).unwrap();
    exec(&mut c, &["ctr", "-n", "k8s.io", "images", "import", "/var/lib/minikube/images/e2e-hello.tar"]);
    let reference = format!("{IMAGE_NAME}:{IMAGE_TAG}");
    let out = exec(&mut c, &["ctr", "-n", "k8s.io", "run", "--rm", &reference, "e2e-hello-run", "/hello"]);
    assert_eq!(out.trim(), GREETING);

    // 3. A second start on the running machine changes nothing.
    let again = start(&home, &opts);
    let changed: Vec<_> = again.iter().filter(|e| e.changed).map(|e| e.step).collect();
    assert!(changed.is_empty(), "second start changed {changed:?}");

    // 4. Stop, start again: hostname, image and trust survived on the data disk.
    drop(c);
    assert!(machine::stop(&m, Duration::from_secs(120)).unwrap().is_some());
    assert_eq!(machine::status(&m), Status::Stopped);
    assert!(!m.pidfile().exists() && !m.qmp_socket().exists());
    let restarted = start(&home, &opts);
    boots.push(restarted.clone());
    // The root's writable layer is on the data disk: the boot step finds everything as the
    // first boot left it (nothing written, no reload), containerd starts once; the API steps
    // find nothing to do.
    assert_boot_applied(&restarted);
    assert!(!restarted.iter().find(|e| e.step == "machine").unwrap().changed, "{restarted:?}");
    let kubelet_step = restarted.iter().find(|e| e.step == "kubelet").unwrap();
    assert!(kubelet_step.detail.contains("binary present"), "kubelet binary persisted on the data disk: {kubelet_step:?}");
    assert_eq!(std::fs::read(m.trust_dir().join("agent.crt")).unwrap(), agent_crt, "agent certificate reused");
    let mut c = driver::agent::connect_existing(&home, &m).unwrap();
    assert_started_once(&mut c, "containerd.service");
    assert_no_reload(&mut c);
    assert_root_on_data_disk(&mut c);
    assert_direct_boot_and_static_uplink(&home, &m, &mut c);
    let report = c.info().unwrap().boot_apply.expect("the boot step reported");
    assert!(report.message.contains("nothing changed"), "an unchanged restart changed something: {report:?}");
    let boot = exec(&mut c, &["journalctl", "-b", "-o", "cat", "-u", "minikube-agent-boot.service"]);
    assert!(boot.contains("userdata files changed: 0; ssh host keys generated: false"), "{boot}");
    let guest_crt = exec(&mut c, &["cat", "/var/lib/minikube-agent/trust/agent.crt"]);
    assert_eq!(guest_crt.as_bytes(), &agent_crt[..], "the agent serves its persisted trust");
    assert_eq!(exec(&mut c, &["hostname"]).trim(), PROFILE);
    assert!(exec(&mut c, &["ctr", "-n", "k8s.io", "images", "ls", "-q"]).lines().any(|l| l == reference), "image survived the reboot");
    let out = exec(&mut c, &["ctr", "-n", "k8s.io", "run", "--rm", &reference, "e2e-hello-run2", "/hello"]);
    assert_eq!(out.trim(), GREETING);

    // 5. The same node switched to docker by `start`: only the runtime (and kubelet, whose
    //    unit names the runtime) change; docker's own socket serves, the image runs there too.
    drop(c);
    opts.runtime = Runtime::Docker;
    let docker = start(&home, &opts);
    let changed: Vec<_> = docker.iter().filter(|e| e.changed).map(|e| e.step).collect();
    assert!(changed.contains(&"runtime") && !changed.contains(&"machine") && !changed.contains(&"certs"), "{docker:?}");
    let mut c = driver::agent::connect_existing(&home, &m).unwrap();
    let loaded = exec(&mut c, &["docker", "load", "-i", "/var/lib/minikube/images/e2e-hello.tar"]);
    assert!(loaded.contains(&reference), "{loaded}");
    let out = exec(&mut c, &["docker", "run", "--rm", &reference]);
    assert_eq!(out.trim(), GREETING);
    let again = start(&home, &opts);
    assert!(again.iter().all(|e| !e.changed), "a second docker start changes nothing: {again:?}");

    // 5b. The guest reboots inside the same qemu, whose fw_cfg still holds the containerd
    //     document of the first start: the stored document, updated by the API's runtime step,
    //     wins, and the node comes back with docker, started once.
    exec(&mut c, &["sh", "-c", "(sleep 1; systemctl reboot) >/dev/null 2>&1 &"]);
    drop(c);
    let gone = Instant::now();
    while driver::agent::connect_existing(&home, &m).ok().and_then(|mut c| c.info().ok()).is_some() {
        assert!(gone.elapsed() < Duration::from_secs(120), "the guest did not go down for its reboot");
        std::thread::sleep(Duration::from_millis(300));
    }
    let rebooted = start(&home, &opts);
    assert!(rebooted.iter().filter(|e| ["hostname", "certs", "runtime", "kubelet"].contains(&e.step)).all(|e| !e.changed), "{rebooted:?}");
    let mut c = driver::agent::connect_existing(&home, &m).unwrap();
    let info = c.info().unwrap().boot_apply.expect("the boot step reported");
    assert_eq!((info.outcome, info.source.as_str()), (agent_api::document::BootOutcome::Applied, "stored copy"), "{info:?}");
    assert_started_once(&mut c, "docker.service");
    assert_eq!(exec(&mut c, &["docker", "run", "--rm", &reference]).trim(), GREETING);

    // 6. qemu killed (SIGKILL) in the middle of provisioning, after the certs step: that start
    //    fails, and the next one recovers the profile without `delete`.
    drop(c);
    assert!(machine::stop(&m, Duration::from_secs(120)).unwrap().is_some());
    opts.runtime = Runtime::Containerd;
    let killer = KillQemuAfter { step: "certs", pidfile: m.pidfile(), seen: String::new(), killed: false };
    let mut rep = Reporter::new(Output::Text, Box::new(killer));
    let crashed = start::start(&home, &opts, &mut rep);
    assert!(crashed.is_err(), "qemu was killed during provisioning, yet start succeeded");
    let recovered = start(&home, &opts);
    assert_boot_applied(&recovered);
    let mut c = driver::agent::connect_existing(&home, &m).unwrap();
    assert_eq!(exec(&mut c, &["hostname"]).trim(), PROFILE);
    let out = exec(&mut c, &["ctr", "-n", "k8s.io", "run", "--rm", &reference, "e2e-hello-run3", "/hello"]);
    assert_eq!(out.trim(), GREETING);

    // 7. Delete removes the VM and its state.
    drop(c);
    assert!(machine::delete(&m, Duration::from_secs(60)).unwrap());
    assert_eq!(machine::status(&m), Status::Nonexistent);
    assert!(!m.dir.exists());
    assert!(home.list().unwrap().is_empty());

    for (i, b) in boots.iter().enumerate() {
        let line: Vec<String> = b.iter().map(|e| format!("{} {:.1}s", e.step, e.seconds)).collect();
        eprintln!("boot {}: {}", i + 1, line.join(", "));
        eprintln!("boot {}: agent ready {:.1}s after qemu started", i + 1, secs(b, "agent") + secs(b, "boot"));
    }
}

#[test]
fn qemu_two_nodes_share_a_segment() {
    let _guest = e2e::GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path().join("home"));
    let profile = "e2e-pair";
    struct DeleteAll<'a>(&'a Home);
    impl Drop for DeleteAll<'_> {
        fn drop(&mut self) {
            let _ = launcher::cluster::delete_all(self.0, "e2e-pair", Duration::from_secs(5));
        }
    }
    let _cleanup = DeleteAll(&home);
    let mut opts = StartOptions::new(profile, e2e::iso_path());
    opts.kubelet_test_double = true;
    opts.memory_mb = 2048;
    opts.disk_mb = 2048;
    opts.agent_timeout = Duration::from_secs(900);
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    let nodes = launcher::cluster::start(&home, &opts, 2, &mut rep).unwrap_or_else(|e| panic!("{e:#}"));
    let second: f64 = rep.events.iter().skip_while(|e| !(e.step == "machine" && e.detail.contains("-m02"))).map(|e| e.seconds).sum();
    eprintln!("FIGURE qemu (TCG): adding a node, from nothing to provisioned {second:.1} s");
    assert_eq!(nodes.iter().map(|s| s.node_ip.as_str()).collect::<Vec<_>>(), ["192.168.49.2", "192.168.49.3"]);
    let m2 = home.machine(&format!("{profile}-m02")).unwrap();
    let mut c = driver::agent::connect_existing(&home, &m2).unwrap();
    // Node 2 reaches node 1's cluster address, by address and by name...
    assert!(exec(&mut c, &["ping", "-c", "1", "-W", "5", "192.168.49.2"]).contains("1 received"));
    assert!(exec(&mut c, &["ping", "-c", "1", "-W", "5", profile]).contains("1 received"));
    // ...and node 1's agent port: the TLS handshake is refused for want of a client certificate,
    // which only the agent says.
    let r = c
        .exec(&ExecRequest {
            argv: ["curl", "-sS", "--max-time", "20", "-k", "https://192.168.49.2:7443/v1/info"].map(String::from).to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert!(r.exit_code != Some(0) && r.stderr.contains("certificate required"), "{r:?}");
    let listed = home.nodes(profile).unwrap();
    assert_eq!(listed.len(), 2);
    drop(c);
    assert!(launcher::cluster::delete_all(&home, profile, Duration::from_secs(60)).unwrap());
    assert!(home.list().unwrap().is_empty());
}
