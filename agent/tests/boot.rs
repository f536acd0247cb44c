//! `minikube-agent boot` against a temporary root with fake /sys/block entries and device
//! files; the disk tools are observed through the recording host.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use agent::boot::{self, BootOptions, DiskPlan};
use agent::host::RecordingHost;
use agent::paths::GuestRoot;
use agent::userdata::{self, Entry};

/// Add a disk `name` with `partitions` and write `content` as its device node.
fn fake_disk(root: &Path, name: &str, partitions: &[&str], content: &[u8]) {
    let sys = root.join("sys/block").join(name);
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("size"), "41943040\n").unwrap();
    std::fs::write(sys.join("removable"), "0\n").unwrap();
    std::fs::write(sys.join("ro"), "0\n").unwrap();
    for p in partitions {
        std::fs::create_dir_all(sys.join(p)).unwrap();
        std::fs::write(sys.join(p).join("partition"), "1\n").unwrap();
    }
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::write(root.join("dev").join(name), content).unwrap();
}

/// An ext4 superblock with a label, at byte 1024 of a fake partition.
fn ext4_image(label: &str) -> Vec<u8> {
    let mut img = vec![0u8; 4096];
    img[1024 + 0x38..1024 + 0x3a].copy_from_slice(&0xEF53u16.to_le_bytes());
    img[1024 + 0x78..1024 + 0x78 + label.len()].copy_from_slice(label.as_bytes());
    img
}

fn userdata_tar(pki: &pki::Ca) -> Vec<u8> {
    let agent_id = pki.issue_server("minikube-agent", &["localhost"], &[], pki::Validity::days_from_now(1)).unwrap();
    userdata::build(&[
        Entry { path: ".ssh".into(), data: None, mode: 0o700 },
        Entry { path: ".ssh/authorized_keys".into(), data: Some(b"ssh-ed25519 AAAAC3 minikube\n".to_vec()), mode: 0o644 },
        Entry { path: "minikube-agent/ca.crt".into(), data: Some(pki.cert_pem().as_bytes().to_vec()), mode: 0o644 },
        Entry { path: "minikube-agent/agent.crt".into(), data: Some(agent_id.cert_pem.into_bytes()), mode: 0o644 },
        Entry { path: "minikube-agent/agent.key".into(), data: Some(agent_id.key_pem.into_bytes()), mode: 0o600 },
    ])
}

#[test]
fn labelled_partition_wins() {
    let d = tempfile::tempdir().unwrap();
    fake_disk(d.path(), "vda", &[], &vec![0u8; 8192]);
    fake_disk(d.path(), "vdb", &["vdb1"], &[0u8; 512]);
    std::fs::write(d.path().join("dev/vdb1"), ext4_image("boot2docker-data")).unwrap();
    fake_disk(d.path(), "loop0", &[], &ext4_image("boot2docker-data"));
    let root = GuestRoot::new(d.path());
    assert_eq!(boot::plan(&root).unwrap(), DiskPlan::Use { partition: "vdb1".into() });
}

#[test]
fn other_labels_and_partitioned_disks_are_left_alone() {
    let d = tempfile::tempdir().unwrap();
    fake_disk(d.path(), "sda", &["sda1"], &[1u8; 8192]);
    std::fs::write(d.path().join("dev/sda1"), ext4_image("root")).unwrap();
    let root = GuestRoot::new(d.path());
    assert_eq!(boot::plan(&root).unwrap(), DiskPlan::None);
    // An empty disk is the fallback.
    fake_disk(d.path(), "sdb", &[], &vec![0u8; 65536]);
    assert_eq!(boot::plan(&root).unwrap(), DiskPlan::FormatEmpty { disk: "sdb".into() });
}

#[test]
fn magic_disk_is_formatted_and_its_userdata_installed() {
    let d = tempfile::tempdir().unwrap();
    let ca = pki::Ca::generate("minikubeCA", pki::Validity::days_from_now(10)).unwrap();
    let tar = userdata_tar(&ca);
    let mut disk = tar.clone();
    disk.resize(1024 * 1024, 0);
    fake_disk(d.path(), "vda", &[], &vec![0u8; 65536]);
    fake_disk(d.path(), "vdb", &[], &disk);
    std::fs::create_dir_all(d.path().join("etc/ssh")).unwrap();
    let root = GuestRoot::new(d.path());
    match boot::plan(&root).unwrap() {
        DiskPlan::FormatMagic { disk, userdata } => {
            assert_eq!(disk, "vdb", "the magic disk is preferred over an empty one");
            assert_eq!(userdata, tar, "the tar is kept exactly, without the zero padding");
        }
        other => panic!("{other:?}"),
    }
    let host = RecordingHost::node("minikube");
    let dev = |n: &str| d.path().join("dev").join(n).display().to_string();
    // The partition node appears when sfdisk runs (udev would make it); ssh-keygen writes keys.
    host.creates("sfdisk", &d.path().join("dev/vdb1"));
    for (kind, file) in boot::HOST_KEYS {
        host.creates(&format!("ssh-keygen -q -t {kind}"), &d.path().join("etc/ssh").join(file));
    }
    let report = boot::run(&root, &host, BootOptions { skip_disk: false, skip_modules: false, keys_later: false }).unwrap();
    let cmds = host.commands();
    let mnt = d.path().join("mnt/vdb1").display().to_string();
    // The modules load on their own thread meanwhile: the disk's first command is sfdisk.
    assert_eq!(cmds.iter().find(|c| !c.starts_with("modprobe")), Some(&format!("sfdisk --wipe always {}", dev("vdb"))));
    assert!(cmds.contains(&"modprobe -a overlay br_netfilter nf_conntrack".to_string()), "{cmds:?}");
    assert!(cmds.contains(&format!("mkfs.ext4 -F -i 2048 -L boot2docker-data {}", dev("vdb1"))), "{cmds:?}");
    assert!(cmds.contains(&format!("mount -t ext4 {} {mnt}", dev("vdb1"))), "{cmds:?}");
    for dir in boot::PERSISTENT_DIRS {
        let bind = format!("mount --bind {mnt}{dir} {}", d.path().join(dir.trim_start_matches('/')).display());
        assert!(cmds.contains(&bind), "missing {bind}");
    }
    // One modprobe for every module.
    let probes: Vec<&String> = cmds.iter().filter(|c| c.starts_with("modprobe")).collect();
    assert_eq!(probes, [&format!("modprobe -a {}", boot::RUNTIME_MODULES.join(" "))], "{cmds:?}");
    for (kind, file) in boot::HOST_KEYS {
        let keygen = format!("ssh-keygen -q -t {kind} -N  -f {}", d.path().join("etc/ssh").join(file).display());
        assert!(cmds.contains(&keygen), "missing {keygen}: {cmds:?}");
        // Kept on the data disk.
        let kept = d.path().join(boot::HOST_KEYS_DIR.trim_start_matches('/')).join(file);
        assert_eq!(std::fs::read(&kept).unwrap(), std::fs::read(d.path().join("etc/ssh").join(file)).unwrap());
        assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(report.ssh_keys_generated);
    assert_eq!(report.userdata_files_changed, 4);
    // userdata: authorized_keys for docker, trust for the agent.
    let keys = d.path().join("home/docker/.ssh/authorized_keys");
    let meta = std::fs::metadata(&keys).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o777), (1000, 1000, 0o600));
    assert_eq!(std::fs::metadata(d.path().join("home/docker/.ssh")).unwrap().permissions().mode() & 0o777, 0o700);
    let trust_key = d.path().join("var/lib/minikube-agent/trust/agent.key");
    assert_eq!(std::fs::metadata(&trust_key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(d.path().join("var/lib/boot2docker/userdata.tar")).unwrap(), tar);
    // The agent's trust lookup finds what the disk brought.
    let (trust, source) = agent::trust::locate(&root, None, &host, false).unwrap();
    assert_eq!(source, agent::trust::Source::StateDir);
    assert_eq!(trust.ca_pem, ca.cert_pem());

    // Next boot: nothing to format, userdata already in place; the root is new (no host keys in
    // /etc/ssh) and the kept keys come back, none generated.
    host.clear();
    let before: Vec<Vec<u8>> = boot::HOST_KEYS.iter().map(|(_, f)| std::fs::read(d.path().join("etc/ssh").join(f)).unwrap()).collect();
    for (_, f) in boot::HOST_KEYS {
        std::fs::remove_file(d.path().join("etc/ssh").join(f)).unwrap();
    }
    let report = boot::run(&root, &host, BootOptions { skip_disk: true, skip_modules: true, keys_later: false }).unwrap();
    assert_eq!(report.userdata_files_changed, 0);
    assert!(!report.ssh_keys_generated, "the kept keys are used");
    assert!(!host.commands().iter().any(|c| c.starts_with("sfdisk") || c.starts_with("mkfs") || c.starts_with("ssh-keygen")), "{:?}", host.commands());
    let after: Vec<Vec<u8>> = boot::HOST_KEYS.iter().map(|(_, f)| std::fs::read(d.path().join("etc/ssh").join(f)).unwrap()).collect();
    assert_eq!(after, before, "the node keeps its SSH identity across restarts");
}

/// A data filesystem the launcher made on the host (`mke2fs -d`, on the whole disk): mounted as
/// it is, never formatted; its userdata tar, at the filesystem's top, applied at the first boot
/// (blobs imported, the rest kept as the formatting boot keeps it) and then removed.
#[test]
fn a_host_made_data_disk_is_mounted_and_its_userdata_taken_once() {
    let d = tempfile::tempdir().unwrap();
    let ca = pki::Ca::generate("minikubeCA", pki::Validity::days_from_now(10)).unwrap();
    let tar = userdata_tar(&ca);
    fake_disk(d.path(), "vda", &[], &ext4_image("boot2docker-data"));
    std::fs::create_dir_all(d.path().join("etc/ssh")).unwrap();
    // What mounting /dev/vda on /mnt/vda shows: the file the host put there.
    std::fs::create_dir_all(d.path().join("mnt/vda")).unwrap();
    let fresh = d.path().join("mnt/vda").join(boot::FRESH_USERDATA);
    std::fs::write(&fresh, &tar).unwrap();
    let root = GuestRoot::new(d.path());
    assert_eq!(boot::plan(&root).unwrap(), DiskPlan::Use { partition: "vda".into() });
    let host = RecordingHost::node("minikube");
    for (kind, file) in boot::HOST_KEYS {
        host.creates(&format!("ssh-keygen -q -t {kind}"), &d.path().join("etc/ssh").join(file));
    }
    let report = boot::run(&root, &host, BootOptions { skip_disk: false, skip_modules: true, keys_later: false }).unwrap();
    let cmds = host.commands();
    assert!(!cmds.iter().any(|c| c.starts_with("sfdisk") || c.starts_with("mkfs")), "a host-made disk is not formatted: {cmds:?}");
    assert!(cmds.contains(&format!("mount -t ext4 {} {}", d.path().join("dev/vda").display(), d.path().join("mnt/vda").display())), "{cmds:?}");
    assert_eq!(report.userdata_files_changed, 4, "authorized_keys and the agent's trust installed");
    assert_eq!(std::fs::read(d.path().join("var/lib/boot2docker/userdata.tar")).unwrap(), tar, "kept as a formatting boot keeps it");
    assert!(!fresh.exists(), "taken once");
    let (trust, _) = agent::trust::locate(&root, None, &host, false).unwrap();
    assert_eq!(trust.ca_pem, ca.cert_pem());
    // The next boot finds nothing new.
    host.clear();
    let report = boot::run(&root, &host, BootOptions { skip_disk: false, skip_modules: true, keys_later: false }).unwrap();
    assert_eq!(report.userdata_files_changed, 0);
    assert!(!host.commands().iter().any(|c| c.starts_with("sfdisk") || c.starts_with("mkfs")));
}

#[test]
fn nvme_partitions_are_named_with_p() {
    assert_eq!(boot::partition_name("nvme0n1", 1), "nvme0n1p1");
    assert_eq!(boot::partition_name("vda", 1), "vda1");
    assert_eq!(boot::partition_name("mmcblk0", 2), "mmcblk0p2");
}

#[test]
fn no_disk_runs_from_memory() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("sys/block")).unwrap();
    let host = RecordingHost::node("minikube");
    let report = boot::run(&GuestRoot::new(d.path()), &host, BootOptions { skip_disk: false, skip_modules: true, keys_later: false }).unwrap();
    assert_eq!(report.plan, "no data disk");
    assert!(host.commands().is_empty(), "{:?}", host.commands());
}

#[test]
fn boot_binary_in_a_container_skips_disk_and_modules() {
    let d = tempfile::tempdir().unwrap();
    // A disk that would be formatted outside a container.
    fake_disk(d.path(), "vdb", &[], &vec![0u8; 65536]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minikube-agent"))
        .args(["boot", "--console", "/dev/null", "--no-host-commands", "--root"])
        .arg(d.path())
        .env("container", "docker")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("minikube-agent: boot done (disk skipped"), "{text}");
}

#[test]
fn systemd_units_order_boot_before_the_runtimes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../overlay/usr/lib/systemd/system");
    let boot_unit = std::fs::read_to_string(dir.join("minikube-agent-boot.service")).unwrap();
    for line in ["Type=oneshot", "RemainAfterExit=yes", "ExecStart=/usr/bin/minikube-agent boot", "DefaultDependencies=no"] {
        assert!(boot_unit.lines().any(|l| l == line), "boot unit lacks {line}");
    }
    // Neither the boot step nor the agent waits for udev's coldplug, local-fs.target or the
    // network (seconds under emulation): the disks are there and mounted from /init on, and the
    // agent listens on every address.
    let serve_unit = std::fs::read_to_string(dir.join("minikube-agent.service")).unwrap();
    for (name, unit) in [("boot", &boot_unit), ("serve", &serve_unit)] {
        let after: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("After=")).flat_map(|l| l.split(' ')).collect();
        for slow in ["systemd-udevd.service", "systemd-udev-settle.service", "local-fs.target", "network.target", "network-online.target"] {
            assert!(!after.contains(&slow), "{name} unit is After={slow}");
        }
    }
    let before = boot_unit.lines().find_map(|l| l.strip_prefix("Before=")).unwrap();
    for unit in ["systemd-networkd.service", "docker.service", "containerd.service", "crio.service", "kubelet.service"] {
        assert!(before.split(' ').any(|u| u == unit), "boot unit not Before={unit}");
    }
    // The agent starts beside the boot step and waits for it itself (agent::boot_lock).
    assert!(!before.split(' ').any(|u| u == "minikube-agent.service"), "boot unit is Before=minikube-agent.service");
    assert!(!serve_unit.lines().any(|l| l.starts_with("After=") && l.contains("minikube-agent-boot.service")), "serve unit waits for the boot unit");
    for line in [
        "ExecStart=/usr/bin/minikube-agent serve --after-boot",
        "Type=notify",
        "Restart=always",
        "StandardOutput=journal+console",
        "DefaultDependencies=no",
        "Conflicts=shutdown.target",
    ] {
        assert!(serve_unit.lines().any(|l| l == line), "serve unit lacks {line}");
    }
}

/// One `modprobe -a` loads every module; when it fails, each module alone says which failed.
#[test]
fn modules_load_in_one_modprobe_and_failures_are_named() {
    let host = RecordingHost::node("minikube");
    assert!(boot::load_modules(&host, &["overlay", "vxlan"]).is_empty());
    assert_eq!(host.commands(), ["modprobe -a overlay vxlan"]);
    let host = RecordingHost::node("minikube");
    host.answer("modprobe -a", "", 1);
    host.answer("modprobe vxlan", "", 1);
    assert_eq!(boot::load_modules(&host, &["overlay", "vxlan"]), ["vxlan"]);
    assert_eq!(host.commands(), ["modprobe -a overlay vxlan", "modprobe overlay", "modprobe vxlan"]);
}

/// The userdata tar and the node document's file section both place the docker user's
/// authorized_keys: with one owner, a boot that applies both (every boot does) changes nothing
/// the second time, so a restart writes nothing.
#[test]
fn userdata_and_the_document_agree_on_authorized_keys() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    // The image's accounts: the docker user's own group differs from the docker group.
    std::fs::write(d.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\ndocker:x:1000:1000::/home/docker:/bin/bash\n").unwrap();
    std::fs::write(d.path().join("etc/group"), "root:x:0:\ndocker:x:990:docker\n").unwrap();
    let ca = pki::Ca::generate("minikubeCA", pki::Validity::days_from_now(10)).unwrap();
    let tar = userdata_tar(&ca);
    let root = GuestRoot::new(d.path());
    assert_eq!(boot::apply_userdata(&root, &tar).unwrap(), 4);
    let keys = d.path().join("home/docker/.ssh/authorized_keys");
    let owner = agent::accounts::resolve_owner(d.path(), userdata::AUTHORIZED_KEYS_OWNER).unwrap();
    let meta = std::fs::metadata(&keys).unwrap();
    assert_eq!((meta.uid(), meta.gid()), owner, "the owner the document's section gives");
    // The document's section, with the same content: nothing to do; then the userdata again.
    let node = agent::ops::Node::new(GuestRoot::new(d.path()), std::sync::Arc::new(RecordingHost::node("minikube")));
    let content = std::fs::read(&keys).unwrap();
    let up = agent::api::FileUpload {
        path: "/home/docker/.ssh/authorized_keys".into(),
        sha256: pki::digest::sha256_hex(&content),
        mode: 0o600,
        owner: Some(userdata::AUTHORIZED_KEYS_OWNER.into()),
    };
    let c = agent::ops::files::upload(&node, &up, &mut &content[..], content.len() as u64).unwrap();
    assert!(!c.changed, "the document's file section rewrote what the userdata placed");
    assert_eq!(boot::apply_userdata(&root, &tar).unwrap(), 0);
}

/// The agent serves beside the boot step: it listens only once the boot step marks the node
/// reachable, `info` says the boot step runs, and a change waits until the boot step ends.
#[test]
fn the_servers_changes_wait_for_the_boot_step() {
    use agent::boot_lock::{self, BootLock};
    use std::time::{Duration, Instant};
    let d = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(d.path());
    assert!(!boot_lock::running(&root), "no lock file: no boot step");
    let lock = BootLock::acquire(&root).unwrap();
    assert!(boot_lock::running(&root));
    assert!(!boot_lock::wait_reachable(&root, Duration::from_millis(100)), "reachable before the boot step said so");
    lock.mark_reachable();
    assert!(boot_lock::wait_reachable(&root, Duration::from_secs(1)));

    let node = std::sync::Arc::new(agent::ops::Node::new(root.clone(), std::sync::Arc::new(RecordingHost::node("m"))).after_boot());
    assert!(agent::ops::info::info(&node).unwrap().boot_running);
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let node = node.clone();
        std::thread::spawn(move || {
            let _w = node.lock_writes();
            tx.send(Instant::now()).unwrap();
        })
    };
    assert!(rx.recv_timeout(Duration::from_millis(400)).is_err(), "a change ran while the boot step held the node");
    let released = Instant::now();
    drop(lock);
    let wrote = rx.recv_timeout(Duration::from_secs(5)).expect("the change ran once the boot step ended");
    assert!(wrote >= released);
    writer.join().unwrap();
    assert!(!boot_lock::running(&root));
    assert!(!agent::ops::info::info(&node).unwrap().boot_running);
    // A node that does not wait (the boot step's own, tests') takes only its own lock.
    let _held = BootLock::acquire(&root).unwrap();
    let own = agent::ops::Node::new(root.clone(), std::sync::Arc::new(RecordingHost::node("m")));
    drop(own.lock_writes());
}
