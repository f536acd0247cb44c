//! CycloneDX 1.5 JSON SBOMs of our images (the ISO, kicbase): the image as the subject, one
//! component per Debian package with version, architecture, a `pkg:deb/debian/...` purl and the
//! .deb's SHA-256. Deterministic: no serial number, the timestamp is SOURCE_DATE_EPOCH, the
//! components in the order given (name order).

use crate::assemble::Installed;
use crate::oci;

/// What the SBOM describes.
pub struct Subject<'a> {
    /// CycloneDX component type: `container` (kicbase), `operating-system` (the ISO).
    pub kind: &'a str,
    pub bom_ref: String,
    pub name: &'a str,
    pub version: &'a str,
    /// The commit it was built from.
    pub revision: &'a str,
    pub epoch: u64,
}

/// One package in the image; `role` says how it is there when it is not installed (the ISO's
/// kernel and bootloader packages: `kernel`, `bootloader`).
pub struct Component<'a> {
    pub package: &'a Installed,
    pub role: Option<&'a str>,
}

/// The package URL of a Debian package (`:` and `+` of the version percent-encoded).
pub fn purl(p: &Installed, suite: &str) -> String {
    format!("pkg:deb/debian/{}@{}?arch={}&distro=debian-{suite}", p.name, p.version.replace(':', "%3A").replace('+', "%2B"), p.arch)
}

/// The SBOM as pretty JSON with a final newline.
pub fn cyclonedx(subject: &Subject, suite: &str, components: &[Component]) -> Vec<u8> {
    let components: Vec<serde_json::Value> = components
        .iter()
        .map(|c| {
            let p = c.package;
            let purl = purl(p, suite);
            let mut properties = vec![
                serde_json::json!({"name": "debian:architecture", "value": p.arch}),
                serde_json::json!({"name": "debian:filename", "value": p.filename}),
                serde_json::json!({"name": "debian:size", "value": p.size.to_string()}),
            ];
            if let Some(role) = c.role {
                properties.push(serde_json::json!({"name": "minikube:role", "value": role}));
            }
            serde_json::json!({
                "type": "library",
                "bom-ref": purl,
                "name": p.name,
                "version": p.version,
                "purl": purl,
                "hashes": [{"alg": "SHA-256", "content": p.sha256}],
                "properties": properties,
            })
        })
        .collect();
    let doc = serde_json::json!({
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
    let mut v = serde_json::to_vec_pretty(&doc).expect("json");
    v.push(b'\n');
    v
}
