//! `minikube-agent entrypoint -- /sbin/init`: what a node container needs before systemd starts
//! (the job kicbase's shell entrypoint does): shared mount propagation, cgroup fixes, a fresh
//! machine-id, a fake DMI product name/uuid, the iptables flavour the host uses, and Docker's
//! embedded DNS made reachable from nested containers. Each fix is a function over a root
//! directory and a [`Host`], tested against a temporary root.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use crate::host::{run_ok, Host, HostError};
use crate::ops::ensure;
use crate::paths::GuestRoot;

/// Docker's embedded DNS server address inside containers on user-defined networks.
pub const DOCKER_EMBEDDED_DNS: &str = "127.0.0.11";
/// What the fake DMI product name says.
pub const PRODUCT_NAME: &str = "minikube";
/// Where the fake DMI files live (bind-mounted over /sys/class/dmi/id/...).
pub const DMI_DIR: &str = "/etc/minikube-agent/dmi";

#[derive(Debug, thiserror::Error)]
pub enum EntrypointError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    Host(#[from] HostError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> EntrypointError + '_ {
    move |source| EntrypointError::Io { path: path.display().to_string(), source }
}

fn arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// `mount --make-rshared /`: mounts made by the runtimes propagate (kubelet volumes need it).
pub fn make_root_rshared(root: &GuestRoot, host: &dyn Host) -> Result<(), EntrypointError> {
    run_ok(host, &["mount", "--make-rshared", &arg(root.dir())], None, MOUNT_TIMEOUT)?;
    Ok(())
}

/// cgroup v2: move every process of the container's root cgroup into `init/` (a cgroup with
/// processes cannot delegate controllers), then enable every available controller for
/// children. Returns false on cgroup v1.
pub fn cgroup_v2_delegate(root: &GuestRoot) -> Result<bool, EntrypointError> {
    let cg = root.host("/sys/fs/cgroup");
    let controllers_file = cg.join("cgroup.controllers");
    let Ok(controllers) = std::fs::read_to_string(&controllers_file) else { return Ok(false) };
    let init = cg.join("init");
    ensure::dir(&init).map_err(io_err(&init))?;
    let procs_file = cg.join("cgroup.procs");
    let procs = std::fs::read_to_string(&procs_file).map_err(io_err(&procs_file))?;
    let target = init.join("cgroup.procs");
    for pid in procs.split_whitespace() {
        // cgroupfs takes one pid per write; a process that exited meanwhile is fine.
        let mut f = OpenOptions::new().create(true).append(true).open(&target).map_err(io_err(&target))?;
        let _ = writeln!(f, "{pid}");
    }
    let enable: Vec<String> = controllers.split_whitespace().map(|c| format!("+{c}")).collect();
    if !enable.is_empty() {
        let subtree = cg.join("cgroup.subtree_control");
        let mut f = OpenOptions::new().create(true).append(true).open(&subtree).map_err(io_err(&subtree))?;
        f.write_all(enable.join(" ").as_bytes()).map_err(io_err(&subtree))?;
    }
    Ok(true)
}

/// The container's cgroup path (v1, from the `cpu` line of /proc/self/cgroup).
pub fn own_cgroup_v1(proc_self_cgroup: &str) -> Option<String> {
    proc_self_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "cpu").then(|| path.to_string())
    })
}

/// cgroup v1: make the container's own cgroup path resolve inside each hierarchy (systemd and
/// the runtimes compute paths from /proc/self/cgroup) by bind-mounting each hierarchy onto
/// HIERARCHY/PATH. Returns the hierarchies done.
pub fn cgroup_v1_nest(root: &GuestRoot, host: &dyn Host) -> Result<Vec<String>, EntrypointError> {
    let cg = root.host("/sys/fs/cgroup");
    if cg.join("cgroup.controllers").exists() {
        return Ok(Vec::new());
    }
    let Ok(text) = std::fs::read_to_string(root.host("/proc/self/cgroup")) else { return Ok(Vec::new()) };
    let Some(path) = own_cgroup_v1(&text).filter(|p| p != "/") else { return Ok(Vec::new()) };
    let Ok(entries) = std::fs::read_dir(&cg) else { return Ok(Vec::new()) };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "unified")
        .collect();
    names.sort();
    let mut done = Vec::new();
    for name in names {
        let hierarchy = cg.join(&name);
        let nested = hierarchy.join(path.trim_start_matches('/'));
        match ensure::dir(&nested) {
            // Not a hierarchy: a plain directory on the read-only tmpfs above them (some hosts
            // have `cpu,cpuacct` there beside the `cpu` and `cpuacct` mounts).
            Err(e) if e.raw_os_error() == Some(nix::libc::EROFS) => continue,
            r => {
                r.map_err(io_err(&nested))?;
            }
        }
        run_ok(host, &["mount", "--bind", &arg(&hierarchy), &arg(&nested)], None, MOUNT_TIMEOUT)?;
        done.push(name);
    }
    Ok(done)
}

/// A fresh /etc/machine-id from 16 random bytes (every node needs its own).
pub fn regenerate_machine_id(root: &GuestRoot, random: [u8; 16]) -> Result<String, EntrypointError> {
    let id: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let path = root.host("/etc/machine-id");
    let _ = std::fs::remove_file(&path);
    ensure::file(&path, format!("{id}\n").as_bytes(), 0o444, None).map_err(io_err(&path))?;
    Ok(id)
}

/// A version-4 UUID from 16 random bytes.
pub fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Hide the host's DMI product name and uuid (every node would otherwise share them) by
/// bind-mounting our own files over them. Returns the files replaced.
pub fn fake_dmi(root: &GuestRoot, host: &dyn Host, random: [u8; 16]) -> Result<Vec<String>, EntrypointError> {
    let mut done = Vec::new();
    let uuid = uuid_v4(random);
    for (name, content) in [("product_name", PRODUCT_NAME.to_string()), ("product_uuid", uuid)] {
        let ours = root.host(&format!("{DMI_DIR}/{name}"));
        for sys in [format!("/sys/class/dmi/id/{name}"), format!("/sys/devices/virtual/dmi/id/{name}")] {
            let target = root.host(&sys);
            if !target.exists() {
                continue;
            }
            ensure::file(&ours, format!("{content}\n").as_bytes(), 0o444, None).map_err(io_err(&ours))?;
            run_ok(host, &["mount", "-o", "ro,bind", &arg(&ours), &arg(&target)], None, MOUNT_TIMEOUT)?;
            done.push(sys);
        }
    }
    Ok(done)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IptablesMode {
    Legacy,
    Nft,
}

/// Rules (lines starting with `-`) in an `iptables-save` output.
pub fn count_rules(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with('-')).count()
}

/// Use the flavour in which the host has more rules (nft on a tie: the modern default).
pub fn choose_iptables(legacy_save: &str, nft_save: &str) -> IptablesMode {
    if count_rules(legacy_save) > count_rules(nft_save) {
        IptablesMode::Legacy
    } else {
        IptablesMode::Nft
    }
}

/// Count the host's rules in both flavours and select the matching alternatives.
pub fn select_iptables(host: &dyn Host) -> Result<IptablesMode, EntrypointError> {
    let save = |tool: &str| {
        host.run(&[tool], None, Duration::from_secs(30))
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
            .unwrap_or_default()
    };
    let legacy = save("iptables-legacy-save") + &save("ip6tables-legacy-save");
    let nft = save("iptables-nft-save") + &save("ip6tables-nft-save");
    let mode = choose_iptables(&legacy, &nft);
    let suffix = if mode == IptablesMode::Legacy { "legacy" } else { "nft" };
    for tool in ["iptables", "ip6tables"] {
        let path = format!("/usr/sbin/{tool}-{suffix}");
        run_ok(host, &["update-alternatives", "--set", tool, &path], None, Duration::from_secs(30))?;
    }
    Ok(mode)
}

/// The default IPv4 gateway from /proc/net/route text.
pub fn default_gateway(proc_net_route: &str) -> Option<Ipv4Addr> {
    proc_net_route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 2 && f[1] == "00000000" {
            let raw = u32::from_str_radix(f[2], 16).ok()?;
            Some(Ipv4Addr::from(raw.to_le_bytes()))
        } else {
            None
        }
    })
}

/// resolv.conf with Docker's embedded DNS address replaced by `host_ip` (nested containers
/// cannot reach 127.0.0.11, the node's loopback). `None` when there is nothing to change.
pub fn rewrite_resolv_conf(text: &str, host_ip: Ipv4Addr) -> Option<String> {
    let mut changed = false;
    let out: String = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 2 && f[0] == "nameserver" && f[1] == DOCKER_EMBEDDED_DNS {
                changed = true;
                format!("nameserver {host_ip}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    changed.then_some(out)
}

/// Docker's DNS NAT rules rewritten so that queries sent to `host_ip` reach the embedded server
/// (also from nested containers, through PREROUTING). `None` when there is nothing to change.
pub fn rewrite_dns_rules(save: &str, host_ip: Ipv4Addr) -> Option<String> {
    if !save.contains(DOCKER_EMBEDDED_DNS) {
        return None;
    }
    let mut out = String::with_capacity(save.len() + 256);
    for line in save.lines() {
        let mut l = line.replace(&format!("-d {DOCKER_EMBEDDED_DNS}"), &format!("-d {host_ip}"));
        l = l.replace("--to-source :53", &format!("--to-source {host_ip}:53"));
        out.push_str(&l);
        out.push('\n');
        if let Some(rest) = l.strip_prefix("-A OUTPUT ") {
            if rest.ends_with("-j DOCKER_OUTPUT") {
                out.push_str(&format!("-A PREROUTING {rest}\n"));
            }
        }
    }
    Some(out)
}

/// Make Docker's embedded DNS usable: rewrite the NAT rules and resolv.conf to the gateway.
pub fn fix_docker_dns(root: &GuestRoot, host: &dyn Host) -> Result<bool, EntrypointError> {
    let resolv = root.host("/etc/resolv.conf");
    let Ok(text) = std::fs::read_to_string(&resolv) else { return Ok(false) };
    if !text.contains(DOCKER_EMBEDDED_DNS) {
        return Ok(false);
    }
    let route = root.host("/proc/net/route");
    let Some(gw) = std::fs::read_to_string(&route).ok().and_then(|t| default_gateway(&t)) else { return Ok(false) };
    let save = run_ok(host, &["iptables-save"], None, Duration::from_secs(30))?;
    if let Some(rules) = rewrite_dns_rules(&String::from_utf8_lossy(&save.stdout), gw) {
        run_ok(host, &["iptables-restore"], Some(rules.as_bytes()), Duration::from_secs(30))?;
    }
    if let Some(new) = rewrite_resolv_conf(&text, gw) {
        // resolv.conf is usually a bind mount from Docker: rewrite in place, not by rename.
        std::fs::write(&resolv, new).map_err(io_err(&resolv))?;
    }
    Ok(true)
}

/// `/dev/kmsg` for the kubelet (it opens it at start to watch for OOM kills): an unprivileged
/// container has none, so it is made a link to `/dev/console`, which the engine provides.
/// Returns whether the link was made.
pub fn kmsg(root: &GuestRoot) -> Result<bool, EntrypointError> {
    let kmsg = root.host("/dev/kmsg");
    if std::fs::symlink_metadata(&kmsg).is_ok() {
        return Ok(false);
    }
    std::os::unix::fs::symlink("/dev/console", &kmsg).map_err(io_err(&kmsg))?;
    Ok(true)
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = io::Read::read_exact(&mut f, &mut b);
    }
    b
}

/// Run every fix; failures are reported and the next fix runs (systemd must still start).
pub fn prepare(root: &GuestRoot, host: &dyn Host) -> Vec<String> {
    let mut problems = Vec::new();
    let mut note = |what: &str, r: Result<(), EntrypointError>| {
        if let Err(e) = r {
            problems.push(format!("{what}: {e}"));
        }
    };
    note("rshared /", make_root_rshared(root, host));
    note("cgroup v2", cgroup_v2_delegate(root).map(|_| ()));
    note("cgroup v1", cgroup_v1_nest(root, host).map(|_| ()));
    note("machine-id", regenerate_machine_id(root, random16()).map(|_| ()));
    note("dmi", fake_dmi(root, host, random16()).map(|_| ()));
    note("iptables", select_iptables(host).map(|_| ()));
    note("dns", fix_docker_dns(root, host).map(|_| ()));
    note("kmsg", kmsg(root).map(|_| ()));
    problems
}
