//! Every artifact `cargo xtask test` built has its provenance beside it (issue 26), and it holds
//! against the artifact and the tree as they are: each subject's SHA-256, the commit, every
//! recorded file and every tool's version (what `cargo xtask verify` checks before it rebuilds).
//! The rebuild itself is `cargo xtask verify`, run by hand (README, "Provenance").

use image::provenance::{self, check, Statement};
use std::path::Path;

/// The statement beside `artifact`, checked; returns it for the artifact's own assertions.
fn checked(artifact: &Path) -> Statement {
    let prov = provenance::provenance_path(artifact);
    let s = Statement::read(&prov).unwrap_or_else(|e| panic!("{e}"));
    check::artifact(artifact, &s, &prov).unwrap_or_else(|e| panic!("{e}"));
    let now = check::Now::read(&e2e::workspace(), &s).unwrap();
    for w in check::inputs(&s, &prov, &now).unwrap_or_else(|e| panic!("{e}")) {
        eprintln!("{}: {w}", prov.display());
    }
    assert!(matches!(s.source(), provenance::Source::Git { .. }), "{}: no commit recorded", prov.display());
    s
}

fn material_names(s: &Statement) -> Vec<String> {
    s.materials().into_iter().map(|m| m.path).collect()
}

#[test]
fn the_isos_provenance_holds() {
    for (iso, spec, lock) in [(e2e::iso_with(vec![]), "iso/spec.toml", "iso/spec.lock"), (e2e::arm64_iso(), "iso/spec-arm64.toml", "iso/spec-arm64.lock")] {
        let s = checked(&iso);
        assert_eq!(s.subjects().len(), 1);
        assert_eq!(s.predicate.build_definition.external_parameters.command, "iso");
        let names = material_names(&s);
        assert!(names.iter().any(|n| n == spec) && names.iter().any(|n| n == lock), "{}: {names:?}", iso.display());
        // crictl is built into it from its pinned module, by the Go toolchain.
        assert!(names.iter().any(|n| n == "bundle/go/crictl/go.sum"), "{}: {names:?}", iso.display());
        let tools = &s.predicate.run_details.builder.version;
        assert!(tools.contains_key("mksquashfs") && tools.contains_key("go"), "{tools:?}");
    }
}

#[test]
fn kicbases_provenance_holds() {
    let s = checked(&e2e::kicbase_archive(&[]));
    assert_eq!(s.predicate.build_definition.external_parameters.command, "kicbase");
    let names = material_names(&s);
    assert!(names.iter().any(|n| n == "kicbase/spec.lock") && names.iter().any(|n| n == "bundle/go/crictl/go.sum"), "{names:?}");
}

/// The bundle: one subject per file (manifest, SBOM, every binary and image), the Go modules'
/// files as materials, the Go toolchain and the kubelet's C compiler as tools.
#[test]
fn the_kubernetes_bundles_provenance_holds() {
    let cache = e2e::kubernetes_bundle();
    let arch = platform::Arch::host().unwrap();
    let version = platform::bundle::DEFAULT_KUBERNETES_VERSION;
    let manifest_path = platform::bundle::manifest_path(&cache, arch, version);
    let s = checked(&manifest_path);
    let m: platform::bundle::BundleManifest = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let subjects: Vec<String> = s.subjects().into_iter().map(|x| x.name).collect();
    for want in [platform::bundle::MANIFEST, platform::bundle::SBOM] {
        assert!(subjects.iter().any(|n| n == want), "{want}: {subjects:?}");
    }
    for b in &m.binaries {
        assert!(subjects.contains(&b.file), "binary {}: {subjects:?}", b.file);
        // The manifest's own digest of each binary is the provenance's.
        assert_eq!(s.subject_sha256(&b.file), Some(b.sha256.as_str()), "{}", b.file);
    }
    for i in &m.images {
        assert!(subjects.contains(&i.file), "image {}: {subjects:?}", i.file);
    }
    let ext = &s.predicate.build_definition.external_parameters;
    assert_eq!(ext.command, "kubernetes");
    assert_eq!(ext.args, ["--version", version, "--arch", arch.debian()]);
    let names = material_names(&s);
    for want in ["bundle/go/kubernetes/go.mod", "bundle/go/kubernetes/go.sum", "bundle/go/etcd/go.sum", "bundle/images/kube-proxy.toml", "Cargo.lock"] {
        assert!(names.iter().any(|n| n == want), "{want}: {names:?}");
    }
    let tools = &s.predicate.run_details.builder.version;
    assert!(tools.get("go").is_some_and(|v| v.starts_with("go version go1.")), "{tools:?}");
    // Every binary is static (the kubelet too): no C compiler took part.
    assert!(!tools.keys().any(|k| k == "gcc" || k.ends_with("-gcc")), "{tools:?}");
}
