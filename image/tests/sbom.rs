//! The SBOMs (ISO, kicbase and the Kubernetes bundle, `image::sbom`) against the CycloneDX 1.5
//! JSON schema, vendored in tests/data/cyclonedx/ with the two schemas it refers to.

mod common;

use common::cyclonedx::{errors, validator};
use image::assemble::Installed;
use image::sbom::{cyclonedx, go_purl, purl, Binary, Component, GoModule, Subject};
use serde_json::Value;

fn pkg(name: &str, version: &str, arch: &str) -> Installed {
    Installed {
        name: name.into(),
        version: version.into(),
        arch: arch.into(),
        sha256: pki::digest::sha256_hex(name.as_bytes()),
        size: 1234,
        filename: format!("pool/main/x/{name}/{name}_{version}_{arch}.deb"),
    }
}

#[test]
fn iso_and_kicbase_sboms_are_valid_cyclonedx_1_5() {
    let v = validator();
    let libc = pkg("libc6", "2.36-9+deb12u10", "amd64");
    let tz = pkg("tzdata", "2025b-0+deb12u1", "all");
    let epochful = pkg("systemd", "1:252.38-1~deb12u1", "amd64");
    let kernel = pkg("linux-image-6.1.0-57-amd64", "6.1.158-1", "amd64");
    let components = [
        Component::Deb { package: &libc, role: None },
        Component::Deb { package: &tz, role: None },
        Component::Deb { package: &epochful, role: None },
        Component::Deb { package: &kernel, role: Some("kernel") },
    ];
    let subject = Subject {
        kind: "operating-system",
        bom_ref: "minikube@0.1.0".into(),
        name: "minikube",
        version: "0.1.0",
        revision: "0123456789ab",
        epoch: 1_700_000_000,
    };
    let iso: Value = serde_json::from_slice(&cyclonedx(&subject, "bookworm", &components)).unwrap();
    assert_eq!(errors(&v, &iso), Vec::<String>::new(), "{iso:#}");
    assert_eq!(iso["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(iso["components"][2]["purl"], "pkg:deb/debian/systemd@1%3A252.38-1~deb12u1?arch=amd64&distro=debian-bookworm");
    assert_eq!(iso["components"][3]["properties"][3], serde_json::json!({"name": "minikube:role", "value": "kernel"}));
    assert_eq!(purl(&tz, "bookworm"), "pkg:deb/debian/tzdata@2025b-0%2Bdeb12u1?arch=all&distro=debian-bookworm");

    let meta = image::oci::ImageMeta {
        name: "gcr.io/k8s-minikube/kicbase".into(),
        tag: "v0.0.50".into(),
        version: "v0.0.50".into(),
        revision: "0123456789ab".into(),
        source: "https://example.invalid/src".into(),
        epoch: 1_700_000_000,
    };
    let kic: Value = serde_json::from_slice(&image::kicbase::sbom_cyclonedx(&meta, "bookworm", &[libc.clone(), tz.clone()], &[])).unwrap();
    assert_eq!(errors(&v, &kic), Vec::<String>::new(), "{kic:#}");
    assert_eq!(kic["metadata"]["component"]["type"], "container");

    // The validator does refuse what the schema forbids.
    let mut bad = iso.clone();
    bad["metadata"]["component"]["type"] = "disk-image".into();
    bad["components"][0]["hashes"][0]["alg"] = "SHA-257".into();
    let e = errors(&v, &bad);
    assert!(e.iter().any(|m| m.starts_with("/metadata/component/type")) && e.iter().any(|m| m.starts_with("/components/0/hashes/0/alg")), "{e:?}");
}

#[test]
fn a_bundle_sbom_with_binaries_and_go_modules_is_valid_cyclonedx_1_5() {
    let v = validator();
    let go = |path: &str, version: &str, replaces: Option<&str>| GoModule {
        path: path.into(),
        version: version.into(),
        sum: Some("h1:Z5hsoQcZ2yBjelb9j5JKzCVo9qv9XLkVm5llnqS4h+0=".into()),
        replaces: replaces.map(Into::into),
    };
    let modules = [
        go("k8s.io/api", "v0.34.4", Some("k8s.io/api v0.0.0")),
        go("k8s.io/kubernetes", "v1.34.4", None),
        GoModule { path: "stdlib".into(), version: "go1.26.8".into(), sum: None, replaces: None },
        GoModule { path: "minikube.local/bundle/pause".into(), version: "(devel)".into(), sum: None, replaces: None },
    ];
    let sha = pki::digest::sha256_hex(b"kubelet");
    let kubelet = Binary { name: "kubelet", version: "v1.34.4", sha256: &sha, file: "linux/amd64/v1.34.4/kubelet", modules: &modules[..3] };
    let proxy_pkg = pkg("iptables", "1.8.9-2", "amd64");
    let mut components = vec![Component::Binary(&kubelet)];
    components.extend(modules.iter().map(Component::Go));
    components.push(Component::Deb { package: &proxy_pkg, role: None });
    let subject = Subject {
        kind: "application",
        bom_ref: "minikube-node-bundle@v1.34.4".into(),
        name: "minikube-node-bundle",
        version: "v1.34.4",
        revision: "0123456789ab",
        epoch: 1_700_000_000,
    };
    let doc: Value = serde_json::from_slice(&cyclonedx(&subject, "bookworm", &components)).unwrap();
    assert_eq!(errors(&v, &doc), Vec::<String>::new(), "{doc:#}");
    assert_eq!(doc["components"][1]["purl"], "pkg:golang/k8s.io/api@v0.34.4");
    assert_eq!(doc["components"][1]["properties"][1], serde_json::json!({"name": "golang:replaces", "value": "k8s.io/api v0.0.0"}));
    assert_eq!(go_purl(&modules[2]), "pkg:golang/stdlib@1.26.8");
    assert_eq!(go_purl(&modules[3]), "pkg:golang/minikube.local/bundle/pause");
    // The graph: the binary depends on exactly its modules, each a component of the document.
    let deps = &doc["dependencies"][0];
    assert_eq!(deps["ref"], doc["components"][0]["bom-ref"]);
    let on: Vec<&str> = deps["dependsOn"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert_eq!(on, ["pkg:golang/k8s.io/api@v0.34.4", "pkg:golang/k8s.io/kubernetes@v1.34.4", "pkg:golang/stdlib@1.26.8"]);
    let refs: Vec<&str> = doc["components"].as_array().unwrap().iter().map(|c| c["bom-ref"].as_str().unwrap()).collect();
    assert!(on.iter().all(|d| refs.contains(d)), "{refs:?}");

    // The schema refuses a graph entry without its ref.
    let mut bad = doc.clone();
    bad["dependencies"][0]["ref"] = serde_json::Value::Null;
    assert!(!errors(&v, &bad).is_empty());
}
