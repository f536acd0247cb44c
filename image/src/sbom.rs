//! CycloneDX 1.5 JSON SBOMs of our artifacts (the ISO, kicbase, the Kubernetes bundle): the
//! artifact as the subject; one component per Debian package with version, architecture, a
//! `pkg:deb/debian/...` purl and the .deb's SHA-256; one per Go module compiled into a binary
//! (`pkg:golang/...`, its `go.sum` hash as a property), and one per binary with its SHA-256, the
//! `dependencies` graph saying which modules each binary holds. Deterministic: no serial number,
//! the timestamp is SOURCE_DATE_EPOCH, the components in the order given.

use serde_json::{json, Value};

use crate::assemble::Installed;
pub use crate::gobin::{GoBinary, GoModule};
use crate::oci;

/// What the SBOM describes.
pub struct Subject<'a> {
    /// CycloneDX component type: `container` (kicbase), `operating-system` (the ISO),
    /// `application` (the bundle).
    pub kind: &'a str,
    pub bom_ref: String,
    pub name: &'a str,
    pub version: &'a str,
    /// The commit it was built from.
    pub revision: &'a str,
    pub epoch: u64,
}

/// A file of the artifact (a binary) and the Go modules built into it.
pub struct Binary<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub sha256: &'a str,
    /// Where it lies in the artifact (`linux/amd64/v1.34.4/kubelet`).
    pub file: &'a str,
    pub modules: &'a [GoModule],
}

impl GoBinary {
    /// As an SBOM binary (its file without the leading `/`).
    pub fn as_binary(&self) -> Binary<'_> {
        Binary { name: &self.name, version: &self.version, sha256: &self.sha256, file: self.path.trim_start_matches('/'), modules: &self.modules }
    }
}

/// The modules of several binaries, once each by path and version (one component per package
/// URL): where binaries differ only in how a module came in (replaced in one, required in
/// another), the first binary's record is kept.
pub fn merge<'a>(per_binary: impl Iterator<Item = &'a [GoModule]>) -> Vec<GoModule> {
    let mut out: std::collections::BTreeMap<(String, String), GoModule> = std::collections::BTreeMap::new();
    for m in per_binary.flatten() {
        out.entry((m.path.clone(), m.version.clone())).or_insert_with(|| m.clone());
    }
    out.into_values().collect()
}

/// One component of the SBOM.
pub enum Component<'a> {
    /// A Debian package; `role` says how it is there when it is not installed (the ISO's kernel
    /// and bootloader packages: `kernel`, `bootloader`, `initrd`).
    Deb { package: &'a Installed, role: Option<&'a str> },
    /// A Go module, once however many binaries hold it.
    Go(&'a GoModule),
    /// A binary; its modules must be given as [`Component::Go`] too (the graph refers to them).
    Binary(&'a Binary<'a>),
}

/// The package URL of a Debian package (`:` and `+` of the version percent-encoded).
pub fn purl(p: &Installed, suite: &str) -> String {
    format!("pkg:deb/debian/{}@{}?arch={}&distro=debian-{suite}", p.name, p.version.replace(':', "%3A").replace('+', "%2B"), p.arch)
}

/// The package URL of a Go module (`pkg:golang/stdlib@1.26.8` for the standard library; no
/// version for a `(devel)` main module).
pub fn go_purl(m: &GoModule) -> String {
    match m.version.as_str() {
        "(devel)" | "" => format!("pkg:golang/{}", m.path),
        v if m.path == "stdlib" => format!("pkg:golang/stdlib@{}", v.trim_start_matches("go")),
        v => format!("pkg:golang/{}@{}", m.path, v.replace('+', "%2B")),
    }
}

fn binary_ref(b: &Binary) -> String {
    format!("file:{}@{}", b.file, b.sha256)
}

fn deb_json(package: &Installed, role: Option<&str>, suite: &str) -> Value {
    let purl = purl(package, suite);
    let mut properties = vec![
        json!({"name": "debian:architecture", "value": package.arch}),
        json!({"name": "debian:filename", "value": package.filename}),
        json!({"name": "debian:size", "value": package.size.to_string()}),
    ];
    if let Some(role) = role {
        properties.push(json!({"name": "minikube:role", "value": role}));
    }
    json!({
        "type": "library",
        "bom-ref": purl,
        "name": package.name,
        "version": package.version,
        "purl": purl,
        "hashes": [{"alg": "SHA-256", "content": package.sha256}],
        "properties": properties,
    })
}

fn go_json(m: &GoModule) -> Value {
    let purl = go_purl(m);
    let mut properties = Vec::new();
    if let Some(sum) = &m.sum {
        properties.push(json!({"name": "golang:go.sum", "value": sum}));
    }
    if let Some(r) = &m.replaces {
        properties.push(json!({"name": "golang:replaces", "value": r}));
    }
    let mut v = json!({"type": "library", "bom-ref": purl, "name": m.path, "version": m.version, "purl": purl});
    if !properties.is_empty() {
        v["properties"] = properties.into();
    }
    v
}

fn binary_json(b: &Binary) -> Value {
    json!({
        "type": "application",
        "bom-ref": binary_ref(b),
        "name": b.name,
        "version": b.version,
        "hashes": [{"alg": "SHA-256", "content": b.sha256}],
        "properties": [{"name": "minikube:file", "value": b.file}],
    })
}

/// The SBOM as pretty JSON with a final newline; `suite` is the Debian packages' suite.
pub fn cyclonedx(subject: &Subject, suite: &str, components: &[Component]) -> Vec<u8> {
    let mut dependencies = Vec::new();
    let components: Vec<Value> = components
        .iter()
        .map(|c| match c {
            Component::Deb { package, role } => deb_json(package, *role, suite),
            Component::Go(m) => go_json(m),
            Component::Binary(b) => {
                let on: Vec<String> = b.modules.iter().map(go_purl).collect();
                dependencies.push(json!({"ref": binary_ref(b), "dependsOn": on}));
                binary_json(b)
            }
        })
        .collect();
    let mut doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": oci::rfc3339(subject.epoch),
            "component": {
                "type": subject.kind,
                "bom-ref": subject.bom_ref,
                "name": subject.name,
                "version": subject.version,
                "properties": [{"name": "vcs:revision", "value": subject.revision}],
            },
        },
        "components": components,
    });
    if !dependencies.is_empty() {
        doc["dependencies"] = dependencies.into();
    }
    let mut v = serde_json::to_vec_pretty(&doc).expect("json");
    v.push(b'\n');
    v
}
