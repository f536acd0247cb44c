//! What is written beside the archive: the package list's and SBOM's paths, the SBOM.

use std::path::{Path, PathBuf};

use platform::Arch;

use crate::assemble::Installed;
use crate::oci::ImageMeta;
use crate::sbom::{Component, GoBinary, Subject};

/// The image's CycloneDX 1.5 SBOM ([`crate::sbom`]): the container image as the subject, its
/// Debian packages, then our Go programs (crictl) and their modules.
pub fn sbom_cyclonedx(meta: &ImageMeta, suite: &str, packages: &[Installed], go_binaries: &[GoBinary]) -> Vec<u8> {
    let subject = Subject { kind: "container", bom_ref: meta.reference(), name: &meta.name, version: &meta.tag, revision: &meta.revision, epoch: meta.epoch };
    let binaries: Vec<crate::sbom::Binary> = go_binaries.iter().map(GoBinary::as_binary).collect();
    let modules = crate::sbom::merge(go_binaries.iter().map(|b| b.modules.as_slice()));
    let components: Vec<Component> = packages
        .iter()
        .map(|package| Component::Deb { package, role: None })
        .chain(binaries.iter().map(Component::Binary))
        .chain(modules.iter().map(Component::Go))
        .collect();
    crate::sbom::cyclonedx(&subject, suite, &components)
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
