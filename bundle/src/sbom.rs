//! The bundle's SBOM (`sbom.json` beside `bundle.json`), written with [`image::sbom`]: each
//! binary with its SHA-256, the Go modules compiled into it as its build info records them
//! (`go version -m -json`: the standard library, the main module, every dependency after
//! `replace`), and kube-proxy's Debian packages.

use std::collections::BTreeSet;
use std::path::Path;

use image::assemble::Installed;
use image::sbom::{self, merge, Binary, GoModule, Subject};
use platform::bundle::BundleBinary;
use serde::Deserialize;

use crate::{gobuild, BundleError, Component, Options};

/// A module line of the build info.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Module {
    pub path: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub sum: Option<String>,
    #[serde(default)]
    pub replace: Option<Box<Module>>,
}

/// What `go version -m -json` reports of a binary.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BuildInfo {
    pub go_version: String,
    /// The main package (`k8s.io/kubernetes/cmd/kubelet`).
    pub path: String,
    pub main: Module,
    #[serde(default)]
    pub deps: Vec<Module>,
}

impl BuildInfo {
    /// Parse `go version -m -json`'s output; `binary` names it in the error.
    pub fn parse(json: &str, binary: &Path) -> Result<BuildInfo, BundleError> {
        serde_json::from_str(json).map_err(|e| BundleError::BuildInfo { binary: binary.to_path_buf(), reason: e.to_string() })
    }

    /// The modules compiled in: the standard library, the main module, each dependency (the
    /// replacement where there is one), sorted.
    pub fn modules(&self) -> Vec<GoModule> {
        let stdlib = GoModule { path: "stdlib".into(), version: self.go_version.clone(), sum: None, replaces: None };
        let one = |m: &Module| match &m.replace {
            Some(r) => GoModule { path: r.path.clone(), version: r.version.clone(), sum: r.sum.clone(), replaces: Some(format!("{} {}", m.path, m.version)) },
            None => GoModule { path: m.path.clone(), version: m.version.clone(), sum: m.sum.clone(), replaces: None },
        };
        let mut out: BTreeSet<GoModule> = self.deps.iter().map(one).collect();
        out.insert(one(&self.main));
        out.insert(stdlib);
        out.into_iter().collect()
    }
}

/// The build info of `binary`, read by the Go toolchain.
pub fn build_info(binary: &Path, arch: platform::Arch) -> Result<BuildInfo, BundleError> {
    let dir = binary.parent().unwrap_or(Path::new("."));
    let mut cmd = gobuild::go_command(dir, arch, false);
    cmd.arg("version").arg("-m").arg("-json").arg(binary);
    let json = gobuild::run(&mut cmd, dir)?;
    BuildInfo::parse(&json, binary)
}

/// The SBOM of the binaries built into `staging` (each `staging/NAME`) and kube-proxy's
/// packages, as JSON.
pub fn document(o: &Options, staging: &Path, binaries: &[BundleBinary], packages: &[Installed], suite: &str) -> Result<Vec<u8>, BundleError> {
    let mut per_binary = Vec::new();
    for b in binaries {
        let info = build_info(&staging.join(&b.name), o.arch)?;
        // Where it lies under the cache (crictl's file is `../cri-tools/VERSION/crictl`).
        let file = match b.file.strip_prefix("../") {
            Some(rest) => format!("linux/{}/{rest}", o.arch.debian()),
            None => format!("linux/{}/{}/{}", o.arch.debian(), o.release.kubernetes, b.file),
        };
        per_binary.push((b, file, info.modules()));
    }
    let modules = merge(per_binary.iter().map(|(_, _, m)| m.as_slice()));
    // A binary's version is its module's in the release (pause: its tag).
    let version = |b: &BundleBinary| {
        let module = Component::ALL.iter().find(|c| c.name() == b.name).map_or(gobuild::Module::Kubernetes, |c| c.module());
        gobuild::version(o, module)
    };
    let bins: Vec<Binary> =
        per_binary.iter().map(|(b, file, modules)| Binary { name: &b.name, version: version(b), sha256: &b.sha256, file: file.as_str(), modules }).collect();
    let components: Vec<sbom::Component> = bins
        .iter()
        .map(sbom::Component::Binary)
        .chain(modules.iter().map(sbom::Component::Go))
        .chain(packages.iter().map(|package| sbom::Component::Deb { package, role: None }))
        .collect();
    let subject = Subject {
        kind: "application",
        bom_ref: format!("minikube-node-bundle@{}", o.release.kubernetes),
        name: "minikube-node-bundle",
        version: &o.release.kubernetes,
        revision: &o.commit,
        epoch: o.epoch,
    };
    Ok(image::sbom::cyclonedx(&subject, suite, &components))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_gives_replacements_main_and_stdlib() {
        let json = r#"{"GoVersion":"go1.26.8","Path":"k8s.io/kubernetes/cmd/kubelet",
            "Main":{"Path":"k8s.io/kubernetes","Version":"v1.34.4","Sum":"h1:Yy6="},
            "Deps":[{"Path":"k8s.io/api","Version":"v0.0.0","Replace":{"Path":"k8s.io/api","Version":"v0.34.4","Sum":"h1:Z5h="}},
                    {"Path":"cel.dev/expr","Version":"v0.24.0","Sum":"h1:56O="}]}"#;
        let m = BuildInfo::parse(json, Path::new("kubelet")).unwrap().modules();
        let got: Vec<(&str, &str, Option<&str>)> = m.iter().map(|m| (m.path.as_str(), m.version.as_str(), m.replaces.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("cel.dev/expr", "v0.24.0", None),
                ("k8s.io/api", "v0.34.4", Some("k8s.io/api v0.0.0")),
                ("k8s.io/kubernetes", "v1.34.4", None),
                ("stdlib", "go1.26.8", None)
            ]
        );
        // crictl requires k8s.io/api v0.34.4 directly: one module, the first record kept.
        let plain = GoModule { path: "k8s.io/api".into(), version: "v0.34.4".into(), sum: Some("h1:Z5h=".into()), replaces: None };
        let merged = merge([m.as_slice(), std::slice::from_ref(&plain)].into_iter());
        assert_eq!(merged.len(), 4);
        assert_eq!(merged.iter().filter(|g| g.path == "k8s.io/api").count(), 1);
        let e = BuildInfo::parse("kubelet: not a Go binary", Path::new("/x/kubelet")).unwrap_err().to_string();
        assert!(e.contains("/x/kubelet") && e.contains("build info"), "{e}");
    }
}
