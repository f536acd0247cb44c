//! The docker driver end to end, on a dockerd of our own (Debian's docker.io 20.10, its own data
//! root and socket; `DOCKER_HOST` points the launcher at it, in this test binary only): the
//! multi-architecture kicbase archive loaded with the host's image alone, a node provisioned at
//! boot that becomes a Ready Kubernetes node from the bundle, a second node that joins on the
//! cluster's docker network and is reached by name, exec through the agent, stop/start back to
//! Ready, and delete leaving no container, volume or network of the profile.
//!
//! On this host `--privileged` cannot be applied (its capability bounding set lacks
//! CAP_SYS_RESOURCE): the launcher falls back to every other capability, and because the engine
//! reports cgroup v1, with the host's cgroup hierarchy writable; the test says which it used.
//!
//! Needs root, dockerd and docker, the kicbase archive and the bundle (`cargo xtask test`).

use std::time::{Duration, Instant};

use launcher::model::Driver;
use launcher::options::StartOptions;
use launcher::report::{Output, Reporter, StepEvent};
use launcher::resources::state::Home;
use launcher::{driver, start};

mod common;

fn step<'a>(events: &'a [StepEvent], name: &str) -> &'a StepEvent {
    events.iter().find(|e| e.step == name).unwrap_or_else(|| panic!("no step {name} in {events:?}"))
}

/// Wait until `n` nodes are Ready.
fn wait_ready(k: &common::Kubectl, n: usize) {
    k.wait(&format!("{n} nodes Ready"), 180, |k| (k.nodes().iter().filter(|(_, r)| *r).count() >= n).then_some(()));
}

#[test]
fn docker_driver_runs_ready_kubernetes_nodes_and_leaves_nothing() {
    let _one = e2e::GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let archive = e2e::kicbase_archive(&["dockerd", "docker"]);
    let cache = e2e::kubernetes_bundle();
    let dockerd = e2e::Dockerd::start();
    std::env::set_var("DOCKER_HOST", &dockerd.host);
    let arch = platform::Arch::host().unwrap();
    let version = platform::bundle::DEFAULT_KUBERNETES_VERSION;
    let kubectl = platform::bundle::version_dir(&cache, arch, version).join("kubectl");
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("home"));
    let name = format!("dk{}", std::process::id());
    let m = home.machine(&name).unwrap();
    let k = common::Kubectl { bin: kubectl, kubeconfig: m.kubeconfig() };
    let mut opts = StartOptions::kic(&name, Driver::Docker, &archive.to_string_lossy());
    opts.cache_dir = Some(cache.clone());
    opts.kubernetes_timeout = Duration::from_secs(300);
    let of_profile = |what: &[&str]| -> String {
        String::from_utf8_lossy(&dockerd.docker(what).stdout).lines().filter(|l| l.contains(&name)).collect::<Vec<_>>().join("\n")
    };

    // One node: loaded (the host's image alone, the plain tag), provisioned at boot, Ready.
    let t = Instant::now();
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    launcher::cluster::start(&home, &opts, 1, &mut rep).unwrap_or_else(|e| panic!("docker start: {e:#}"));
    let first = rep.events.clone();
    assert!(step(&first, "image").changed && step(&first, "image").detail.contains("loaded"), "{:?}", step(&first, "image"));
    let tags = String::from_utf8_lossy(&dockerd.docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]).stdout).to_string();
    assert_eq!(tags.lines().filter(|l| l.starts_with("kicbase:")).count(), 1, "one image, the plain tag: {tags}");
    assert!(step(&first, "document").detail.contains("node document applied at boot"), "{:?}", step(&first, "document"));
    eprintln!("docker node created with: {}", step(&first, "boot").detail);
    assert!(step(&first, "kubeadm").detail.contains("kubeadm init"));
    wait_ready(&k, 1);
    eprintln!("FIGURE docker driver: start -> node Ready {:.1} s (image load {:.1} s)", t.elapsed().as_secs_f64(), step(&first, "image").seconds);

    // A second node joins on the cluster's network and the first reaches it by name.
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    launcher::cluster::start(&home, &opts, 2, &mut rep).unwrap_or_else(|e| panic!("docker --nodes 2: {e:#}"));
    let m02 = launcher::topology::node_name(&name, 2);
    wait_ready(&k, 2);
    let mut c = driver::agent::connect_existing(&home, &m).unwrap();
    let resolved = common::exec(&mut c, &["getent", "hosts", &m02]);
    let m02_ip = home.machine(&m02).unwrap().load().unwrap().node_ip;
    assert!(resolved.starts_with(&m02_ip), "{m02} is {m02_ip}: {resolved}");
    common::exec(&mut c, &["ping", "-c", "1", "-W", "5", &m02]);
    assert_eq!(common::exec(&mut c, &["hostname"]).trim(), name);
    drop(c);

    // stop/start: Ready again, no second kubeadm init.
    driver::stop(&m, Duration::from_secs(60)).unwrap();
    let mut rep = Reporter::new(Output::Text, Box::new(std::io::stderr()));
    start::start(&home, &opts, &mut rep).unwrap_or_else(|e| panic!("docker restart: {e}"));
    assert!(step(&rep.events, "kubeadm").detail.contains("not initialised again"));
    assert!(!step(&rep.events, "image").changed);
    wait_ready(&k, 2);

    // delete: nothing of the profile is left in the engine.
    assert!(launcher::cluster::delete_all(&home, &name, Duration::from_secs(30)).unwrap());
    assert_eq!(of_profile(&["ps", "-a", "--format", "{{.Names}}"]), "", "containers");
    assert_eq!(of_profile(&["volume", "ls", "--format", "{{.Name}}"]), "", "volumes");
    assert_eq!(of_profile(&["network", "ls", "--format", "{{.Name}}"]), "", "networks");
}
