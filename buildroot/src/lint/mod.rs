//! Checks of the BR2_EXTERNAL tree that run anywhere, without a buildroot checkout.
//!
//! What is checked (each problem is a [`Finding`] naming the file, line and symbol):
//! - `external.desc` names the tree (not minikube's `MINIKUBE`), and every
//!   `BR2_EXTERNAL_<NAME>_PATH` in the tree uses that name;
//! - every `BR2_*` symbol a defconfig sets, and every `BR2_PACKAGE_*` one a package of ours
//!   selects or depends on, is defined by this tree or listed in the pinned release's list
//!   (`upstream/<release>-packages.txt`), since kconfig drops unknown symbols without a word;
//! - every package of ours has its `.mk` and `.hash` files, is sourced from the top `Config.in`,
//!   and its `.hash` either holds well-formed hashes or, for a `SITE_METHOD = local` package
//!   only, a `# no hash:` line saying why none applies; a package built from this workspace
//!   carries the workspace version;
//! - `BR2_ROOTFS_OVERLAY` resolves to exactly the overlays of the Debian flavor
//!   (`iso/spec.toml` `[files] overlays`), and every other path a defconfig takes from the tree
//!   exists;
//! - the isolinux menu boots with `iso/spec.toml` `[boot] cmdline`, `[boot] init` is the
//!   script post-build.sh installs, and the units the spec enables from the overlays are enabled.

mod defconfigs;
mod packages;

pub use self::defconfigs::isolinux_cmdline;
#[cfg(test)]
use self::packages::{check_hash_file, make_variables};

use crate::defconfig::{self, ConfigOption};
use crate::PINNED_RELEASE;
use image::spec::Spec;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// The spec of the Debian-flavor ISO, relative to the workspace root.
pub const ISO_SPEC: &str = "iso/spec.toml";
/// The /init script post-build.sh installs, relative to the workspace root.
pub const INIT_SCRIPT: &str = "iso/init.sh";
/// The board directory inside the tree.
pub const BOARD_DIR: &str = "board/minikube-rs";

/// One problem found in the tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    #[error("{file}: {problem}")]
    ExternalDesc { file: PathBuf, problem: String },
    #[error("{file}:{line}: uses BR2_EXTERNAL_{found}_PATH but external.desc names {expected}")]
    ExternalName { file: PathBuf, line: usize, found: String, expected: String },
    #[error("{file}:{line}: {symbol} is neither defined by this tree nor listed in {list} (kconfig would drop it silently)")]
    UnknownSymbol { file: PathBuf, line: usize, symbol: String, list: PathBuf },
    #[error("{file}:{line}: malformed entry in the upstream package list: {text:?}")]
    UpstreamList { file: PathBuf, line: usize, text: String },
    #[error("{dir}: package {package} has no {missing}")]
    PackageFile { dir: PathBuf, package: String, missing: String },
    #[error("{file}: {problem}")]
    Hash { file: PathBuf, problem: String },
    #[error("{config_in}: package {package} ({dir}) is not sourced")]
    NotSourced { config_in: PathBuf, package: String, dir: PathBuf },
    #[error("{file}: {variable} is {found:?}, expected {expected:?} ({why})")]
    PackageVariable { file: PathBuf, variable: String, found: String, expected: String, why: String },
    #[error("{file}:{line}: BR2_ROOTFS_OVERLAY is {found:?}, expected the Debian flavor's overlays {expected:?} (from {spec})")]
    Overlay { file: PathBuf, line: usize, found: Vec<PathBuf>, expected: Vec<PathBuf>, spec: PathBuf },
    #[error("{file}:{line}: {symbol} names {path}, which does not exist")]
    MissingPath { file: PathBuf, line: usize, symbol: String, path: PathBuf },
    #[error("{file}: {option} must be set")]
    MissingOption { file: PathBuf, option: String },
    #[error("{file}: kernel arguments {found:?} differ from {spec} [boot] cmdline {expected:?}")]
    Cmdline { file: PathBuf, found: String, expected: String, spec: PathBuf },
    #[error("{spec}: {problem}")]
    Spec { spec: PathBuf, problem: String },
    #[error("{file}: unit {unit} {problem}")]
    Unit { file: PathBuf, unit: String, problem: String },
    #[error("{path}: {problem}")]
    Read { path: PathBuf, problem: String },
}

/// All findings of one lint run.
#[derive(Debug, thiserror::Error)]
pub struct LintError {
    pub external: PathBuf,
    pub findings: Vec<Finding>,
}

impl fmt::Display for LintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the BR2_EXTERNAL tree {}:", self.findings.len(), self.external.display())?;
        for finding in &self.findings {
            write!(f, "\n  - {finding}")?;
        }
        Ok(())
    }
}

/// What a clean lint saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The tree's name (external.desc).
    pub name: String,
    /// Defconfig file names checked.
    pub defconfigs: Vec<String>,
    /// Our packages (directory names under package/).
    pub packages: Vec<String>,
    /// Symbols in the pinned release's list.
    pub upstream_symbols: usize,
}

/// Lint the BR2_EXTERNAL tree at `external` (its parent is the workspace root).
pub fn lint(external: &Path) -> Result<Summary, LintError> {
    let mut cx = Context { external: external.to_path_buf(), repo: external.join(".."), findings: Vec::new() };
    let summary = cx.run();
    if cx.findings.is_empty() {
        Ok(summary)
    } else {
        Err(LintError { external: external.to_path_buf(), findings: cx.findings })
    }
}

/// The path of the pinned release's package list inside the tree.
pub fn upstream_list_path(external: &Path) -> PathBuf {
    external.join("upstream").join(format!("{PINNED_RELEASE}-packages.txt"))
}

/// Parse the pinned release's symbol list: one `BR2_*` symbol first on each non-comment line.
/// Returns the symbols and the malformed lines (1-based number, text).
pub fn parse_upstream_list(text: &str) -> (BTreeSet<String>, Vec<(usize, String)>) {
    let mut symbols = BTreeSet::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let symbol = line.split_whitespace().next().unwrap_or_default();
        if symbol.starts_with("BR2_") && defconfig::is_symbol(symbol) {
            symbols.insert(symbol.to_string());
        } else {
            bad.push((i + 1, line.to_string()));
        }
    }
    (symbols, bad)
}

/// One package of ours.
struct Package {
    name: String,
    dir: PathBuf,
    /// Symbols its Config.in defines.
    defines: Vec<String>,
    /// (line, symbol) of every BR2_PACKAGE_* its Config.in selects or depends on.
    references: Vec<(usize, String)>,
}

struct Context {
    external: PathBuf,
    repo: PathBuf,
    findings: Vec<Finding>,
}

impl Context {
    fn push(&mut self, f: Finding) {
        self.findings.push(f);
    }

    fn read(&mut self, path: &Path) -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) => {
                self.push(Finding::Read { path: path.to_path_buf(), problem: e.to_string() });
                None
            }
        }
    }

    fn run(&mut self) -> Summary {
        let name = self.external_name().unwrap_or_default();
        if !name.is_empty() {
            self.check_external_name_uses(&name);
        }
        let list_path = upstream_list_path(&self.external);
        let upstream = self.upstream_symbols(&list_path);
        let packages = self.packages();
        let mut known: BTreeSet<String> = upstream.clone();
        for p in &packages {
            known.extend(p.defines.iter().cloned());
        }
        for p in &packages {
            self.check_package(p, &name, &known, &list_path);
        }
        let spec = self.spec();
        let defconfigs = self.check_defconfigs(&name, &known, &list_path, spec.as_ref());
        if let Some(spec) = &spec {
            self.check_spec_links(spec);
        }
        Summary { name, defconfigs, packages: packages.into_iter().map(|p| p.name).collect(), upstream_symbols: upstream.len() }
    }

    fn external_name(&mut self) -> Option<String> {
        let file = self.external.join("external.desc");
        let text = self.read(&file)?;
        let name = text.lines().find_map(|l| l.strip_prefix("name:")).map(|n| n.trim().to_string());
        let problem = match &name {
            None => Some("no `name:` line".to_string()),
            Some(n) if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                Some(format!("name {n:?} is not a valid BR2_EXTERNAL name ([A-Za-z0-9_]+)"))
            }
            Some(n) if n == "MINIKUBE" => Some("name MINIKUBE is minikube's own tree; ours needs its own name".into()),
            _ => None,
        };
        match problem {
            Some(problem) => {
                self.push(Finding::ExternalDesc { file, problem });
                None
            }
            None => name,
        }
    }

    /// Every `BR2_EXTERNAL_<X>_PATH` in the tree's text files must use our name.
    fn check_external_name_uses(&mut self, name: &str) {
        let mut files = Vec::new();
        walk_files(&self.external, &mut files);
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            for (i, line) in text.lines().enumerate() {
                for found in external_names_in(line) {
                    if found != name {
                        self.push(Finding::ExternalName { file: file.clone(), line: i + 1, found: found.to_string(), expected: name.to_string() });
                    }
                }
            }
        }
    }

    fn upstream_symbols(&mut self, list: &Path) -> BTreeSet<String> {
        let Some(text) = self.read(list) else { return BTreeSet::new() };
        let (symbols, bad) = parse_upstream_list(&text);
        for (line, text) in bad {
            self.push(Finding::UpstreamList { file: list.to_path_buf(), line, text });
        }
        if symbols.is_empty() {
            self.push(Finding::UpstreamList { file: list.to_path_buf(), line: 0, text: "no symbols".into() });
        }
        symbols
    }
}

/// The `<X>` of every `BR2_EXTERNAL_<X>_PATH` in a line.
fn external_names_in(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("BR2_EXTERNAL_") {
        let after = &rest[at + "BR2_EXTERNAL_".len()..];
        let len = after.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
        let word = &after[..len];
        if let Some(name) = word.strip_suffix("_PATH") {
            if !name.is_empty() {
                out.push(name);
            }
        }
        rest = &after[len..];
    }
    out
}

/// A package directory name as buildroot's make variables spell it (`minikube-agent` ->
/// `MINIKUBE_AGENT`).
fn upper(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// Lexically normalise a path (`a/b/../c` -> `a/c`), then canonicalise it if it exists.
fn normalize(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let mut out = PathBuf::new();
    for comp in p.components() {
        match comp {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_file_rules() {
        let good = format!("# from upstream\nsha256  {}  foo-1.0.tar.gz\n", "a".repeat(64));
        assert_eq!(check_hash_file(&good, false, "FOO"), Ok(()));
        assert!(check_hash_file("sha256 abc foo.tar.gz\n", false, "FOO").unwrap_err().contains("line 1"));
        assert_eq!(check_hash_file("# no hash: built from this repository\n", true, "FOO"), Ok(()));
        assert!(check_hash_file("# no hash: built here\n", false, "FOO").unwrap_err().contains("FOO_SITE_METHOD"));
        assert!(check_hash_file("# nothing to say\n", true, "FOO").unwrap_err().contains("no hash"));
        assert!(check_hash_file("", false, "FOO").is_err());
    }

    #[test]
    fn isolinux_append_line_without_initrd() {
        let menu = "LABEL x\n  KERNEL /boot/bzImage\n  append initrd=/boot/initrd console=ttyS0  quiet\n";
        assert_eq!(isolinux_cmdline(menu).as_deref(), Some("console=ttyS0 quiet"));
    }

    #[test]
    fn external_names_and_make_variables() {
        assert_eq!(external_names_in("a $(BR2_EXTERNAL_FOO_PATH)/x $BR2_EXTERNAL_BAR_BAZ_PATH BR2_EXTERNAL_DIRS"), vec!["FOO", "BAR_BAZ"]);
        let vars = make_variables("FOO_SITE = $(X)/..\nFOO_OPTS += -a\n\tnot = this\n");
        assert_eq!(vars[0], ("FOO_SITE".to_string(), "$(X)/..".to_string()));
        assert_eq!(vars[1].0, "FOO_OPTS");
        assert_eq!(vars.len(), 2, "recipe lines are not assignments: {vars:?}");
        assert_eq!(upper("minikube-agent"), "MINIKUBE_AGENT");
    }

    #[test]
    fn upstream_list_reports_malformed_lines() {
        let (syms, bad) = parse_upstream_list("# header\nBR2_PACKAGE_A\tconfig x\n\nnot-a-symbol\n");
        assert!(syms.contains("BR2_PACKAGE_A"));
        assert_eq!(bad, vec![(4, "not-a-symbol".to_string())]);
    }
}
