//! `go build` of the bundle's modules: one module of ours per upstream module (so minimal version
//! selection never moves one project's dependencies for another's), each pinned by its committed
//! go.mod and go.sum; `-trimpath`, upstream's tags and version stamps, the build date from
//! SOURCE_DATE_EPOCH, `CGO_ENABLED=0` for every binary (the kubelet too, see [`groups`]), Go's own toolchain
//! only (`GOTOOLCHAIN=local`), module files read-only (`-mod=readonly`).

use std::path::{Path, PathBuf};
use std::process::Command;

use platform::Arch;

use crate::{BundleError, Component, Options, DEFAULT_VERSION};

/// Our Go modules, each a directory of `bundle/go/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    Kubernetes,
    Etcd,
    Coredns,
    Crictl,
    Pause,
}

impl Module {
    pub const ALL: [Module; 5] = [Module::Kubernetes, Module::Etcd, Module::Coredns, Module::Crictl, Module::Pause];

    pub fn name(self) -> &'static str {
        match self {
            Module::Kubernetes => "kubernetes",
            Module::Etcd => "etcd",
            Module::Coredns => "coredns",
            Module::Crictl => "crictl",
            Module::Pause => "pause",
        }
    }
}

/// The directory of module `m`: the committed one, or for Kubernetes versions other than the
/// default, the one [`prepare_kubernetes`] generates in the work directory.
pub fn module_dir(o: &Options, m: Module) -> PathBuf {
    if m == Module::Kubernetes && o.release.kubernetes != DEFAULT_VERSION {
        return o.work_dir.join("go").join(format!("kubernetes-{}", o.release.kubernetes));
    }
    o.source_dir.join("go").join(m.name())
}

/// `module@version` of the upstream module a component comes from, for the manifest.
pub fn module_version(o: &Options, m: Module) -> String {
    let r = &o.release;
    match m {
        Module::Kubernetes => format!("k8s.io/kubernetes@{}", r.kubernetes),
        Module::Etcd => format!("go.etcd.io/etcd/server/v3@{}", r.etcd),
        Module::Coredns => format!("github.com/coredns/coredns@{}", r.coredns),
        Module::Crictl => format!("sigs.k8s.io/cri-tools@{}", r.crictl),
        Module::Pause => "minikube.local/bundle/pause (ours)".into(),
    }
}

/// The release's version of module `m` (`v1.34.4`, `v3.6.5`; pause's tag `3.10.1` for ours).
pub fn version(o: &Options, m: Module) -> &str {
    let r = &o.release;
    match m {
        Module::Kubernetes => &r.kubernetes,
        Module::Etcd => r.etcd,
        Module::Coredns => r.coredns,
        Module::Crictl => r.crictl,
        Module::Pause => r.pause,
    }
}

/// One `go build`: the components of one module built alike.
#[derive(Debug, Clone)]
pub struct Group {
    pub module: Module,
    pub components: Vec<Component>,
}

/// The builds, in order: Kubernetes' seven commands in one `go build` (Go builds them in
/// parallel), then etcd, CoreDNS, crictl and pause.
///
/// All static, the kubelet too. Upstream's release links the kubelet with cgo (glibc's resolver
/// and user lookups); Go's own implementations serve a node as well, and k0s ships a static
/// kubelet by default. A cgo kubelet cost a second compile of Kubernetes' whole dependency graph
/// (cgo changes the build of `net`, `os/user` and everything above them): 268 s of the bundle's
/// 964 s from empty Go caches on 2 cores.
pub fn groups() -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for c in Component::ALL {
        let module = c.module();
        match out.iter_mut().find(|g| g.module == module) {
            Some(g) => g.components.push(c),
            None => out.push(Group { module, components: vec![c] }),
        }
    }
    out.sort_by_key(|g| Module::ALL.iter().position(|m| *m == g.module));
    out
}

/// `go env GOVERSION`.
pub fn go_version() -> Result<String, BundleError> {
    let mut cmd = Command::new("go");
    cmd.args(["env", "GOVERSION"]).env("GOTOOLCHAIN", "local");
    Ok(run(&mut cmd, Path::new("."))?.trim().to_string())
}

/// The date as upstream stamps it (`2026-12-02T05:06:07Z`).
pub fn build_date(epoch: u64) -> String {
    image::oci::rfc3339(epoch)
}

/// The `-ldflags` of a group: stripped (`-s -w`, as upstream's release builds) and stamped.
pub fn ldflags(o: &Options, m: Module) -> String {
    let r = &o.release;
    let mut flags = vec!["-s".to_string(), "-w".to_string()];
    let mut x = |var: &str, val: &str| flags.push(format!("-X {var}={val}"));
    match m {
        // What hack/lib/version.sh stamps, into both version packages; kubeadm checks these.
        Module::Kubernetes => {
            for pkg in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
                x(&format!("{pkg}.gitVersion"), &r.kubernetes);
                x(&format!("{pkg}.gitMajor"), "1");
                x(&format!("{pkg}.gitMinor"), &r.minor.to_string());
                x(&format!("{pkg}.gitTreeState"), "clean");
                x(&format!("{pkg}.buildDate"), &build_date(o.epoch));
            }
        }
        Module::Crictl => x("sigs.k8s.io/cri-tools/pkg/version.Version", r.crictl),
        Module::Pause => x("main.version", r.pause),
        Module::Etcd | Module::Coredns => {}
    }
    flags.join(" ")
}

/// The C compiler for a cgo build for `arch` on this host (minikube's).
pub fn c_compiler(arch: Arch) -> &'static str {
    if Arch::host() == Some(arch) {
        "gcc"
    } else {
        match arch {
            Arch::X86_64 => "x86_64-linux-gnu-gcc",
            Arch::Aarch64 => "aarch64-linux-gnu-gcc",
        }
    }
}

/// The environment every go command of the bundle runs with.
pub(crate) fn go_command(dir: &Path, arch: Arch, cgo: bool) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(dir)
        .env("GOTOOLCHAIN", "local")
        .env("GOWORK", "off")
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .env("GOOS", "linux")
        .env("GOARCH", arch.debian())
        .env("CGO_ENABLED", if cgo { "1" } else { "0" });
    if cgo {
        cmd.env("CC", c_compiler(arch));
    }
    cmd
}

/// Build `g` into `out` (one file per component, named after it).
pub fn build(o: &Options, g: &Group, out: &Path) -> Result<(), BundleError> {
    let dir = module_dir(o, g.module);
    if g.module == Module::Kubernetes {
        prepare_kubernetes(o, &dir)?;
    }
    let mut cmd = go_command(&dir, o.arch, false);
    cmd.args(["build", "-trimpath", "-tags", "selinux,notest,grpcnotrace", "-ldflags", &ldflags(o, g.module)]);
    if g.components.len() == 1 {
        // One package: name the file (etcd's and CoreDNS's packages are module roots).
        cmd.arg("-o").arg(out.join(g.components[0].name()));
    } else {
        cmd.arg("-o").arg(format!("{}/", out.display()));
    }
    cmd.args(g.components.iter().map(|c| c.package()));
    run(&mut cmd, &dir)?;
    Ok(())
}

/// For a Kubernetes version other than the default: a module like the committed one, generated
/// in the work directory (`k8s.io/kubernetes` at that version, each of its staging modules
/// replaced by the published `v0.MINOR.PATCH`), then `go mod tidy`. A version the proxy does not
/// serve fails here, naming the module.
pub fn prepare_kubernetes(o: &Options, dir: &Path) -> Result<(), BundleError> {
    if o.release.kubernetes == DEFAULT_VERSION || dir.join("go.sum").is_file() {
        return Ok(());
    }
    let module = format!("k8s.io/kubernetes@{}", o.release.kubernetes);
    // `go mod download` of one module, outside any module (from the work directory): a version
    // the proxy does not serve fails here, before anything is written.
    std::fs::create_dir_all(&o.work_dir).map_err(BundleError::io(&o.work_dir))?;
    let mut dl = go_command(&o.work_dir, o.arch, false);
    dl.args(["mod", "download", "-json", &module]).env("GOFLAGS", "-mod=mod").env("GO111MODULE", "on");
    let json = run(&mut dl, &o.work_dir).map_err(|e| match e {
        BundleError::Command { command, stderr, .. } => BundleError::Module { module: module.clone(), command, stderr },
        other => other,
    })?;
    let gomod_path = serde_json::from_str::<serde_json::Value>(&json).ok().and_then(|v| v["GoMod"].as_str().map(PathBuf::from)).ok_or_else(|| {
        BundleError::Module { module: module.clone(), command: "go mod download -json".into(), stderr: format!("no GoMod in its answer: {json}") }
    })?;
    let upstream = std::fs::read_to_string(&gomod_path).map_err(BundleError::io(&gomod_path))?;
    let text = kubernetes_go_mod(&o.release.kubernetes, &staging_modules(&upstream));
    std::fs::create_dir_all(dir).map_err(BundleError::io(dir))?;
    let gomod = dir.join("go.mod");
    pki::atomic::write_atomic(&gomod, text.as_bytes(), 0o644).map_err(BundleError::io(&gomod))?;
    let mut tidy = go_command(dir, o.arch, false);
    tidy.args(["mod", "tidy"]).env("GOFLAGS", "-mod=mod");
    run(&mut tidy, dir)?;
    Ok(())
}

/// The staging modules an upstream `k8s.io/kubernetes` go.mod points at `./staging/...`.
pub fn staging_modules(upstream_go_mod: &str) -> Vec<String> {
    upstream_go_mod
        .lines()
        .filter_map(|l| {
            let (from, to) = l.trim().trim_start_matches("replace ").split_once("=>")?;
            to.trim().starts_with("./staging/").then(|| from.trim().to_string())
        })
        .collect()
}

/// Our wrapper module's go.mod for `version` (before `go mod tidy` fills in the requirements).
pub fn kubernetes_go_mod(version: &str, staging: &[String]) -> String {
    let published = format!("v0{}", version.trim_start_matches("v1"));
    let mut s = format!(
        "// Builds Kubernetes {version}'s commands from the published modules: k8s.io/kubernetes points its\n\
         // staging modules at ./staging, which its module zip lacks, so each is replaced here by the\n\
         // published {published}. Generated by the bundle.\n\
         module minikube.local/bundle/kubernetes\n\ngo 1.24.0\n\ngodebug default=go1.24\n\nrequire k8s.io/kubernetes {version}\n\nreplace (\n"
    );
    for m in staging {
        s.push_str(&format!("\t{m} => {m} {published}\n"));
    }
    s.push_str(")\n\n");
    for c in Component::ALL.iter().filter(|c| c.module() == Module::Kubernetes) {
        s.push_str(&format!("tool {}\n", c.package()));
    }
    s
}

/// Run `cmd`; its stdout, or an error naming the command, the directory and stderr's last lines.
pub(crate) fn run(cmd: &mut Command, dir: &Path) -> Result<String, BundleError> {
    let shown = format!("{} {}", cmd.get_program().to_string_lossy(), cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    tracing::debug!(command = %shown, dir = %dir.display(), "run");
    let out = cmd.output().map_err(|e| BundleError::Command {
        command: shown.clone(),
        dir: dir.to_path_buf(),
        status: format!("cannot start: {e}"),
        stderr: String::new(),
    })?;
    if !out.status.success() {
        // `go ... -json` reports its error on stdout.
        let stderr = if out.stderr.is_empty() { String::from_utf8_lossy(&out.stdout) } else { String::from_utf8_lossy(&out.stderr) };
        let lines: Vec<&str> = stderr.lines().collect();
        return Err(BundleError::Command {
            command: shown,
            dir: dir.to_path_buf(),
            status: out.status.to_string(),
            stderr: lines[lines.len().saturating_sub(30)..].join("\n"),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_module_builds_in_one_go_build() {
        let g = groups();
        let names: Vec<(&str, usize)> = g.iter().map(|g| (g.module.name(), g.components.len())).collect();
        assert_eq!(names, [("kubernetes", 7), ("etcd", 1), ("coredns", 1), ("crictl", 1), ("pause", 1)]);
    }

    #[test]
    fn staging_replacements_are_read_from_upstreams_go_mod() {
        let up = "module k8s.io/kubernetes\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/kubelet => ./staging/src/k8s.io/kubelet\n\tfoo => bar v1.0.0\n)\n";
        let s = staging_modules(up);
        assert_eq!(s, ["k8s.io/api", "k8s.io/kubelet"]);
        let m = kubernetes_go_mod("v1.34.3", &s);
        assert!(m.contains("\tk8s.io/api => k8s.io/api v0.34.3\n") && m.contains("require k8s.io/kubernetes v1.34.3\n"), "{m}");
        assert!(m.contains("tool k8s.io/kubernetes/cmd/kubelet\n"));
    }

    #[test]
    fn the_committed_module_replaces_every_staging_module_of_its_version() {
        let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/go/kubernetes/go.mod")).unwrap();
        assert!(committed.contains(&format!("\tk8s.io/kubernetes {DEFAULT_VERSION} ")), "{committed}");
        let published = format!("v0{}", DEFAULT_VERSION.trim_start_matches("v1"));
        for m in ["k8s.io/api", "k8s.io/apiserver", "k8s.io/kubelet", "k8s.io/cri-client"] {
            assert!(committed.contains(&format!("\t{m} => {m} {published}\n")), "{m}");
        }
    }
}
