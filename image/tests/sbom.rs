//! The SBOMs (ISO and kicbase, `image::sbom`) against the CycloneDX 1.5 JSON schema, vendored
//! in tests/data/cyclonedx/ with the two schemas it refers to.

use image::assemble::Installed;
use image::sbom::{cyclonedx, purl, Component, Subject};
use serde_json::Value;
use std::path::Path;

const BASE: &str = "http://cyclonedx.org/schema/";

fn schema_file(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cyclonedx").join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// The CycloneDX 1.5 validator; its references resolve to the vendored files only.
fn validator() -> jsonschema::Validator {
    let mut reg = jsonschema::Registry::new();
    for name in ["spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json"] {
        reg = reg.add(format!("{BASE}{name}"), schema_file(name)).expect("a valid URI");
    }
    let reg = reg.prepare().expect("the referenced schemas load");
    jsonschema::options().with_registry(&reg).build(&schema_file("bom-1.5.SNAPSHOT.schema.json")).expect("the CycloneDX 1.5 schema compiles")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

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
        Component { package: &libc, role: None },
        Component { package: &tz, role: None },
        Component { package: &epochful, role: None },
        Component { package: &kernel, role: Some("kernel") },
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
    let kic: Value = serde_json::from_slice(&image::kicbase::sbom_cyclonedx(&meta, "bookworm", &[libc.clone(), tz.clone()])).unwrap();
    assert_eq!(errors(&v, &kic), Vec::<String>::new(), "{kic:#}");
    assert_eq!(kic["metadata"]["component"]["type"], "container");

    // The validator does refuse what the schema forbids.
    let mut bad = iso.clone();
    bad["metadata"]["component"]["type"] = "disk-image".into();
    bad["components"][0]["hashes"][0]["alg"] = "SHA-257".into();
    let e = errors(&v, &bad);
    assert!(e.iter().any(|m| m.starts_with("/metadata/component/type")) && e.iter().any(|m| m.starts_with("/components/0/hashes/0/alg")), "{e:?}");
}
