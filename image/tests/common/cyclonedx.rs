//! The CycloneDX 1.5 JSON schema validator, on the schema vendored in image/tests/data/cyclonedx/
//! with the two schemas it refers to. Shared by image's SBOM test and e2e's outside check
//! (`#[path]`), so the path is from image's directory whichever crate includes it.

use serde_json::Value;
use std::path::Path;

const BASE: &str = "http://cyclonedx.org/schema/";

fn schema_file(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../image/tests/data/cyclonedx").join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// The CycloneDX 1.5 validator; its references resolve to the vendored files only.
pub fn validator() -> jsonschema::Validator {
    let mut reg = jsonschema::Registry::new();
    for name in ["spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json"] {
        reg = reg.add(format!("{BASE}{name}"), schema_file(name)).expect("a valid URI");
    }
    let reg = reg.prepare().expect("the referenced schemas load");
    jsonschema::options().with_registry(&reg).build(&schema_file("bom-1.5.SNAPSHOT.schema.json")).expect("the CycloneDX 1.5 schema compiles")
}

/// Every schema error of `doc`, each with its JSON pointer.
pub fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc).map(|e| format!("{}: {e}", e.instance_path())).collect()
}
