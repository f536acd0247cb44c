//! What the container engine can do for a kic node, checked before anything is created: the
//! engine answers, its cgroup version and driver, whether it runs rootless, the privileges it
//! can grant on this host, and whether it can run the image's architecture. Each refusal is one
//! error that says what to change, as minikube's `DRV_*` advice does.
//!
//! The facts come from the engine's own `info` (`{{json .}}`: docker's `CgroupVersion`,
//! `CgroupDriver`, `Architecture`, `SecurityOptions`; podman's `host.cgroupVersion`,
//! `host.cgroupManager`, `host.arch`, `host.security.rootless`) and from the host's capability
//! bounding set; the decisions are pure functions of them, tested on their own.

use serde_json::Value;

use super::{Engine, KicError, Privileges};

/// `CAP_SYS_RESOURCE`, the capability this sandbox's bounding set lacks (docker asks for every
/// capability with `--privileged` and fails on a host without it; podman grants what it has).
const CAP_SYS_RESOURCE: u32 = 24;
/// The capabilities docker 20.10 knows (0..=40): `--privileged` asks for all of them.
const DOCKER_CAPS: u64 = (1 << 41) - 1;

/// The engine's answers that matter to a kic node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// `docker` or `podman`.
    pub program: String,
    /// 1 or 2.
    pub cgroup_version: u8,
    /// `systemd` or `cgroupfs`.
    pub cgroup_driver: String,
    /// The engine runs without root (rootless docker, podman as a user).
    pub rootless: bool,
    /// The architecture it runs containers of, as Debian/OCI name it (`amd64`, `arm64`).
    pub arch: String,
}

/// What a kic node on this engine will be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub privileges: Privileges,
    /// The host's cgroup v1 hierarchy mounted writable (`--cgroupns host`): an unprivileged
    /// container's v1 hierarchy is read-only and systemd cannot start in it.
    pub host_cgroups: bool,
}

/// A refusal, in minikube's manner: a code, what is wrong, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    #[error("DRV_NOT_HEALTHY: {program} does not answer `{program} info` ({reason}): start its daemon (docker: `systemctl start docker`, or point DOCKER_HOST at a running one) or choose another --driver")]
    NotHealthy { program: String, reason: String },
    #[error("DRV_UNSUPPORTED_CGROUP: {program} reports cgroup version {found:?}: a kic node needs cgroup v1 or v2")]
    CgroupVersion { program: String, found: String },
    #[error("DRV_UNSUPPORTED_CGROUP_DRIVER: {program} uses the cgroup driver {driver:?}: use systemd or cgroupfs (docker: `exec-opts: [\"native.cgroupdriver=systemd\"]` in daemon.json; podman: `cgroup_manager` in containers.conf)")]
    CgroupDriver { program: String, driver: String },
    #[error("DRV_ROOTLESS_CGROUP_V1: {program} runs rootless on a cgroup v1 host: a rootless kic node needs cgroup v2 with delegated controllers (boot with systemd.unified_cgroup_hierarchy=1), or run {program} as root")]
    RootlessCgroupV1 { program: String },
    #[error("DRV_NEEDS_ROOTLESS: {program} runs rootless: start with --rootless (minikube's flag) so the node is made for a rootless engine")]
    NeedsRootlessFlag { program: String },
    #[error("DRV_NOT_ROOTLESS: --rootless was given but {program} runs as root: drop --rootless, or run a rootless {program} (as an unprivileged user)")]
    NotRootless { program: String },
    #[error("DRV_NO_PRIVILEGES: {program} runs rootless and this host's capability bounding set lacks CAP_SYS_RESOURCE: a rootless engine cannot grant what the host does not have; run the node as root")]
    NoPrivileges { program: String },
    #[error("DRV_ROOTLESS_AS_ROOT: --rootless runs the engine as an unprivileged user, and minikube-node runs as root: run it as that user (with subordinate ids in /etc/subuid and /etc/subgid)")]
    RootlessAsRoot,
    #[error("DRV_ROOTLESS_NO_SUBUID: user {user} has no subordinate id range in {file}: add one (`usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`)")]
    NoSubordinateIds { user: String, file: String },
    #[error("DRV_ROOTLESS_NO_CGROUP_V2: this host mounts cgroup v1 at /sys/fs/cgroup: a rootless node needs cgroup v2 (boot with systemd.unified_cgroup_hierarchy=1)")]
    NoCgroupV2,
    #[error("DRV_ROOTLESS_NOT_DELEGATED: the cgroup controllers {missing} are not delegated to user {user} ({path} has {have:?}): add `Delegate=cpu cpuset io memory pids` to user@.service (a drop-in in /etc/systemd/system/user@.service.d/) and log in again")]
    NotDelegated { user: String, missing: String, path: String, have: String },
    #[error("DRV_UNSUPPORTED_ARCH: {program} runs {engine} containers but the image {image} has only {offered}: build it for {engine} (`cargo xtask kicbase --arch {engine}`) or use an engine on a matching host")]
    Arch { program: String, engine: String, image: String, offered: String },
}

impl EngineInfo {
    /// Read from `engine info --format {{json .}}`.
    pub fn read(engine: &Engine) -> Result<EngineInfo, PreflightError> {
        let out = engine
            .run(&["info".into(), "--format".into(), "{{json .}}".into()])
            .map_err(|e: KicError| PreflightError::NotHealthy { program: engine.program.clone(), reason: e.to_string() })?;
        EngineInfo::parse(&engine.program, engine.is_docker(), &out)
    }

    /// Parse `info`'s JSON (docker's or podman's shape).
    pub fn parse(program: &str, docker: bool, json: &str) -> Result<EngineInfo, PreflightError> {
        let v: Value = serde_json::from_str(json.trim())
            .map_err(|e| PreflightError::NotHealthy { program: program.to_string(), reason: format!("its info is not JSON: {e}") })?;
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let (version, driver, rootless, arch) = if docker {
            let rootless = v["SecurityOptions"].as_array().is_some_and(|o| o.iter().any(|x| x.as_str().is_some_and(|x| x.contains("name=rootless"))));
            (s(&v["CgroupVersion"]), s(&v["CgroupDriver"]), rootless, s(&v["Architecture"]))
        } else {
            let h = &v["host"];
            (s(&h["cgroupVersion"]), s(&h["cgroupManager"]), h["security"]["rootless"].as_bool().unwrap_or(false), s(&h["arch"]))
        };
        let cgroup_version = match version.trim_start_matches('v') {
            "1" => 1,
            "2" => 2,
            _ => return Err(PreflightError::CgroupVersion { program: program.to_string(), found: version }),
        };
        let arch = match arch.as_str() {
            "x86_64" => "amd64".to_string(),
            "aarch64" => "arm64".to_string(),
            other => other.to_string(),
        };
        Ok(EngineInfo { program: program.to_string(), cgroup_version, cgroup_driver: driver, rootless, arch })
    }

    fn is_docker(&self) -> bool {
        self.program.ends_with("docker")
    }
}

/// The host's capability bounding set (`CapBnd` of /proc/self/status); every bit when it cannot
/// be read.
pub fn host_bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapBnd:").and_then(|v| u64::from_str_radix(v.trim(), 16).ok())))
        .unwrap_or(u64::MAX)
}

/// Check the engine for a kic node and decide what the node is given: `--privileged` as
/// minikube, unless the engine is docker and the host's bounding set lacks a capability docker's
/// `--privileged` asks for; then every capability the host has, with a writable cgroup hierarchy
/// on cgroup v1. `rootless` is the `--rootless` flag.
pub fn check(info: &EngineInfo, bounding_set: u64, rootless: bool) -> Result<Grant, PreflightError> {
    let program = || info.program.clone();
    if !matches!(info.cgroup_driver.as_str(), "systemd" | "cgroupfs") {
        return Err(PreflightError::CgroupDriver { program: program(), driver: info.cgroup_driver.clone() });
    }
    match (info.rootless, rootless) {
        (true, false) => return Err(PreflightError::NeedsRootlessFlag { program: program() }),
        (false, true) => return Err(PreflightError::NotRootless { program: program() }),
        _ => {}
    }
    if info.rootless && info.cgroup_version == 1 {
        return Err(PreflightError::RootlessCgroupV1 { program: program() });
    }
    let lacks_caps = bounding_set & DOCKER_CAPS != DOCKER_CAPS;
    if info.rootless && bounding_set & (1 << CAP_SYS_RESOURCE) == 0 {
        return Err(PreflightError::NoPrivileges { program: program() });
    }
    if info.is_docker() && lacks_caps {
        return Ok(Grant { privileges: Privileges::AllCaps, host_cgroups: info.cgroup_version == 1 });
    }
    Ok(Grant { privileges: Privileges::Privileged, host_cgroups: false })
}

/// Refuse an image that offers no variant of the engine's architecture (`offered`: the image's
/// architectures; empty when it is a reference the engine resolves itself).
pub fn check_arch(info: &EngineInfo, image: &str, offered: &[String]) -> Result<(), PreflightError> {
    if offered.is_empty() || offered.contains(&info.arch) {
        return Ok(());
    }
    Err(PreflightError::Arch { program: info.program.clone(), engine: info.arch.clone(), image: image.to_string(), offered: offered.join(", ") })
}

/// What a rootless node needs of the host, as read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootlessHost {
    pub uid: u32,
    pub user: String,
    /// `/etc/subuid` and `/etc/subgid`, as (path, text).
    pub subids: Vec<(String, String)>,
    /// `/sys/fs/cgroup` is a cgroup v2 mount.
    pub cgroup_v2: bool,
    /// The user's delegated cgroup (`/sys/fs/cgroup/user.slice/user-UID.slice/user@UID.service`)
    /// and its `cgroup.controllers`.
    pub delegated: (String, String),
}

impl RootlessHost {
    /// Read from this host for the current user.
    pub fn read() -> RootlessHost {
        let uid = nix::unistd::getuid().as_raw();
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map_or_else(|| uid.to_string(), |u| u.name);
        let subids = ["/etc/subuid", "/etc/subgid"].map(|f| (f.to_string(), std::fs::read_to_string(f).unwrap_or_default())).to_vec();
        let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let path = format!("/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers");
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        RootlessHost { uid, user, subids, cgroup_v2, delegated: (path, have.trim().to_string()) }
    }
}

/// The controllers a kic node's systemd and kubelet need delegated.
const NEEDED_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// Check that a rootless node can run here, before the engine is asked anything: not root,
/// subordinate ids for the user, cgroup v2 with the controllers delegated. (The unprivileged port
/// start does not matter: every port a node publishes is an ephemeral host port.)
pub fn check_rootless_host(h: &RootlessHost) -> Result<(), PreflightError> {
    if h.uid == 0 {
        return Err(PreflightError::RootlessAsRoot);
    }
    for (file, text) in &h.subids {
        let listed = text.lines().any(|l| l.split(':').next().is_some_and(|n| n == h.user || n == h.uid.to_string()));
        if !listed {
            return Err(PreflightError::NoSubordinateIds { user: h.user.clone(), file: file.clone() });
        }
    }
    if !h.cgroup_v2 {
        return Err(PreflightError::NoCgroupV2);
    }
    let have: Vec<&str> = h.delegated.1.split_whitespace().collect();
    let missing: Vec<&str> = NEEDED_CONTROLLERS.into_iter().filter(|c| !have.contains(c)).collect();
    if !missing.is_empty() {
        return Err(PreflightError::NotDelegated {
            user: h.user.clone(),
            missing: missing.join(", "),
            path: h.delegated.0.clone(),
            have: h.delegated.1.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SANDBOX_CAPBND: u64 = 0x0000_01ff_feff_ffff;

    fn docker(version: &str, driver: &str, rootless: bool) -> String {
        let sec = if rootless { r#"["name=seccomp,profile=default","name=rootless"]"# } else { r#"["name=seccomp,profile=default"]"# };
        format!(r#"{{"CgroupVersion":"{version}","CgroupDriver":"{driver}","Architecture":"x86_64","SecurityOptions":{sec}}}"#)
    }

    #[test]
    fn both_engines_info_shapes_parse() {
        let d = EngineInfo::parse("docker", true, &docker("1", "cgroupfs", false)).unwrap();
        assert_eq!(d, EngineInfo { program: "docker".into(), cgroup_version: 1, cgroup_driver: "cgroupfs".into(), rootless: false, arch: "amd64".into() });
        let p = r#"{"host":{"cgroupVersion":"v2","cgroupManager":"systemd","arch":"arm64","security":{"rootless":true}}}"#;
        let p = EngineInfo::parse("podman", false, p).unwrap();
        assert_eq!((p.cgroup_version, p.cgroup_driver.as_str(), p.rootless, p.arch.as_str()), (2, "systemd", true, "arm64"));
        let e = EngineInfo::parse("docker", true, "Cannot connect to the Docker daemon").unwrap_err().to_string();
        assert!(e.starts_with("DRV_NOT_HEALTHY: docker") && e.contains("not JSON") && e.contains("start its daemon"), "{e}");
        let e = EngineInfo::parse("docker", true, &docker("", "cgroupfs", false)).unwrap_err().to_string();
        assert!(e.starts_with("DRV_UNSUPPORTED_CGROUP: docker reports cgroup version \"\""), "{e}");
    }

    #[test]
    fn privileged_unless_docker_lacks_a_capability() {
        let podman =
            EngineInfo::parse("podman", false, r#"{"host":{"cgroupVersion":"v1","cgroupManager":"cgroupfs","arch":"amd64","security":{"rootless":false}}}"#)
                .unwrap();
        let full = check(&podman, u64::MAX, false).unwrap();
        assert_eq!(full, Grant { privileges: Privileges::Privileged, host_cgroups: false });
        assert_eq!(check(&podman, SANDBOX_CAPBND, false).unwrap(), full, "podman grants what the host has with --privileged");
        let d1 = EngineInfo::parse("docker", true, &docker("1", "cgroupfs", false)).unwrap();
        assert_eq!(check(&d1, u64::MAX, false).unwrap(), full, "a normal host keeps --privileged, as minikube");
        assert_eq!(check(&d1, SANDBOX_CAPBND, false).unwrap(), Grant { privileges: Privileges::AllCaps, host_cgroups: true });
        let d2 = EngineInfo::parse("docker", true, &docker("2", "systemd", false)).unwrap();
        assert_eq!(
            check(&d2, SANDBOX_CAPBND, false).unwrap(),
            Grant { privileges: Privileges::AllCaps, host_cgroups: false },
            "cgroup v2 needs no host hierarchy"
        );
    }

    #[test]
    fn each_refusal_says_what_to_change() {
        let bad_driver = EngineInfo::parse("docker", true, &docker("2", "none", false)).unwrap();
        let e = check(&bad_driver, u64::MAX, false).unwrap_err().to_string();
        assert!(e.starts_with("DRV_UNSUPPORTED_CGROUP_DRIVER: docker uses the cgroup driver \"none\"") && e.contains("native.cgroupdriver=systemd"), "{e}");
        let rootless_v1 = EngineInfo::parse("docker", true, &docker("1", "cgroupfs", true)).unwrap();
        let e = check(&rootless_v1, u64::MAX, false).unwrap_err().to_string();
        assert!(e.starts_with("DRV_NEEDS_ROOTLESS") && e.contains("--rootless"), "{e}");
        let e = check(&rootless_v1, u64::MAX, true).unwrap_err().to_string();
        assert!(e.starts_with("DRV_ROOTLESS_CGROUP_V1") && e.contains("cgroup v2") && e.contains("unified_cgroup_hierarchy"), "{e}");
        let rootless_v2 =
            EngineInfo::parse("podman", false, r#"{"host":{"cgroupVersion":"v2","cgroupManager":"systemd","arch":"amd64","security":{"rootless":true}}}"#)
                .unwrap();
        assert_eq!(check(&rootless_v2, u64::MAX, true).unwrap().privileges, Privileges::Privileged);
        let e = check(&rootless_v2, SANDBOX_CAPBND, true).unwrap_err().to_string();
        assert!(e.starts_with("DRV_NO_PRIVILEGES") && e.contains("CAP_SYS_RESOURCE"), "{e}");
        let root = EngineInfo::parse("docker", true, &docker("2", "systemd", false)).unwrap();
        let e = check(&root, u64::MAX, true).unwrap_err().to_string();
        assert!(e.starts_with("DRV_NOT_ROOTLESS") && e.contains("drop --rootless"), "{e}");
    }

    #[test]
    fn an_image_without_the_engines_architecture_is_refused() {
        let info = EngineInfo::parse("docker", true, &docker("2", "systemd", false)).unwrap();
        check_arch(&info, "out/kicbase.tar", &["amd64".into(), "arm64".into()]).unwrap();
        check_arch(&info, "registry/kicbase:v1", &[]).unwrap();
        let e = check_arch(&info, "out/kicbase.tar", &["arm64".into()]).unwrap_err().to_string();
        assert!(
            e.starts_with("DRV_UNSUPPORTED_ARCH: docker runs amd64 containers but the image out/kicbase.tar has only arm64") && e.contains("--arch amd64"),
            "{e}"
        );
    }

    #[test]
    fn a_rootless_host_is_checked_first_and_each_gap_named() {
        let ok = RootlessHost {
            uid: 1000,
            user: "dev".into(),
            subids: vec![("/etc/subuid".into(), "dev:100000:65536\n".into()), ("/etc/subgid".into(), "dev:100000:65536\n".into())],
            cgroup_v2: true,
            delegated: ("/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/cgroup.controllers".into(), "cpuset cpu io memory pids".into()),
        };
        check_rootless_host(&ok).unwrap();
        let e = check_rootless_host(&RootlessHost { uid: 0, ..ok.clone() }).unwrap_err().to_string();
        assert!(e.starts_with("DRV_ROOTLESS_AS_ROOT"), "{e}");
        let no_gid = RootlessHost { subids: vec![ok.subids[0].clone(), ("/etc/subgid".into(), "other:100000:65536\n".into())], ..ok.clone() };
        let e = check_rootless_host(&no_gid).unwrap_err().to_string();
        assert!(e.starts_with("DRV_ROOTLESS_NO_SUBUID: user dev has no subordinate id range in /etc/subgid") && e.contains("usermod"), "{e}");
        let e = check_rootless_host(&RootlessHost { cgroup_v2: false, ..ok.clone() }).unwrap_err().to_string();
        assert!(e.starts_with("DRV_ROOTLESS_NO_CGROUP_V2") && e.contains("unified_cgroup_hierarchy"), "{e}");
        let partial = RootlessHost { delegated: (ok.delegated.0.clone(), "memory pids".into()), ..ok };
        let e = check_rootless_host(&partial).unwrap_err().to_string();
        assert!(e.starts_with("DRV_ROOTLESS_NOT_DELEGATED: the cgroup controllers cpu are not delegated to user dev") && e.contains("Delegate="), "{e}");
    }
}
