//! The node document at boot: applied before the services start (their starts queued, never a
//! restart), refused whole when bad, re-applied from the stored copy, converged after a kill
//! in the middle; and `info` reports what happened.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use agent::api::*;
use agent::document::{self, FileContent, NodeDocument, Outcome};
use agent::host::RecordingHost;
use agent::ops::apply::{self, Delivered};
use agent::ops::Node;
use agent::paths::GuestRoot;

const KUBELET: &[u8] = b"#!/bin/sh\necho kubelet-test-double\n";

fn doc(p: &common::Pki, serial: u64, runtime: Runtime) -> NodeDocument {
    let sha = pki::digest::sha256_hex(KUBELET);
    NodeDocument {
        hostname: Some(HostnameRequest {
            name: "node1".into(),
            hosts: vec![HostEntry { ip: "10.0.2.15".into(), names: vec!["control-plane.minikube.internal".into()] }],
        }),
        certs: Some(CertsRequest {
            files: vec![CertFile { path: "/var/lib/minikube/certs/ca.crt".into(), pem: p.ca.cert_pem().into(), private: false }],
            trust: vec![TrustedCa { name: "minikubeCA.pem".into(), pem: p.ca.cert_pem().into() }],
        }),
        files: vec![FileContent {
            path: "/home/docker/.ssh/authorized_keys".into(),
            content: "ssh-ed25519 AAAA k\n".into(),
            mode: 0o600,
            owner: Some("docker:docker".into()),
        }],
        runtime: Some(RuntimeRequest {
            runtime,
            pause_image: "registry.k8s.io/pause:3.10.1".into(),
            cgroup_driver: CgroupDriver::Systemd,
            insecure_registries: vec![],
            docker_tls: None,
            socket_timeout_secs: None,
        }),
        kubelet: Some(KubeletRequest {
            version: "v1.34.1".into(),
            node_name: "node1".into(),
            node_ip: "10.0.2.15".into(),
            runtime,
            extra_args: vec![],
            binary_sha256: Some(sha),
        }),
        ..NodeDocument::new(serial)
    }
}

fn delivered(d: &NodeDocument) -> Vec<Delivered> {
    vec![("qemu fw_cfg".into(), document::parse(&serde_json::to_vec(d).unwrap(), "qemu fw_cfg"))]
}

/// A trust directory's `blobs/` holding the kubelet.
fn blob_dir(dir: &Path) -> std::path::PathBuf {
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(pki::digest::sha256_hex(KUBELET)), KUBELET).unwrap();
    blobs
}

fn read(root: &Path, guest: &str) -> String {
    std::fs::read_to_string(root.join(guest.trim_start_matches('/'))).unwrap_or_default()
}

#[test]
fn boot_applies_before_the_services_start_then_the_api_finds_nothing_to_do() {
    let p = common::pki();
    let root = common::guest_root();
    let extra = tempfile::tempdir().unwrap();
    let host = Arc::new(RecordingHost::node("minikube"));
    let node = Node::new(GuestRoot::new(root.path()), host.clone());
    let d = doc(&p, 10, Runtime::Containerd);

    let report = apply::at_boot(&node, delivered(&d), &[blob_dir(extra.path())]);
    assert_eq!(report.outcome, Outcome::Applied, "{report:?}");
    assert_eq!(report.source, "qemu fw_cfg");
    assert!(report.message.contains("changed hostname, certs, files, runtime, kubelet"), "{}", report.message);
    // Files in place before any service starts; the starts are queued once, nothing restarted.
    assert_eq!(read(root.path(), "/etc/hostname"), "node1\n");
    assert!(read(root.path(), "/etc/hosts").contains("10.0.2.15\tcontrol-plane.minikube.internal"));
    assert!(read(root.path(), "/etc/containerd/config.toml").contains("SystemdCgroup = true"));
    assert!(read(root.path(), "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf").contains("--node-ip=10.0.2.15"));
    assert_eq!(std::fs::read(root.path().join("var/lib/minikube/binaries/v1.34.1/kubelet")).unwrap(), KUBELET, "the kubelet linked from the delivered blob");
    let commands = host.commands();
    assert!(!commands.iter().any(|c| c.contains("restart")), "{commands:?}");
    let start = commands.iter().find(|c| c.starts_with("systemctl start")).expect("starts queued");
    assert_eq!(start, "systemctl start --no-block containerd.service kubelet.service");
    // systemd does not say kubelet.service needs a reload (the recording host answers the
    // NeedDaemonReload query with nothing): no reload (3 s under TCG).
    assert!(commands.iter().any(|c| c == "systemctl show --property=NeedDaemonReload --value kubelet.service"), "{commands:?}");
    assert!(!commands.iter().any(|c| c == "systemctl daemon-reload"), "{commands:?}");
    assert!(commands.iter().any(|c| c.starts_with("systemctl stop --no-block") && c.contains("docker.socket")), "{commands:?}");

    // info reports it.
    let info = agent::ops::info::info(&node).unwrap();
    assert_eq!(info.boot_apply.map(|b| b.outcome), Some(Outcome::Applied));

    // The API steps that follow answer `changed: false` (the runtime's socket is up).
    host.creates("systemctl", &root.path().join("run/containerd/containerd.sock"));
    std::fs::create_dir_all(root.path().join("run/containerd")).unwrap();
    std::fs::write(root.path().join("run/containerd/containerd.sock"), b"").unwrap();
    host.clear();
    host.answer("systemctl is-active kubelet", "active\n", 0);
    assert!(!agent::ops::hostname::apply(&node, d.hostname.as_ref().unwrap()).unwrap().changed);
    assert!(!agent::ops::certs::apply(&node, d.certs.as_ref().unwrap()).unwrap().changed);
    assert!(!agent::ops::runtime::apply(&node, d.runtime.as_ref().unwrap()).unwrap().changed);
    assert!(!agent::ops::kubelet::apply(&node, d.kubelet.as_ref().unwrap()).unwrap().changed);
    assert!(!host.commands().iter().any(|c| c.contains("restart")), "{:?}", host.commands());
}

#[test]
fn a_bad_document_is_refused_whole_and_reported() {
    let p = common::pki();
    let root = common::guest_root();
    let host = Arc::new(RecordingHost::node("minikube"));
    let node = Node::new(GuestRoot::new(root.path()), host.clone());
    let before = read(root.path(), "/etc/hosts");

    // A newer format.
    let newer = br#"{"format": 99, "serial": 1, "hostname": {"name": "x"}}"#.to_vec();
    let r = apply::at_boot(&node, vec![("qemu fw_cfg".into(), document::parse(&newer, "qemu fw_cfg"))], &[]);
    assert_eq!(r.outcome, Outcome::Refused);
    assert!(r.message.contains("format: 99"), "{}", r.message);

    // A bad field late in the document: not even the hostname (first) is applied.
    let mut bad = doc(&p, 3, Runtime::Containerd);
    bad.runtime.as_mut().unwrap().pause_image = "not an image!".into();
    let r = apply::at_boot(&node, delivered(&bad), &[]);
    assert_eq!(r.outcome, Outcome::Refused);
    assert!(r.message.contains("runtime.pause_image"), "{}", r.message);
    assert_eq!(read(root.path(), "/etc/hostname"), "", "nothing applied");
    assert_eq!(read(root.path(), "/etc/hosts"), before);
    assert!(host.commands().is_empty(), "{:?}", host.commands());
    assert!(!root.path().join(document::STORED.trim_start_matches('/')).exists());
    let info = agent::ops::info::info(&node).unwrap().boot_apply.unwrap();
    assert_eq!(info.outcome, Outcome::Refused);
    assert!(info.message.contains("runtime.pause_image"));
}

#[test]
fn the_stored_copy_keeps_what_the_api_changed_until_a_newer_delivery() {
    let p = common::pki();
    let root = common::guest_root();
    let extra = tempfile::tempdir().unwrap();
    let blobs = blob_dir(extra.path());
    let host = Arc::new(RecordingHost::node("minikube"));
    let node = Node::new(GuestRoot::new(root.path()), host.clone());
    let first = doc(&p, 5, Runtime::Containerd);
    assert_eq!(apply::at_boot(&node, delivered(&first), std::slice::from_ref(&blobs)).outcome, Outcome::Applied);

    // The API switches the runtime (the server records each configuring operation this way).
    let docker = doc(&p, 0, Runtime::Docker);
    apply::remember(&node, |d| d.runtime = docker.runtime.clone()).unwrap();

    // A reboot inside the same qemu: fw_cfg still holds serial 5, already applied; the stored
    // copy wins and the node comes back with docker.
    host.clear();
    let r = apply::at_boot(&node, delivered(&first), std::slice::from_ref(&blobs));
    assert_eq!((r.outcome, r.source.as_str()), (Outcome::Applied, "stored copy"), "{r:?}");
    assert!(read(root.path(), "/etc/docker/daemon.json").contains("native.cgroupdriver=systemd"));
    assert!(host.commands().iter().any(|c| c.starts_with("systemctl start --no-block") && c.contains("docker.service")), "{:?}", host.commands());

    // A newer delivery (the launcher's next start) replaces it; the kubelet's drop-in changes
    // (another flag) while systemd has the unit loaded: a reload comes first.
    host.clear();
    host.answer("systemctl show --property=NeedDaemonReload", "yes\n", 0);
    let mut later = doc(&p, 6, Runtime::Containerd);
    later.kubelet.as_mut().unwrap().extra_args = vec!["--v=2".into()];
    let r = apply::at_boot(&node, delivered(&later), &[blobs]);
    assert_eq!((r.outcome, r.source.as_str()), (Outcome::Applied, "qemu fw_cfg"));
    let commands = host.commands();
    let reload = commands.iter().position(|c| c == "systemctl daemon-reload").expect("a loaded unit changed: reload");
    assert!(reload < commands.iter().position(|c| c.starts_with("systemctl start")).unwrap(), "{commands:?}");
    let stored = apply::load_stored(&node).unwrap().unwrap();
    assert_eq!((stored.delivered_serial, stored.document.runtime.unwrap().runtime), (6, Runtime::Containerd));

    // Nothing delivered or stored: said so.
    let empty = common::guest_root();
    let n2 = Node::new(GuestRoot::new(empty.path()), host);
    assert_eq!(apply::at_boot(&n2, vec![], &[]).outcome, Outcome::NoDocument);
}

/// Every temporary file left under `root`.
fn temps(root: &Path) -> Vec<String> {
    let out = Command::new("find").arg(root).args(["-name", ".minikube-tmp.*"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn killed_in_the_middle_of_the_boot_apply_a_rerun_converges() {
    let p = common::pki();
    let root = common::guest_root();
    let trust = tempfile::tempdir().unwrap();
    blob_dir(trust.path());
    std::fs::write(trust.path().join(document::FILE_NAME), serde_json::to_vec(&doc(&p, 9, Runtime::Containerd)).unwrap()).unwrap();
    let boot = |hook: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_minikube-agent"));
        c.args(["boot", "--console", "/dev/null", "--no-host-commands", "--root"]).arg(root.path()).arg("--trust-dir").arg(trust.path());
        c.env("container", "docker");
        match hook {
            Some(section) => c.env(apply::CRASH_HOOK, section),
            None => c.env_remove(apply::CRASH_HOOK),
        };
        c.output().unwrap()
    };
    let killed = boot(Some("runtime"));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(killed.status.signal(), Some(9), "the hook killed it: {killed:?}");
    assert_eq!(read(root.path(), "/etc/hostname"), "node1\n", "sections before the kill are in place");
    assert_eq!(read(root.path(), "/etc/containerd/config.toml"), "", "the runtime section never started");
    assert!(!root.path().join(document::STORED.trim_start_matches('/')).exists(), "not stored: the next run applies it again");
    // systemd runs the unit again (Restart=on-failure): the rerun converges.
    let again = boot(None);
    assert!(again.status.success(), "{again:?}");
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains(&format!("{} applied from trust directory", agent::DOCUMENT_MARKER)), "{text}");
    // (The recording host keeps the kernel hostname in memory only: a new process changes it.)
    assert!(text.contains("changed hostname, runtime, kubelet;"), "certs and files were already done: {text}");
    assert!(read(root.path(), "/etc/containerd/config.toml").contains("SystemdCgroup = true"));
    assert_eq!(temps(root.path()), Vec::<String>::new(), "no torn or temporary file");
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../overlay/usr/lib/systemd/system/minikube-agent-boot.service")).unwrap();
    assert!(unit.lines().any(|l| l == "Restart=on-failure"), "systemd reruns a killed boot step");
}

/// An API change the agent cannot record for the next boot is reported, not lost silently; the
/// retry (changing nothing on the node) records it.
#[test]
fn an_api_change_that_cannot_be_recorded_is_an_error() {
    let a = common::start();
    let stored = a.path(agent::document::STORED);
    // A directory where the stored document goes: it cannot be replaced.
    std::fs::create_dir_all(stored.join("in-the-way")).unwrap();
    let mut c = a.client();
    let err = c.hostname("recorded").unwrap_err();
    let agent::client::ClientError::Status { status, error } = &err else { panic!("{err}") };
    assert!(*status >= 500, "{err}");
    assert!(error.error.contains("not recorded for the next boot") && error.error.contains("node.json"), "{err}");
    std::fs::remove_dir_all(&stored).unwrap();
    let changed = c.hostname("recorded").unwrap().changed;
    assert!(!changed, "the node already had the hostname");
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&stored).unwrap()).unwrap();
    assert_eq!(kept["document"]["hostname"]["name"], "recorded");
}

/// A VM's NIC to the host: its networkd file written once, and the NIC brought up at every boot
/// (the driver loaded when no interface has the MAC yet), each command idempotent.
#[test]
fn the_uplink_is_configured_at_boot_and_kept_for_networkd() {
    let p = common::pki();
    let root = common::guest_root();
    let host = Arc::new(RecordingHost::node("minikube"));
    let node = Node::new(GuestRoot::new(root.path()), host.clone());
    let uplink = UplinkRequest {
        mac: "52:54:00:12:34:56".into(),
        address: "10.0.2.15/24".into(),
        gateway: "10.0.2.2".into(),
        dns: vec!["10.0.2.3".into()],
        driver: Some("virtio_net".into()),
    };
    let d = NodeDocument { uplink: Some(uplink.clone()), ..doc(&p, 10, Runtime::Containerd) };
    // No interface has the MAC: the driver is loaded, and the interface appears (as the kernel
    // would make it) while the agent waits for it.
    let nic = root.path().join("sys/class/net/eth0/address");
    let appear = {
        let nic = nic.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            std::fs::create_dir_all(nic.parent().unwrap()).unwrap();
            std::fs::write(&nic, "52:54:00:12:34:56\n").unwrap();
        })
    };
    let report = apply::at_boot(&node, delivered(&d), &[]);
    appear.join().unwrap();
    assert_eq!(report.outcome, Outcome::Applied, "{report:?}");
    assert!(report.message.contains("changed uplink"), "{}", report.message);
    let text = read(root.path(), agent::ops::network::UPLINK_FILE);
    assert!(
        text.contains("MACAddress=52:54:00:12:34:56\n")
            && text.contains("Address=10.0.2.15/24\n")
            && text.contains("Gateway=10.0.2.2\n")
            && text.contains("DNS=10.0.2.3\n"),
        "{text}"
    );
    let up = ["address replace 10.0.2.15/24 dev eth0", "link set dev eth0 up", "route replace default via 10.0.2.2 dev eth0 proto static"];
    assert_eq!(agent::ops::network::uplink_commands(&uplink, "eth0"), up);
    let commands = host.commands();
    let ran: Vec<&str> = commands.iter().map(String::as_str).filter(|c| c.starts_with("ip ")).collect();
    assert_eq!(ran, ["ip -batch -"], "one ip for the three: {commands:?}");
    // networkd starts after the boot step and reads the file then: not asked to reload (a
    // reload would have D-Bus start it, queued behind the boot step that asks).
    assert!(commands.iter().any(|c| c == "systemctl is-active systemd-networkd.service"), "{commands:?}");
    assert!(!commands.iter().any(|c| c == "networkctl reload"), "{commands:?}");
    let modprobe = commands.iter().position(|c| c == "modprobe virtio_net").expect("the driver loaded");
    assert!(modprobe < commands.iter().position(|c| c.starts_with("ip ")).unwrap(), "{commands:?}");
    // The next boot (same document): the file is as it was, the interface is there (no
    // modprobe), the NIC is brought up again.
    host.clear();
    let report = apply::at_boot(&node, delivered(&d), &[]);
    assert_eq!(report.outcome, Outcome::Applied, "{report:?}");
    assert!(!report.message.contains("changed uplink"), "{}", report.message);
    let commands = host.commands();
    let ran: Vec<&str> = commands.iter().map(String::as_str).filter(|c| c.starts_with("ip ")).collect();
    assert_eq!(ran, ["ip -batch -"], "{commands:?}");
    assert!(!commands.iter().any(|c| c.starts_with("modprobe virtio_net")), "{commands:?}");
    // A bad gateway is refused by field.
    let bad = NodeDocument { serial: 12, uplink: Some(UplinkRequest { gateway: "10.0.2".into(), ..uplink }), ..d };
    let report = apply::at_boot(&node, delivered(&bad), &[]);
    assert_eq!(report.outcome, Outcome::Refused);
    assert!(report.message.contains("uplink.gateway"), "{}", report.message);
}
