//! syft, the SBOM scanner of the outside check (`e2e/tests/outside_sbom.rs`), built from its
//! published module through a module of ours (`bundle/go/syft`: committed go.mod and go.sum pin
//! [`VERSION`] and everything it needs) into `out/tools/syft`, static and stamped with its
//! version. Skipped when `syft.json` beside it records the same content key (the module's files,
//! Go's version, the architecture, this file); Go's own caches make a rebuild mostly a link.

use std::path::{Path, PathBuf};

use platform::Arch;
use serde::{Deserialize, Serialize};

use crate::{gobuild, BundleError};

/// The syft release `bundle/go/syft/go.mod` requires.
pub const VERSION: &str = "v1.57.1";
/// Its command's package.
pub const PACKAGE: &str = "github.com/anchore/syft/cmd/syft";
/// The stamp beside the binary, written last.
pub const STAMP: &str = "syft.json";

/// What `syft.json` records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stamp {
    pub key: String,
    pub version: String,
    pub go_version: String,
    pub sha256: String,
    pub size: u64,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    pub stamp: Stamp,
    pub reused: bool,
}

/// The content key: the module's go.mod and go.sum, Go's version, the architecture, this code.
pub fn key(module_dir: &Path, arch: Arch, go_version: &str) -> Result<String, BundleError> {
    let mut text = format!("syft 1\n{VERSION}\n{}\n{go_version}\n", arch.debian());
    for name in ["go.mod", "go.sum"] {
        let f = module_dir.join(name);
        let bytes = std::fs::read(&f).map_err(BundleError::io(&f))?;
        text.push_str(&format!("{name} {}\n", pki::digest::sha256_hex(&bytes)));
    }
    text.push_str(&pki::digest::sha256_hex(include_str!("syft.rs").as_bytes()));
    Ok(pki::digest::sha256_hex(text.as_bytes()))
}

/// Build syft for the host from `source_dir/go/syft` into `out_dir/syft`, or reuse it.
pub fn build(source_dir: &Path, out_dir: &Path) -> Result<Built, BundleError> {
    let arch =
        Arch::host().ok_or_else(|| BundleError::Tool { tool: format!("syft {VERSION}"), reason: "built for the host, which must be amd64 or arm64".into() })?;
    let dir = source_dir.join("go").join("syft");
    let go_version = gobuild::go_version()?;
    let k = key(&dir, arch, &go_version)?;
    let path = out_dir.join("syft");
    let stamp_path = out_dir.join(STAMP);
    let old: Option<Stamp> = std::fs::read(&stamp_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(stamp) = old.filter(|s| s.key == k && std::fs::metadata(&path).is_ok_and(|m| m.len() == s.size)) {
        return Ok(Built { path, stamp, reused: true });
    }
    std::fs::create_dir_all(out_dir).map_err(BundleError::io(out_dir))?;
    // The stamp goes first, so a half-replaced binary is never taken for a whole one.
    match std::fs::remove_file(&stamp_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(BundleError::Io { path: stamp_path, source: e }),
        _ => {}
    }
    // Absolute: `go build -o` runs in the module's directory.
    let out_abs = std::fs::canonicalize(out_dir).map_err(BundleError::io(out_dir))?;
    let tmp = out_abs.join(format!("{}syft", pki::atomic::TEMP_PREFIX));
    let mut cmd = gobuild::go_command(&dir, arch, false);
    let ldflags = format!("-s -w -X main.version={VERSION}");
    cmd.args(["build", "-trimpath", "-ldflags", &ldflags, "-o"]).arg(&tmp).arg(PACKAGE);
    let built = gobuild::run(&mut cmd, &dir).and_then(|_| {
        let (sha256, size) = pki::digest::sha256_file(&tmp).map_err(BundleError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(BundleError::io(&path))?;
        Ok((sha256, size))
    });
    let (sha256, size) = built.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    let stamp = Stamp { key: k, version: VERSION.into(), go_version, sha256, size };
    let json = serde_json::to_vec_pretty(&stamp).expect("the stamp serializes");
    pki::atomic::write_atomic(&stamp_path, &json, 0o644).map_err(BundleError::io(&stamp_path))?;
    Ok(Built { path, stamp, reused: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_module_requires_the_pinned_version() {
        let m = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/go/syft/go.mod")).unwrap();
        assert!(m.contains(&format!("\tgithub.com/anchore/syft {VERSION} ")), "{m}");
        assert!(m.contains(&format!("tool {PACKAGE}\n")), "{m}");
    }
}
