//! The packages of the tree: each has its `.mk` and `.hash`, is sourced from the top
//! `Config.in`, selects or depends on known symbols, and one built from this workspace carries the
//! workspace version.

use super::*;

impl Context {
    pub(super) fn packages(&mut self) -> Vec<Package> {
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

    pub(super) fn check_package(&mut self, p: &Package, ext_name: &str, known: &BTreeSet<String>, list: &Path) {
        let config_in = p.dir.join("Config.in");
        for (line, symbol) in &p.references {
            if !known.contains(symbol) {
                self.push(Finding::UnknownSymbol { file: config_in.clone(), line: *line, symbol: symbol.clone(), list: list.to_path_buf() });
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

    pub(super) fn workspace_version(&mut self) -> Option<String> {
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
}

/// Check a package's .hash file. A local package may instead explain, on a `# no hash:` line,
/// why no hash applies; that is accepted only for `SITE_METHOD = local`.
pub(super) fn check_hash_file(text: &str, local: bool, var: &str) -> Result<(), String> {
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
        (0, true, false) => Err(format!("says `no hash:` but {var}_SITE_METHOD is not local: a downloaded package needs its hashes")),
        _ if local => Err("no hash lines and no `# no hash: <reason>` line for this local package".into()),
        _ => Err("no hash lines".into()),
    }
}

/// `NAME = value` (also `+=`, `:=`) assignments at the start of lines of a .mk file.
pub(super) fn make_variables(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let k = k.trim_end_matches([':', '+', '?']).trim();
            (!k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}
