//! The node-container entrypoint's fixes, each against a temporary root.

use std::net::Ipv4Addr;
use std::path::Path;

use agent::entrypoint::*;
use agent::host::RecordingHost;
use agent::paths::GuestRoot;

fn write(root: &Path, guest: &str, text: &str) {
    let p = root.join(guest.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn read(root: &Path, guest: &str) -> String {
    std::fs::read_to_string(root.join(guest.trim_start_matches('/'))).unwrap()
}

#[test]
fn root_made_rshared() {
    let d = tempfile::tempdir().unwrap();
    let host = RecordingHost::node("n");
    make_root_rshared(&GuestRoot::new(d.path()), &host).unwrap();
    assert_eq!(host.commands(), vec![format!("mount --make-rshared {}", d.path().display())]);
}

#[test]
fn cgroup_v2_processes_move_and_controllers_are_delegated() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n");
    write(d.path(), "/sys/fs/cgroup/cgroup.procs", "1\n42\n");
    assert!(cgroup_v2_delegate(&GuestRoot::new(d.path())).unwrap());
    assert_eq!(read(d.path(), "/sys/fs/cgroup/init/cgroup.procs"), "1\n42\n");
    assert_eq!(read(d.path(), "/sys/fs/cgroup/cgroup.subtree_control"), "+cpuset +cpu +io +memory +pids");
    // cgroup v1: nothing to do here.
    let v1 = tempfile::tempdir().unwrap();
    assert!(!cgroup_v2_delegate(&GuestRoot::new(v1.path())).unwrap());
}

#[test]
fn cgroup_v1_hierarchies_are_nested() {
    let d = tempfile::tempdir().unwrap();
    for h in ["cpu,cpuacct", "memory", "unified"] {
        std::fs::create_dir_all(d.path().join("sys/fs/cgroup").join(h)).unwrap();
    }
    write(d.path(), "/proc/self/cgroup", "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/docker/abc\n");
    assert_eq!(own_cgroup_v1(&read(d.path(), "/proc/self/cgroup")).as_deref(), Some("/docker/abc"));
    let host = RecordingHost::node("n");
    let done = cgroup_v1_nest(&GuestRoot::new(d.path()), &host).unwrap();
    assert_eq!(done, vec!["cpu,cpuacct", "memory"]);
    let cg = d.path().join("sys/fs/cgroup");
    assert_eq!(
        host.commands(),
        vec![
            format!("mount --bind {0}/cpu,cpuacct {0}/cpu,cpuacct/docker/abc", cg.display()),
            format!("mount --bind {0}/memory {0}/memory/docker/abc", cg.display()),
        ]
    );
}

#[test]
fn machine_id_is_regenerated() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    let id = regenerate_machine_id(&GuestRoot::new(d.path()), [0xab; 16]).unwrap();
    assert_eq!(id, "ab".repeat(16));
    assert_eq!(read(d.path(), "/etc/machine-id"), format!("{id}\n"));
}

#[test]
fn dmi_product_is_faked_by_bind_mounts() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "/sys/class/dmi/id/product_name", "Standard PC (Q35 + ICH9, 2009)\n");
    write(d.path(), "/sys/class/dmi/id/product_uuid", "host-uuid\n");
    let host = RecordingHost::node("n");
    let done = fake_dmi(&GuestRoot::new(d.path()), &host, [7; 16]).unwrap();
    assert_eq!(done, vec!["/sys/class/dmi/id/product_name", "/sys/class/dmi/id/product_uuid"]);
    assert_eq!(read(d.path(), "/etc/minikube-agent/dmi/product_name"), "minikube\n");
    let uuid = read(d.path(), "/etc/minikube-agent/dmi/product_uuid");
    assert_eq!(uuid.trim(), uuid_v4([7; 16]));
    assert_eq!(&uuid[14..15], "4", "version-4 UUID: {uuid}");
    assert!(host.commands()[0].starts_with("mount -o ro,bind "));
}

#[test]
fn iptables_follows_the_host() {
    let legacy = "*nat\n:PREROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\n-A FORWARD -j ACCEPT\nCOMMIT\n";
    let nft = "*filter\n-A INPUT -j ACCEPT\n";
    assert_eq!(choose_iptables(legacy, nft), IptablesMode::Legacy);
    assert_eq!(choose_iptables(nft, legacy), IptablesMode::Nft);
    assert_eq!(choose_iptables("", ""), IptablesMode::Nft);
    let host = RecordingHost::node("n");
    host.answer("iptables-legacy-save", legacy, 0);
    assert_eq!(select_iptables(&host).unwrap(), IptablesMode::Legacy);
    let cmds = host.commands();
    assert!(cmds.contains(&"update-alternatives --set iptables /usr/sbin/iptables-legacy".to_string()), "{cmds:?}");
    assert!(cmds.contains(&"update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy".to_string()));
}

#[test]
fn docker_embedded_dns_is_made_reachable() {
    let route = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                 eth0\t00000000\t0131A8C0\t0003\t0\t0\t0\t00000000\n\
                 eth0\t0031A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
    let gw = default_gateway(route).unwrap();
    assert_eq!(gw, Ipv4Addr::new(192, 168, 49, 1));
    let resolv = "search example\nnameserver 127.0.0.11\noptions ndots:0\n";
    assert_eq!(rewrite_resolv_conf(resolv, gw).unwrap(), "search example\nnameserver 192.168.49.1\noptions ndots:0\n");
    assert!(rewrite_resolv_conf("nameserver 8.8.8.8\n", gw).is_none());
    let rules = "*nat\n-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT\n\
                 -A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:41003\n\
                 -A DOCKER_POSTROUTING -s 127.0.0.11/32 -p udp -m udp --sport 41003 -j SNAT --to-source :53\nCOMMIT\n";
    let out = rewrite_dns_rules(rules, gw).unwrap();
    assert!(out.contains("-A OUTPUT -d 192.168.49.1/32 -j DOCKER_OUTPUT\n-A PREROUTING -d 192.168.49.1/32 -j DOCKER_OUTPUT\n"), "{out}");
    assert!(out.contains("--to-destination 127.0.0.11:41003"), "the embedded server stays the target: {out}");
    assert!(out.contains("--to-source 192.168.49.1:53"), "{out}");

    let d = tempfile::tempdir().unwrap();
    write(d.path(), "/etc/resolv.conf", resolv);
    write(d.path(), "/proc/net/route", route);
    let host = RecordingHost::node("n");
    host.answer("iptables-save", rules, 0);
    assert!(fix_docker_dns(&GuestRoot::new(d.path()), &host).unwrap());
    assert_eq!(read(d.path(), "/etc/resolv.conf"), "search example\nnameserver 192.168.49.1\noptions ndots:0\n");
    assert_eq!(host.commands(), vec!["iptables-save", "iptables-restore"]);
}

#[test]
fn entrypoint_binary_execs_the_command() {
    let d = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minikube-agent"))
        .args(["entrypoint", "--no-host-commands", "--console", "/dev/null", "--root"])
        .arg(d.path())
        .args(["--", "/bin/sh", "-c", "echo exec ok; exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exec ok\n");
    assert!(d.path().join("etc/machine-id").exists());
}

#[test]
fn a_container_without_dev_kmsg_gets_a_link_to_the_console() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("dev")).unwrap();
    let root = GuestRoot::new(d.path());
    assert!(kmsg(&root).unwrap(), "made");
    assert_eq!(std::fs::read_link(d.path().join("dev/kmsg")).unwrap(), Path::new("/dev/console"));
    assert!(!kmsg(&root).unwrap(), "an existing /dev/kmsg is left alone");
}
