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
        Summary {
            name,
            defconfigs,
            packages: packages.into_iter().map(|p| p.name).collect(),
            upstream_symbols: upstream.len(),
        }
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
                        self.push(Finding::ExternalName {
                            file: file.clone(),
                            line: i + 1,
                            found: found.to_string(),
                            expected: name.to_string(),
                        });
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

    fn packages(&mut self) -> Vec<Package> {
        let root = self.external.join("package");
        let mut dirs: Vec<PathBuf> = match std::fs::read_dir(&root) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect(),
            Err(e) => {
                self.push(Finding::Read { path: root, problem: e.to_string() });
                return Vec::new();
            }
        };
        dirs.sort();
        let mut out = Vec::new();
        for dir in dirs {
            let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let config_in = dir.join("Config.in");
            let (mut defines, mut references) = (Vec::new(), Vec::new());
            if config_in.is_file() {
                if let Some(text) = self.read(&config_in) {
                    for (i, line) in text.lines().enumerate() {
                        let t = line.trim();
                        if let Some(sym) = t.strip_prefix("config ").or_else(|| t.strip_prefix("menuconfig ")) {
                            defines.push(sym.trim().to_string());
                        } else if t.starts_with("select ") || t.starts_with("depends on ") {
                            let expr = t.split('#').next().unwrap_or_default();
                            for sym in defconfig::package_symbols_in(expr) {
                                references.push((i + 1, sym.to_string()));
                            }
                        }
                    }
                }
            } else {
                self.push(Finding::PackageFile { dir: dir.clone(), package: name.clone(), missing: "Config.in".into() });
            }
            out.push(Package { name, dir, defines, references });
        }
        out
    }

    fn check_package(&mut self, p: &Package, ext_name: &str, known: &BTreeSet<String>, list: &Path) {
        let config_in = p.dir.join("Config.in");
        for (line, symbol) in &p.references {
            if !known.contains(symbol) {
                self.push(Finding::UnknownSymbol {
                    file: config_in.clone(),
                    line: *line,
                    symbol: symbol.clone(),
                    list: list.to_path_buf(),
                });
            }
        }
        // Sourced from the top Config.in.
        let top = self.external.join("Config.in");
        if let Some(text) = self.read(&top) {
            let wanted = format!("/package/{}/Config.in\"", p.name);
            let sourced = text.lines().any(|l| {
                let l = l.trim();
                l.starts_with("source ") && l.ends_with(&wanted)
            });
            if !sourced {
                self.push(Finding::NotSourced { config_in: top, package: p.name.clone(), dir: p.dir.clone() });
            }
        }
        let mk_path = p.dir.join(format!("{}.mk", p.name));
        let hash_path = p.dir.join(format!("{}.hash", p.name));
        let mk = if mk_path.is_file() {
            self.read(&mk_path)
        } else {
            self.push(Finding::PackageFile { dir: p.dir.clone(), package: p.name.clone(), missing: format!("{}.mk", p.name) });
            None
        };
        let var = upper(&p.name);
        let mk_vars = mk.as_deref().map(make_variables).unwrap_or_default();
        let lookup = |v: &str| mk_vars.iter().find(|(k, _)| k == v).map(|(_, val)| val.clone());
        let local = lookup(&format!("{var}_SITE_METHOD")).as_deref() == Some("local");
        if hash_path.is_file() {
            if let Some(text) = self.read(&hash_path) {
                if let Err(problem) = check_hash_file(&text, local, &var) {
                    self.push(Finding::Hash { file: hash_path, problem });
                }
            }
        } else {
            self.push(Finding::PackageFile { dir: p.dir.clone(), package: p.name.clone(), missing: format!("{}.hash", p.name) });
        }
        // A package built from this workspace carries the workspace version.
        let site = lookup(&format!("{var}_SITE"));
        if local && site.as_deref() == Some(&format!("$(BR2_EXTERNAL_{ext_name}_PATH)/..")) {
            if let Some(expected) = self.workspace_version() {
                let found = lookup(&format!("{var}_VERSION")).unwrap_or_default();
                if found != expected {
                    self.push(Finding::PackageVariable {
                        file: mk_path,
                        variable: format!("{var}_VERSION"),
                        found,
                        expected,
                        why: "the [workspace.package] version of Cargo.toml".into(),
                    });
                }
            }
        }
    }

    fn workspace_version(&mut self) -> Option<String> {
        let path = self.repo.join("Cargo.toml");
        let text = self.read(&path)?;
        let value: toml::Value = match toml::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                self.push(Finding::Read { path, problem: e.to_string() });
                return None;
            }
        };
        let version = value.get("workspace")?.get("package")?.get("version")?.as_str()?;
        Some(version.to_string())
    }

    fn spec(&mut self) -> Option<Spec> {
        let path = self.repo.join(ISO_SPEC);
        match Spec::load(&path) {
            Ok(s) => Some(s),
            Err(e) => {
                self.push(Finding::Spec { spec: path, problem: e.to_string() });
                None
            }
        }
    }

    fn check_defconfigs(
        &mut self,
        name: &str,
        known: &BTreeSet<String>,
        list: &Path,
        spec: Option<&Spec>,
    ) -> Vec<String> {
        let dir = self.external.join("configs");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with("_defconfig")))
                .collect(),
            Err(e) => {
                self.push(Finding::Read { path: dir, problem: e.to_string() });
                return Vec::new();
            }
        };
        files.sort();
        if files.is_empty() {
            self.push(Finding::Read { path: dir, problem: "no *_defconfig file".into() });
        }
        let mut names = Vec::new();
        for file in files {
            names.push(file.file_name().unwrap_or_default().to_string_lossy().into_owned());
            let Some(text) = self.read(&file) else { continue };
            let opts = defconfig::parse(&text);
            self.check_defconfig(&file, &opts, name, known, list, spec);
        }
        names
    }

    fn check_defconfig(
        &mut self,
        file: &Path,
        opts: &[ConfigOption],
        name: &str,
        known: &BTreeSet<String>,
        list: &Path,
        spec: Option<&Spec>,
    ) {
        let ext_var = format!("$(BR2_EXTERNAL_{name}_PATH)");
        let ext_dir = self.external.to_string_lossy().into_owned();
        let resolve = |v: &str| -> Vec<PathBuf> {
            v.split_whitespace().map(|p| PathBuf::from(p.replace(&ext_var, &ext_dir))).collect()
        };
        for opt in opts {
            if opt.symbol.starts_with("BR2_") && !known.contains(&opt.symbol) {
                self.push(Finding::UnknownSymbol {
                    file: file.to_path_buf(),
                    line: opt.line,
                    symbol: opt.symbol.clone(),
                    list: list.to_path_buf(),
                });
            }
            // Paths taken from this tree must exist (the overlay check below is stricter).
            if let Some(v) = opt.string_value() {
                if v.contains(&ext_var) {
                    for path in resolve(v) {
                        if !path.exists() {
                            self.push(Finding::MissingPath {
                                file: file.to_path_buf(),
                                line: opt.line,
                                symbol: opt.symbol.clone(),
                                path,
                            });
                        }
                    }
                }
            }
        }
        let get = |sym: &str| opts.iter().find(|o| o.symbol == sym);
        if get("BR2_DOWNLOAD_FORCE_CHECK_HASHES").and_then(|o| o.value.as_deref()) != Some("y") {
            self.push(Finding::MissingOption { file: file.to_path_buf(), option: "BR2_DOWNLOAD_FORCE_CHECK_HASHES=y".into() });
        }
        let Some(spec) = spec else { return };
        // The overlays: the same directories, in the same order, as the Debian flavor.
        let expected: Vec<PathBuf> = spec.files.overlays.iter().map(|p| normalize(&spec.resolve_path(p))).collect();
        match get("BR2_ROOTFS_OVERLAY") {
            Some(o) => {
                let found: Vec<PathBuf> = resolve(o.string_value().unwrap_or_default()).iter().map(|p| normalize(p)).collect();
                if found != expected || expected.iter().any(|p| !p.is_dir()) {
                    self.push(Finding::Overlay {
                        file: file.to_path_buf(),
                        line: o.line,
                        found,
                        expected,
                        spec: spec.path.clone(),
                    });
                }
            }
            None => self.push(Finding::MissingOption { file: file.to_path_buf(), option: "BR2_ROOTFS_OVERLAY".into() }),
        }
        // The isolinux menu boots with the Debian flavor's kernel arguments.
        if let (Some(menu), Some(boot)) = (get("BR2_TARGET_ROOTFS_ISO9660_BOOT_MENU"), &spec.boot) {
            let Some(path) = resolve(menu.string_value().unwrap_or_default()).into_iter().next() else { return };
            if let Ok(text) = std::fs::read_to_string(&path) {
                let found = isolinux_cmdline(&text).unwrap_or_default();
                let expected = boot.cmdline.split_whitespace().collect::<Vec<_>>().join(" ");
                if found != expected {
                    self.push(Finding::Cmdline { file: path, found, expected, spec: spec.path.clone() });
                }
            }
        }
    }

    fn check_spec_links(&mut self, spec: &Spec) {
        // [boot] init is the script post-build.sh installs as /init.
        if let Some(boot) = &spec.boot {
            let init = normalize(&spec.resolve_path(&boot.init));
            let expected = normalize(&self.repo.join(INIT_SCRIPT));
            if init != expected {
                self.push(Finding::Spec {
                    spec: spec.path.clone(),
                    problem: format!("[boot] init is {}, but post-build.sh installs {}", init.display(), expected.display()),
                });
            } else if !init.is_file() {
                self.push(Finding::Spec {
                    spec: spec.path.clone(),
                    problem: format!("[boot] init {} does not exist (post-build.sh installs it as /init)", init.display()),
                });
            }
        }
        // Units: what the spec enables from the overlays is enabled here too; ours come from there.
        let list_path = self.external.join(BOARD_DIR).join("systemd-enable.txt");
        let Some(text) = self.read(&list_path) else { return };
        let listed: Vec<&str> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        let overlays: Vec<PathBuf> = spec.files.overlays.iter().map(|p| spec.resolve_path(p)).collect();
        let in_overlays = |unit: &str| {
            overlays.iter().any(|o| {
                ["usr/lib/systemd/system", "lib/systemd/system", "etc/systemd/system"]
                    .iter()
                    .any(|d| o.join(d).join(unit).is_file())
            })
        };
        for unit in &spec.systemd.enable {
            if in_overlays(unit) && !listed.contains(&unit.as_str()) {
                self.push(Finding::Unit {
                    file: list_path.clone(),
                    unit: unit.clone(),
                    problem: format!("is enabled by {} and provided by the overlays, but not listed", spec.path.display()),
                });
            }
        }
        for unit in listed.iter().filter(|u| u.starts_with("minikube-")) {
            if !in_overlays(unit) {
                self.push(Finding::Unit {
                    file: list_path.clone(),
                    unit: unit.to_string(),
                    problem: "is ours but no overlay of iso/spec.toml provides it".into(),
                });
            }
        }
    }
}

/// Check a package's .hash file. A local package may instead explain, on a `# no hash:` line,
/// why no hash applies; that is accepted only for `SITE_METHOD = local`.
fn check_hash_file(text: &str, local: bool, var: &str) -> Result<(), String> {
    let mut hashes = 0;
    let mut no_hash_reason = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(comment) = t.strip_prefix('#') {
            if let Some(reason) = comment.trim_start().strip_prefix("no hash:") {
                no_hash_reason |= !reason.trim().is_empty();
            }
            continue;
        }
        let fields: Vec<&str> = t.split_whitespace().collect();
        let want_len = match fields.first() {
            Some(&"md5") => 32,
            Some(&"sha1") => 40,
            Some(&"sha224") => 56,
            Some(&"sha256") => 64,
            Some(&"sha384") => 96,
            Some(&"sha512") => 128,
            _ => return Err(format!("line {}: unknown hash type in {t:?}", i + 1)),
        };
        let ok = fields.len() == 3 && fields[1].len() == want_len && fields[1].bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(format!("line {}: expected `<type> <hex digest> <file>`, got {t:?}", i + 1));
        }
        hashes += 1;
    }
    match (hashes, no_hash_reason, local) {
        (n, _, _) if n > 0 => Ok(()),
        (0, true, true) => Ok(()),
        (0, true, false) => Err(format!(
            "says `no hash:` but {var}_SITE_METHOD is not local: a downloaded package needs its hashes"
        )),
        _ if local => Err("no hash lines and no `# no hash: <reason>` line for this local package".into()),
        _ => Err("no hash lines".into()),
    }
}

/// The kernel arguments of the first APPEND line of an isolinux menu, without `initrd=`.
pub fn isolinux_cmdline(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| l.to_ascii_uppercase().starts_with("APPEND "))?;
    let args: Vec<&str> = line[7..].split_whitespace().filter(|a| !a.starts_with("initrd=")).collect();
    Some(args.join(" "))
}

/// `NAME = value` (also `+=`, `:=`) assignments at the start of lines of a .mk file.
fn make_variables(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let k = k.trim_end_matches([':', '+', '?']).trim();
            (!k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                .then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
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
        assert_eq!(
            external_names_in("a $(BR2_EXTERNAL_FOO_PATH)/x $BR2_EXTERNAL_BAR_BAZ_PATH BR2_EXTERNAL_DIRS"),
            vec!["FOO", "BAR_BAZ"]
        );
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
