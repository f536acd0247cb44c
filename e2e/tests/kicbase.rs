//! kicbase end to end with rootful podman: load out/kicbase.tar, run it with the launcher's kic
//! driver (minikube's flags), wait for the agent's ready line in the container logs, provision
//! containerd through the agent (mutual TLS), import and run a small image inside the node
//! (nested), stop, start (the agent is ready again, /var survived on the volume), delete
//! (container and volume gone).
//!
//! The launcher's podman driver on the same image: `provision::start` loads the archive, creates
//! the container and provisions it through the agent like a qemu node; a second start changes
//! nothing; stop, start, delete go through the recorded driver.
//!
//! The archive `cargo xtask test` builds holds amd64 and arm64 (a nested image index): podman
//! picks the host's. What the archive holds, and docker's load of it, are in `kicbase_archive.rs`.
//!
//! The tests that run containers take [`BOOTS`] so only one node runs at a time.
//!
//! Needs root, podman, runc, and the image (`cargo xtask kicbase`, or `KICBASE_ARCHIVE`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agent_api::api::{CgroupDriver, ExecRequest, Runtime, RuntimeRequest};
use agent_api::client::Client;
use image::oci::{build_image, write_archive, write_layer, BlobStore, Compression, ImageConfig, ImageMeta};
use image::rootfs::{Entry, Tree};
use launcher::model::Driver;
use launcher::model::Status;
use launcher::options::StartOptions;
use launcher::report::{Output, Reporter, StepEvent};
use launcher::resources::kic::{Engine, Kic, KicConfig};
use launcher::resources::state::Home;
use launcher::{driver, start};

/// One node container at a time (the host has 2 cores).
static BOOTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The image, and podman and runc to run it (the check every podman test starts with).
fn archive() -> PathBuf {
    e2e::kicbase_archive(&["podman", "runc"])
}

fn podman(args: &[&str]) -> String {
    let o = Command::new("podman").args(args).output().expect("podman runs (apt-get install podman)");
    assert!(o.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Deletes the node even when the test fails half way.
struct Cleanup(Kic);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.delete();
    }
}

/// Trust material for the agent (server cert for localhost/127.0.0.1) and a client identity.
fn trust(dir: &Path) -> (String, pki::Identity) {
    let ca = pki::Ca::generate("minikubeCA", pki::Validity::days_from_now(1)).unwrap();
    let server = ca.issue_server("minikube-agent", &["localhost", "minikube"], &["127.0.0.1".parse().unwrap()], pki::Validity::days_from_now(1)).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
    server.save(&dir.join("agent.crt"), &dir.join("agent.key")).unwrap();
    let client = ca.issue_client("minikube-user", &["system:masters"], pki::Validity::days_from_now(1)).unwrap();
    (ca.cert_pem().to_string(), client)
}

fn connect(node: &Kic, ca: &str, id: &pki::Identity) -> Client {
    let addr = node.agent_addr().unwrap();
    let mut c = Client::connect(addr, "localhost", ca, id).unwrap_or_else(|e| panic!("agent at {addr}: {e}"));
    c.set_timeout(Duration::from_secs(300));
    c
}

fn exec(c: &mut Client, argv: &[&str], timeout: u64) -> agent_api::api::ExecResponse {
    let r = c
        .exec(&ExecRequest { argv: argv.iter().map(|s| s.to_string()).collect(), env: BTreeMap::new(), cwd: None, timeout_secs: Some(timeout), stdin: None })
        .unwrap();
    r
}

/// A one-file OCI image holding `bin` (a static binary) as /hello.
fn small_image(bin: &[u8], dir: &Path) -> Vec<u8> {
    let mut t = Tree::new();
    let mut e = Entry::file(bin.to_vec(), 0o755);
    e.mtime = 1_700_000_000;
    t.insert("/hello", e);
    let store = BlobStore::open(dir.join("store")).unwrap();
    let layer = write_layer(&store, &t, Compression::Gzip { level: 6, threads: 0 }, "hello").unwrap();
    let mut cfg = ImageConfig::linux("amd64");
    cfg.entrypoint = vec!["/hello".into()];
    let meta = ImageMeta { name: "localhost/kic-hello".into(), tag: "v1".into(), epoch: 1_700_000_000, ..Default::default() };
    let img = build_image(&store, vec![layer], &cfg, &meta).unwrap();
    let out = dir.join("hello.tar");
    write_archive(&img, &out).unwrap();
    std::fs::read(out).unwrap()
}

#[test]
fn kicbase_runs_under_podman_and_provisions_containerd() {
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let archive = archive();
    let loaded = podman(&["load", "-i", &archive.to_string_lossy()]);
    let reference = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: ").or_else(|| l.strip_prefix("Loaded image(s): ")))
        .unwrap_or_else(|| panic!("podman load printed no image name: {loaded}"))
        .trim()
        .to_string();
    assert!(reference.contains("kicbase:"), "{reference}");

    let dir = tempfile::tempdir().unwrap();
    let trust_dir = dir.path().join("trust");
    std::fs::create_dir(&trust_dir).unwrap();
    let (ca, client_id) = trust(&trust_dir);

    let name = format!("kic-e2e-{}", std::process::id());
    let mut cfg = KicConfig::new(Engine::podman(), &name, &reference, &trust_dir);
    // This host: crun refuses the hybrid cgroup layout; the hard limits are below podman's asks.
    cfg.runtime = Some("runc".into());
    let t0 = Instant::now();
    let node = Kic::create(&cfg).unwrap();
    let _cleanup = Cleanup(node.clone());
    let ready = node.wait_ready(Duration::from_secs(240)).unwrap();
    eprintln!("FIGURE container start to agent ready: {:.1} s (create+wait {:.1} s)", ready.as_secs_f64(), t0.elapsed().as_secs_f64());

    // The boot unit knew it was in a container: no disk work, no modules.
    let logs = node.logs().unwrap();
    assert!(logs.contains("minikube-agent: boot done (disk skipped"), "boot line missing:\n{logs}");
    let mut c = connect(&node, &ca, &client_id);
    let info = c.info().unwrap();
    assert_eq!(info.hostname, name, "the node's hostname is the container name");
    assert!(info.os.as_deref().unwrap_or("").contains("minikube node"), "{info:?}");
    // systemd is PID 1 and reached its default target without failed units.
    let state = exec(&mut c, &["systemctl", "is-system-running", "--wait"], 120);
    let failed = exec(&mut c, &["systemctl", "--failed", "--no-legend", "--plain"], 30);
    assert!(state.stdout.trim() == "running", "system state {:?}; failed units:\n{}", state.stdout.trim(), failed.stdout);
    assert_eq!(failed.stdout.trim(), "", "no failed unit");

    // containerd through the agent, then a small image run nested inside the node.
    let t1 = Instant::now();
    let rt = c
        .runtime(&RuntimeRequest {
            runtime: Runtime::Containerd,
            pause_image: "registry.k8s.io/pause:3.10".into(),
            cgroup_driver: CgroupDriver::Systemd,
            insecure_registries: vec![],
            docker_tls: None,
            socket_timeout_secs: Some(90),
        })
        .unwrap();
    eprintln!("FIGURE provision containerd: {:.1} s ({})", t1.elapsed().as_secs_f64(), rt.version);
    assert_eq!(rt.socket, "/run/containerd/containerd.sock");
    // The node's own static agent binary is the payload (downloads are limited to state dirs).
    let cp = exec(&mut c, &["install", "-D", "-m", "0755", "/usr/bin/minikube-agent", "/var/tmp/minikube/hello"], 30);
    assert_eq!(cp.exit_code, Some(0), "{}", cp.stderr);
    let mut agent_bin = Vec::new();
    c.download("/var/tmp/minikube/hello", &mut agent_bin).unwrap();
    let tar = small_image(&agent_bin, dir.path());
    c.upload_bytes("/var/tmp/minikube/kic-hello.tar", &tar, 0o644, None).unwrap();
    let import = exec(&mut c, &["ctr", "-n", "k8s.io", "images", "import", "/var/tmp/minikube/kic-hello.tar"], 120);
    assert_eq!(import.exit_code, Some(0), "ctr import: {}{}", import.stdout, import.stderr);
    let run = exec(&mut c, &["ctr", "-n", "k8s.io", "run", "--rm", "localhost/kic-hello:v1", "kic-hello", "/hello", "--version"], 120);
    assert_eq!(run.exit_code, Some(0), "nested run: stdout {} stderr {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("minikube-agent"), "nested container printed {:?}", run.stdout);

    // A marker on /var survives stop/start (the volume), and the agent comes back.
    c.upload_bytes("/var/lib/minikube/kic-e2e-marker", b"kept\n", 0o644, None).unwrap();
    drop(c);
    node.stop().unwrap();
    assert_eq!(node.state().unwrap(), launcher::resources::kic::ContainerState::Exited);
    let again = node.start_and_wait(Duration::from_secs(240)).unwrap();
    eprintln!("FIGURE restart to agent ready: {:.1} s", again.as_secs_f64());
    let mut c = connect(&node, &ca, &client_id);
    let marker = c.stat("/var/lib/minikube/kic-e2e-marker").unwrap();
    assert_eq!(marker.size, 5, "the /var volume kept the marker");
    drop(c);

    node.delete().unwrap();
    let exists = Command::new("podman").args(["container", "exists", &name]).status().unwrap();
    assert!(!exists.success(), "container {name} deleted");
    let vol = Command::new("podman").args(["volume", "exists", &name]).status().unwrap();
    assert!(!vol.success(), "volume {name} deleted");
}

/// Deletes the profile (container, volume, state) even when the test fails half way.
struct DeleteProfile(launcher::resources::state::MachineDir);
impl Drop for DeleteProfile {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = driver::delete(&self.0, Duration::from_secs(10));
        }
        let _ = launcher::resources::kic::network::remove_network(&launcher::resources::kic::Engine::podman(), &self.0.name);
    }
}

fn step<'a>(events: &'a [StepEvent], name: &str) -> &'a StepEvent {
    events.iter().find(|e| e.step == name).unwrap_or_else(|| panic!("no {name} step in {events:?}"))
}

fn secs(events: &[StepEvent], names: &[&str]) -> f64 {
    events.iter().filter(|e| names.contains(&e.step)).map(|e| e.seconds).sum()
}

#[test]
fn launcher_podman_driver_start_stop_delete() {
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let archive = archive();
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("home"));
    let name = format!("kic-launch-{}", std::process::id());
    let m = home.machine(&name).unwrap();
    let _cleanup = DeleteProfile(m.clone());
    let mut opts = StartOptions::kic(&name, Driver::Podman, &archive.to_string_lossy());
    opts.kubelet_test_double = true;
    opts.agent_timeout = Duration::from_secs(240);

    // First start: every step reports, in order, and did something.
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    let state = start::start(&home, &opts, &mut rep).unwrap();
    let steps: Vec<&str> = rep.events.iter().map(|e| e.step).collect();
    assert_eq!(steps, ["machine", "image", "boot", "agent", "document", "hostname", "certs", "runtime", "kubelet", "kubeconfig"]);
    // The API steps may find nothing to do: the boot step applied the node document from the
    // trust directory (rewritten with the container's address as soon as the engine gave it,
    // which the boot step may or may not have read yet; the API steps converge either way).
    for s in ["machine", "boot", "agent", "kubeconfig"] {
        assert!(step(&rep.events, s).changed, "first start: {s} changed");
    }
    assert!(step(&rep.events, "document").detail.contains("node document applied at boot"), "{:?}", step(&rep.events, "document"));
    eprintln!(
        "FIGURE launcher podman: image {:.1} s, container start -> agent ready {:.1} s, start -> provisioned {:.1} s",
        step(&rep.events, "image").seconds,
        secs(&rep.events, &["boot", "agent"]),
        secs(&rep.events, &steps)
    );

    // What state.json records: the driver, the loaded image, the engine's ports and address.
    let saved = m.load().unwrap();
    assert_eq!(saved, state);
    assert_eq!(saved.driver, Driver::Podman);
    assert!(saved.image.contains("kicbase:"), "{}", saved.image);
    // The image the container runs is the archive's (loaded now, or found with the same ID).
    let ids = launcher::resources::kic::read_archive(&archive).unwrap().ids;
    let running = podman(&["inspect", "--format", "{{.Image}}", &name]);
    assert!(ids.iter().any(|id| running.trim().trim_start_matches("sha256:") == id), "container image {running} is not one of the archive's {ids:?}");
    assert!(saved.iso.as_os_str().is_empty());
    let port_of = |p: u16| podman(&["port", &name, &format!("{p}/tcp")]);
    assert!(port_of(8443).trim().ends_with(&format!(":{}", saved.ports.apiserver)), "8443 published on {}", saved.ports.apiserver);
    assert!(port_of(7443).trim().ends_with(&format!(":{}", saved.ports.agent)));
    let ip: std::net::IpAddr = saved.node_ip.parse().unwrap_or_else(|_| panic!("node IP {:?}", saved.node_ip));
    assert!(!ip.is_loopback());
    let kubeconfig = std::fs::read_to_string(m.kubeconfig()).unwrap();
    assert!(kubeconfig.contains(&format!("server: \"https://127.0.0.1:{}\"", saved.ports.apiserver)), "{kubeconfig}");
    // The API server certificate names the container's address (issued again once it was known).
    let api = std::fs::read_to_string(m.certs_dir().join("apiserver.crt")).unwrap();
    let info = launcher::resources::certs::inspect(&api, &m.certs_dir().join("apiserver.crt")).unwrap();
    assert!(info.ips.contains(&ip), "{:?}", info.ips);

    // A second start on the running node changes nothing.
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    start::start(&home, &opts, &mut rep).unwrap();
    let changed: Vec<&str> = rep.events.iter().filter(|e| e.changed).map(|e| e.step).collect();
    assert!(changed.is_empty(), "second start changed {changed:?}");
    eprintln!("FIGURE launcher podman: start on a running node {:.2} s", secs(&rep.events, &steps));

    // exec through the agent (what `minikube-node exec` does): the hostname is the profile.
    let mut c = driver::agent::connect_existing(&home, &m).unwrap();
    let r = exec(&mut c, &["cat", "/etc/hostname"], 30);
    assert_eq!(r.stdout.trim(), name);
    assert_eq!(c.info().unwrap().hostname, name);
    // The engine's bind-mounted /etc/hosts was rewritten in place by the agent's hostname op.
    let hosts = exec(&mut c, &["cat", "/etc/hosts"], 30).stdout;
    assert!(hosts.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["127.0.1.1", name.as_str()]), "{hosts}");
    // SSH with the profile's key, installed through the agent, on the published port 22.
    let ssh = launcher::resources::ssh::Ssh::for_machine(&m, port_of(22).trim().rsplit(':').next().unwrap().parse().unwrap());
    ssh.wait(Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    let out = ssh.run("hostname && sudo -n id -u", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{name}\n0\n"));
    ssh.close();
    drop(c);
    assert_eq!(driver::status(&m), Status::Running);

    // Another driver for this profile is refused before anything happens.
    let e = start::start(&home, &StartOptions::new(&name, "out/minikube.iso".into()), &mut Reporter::new(Output::Text, Box::new(std::io::sink())))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&name) && e.contains("podman") && e.contains("qemu"), "{e}");

    // stop -> Stopped; start again -> the agent is ready and the node provisioned.
    assert_eq!(driver::stop(&m, Duration::from_secs(30)).unwrap(), Some(true));
    assert_eq!(driver::status(&m), Status::Stopped);
    assert_eq!(podman(&["inspect", "--format", "{{.State.Status}}", &name]).trim(), "exited");
    assert_eq!(driver::stop(&m, Duration::from_secs(30)).unwrap(), None, "already stopped");
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    start::start(&home, &opts, &mut rep).unwrap();
    assert!(step(&rep.events, "boot").changed && step(&rep.events, "agent").changed);
    assert!(!step(&rep.events, "image").changed, "the image is not loaded again");
    // The node document in the trust directory was applied by the boot step before the
    // runtime started: containerd (not enabled in the image) was started by the boot step, so the
    // runtime step only checks. (Certificates and the kubelet name the container's address,
    // which the engine may change at a restart: those steps converge either way.)
    assert!(step(&rep.events, "document").detail.contains("node document applied at boot"), "{:?}", step(&rep.events, "document"));
    for s in ["hostname", "runtime"] {
        assert!(!step(&rep.events, s).changed, "restart: {s} changed, yet the boot step applied the document: {:?}", rep.events);
    }
    eprintln!(
        "FIGURE launcher podman: restart -> agent ready {:.1} s, -> provisioned {:.1} s",
        secs(&rep.events, &["boot", "agent"]),
        secs(&rep.events, &steps)
    );
    let console = driver::console_tail(&m, 50).unwrap();
    assert!(console.contains("minikube-agent: ready"), "{console}");
    let mut c = driver::agent::connect_existing(&home, &m).unwrap();
    assert_eq!(c.info().unwrap().hostname, name);
    drop(c);

    // delete: container, volume, network and state directory gone.
    assert!(launcher::cluster::delete_all(&home, &name, Duration::from_secs(30)).unwrap());
    assert!(!Command::new("podman").args(["network", "exists", &name]).status().unwrap().success(), "network {name} deleted");
    let exists = |what: &str| Command::new("podman").args([what, "exists", &name]).status().unwrap().success();
    assert!(!exists("container"), "container {name} deleted");
    assert!(!exists("volume"), "volume {name} deleted");
    assert!(!m.dir.exists(), "{} removed", m.dir.display());
    assert_eq!(driver::status(&m), Status::Nonexistent);
}

/// `exec` on a node through its agent; the command must succeed.
fn node_exec(home: &Home, name: &str, argv: &[&str]) -> String {
    let mut c = driver::agent::connect_existing(home, &home.machine(name).unwrap()).unwrap();
    let r = exec(&mut c, argv, 30);
    assert_eq!(r.exit_code, Some(0), "{name}: {argv:?}: {}{}", r.stdout, r.stderr);
    r.stdout
}

#[test]
fn podman_three_node_cluster_on_its_own_network() {
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let archive = archive();
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("home"));
    let name = format!("kic-multi-{}", std::process::id());
    let _cleanup = DeleteCluster(home.clone(), name.clone());
    let mut opts = StartOptions::kic(&name, Driver::Podman, &archive.to_string_lossy());
    opts.agent_timeout = Duration::from_secs(240);
    opts.kubelet_test_double = true;

    let t = std::time::Instant::now();
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    let nodes = launcher::cluster::start(&home, &opts, 3, &mut rep).unwrap();
    eprintln!("FIGURE launcher podman: 3-node cluster from nothing to all provisioned {:.1} s", t.elapsed().as_secs_f64());
    let names: Vec<String> = nodes.iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, [name.clone(), format!("{name}-m02"), format!("{name}-m03")]);
    // The cluster's network: the first free /24 from 192.168.49.0, nodes from .2.
    let net = podman(&["network", "inspect", "--format", "{{range .Subnets}}{{.Subnet}}{{end}}", &name]);
    let prefix = net.trim().strip_suffix(".0/24").unwrap_or_else(|| panic!("network {name}: {net}")).to_string();
    for (i, s) in nodes.iter().enumerate() {
        assert_eq!(s.node_ip, format!("{prefix}.{}", i + 2), "{}", s.name);
    }
    // Every node's agent answers; every node reaches every other by name and by address, and
    // knows the control plane's name.
    for a in &nodes {
        assert_eq!(node_exec(&home, &a.name, &["hostname"]).trim(), a.name);
        let hosts = node_exec(&home, &a.name, &["cat", "/etc/hosts"]);
        assert!(hosts.contains(&format!("{}\tcontrol-plane.minikube.internal", nodes[0].node_ip)), "{hosts}");
        for b in nodes.iter().filter(|b| b.name != a.name) {
            node_exec(&home, &a.name, &["ping", "-c", "1", "-W", "5", &b.name]);
            node_exec(&home, &a.name, &["ping", "-c", "1", "-W", "5", &b.node_ip]);
        }
    }

    // node add: the next name and address, known to every node.
    let t = std::time::Instant::now();
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    let added = launcher::cluster::add(&home, &opts, &mut rep).unwrap();
    eprintln!("FIGURE launcher podman: node add {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(added, format!("{name}-m04"));
    assert!(node_exec(&home, &name, &["cat", "/etc/hosts"]).contains(&format!("{prefix}.5\t{added}")));

    // node delete m03: its container and volume go, and the others forget it.
    launcher::cluster::delete_node(&home, &name, &format!("{name}-m03"), Duration::from_secs(30)).unwrap();
    let exists = |what: &str, n: &str| Command::new("podman").args([what, "exists", n]).status().unwrap().success();
    assert!(!exists("container", &format!("{name}-m03")) && !exists("volume", &format!("{name}-m03")));
    for n in [name.clone(), format!("{name}-m02"), added.clone()] {
        let hosts = node_exec(&home, &n, &["cat", "/etc/hosts"]);
        assert!(!hosts.contains(&format!("{name}-m03")), "{n} still lists m03:\n{hosts}");
    }
    let left: Vec<String> = home.nodes(&name).unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(left, [name.clone(), format!("{name}-m02"), added.clone()]);
    assert!(launcher::cluster::delete_node(&home, &name, &name, Duration::from_secs(30)).unwrap_err().to_string().contains("control plane"));

    // delete: every node, every volume, the network.
    assert!(launcher::cluster::delete_all(&home, &name, Duration::from_secs(30)).unwrap());
    for n in &left {
        assert!(!exists("container", n) && !exists("volume", n), "{n} left behind");
    }
    assert!(!exists("network", &name), "network {name} left behind");
    assert!(home.list().unwrap().is_empty());
}

/// Deletes a cluster even when the test fails half way.
struct DeleteCluster(Home, String);
impl Drop for DeleteCluster {
    fn drop(&mut self) {
        let _ = launcher::cluster::delete_all(&self.0, &self.1, Duration::from_secs(10));
    }
}

/// A start that fails offline (no kubelet given, no route to the release host, no bundle in
/// this home's cache) creates nothing in the engine: the download fails before the network,
/// volume or container exist. `delete` then leaves nothing either, and a start with the right
/// flags works (the leak a new user met: a network left behind, then a cryptic `inspect`).
#[test]
fn a_failed_podman_start_leaves_nothing_behind() {
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let archive = archive();
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("home"));
    let name = format!("kic-fail-{}", std::process::id());
    let m = home.machine(&name).unwrap();
    let _cleanup = DeleteProfile(m.clone());
    let exists = |what: &str| Command::new("podman").args([what, "exists", &name]).status().unwrap().success();
    let nothing_left = |when: &str| {
        for what in ["network", "volume", "container"] {
            assert!(!exists(what), "{when}: podman {what} {name} exists");
        }
    };
    let mut opts = StartOptions::kic(&name, Driver::Podman, &archive.to_string_lossy());
    opts.agent_timeout = Duration::from_secs(240);
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
    let e = start::start(&home, &opts, &mut rep).unwrap_err().to_string();
    assert!(e.contains("dl.k8s.io") && e.contains("--kubelet PATH"), "{e}");
    nothing_left("after the failed start");
    assert!(launcher::cluster::delete_all(&home, &name, Duration::from_secs(30)).is_ok());
    nothing_left("after delete");

    opts.kubelet_test_double = true;
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
    start::start(&home, &opts, &mut rep).unwrap_or_else(|e| panic!("the second start, with the right flags: {e}"));
    assert!(exists("container") && exists("network"));
    // A half-written state: delete still finds the container, its volume and network by name.
    let state = m.dir.join("state.json");
    let text = std::fs::read(&state).unwrap();
    std::fs::write(&state, &text[..text.len() / 2]).unwrap();
    assert!(launcher::cluster::delete_all(&home, &name, Duration::from_secs(30)).unwrap());
    nothing_left("after deleting a profile with a half-written state");
    assert!(home.list().unwrap().is_empty());
    // And with no state at all: a container the profile made, its directory gone.
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
    start::start(&home, &opts, &mut rep).unwrap_or_else(|e| panic!("the third start: {e}"));
    std::fs::remove_dir_all(&m.dir).unwrap();
    assert!(launcher::cluster::delete_all(&home, &name, Duration::from_secs(30)).unwrap());
    nothing_left("after deleting a profile whose state is missing");
}
