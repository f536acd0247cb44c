//! What a provenance records, read from the tree and the machine as they are: the git commit and
//! whether the tree is dirty, the spec's files and their SHA-256, the versions of the tools.

use super::{Material, ProvenanceError, Source};
use crate::spec::Spec;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The tools whose output is in every artifact: the compiler of the agent and `/init`.
pub const RUST_TOOLS: [&str; 2] = ["rustc", "cargo"];
/// Host tools whose output is in the ISO: the package layer (mksquashfs), the module indexes
/// (depmod, from kmod) and the EFI image (grub-mkimage).
pub const ISO_TOOLS: [&str; 3] = ["mksquashfs", "depmod", "grub-mkimage"];
/// The linker of the arm64 guest binaries (cross-built on amd64).
pub const ARM64_LINKER: &str = "aarch64-linux-gnu-gcc";
/// The Go toolchain, whose output is the Kubernetes bundle's binaries.
pub const GO: &str = "go";

/// `git` in `dir`: its trimmed standard output, or an error naming the command and its stderr.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let shown = format!("git {}", args.join(" "));
    let o = Command::new("git").args(args).current_dir(dir).output().map_err(|e| format!("run `{shown}`: {e}"))?;
    if !o.status.success() {
        return Err(format!("`{shown}` failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The commit checked out in `dir` and whether anything differs from it (a change, staged or
/// not, or a file git does not ignore and does not track). Outside a git checkout:
/// [`Source::Unknown`]; git failing in a checkout is an error.
pub fn source(dir: &Path) -> Result<Source, ProvenanceError> {
    match git(dir, &["rev-parse", "--is-inside-work-tree"]) {
        Ok(s) if s == "true" => {}
        Ok(_) => return Ok(Source::Unknown),
        Err(e) if e.contains("not a git repository") => return Ok(Source::Unknown),
        Err(e) => return Err(ProvenanceError::Collect(e)),
    }
    let commit = git(dir, &["rev-parse", "HEAD"]).map_err(ProvenanceError::Collect)?;
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ProvenanceError::Collect(format!("`git rev-parse HEAD` printed {commit:?}, not a commit id")));
    }
    let status = git(dir, &["status", "--porcelain"]).map_err(ProvenanceError::Collect)?;
    Ok(Source::Git { commit, dirty: !status.is_empty() })
}

/// `path` without `.` and with each `dir/..` removed (no file system access): `kicbase/../iso/base.toml`
/// is `iso/base.toml`.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.iter().collect()
}

/// The files that choose what a spec builds: the spec, its bases and its lock (when it has
/// one), and Cargo.lock (the agent's and `/init`'s crates), as paths relative to `root` (the
/// workspace) where they are under it.
pub fn spec_files(spec: &Spec, root: &Path) -> Vec<PathBuf> {
    let mut files = vec![spec.path.clone()];
    files.extend(spec.bases.iter().cloned());
    let lock = crate::lock::lock_path(&spec.path);
    if root.join(&lock).exists() {
        files.push(lock);
    }
    files.push(root.join("Cargo.lock"));
    relative(root, &files)
}

/// `files` normalized, relative to `root` where they are under it, sorted, without repeats.
pub fn relative(root: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            let f = normalize(f);
            match f.strip_prefix(normalize(root)) {
                Ok(rel) if f.is_absolute() => rel.to_path_buf(),
                _ => f,
            }
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Each of `files` (relative to `root`) with its SHA-256; a file that cannot be read is an
/// error naming it.
pub fn materials(root: &Path, files: &[PathBuf]) -> Result<Vec<Material>, ProvenanceError> {
    files
        .iter()
        .map(|f| {
            let p = root.join(f);
            let (sha256, _) = pki::digest::sha256_file(&p).map_err(|source| ProvenanceError::Io { path: p.clone(), source })?;
            Ok(Material { path: f.to_string_lossy().into_owned(), sha256 })
        })
        .collect()
}

/// The first line `tool` prints about its version (`mksquashfs -version`, `go version`, the
/// others `--version`); `cargo` is the one that runs this build when cargo says so (`$CARGO`). A tool
/// that cannot be run is an error naming it.
pub fn tool_version(tool: &str) -> Result<String, ProvenanceError> {
    let program = match (tool, std::env::var_os("CARGO")) {
        ("cargo", Some(c)) => PathBuf::from(c),
        _ => PathBuf::from(tool),
    };
    let flag = match tool {
        "mksquashfs" => "-version",
        GO => "version",
        _ => "--version",
    };
    let o = Command::new(&program).arg(flag).output().map_err(|e| ProvenanceError::Collect(format!("run `{tool} {flag}` for the provenance: {e}")))?;
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text.lines().next().unwrap_or_default().trim().to_string();
    if !o.status.success() || line.is_empty() {
        return Err(ProvenanceError::Collect(format!("`{tool} {flag}` ({}) printed no version: {}", o.status, String::from_utf8_lossy(&o.stderr).trim())));
    }
    Ok(line)
}

/// [`tool_version`] of each tool.
pub fn tools(names: &[&str]) -> Result<BTreeMap<String, String>, ProvenanceError> {
    names.iter().map(|t| Ok((t.to_string(), tool_version(t)?))).collect()
}

/// The builder id: `MINIKUBE_BUILDER_ID`, else [`super::DEFAULT_BUILDER_ID`].
pub fn builder_id() -> String {
    std::env::var("MINIKUBE_BUILDER_ID").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| super::DEFAULT_BUILDER_ID.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_removes_dot_and_parent_steps() {
        assert_eq!(normalize(Path::new("kicbase/../iso/base.toml")), PathBuf::from("iso/base.toml"));
        assert_eq!(normalize(Path::new("./iso/./spec.toml")), PathBuf::from("iso/spec.toml"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
    }

    #[test]
    fn a_tool_that_is_not_there_is_an_error_naming_it() {
        let e = tool_version("no-such-tool-for-provenance").unwrap_err().to_string();
        assert!(e.contains("no-such-tool-for-provenance --version"), "{e}");
        assert!(tool_version("rustc").unwrap().starts_with("rustc "));
    }
}
