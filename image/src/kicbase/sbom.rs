//! What is written beside the archive: the package list's and SBOM's paths, the SBOM.

use std::path::{Path, PathBuf};

use platform::Arch;

use crate::assemble::Installed;
use crate::oci::{self, ImageMeta};

/// A CycloneDX 1.5 JSON SBOM: the image as the subject, one component per Debian package with
/// version, architecture, a purl and the .deb's SHA-256. Deterministic (no serial number, the
/// timestamp is SOURCE_DATE_EPOCH).
pub fn sbom_cyclonedx(meta: &ImageMeta, suite: &str, packages: &[Installed]) -> Vec<u8> {
    let components: Vec<serde_json::Value> = packages
        .iter()
        .map(|p| {
            let purl = format!(
                "pkg:deb/debian/{}@{}?arch={}&distro=debian-{}",
                p.name,
                p.version.replace(':', "%3A").replace('+', "%2B"),
                p.arch,
                suite
            );
            serde_json::json!({
                "type": "library",
                "bom-ref": purl,
                "name": p.name,
                "version": p.version,
                "purl": purl,
                "hashes": [{"alg": "SHA-256", "content": p.sha256}],
                "properties": [
                    {"name": "debian:architecture", "value": p.arch},
                    {"name": "debian:filename", "value": p.filename},
                    {"name": "debian:size", "value": p.size.to_string()},
                ],
            })
        })
        .collect();
    let doc = serde_json::json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": oci::rfc3339(meta.epoch),
            "component": {
                "type": "container",
                "bom-ref": meta.reference(),
                "name": meta.name,
                "version": meta.tag,
                "properties": [{"name": "vcs:revision", "value": meta.revision}],
            },
        },
        "components": components,
    });
    let mut v = serde_json::to_vec_pretty(&doc).expect("json");
    v.push(b'\n');
    v
}

/// A file beside the archive `out`, for `arch`: `<stem>.<ext>` for amd64 (the default build's
/// names), `<stem>-<arch>.<ext>` for another (`kicbase-arm64.packages.txt`), whether the archive
/// holds one architecture or several.
pub fn side_file(out: &Path, arch: Arch, ext: &str) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "kicbase".into());
    let dir = out.parent().unwrap_or(Path::new("."));
    match arch {
        Arch::X86_64 => dir.join(format!("{stem}.{ext}")),
        other => dir.join(format!("{stem}-{}.{ext}", other.debian())),
    }
}

/// The package list and the SBOM of `arch` ([`side_file`]: `packages.txt`, `sbom.json`).
pub fn side_paths(out: &Path, arch: Arch) -> (PathBuf, PathBuf) {
    (side_file(out, arch, "packages.txt"), side_file(out, arch, "sbom.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_files_keep_amd64_names_and_suffix_the_others() {
        let out = Path::new("out/kicbase.tar");
        assert_eq!(side_paths(out, Arch::X86_64), (PathBuf::from("out/kicbase.packages.txt"), PathBuf::from("out/kicbase.sbom.json")));
        assert_eq!(side_file(out, Arch::Aarch64, "layers.json"), PathBuf::from("out/kicbase-arm64.layers.json"));
    }
}
