//! Lock files: the exact package set of a spec, so that a build a month later takes the same
//! `.deb`s as today (`iso/spec.lock` beside `iso/spec.toml`, and so on).
//!
//! A lock is TOML: a header (format, the spec's file name, the SHA-256 of the spec's *package
//! selection*, the architectures it covers) and one `[[package]]` table per package and
//! architecture: name, version, architecture, the image architecture it is for (`target`), its
//! `role` (installed, the kernel, a bootloader or initramfs package the ISO takes files from), the
//! index's priority (the archive's, which resolving `packages.required` uses), the suite
//! it came from, its path in the pool, size and SHA-256. It is sorted by target and name, so a
//! change is a readable diff.
//!
//! The rules (see also README's "Lock files"):
//!
//! - **With a lock, a build resolves nothing.** [`pinned::pinned_index`] takes exactly the
//!   lock's packages for the architecture, from the package cache or by their pool path on the
//!   mirror that apt's sources name for their suite (an extra repository's from its URI), checks
//!   each SHA-256, and makes the index from the `.deb`s' own control files: nothing is read from
//!   today's Packages index, so an update suite that moved changes nothing. A package that can
//!   no longer be had is an error naming it, its version and the URL tried.
//! - **The lock belongs to its spec's selection**: the SHA-256 of the merged spec's `[source]`
//!   (but its `arch`), `[packages]`, `kernel.package`, `boot.bootloader_packages` and
//!   `boot.initrd_packages`. An edit
//!   there makes the build fail, saying to run `cargo xtask lock --update`; an edit anywhere
//!   else (overlays, users, units, the command line) keeps the lock.
//! - **No lock**: the build resolves from today's index, as before, with a warning.
//! - `cargo xtask lock` ([`make::lock`]) writes a missing lock; an existing one is only checked
//!   (its selection) and compared with what the mirror resolves today, printed as a
//!   [`diff::Diff`]. `--update` writes the new resolution.

pub mod diff;
pub mod make;
pub mod pinned;

use crate::spec::Spec;
use platform::Arch;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The lock file format this code reads and writes.
pub const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lock file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("lock file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("lock file {path}: package {package}: {field}: {message}")]
    Field { path: PathBuf, package: String, field: String, message: String },
    #[error("lock file {path} was made for another package selection of {spec} (the spec's is {spec_selection}, the lock's {lock_selection}): run `cargo xtask lock --update --spec {spec}`")]
    Stale { path: PathBuf, spec: PathBuf, spec_selection: String, lock_selection: String },
    #[error("lock file {path} has no packages for {arch} (it covers {covers}): run `cargo xtask lock --update --spec {spec}`")]
    NoTarget { path: PathBuf, spec: PathBuf, arch: String, covers: String },
    #[error("package {package} {version} (locked in {lock}) can no longer be had: it is not in the package cache, and {url}: {message}; `cargo xtask lock --update` picks what the mirror serves now")]
    Unavailable { lock: PathBuf, package: String, version: String, url: String, message: String },
    #[error("package {package} {version} (locked in {lock}) is not in the package cache, and no mirror is known for its suite {suite}: {message}")]
    NoSource { lock: PathBuf, package: String, version: String, suite: String, message: String },
    #[error("package {package} {version} (locked in {lock}): {message}")]
    Package { lock: PathBuf, package: String, version: String, message: String },
    #[error("lock file {path}: cannot write it: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("resolving {spec} for {arch}: {message}")]
    Resolve { spec: PathBuf, arch: String, message: String },
}

/// What a package is in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Installed (the resolved set).
    Install,
    /// The kernel (`kernel.package` and the image package it depends on): its files are taken,
    /// it is not installed.
    Kernel,
    /// A `boot.bootloader_packages` package the ISO takes its loader from.
    Bootloader,
    /// A `boot.initrd_packages` package the small initramfs takes its shell from.
    Initrd,
}

/// One locked package for one image architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Locked {
    pub name: String,
    pub version: String,
    /// The package's own architecture (`all` or the target's).
    pub arch: String,
    /// The image architecture this entry is for.
    pub target: Arch,
    pub role: Role,
    /// The index's `Priority` (the archive's override, which a .deb's control file may not
    /// repeat): what `packages.required` and kicbase's `brought_by` resolve with.
    pub priority: String,
    /// The suite (or extra repository label) whose index listed it when it was locked.
    pub suite: String,
    /// Path in the pool, relative to the mirror (the index's `Filename`).
    pub filename: String,
    pub size: u64,
    /// SHA-256 of the `.deb`.
    pub sha256: String,
}

/// The fields of a `[[package]]` table, in the order they are written.
const FIELDS: [&str; 10] = ["name", "version", "arch", "target", "role", "priority", "suite", "filename", "size", "sha256"];

impl Locked {
    /// One `[[package]]` table, typed; an error is (field, message).
    fn from_table(t: &toml::Table) -> Result<Locked, (String, String)> {
        if let Some(k) = t.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err((k.clone(), format!("unknown field (a package has {})", FIELDS.join(", "))));
        }
        let s = |f: &str| -> Result<String, (String, String)> {
            match t.get(f) {
                Some(toml::Value::String(v)) => Ok(v.clone()),
                Some(v) => Err((f.into(), format!("expected a string, found {}", v.type_str()))),
                None => Err((f.into(), "missing".into())),
            }
        };
        let target = s("target")?;
        let role = match s("role")?.as_str() {
            "install" => Role::Install,
            "kernel" => Role::Kernel,
            "bootloader" => Role::Bootloader,
            "initrd" => Role::Initrd,
            other => return Err(("role".into(), format!("{other:?} is not install, kernel, bootloader or initrd"))),
        };
        let size = match t.get("size") {
            Some(toml::Value::Integer(n)) if *n >= 0 => *n as u64,
            Some(v) => return Err(("size".into(), format!("expected a number of bytes, found {v}"))),
            None => return Err(("size".into(), "missing".into())),
        };
        Ok(Locked {
            name: s("name")?,
            version: s("version")?,
            arch: s("arch")?,
            target: target.parse().map_err(|e| ("target".to_string(), format!("{target:?}: {e}")))?,
            role,
            priority: s("priority")?,
            suite: s("suite")?,
            filename: s("filename")?,
            size,
            sha256: s("sha256")?,
        })
    }

    /// Whether it came from a security suite (`bookworm-security`).
    pub fn is_security(&self) -> bool {
        self.suite.ends_with("-security") || self.suite.ends_with("/updates")
    }
}

/// A lock file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The spec's file name (beside the lock).
    pub spec: String,
    /// [`selection`] of the spec it was made from.
    pub selection: String,
    /// The image architectures it covers.
    pub targets: Vec<Arch>,
    /// Sorted by target, then name.
    pub packages: Vec<Locked>,
}

#[derive(Serialize)]
struct Header<'a> {
    format: u32,
    spec: &'a str,
    selection: &'a str,
    targets: &'a [Arch],
    package: &'a [Locked],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    /// Checked before the rest is typed.
    #[serde(rename = "format")]
    _format: u32,
    spec: String,
    selection: String,
    targets: Vec<Arch>,
    #[serde(default)]
    package: Vec<toml::Table>,
}

/// The lock file of a spec: the spec's path with `.lock` for its extension.
pub fn lock_path(spec_path: &Path) -> PathBuf {
    spec_path.with_extension("lock")
}

/// SHA-256 of what chooses a spec's packages: the merged spec's `[source]` without `arch`,
/// `[packages]`, `kernel.package`, `boot.bootloader_packages` and `boot.initrd_packages`
/// (canonical TOML).
pub fn selection(spec: &Spec) -> String {
    let merged: toml::Table = toml::from_str(&spec.text).unwrap_or_default();
    let mut sel = toml::Table::new();
    if let Some(toml::Value::Table(src)) = merged.get("source") {
        let mut src = src.clone();
        src.remove("arch");
        sel.insert("source".into(), src.into());
    }
    if let Some(p) = merged.get("packages") {
        sel.insert("packages".into(), p.clone());
    }
    for (section, key) in [("kernel", "package"), ("boot", "bootloader_packages"), ("boot", "initrd_packages")] {
        if let Some(v) = merged.get(section).and_then(|s| s.get(key)) {
            sel.insert(format!("{section}.{key}"), v.clone());
        }
    }
    let text = toml::to_string(&sel).expect("a TOML table serializes");
    pki::digest::sha256_hex(text.as_bytes())
}

impl Lock {
    /// A lock of `packages` (sorted here) for `spec`.
    pub fn new(spec: &Spec, targets: Vec<Arch>, mut packages: Vec<Locked>) -> Lock {
        packages.sort_by(|a, b| (a.target.debian(), &a.name).cmp(&(b.target.debian(), &b.name)));
        let name = spec.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        Lock { spec: name, selection: selection(spec), targets, packages }
    }

    /// The lock as TOML (what [`Lock::parse`] reads back).
    pub fn render(&self) -> String {
        let body = toml::to_string(&Header { format: FORMAT, spec: &self.spec, selection: &self.selection, targets: &self.targets, package: &self.packages })
            .expect("a lock serializes");
        format!("# The exact packages of {}: written by `cargo xtask lock`, read by every build of it.\n\n{body}", self.spec)
    }

    /// Parse `text` (the lock at `path`); every error names the file, and the package and field
    /// when it is about one.
    pub fn parse(text: &str, path: &Path) -> Result<Lock, LockError> {
        let perr = |message: String| LockError::Parse { path: path.to_path_buf(), message: message.trim_end().replace('\n', " ") };
        let table: toml::Table = toml::from_str(text).map_err(|e| perr(e.to_string()))?;
        match table.get("format").and_then(toml::Value::as_integer) {
            Some(f) if f == FORMAT as i64 => {}
            Some(f) if f > FORMAT as i64 => return Err(perr(format!("format {f} is newer than this build reads ({FORMAT})"))),
            Some(f) => return Err(perr(format!("format {f} is not one this build reads ({FORMAT})"))),
            None => return Err(perr("format: missing (the number of the lock file format)".into())),
        }
        let raw = RawLock::deserialize(table).map_err(|e| perr(e.to_string()))?;
        let mut packages = Vec::with_capacity(raw.package.len());
        let mut seen = std::collections::BTreeSet::new();
        for (i, t) in raw.package.into_iter().enumerate() {
            let label = t.get("name").and_then(|v| v.as_str()).map_or_else(|| format!("#{}", i + 1), str::to_string);
            let ferr = |field: &str, message: String| LockError::Field { path: path.to_path_buf(), package: label.clone(), field: field.to_string(), message };
            let p = Locked::from_table(&t).map_err(|(field, m)| ferr(&field, m))?;
            if p.version.parse::<debversion::Version>().is_err() {
                return Err(ferr("version", format!("{:?} is not a Debian version", p.version)));
            }
            if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                return Err(ferr("sha256", format!("{:?} is not 64 lowercase hex digits", p.sha256)));
            }
            if p.filename.is_empty() || p.filename.starts_with('/') || p.filename.split('/').any(|c| c == "..") {
                return Err(ferr("filename", format!("{:?} is not a path relative to the mirror", p.filename)));
            }
            if p.suite.is_empty() {
                return Err(ferr("suite", "empty".into()));
            }
            if !raw.targets.contains(&p.target) {
                return Err(ferr("target", format!("{} is not among the lock's targets", p.target.debian())));
            }
            if !seen.insert((p.target.debian(), p.name.clone())) {
                return Err(ferr("name", format!("locked twice for {}", p.target.debian())));
            }
            packages.push(p);
        }
        Ok(Lock { spec: raw.spec, selection: raw.selection, targets: raw.targets, packages })
    }

    /// Read the lock at `path`.
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Read { path: path.to_path_buf(), source })?;
        Lock::parse(&text, path)
    }

    /// Write it to `path` (atomically).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        pki::atomic::write_atomic(path, self.render().as_bytes(), 0o644).map_err(|source| LockError::Write { path: path.to_path_buf(), source })
    }

    /// The entries for one image architecture.
    pub fn for_target(&self, arch: Arch) -> impl Iterator<Item = &Locked> {
        self.packages.iter().filter(move |p| p.target == arch)
    }

    /// SHA-256 of the entries for `arch` (part of the package layer's cache key).
    pub fn digest(&self, arch: Arch) -> String {
        let mut s = String::new();
        for p in self.for_target(arch) {
            s.push_str(&format!("{} {} {} {:?} {} {} {} {} {}\n", p.name, p.version, p.arch, p.role, p.priority, p.suite, p.filename, p.size, p.sha256));
        }
        pki::digest::sha256_hex(s.as_bytes())
    }

    /// Check that this lock (read from `path`) belongs to `spec` as it is now and covers `arch`.
    pub fn check(&self, spec: &Spec, path: &Path, arch: Arch) -> Result<(), LockError> {
        let spec_selection = selection(spec);
        if spec_selection != self.selection {
            return Err(LockError::Stale { path: path.to_path_buf(), spec: spec.path.clone(), spec_selection, lock_selection: self.selection.clone() });
        }
        if !self.targets.contains(&arch) {
            let covers: Vec<&str> = self.targets.iter().map(|a| a.debian()).collect();
            return Err(LockError::NoTarget { path: path.to_path_buf(), spec: spec.path.clone(), arch: arch.debian().into(), covers: covers.join(", ") });
        }
        Ok(())
    }
}

/// The lock of `spec` checked against it for its architecture, or `None` (with a warning) when
/// the spec has none.
pub fn read_for(spec: &Spec) -> Result<Option<(PathBuf, Lock)>, LockError> {
    let path = lock_path(&spec.path);
    if !path.exists() {
        tracing::warn!(spec = %spec.path.display(), lock = %path.display(), "no lock file: packages resolved from today's index (`cargo xtask lock` writes one)");
        return Ok(None);
    }
    let lock = Lock::read(&path)?;
    lock.check(spec, &path, spec.source.arch)?;
    Ok(Some((path, lock)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str) -> Locked {
        Locked {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            target: Arch::X86_64,
            role: Role::Install,
            priority: "optional".into(),
            suite: "bookworm".into(),
            filename: format!("pool/main/x/{name}/{name}_{version}_amd64.deb"),
            size: 10,
            sha256: "ab".repeat(32),
        }
    }

    fn lock() -> Lock {
        Lock {
            spec: "spec.toml".into(),
            selection: "00".repeat(32),
            targets: vec![Arch::X86_64],
            packages: vec![entry("a", "1.0-1"), entry("b", "2:1.2+deb12u1")],
        }
    }

    #[test]
    fn renders_and_reads_back() {
        let l = lock();
        let text = l.render();
        assert!(text.contains("[[package]]\nname = \"a\"\nversion = \"1.0-1\"\narch = \"amd64\"\ntarget = \"amd64\"\nrole = \"install\""), "{text}");
        assert_eq!(Lock::parse(&text, Path::new("x.lock")).unwrap(), l);
    }

    fn err(text: &str) -> String {
        Lock::parse(text, Path::new("/p/spec.lock")).unwrap_err().to_string()
    }

    #[test]
    fn parse_errors_name_the_file_the_package_and_the_field() {
        let good = lock().render();
        let e = err(&good.replace(&"ab".repeat(32), "xyz"));
        assert!(e.starts_with("lock file /p/spec.lock: package a: sha256:") && e.contains("\"xyz\""), "{e}");
        let e = err(&good.replace("size = 10\n", ""));
        assert_eq!(e, "lock file /p/spec.lock: package a: size: missing");
        let e = err(&good.replace("size = 10", "size = \"big\""));
        assert!(e.starts_with("lock file /p/spec.lock: package a: size: expected a number"), "{e}");
        let e = err(&good.replace("role = \"install\"", "role = \"maybe\""));
        assert!(e.contains("package a: role:"), "{e}");
        let e = err(&good.replace("version = \"1.0-1\"", "version = \"\""));
        assert!(e.contains("package a: version:"), "{e}");
        let e = err(&good.replace("target = \"amd64\"", "target = \"arm64\""));
        assert!(e.contains("package a: target: arm64 is not among"), "{e}");
        let e = err(&good.replace("filename = \"pool/main/x/a/", "filename = \"../"));
        assert!(e.contains("package a: filename:"), "{e}");
        let e = err(&good.replace("name = \"b\"", "name = \"a\""));
        assert!(e.contains("package a: name: locked twice for amd64"), "{e}");
        let e = err(&good.replace("name = \"a\"\n", ""));
        assert!(e.contains("package #1: name:"), "{e}");
        let e = err(&good.replace("role = \"install\"", "role = \"install\"\ncolour = 1"));
        assert!(e.contains("package a: colour: unknown field"), "{e}");
        let e = err(&good.replace("format = 1", "format = 9"));
        assert!(e.contains("/p/spec.lock: format 9 is newer"), "{e}");
        let e = err(&good.replace("format = 1\n", ""));
        assert!(e.contains("format: missing"), "{e}");
        let e = err("[[package");
        assert!(e.starts_with("lock file /p/spec.lock: "), "{e}");
    }

    #[test]
    fn digest_follows_the_entries() {
        let a = lock();
        let mut b = lock();
        assert_eq!(a.digest(Arch::X86_64), b.digest(Arch::X86_64));
        b.packages[1].sha256 = "cd".repeat(32);
        assert_ne!(a.digest(Arch::X86_64), b.digest(Arch::X86_64));
    }
}
