//! The image's identity: os-release naming the project, /etc/VERSION, hostname, hosts, an empty
//! machine-id, fstab; and `/version.json`, kept apart because it names the commit.

use super::{put_file, put_link, text};
use crate::rootfs::Tree;
use crate::spec::Spec;

/// Identity files: os-release naming the project, /etc/VERSION, /version.json, hostname, hosts,
/// an empty machine-id (generated at first boot).
pub fn identity(tree: &mut Tree, spec: &Spec, version: &str, base: &str, epoch: u64) {
    let os_release = format!(
        "PRETTY_NAME=\"minikube node {version} ({base})\"\nNAME=\"minikube node\"\nID=minikube-node\nID_LIKE=debian\nVERSION_ID=\"{version}\"\nVERSION=\"{version} ({base})\"\nVARIANT_ID={}\nHOME_URL=\"https://minikube.sigs.k8s.io/\"\n",
        spec.image.name
    );
    put_file(tree, "/usr/lib/os-release", os_release, 0o644, epoch);
    put_link(tree, "/etc/os-release", "../usr/lib/os-release", epoch);
    put_file(tree, "/etc/VERSION", format!("v{version}\n"), 0o644, epoch);
    put_file(tree, "/etc/hostname", format!("{}\n", spec.image.hostname), 0o644, epoch);
    if !tree.contains("/etc/hosts") || text(tree, "/etc/hosts").is_some_and(|t| !t.contains("127.0.1.1")) {
        put_file(
            tree,
            "/etc/hosts",
            format!("127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n", spec.image.hostname),
            0o644,
            epoch,
        );
    }
    put_file(tree, "/etc/machine-id", "", 0o444, epoch);
    put_link(tree, "/var/lib/dbus/machine-id", "/etc/machine-id", epoch);
    if !tree.contains("/etc/fstab") {
        put_file(tree, "/etc/fstab", "# the root is set up by the initramfs; the data disk is mounted by minikube-agent boot\n", 0o644, epoch);
    }
}

/// `/version.json` ([`platform::ImageVersion`]): image, version, commit, base, architecture and
/// SOURCE_DATE_EPOCH (kept apart from [`identity`] because it names the commit, which the cached
/// package part must not depend on).
pub fn version_json(tree: &mut Tree, spec: &Spec, version: &str, commit: &str, base: &str, epoch: u64) {
    let v = platform::ImageVersion {
        image: spec.image.name.clone(),
        version: format!("v{version}"),
        commit: commit.to_string(),
        base: base.to_string(),
        arch: spec.source.arch,
        source_date_epoch: epoch,
        boot: spec.boot.as_ref().map(|b| platform::KernelBoot::on_medium(&b.cmdline)),
    };
    let json = serde_json::to_string_pretty(&v).expect("ImageVersion is plain data");
    put_file(tree, platform::ImageVersion::PATH, format!("{json}\n"), 0o644, epoch);
}
