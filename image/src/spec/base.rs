//! A spec's chain of bases, merged on the TOML before anything is typed (the rule is in the
//! parent module's docs).

use std::path::{Path, PathBuf};

use super::SpecError;

/// The key that names a spec's base.
const BASE_KEY: &str = "base";
/// `NAME_extra` appends to the base's array `NAME`.
const EXTRA_SUFFIX: &str = "_extra";

pub(super) fn parse_table(text: &str, path: &Path) -> Result<toml::Table, SpecError> {
    toml::from_str(text).map_err(|e| SpecError::Parse { path: path.to_path_buf(), message: e.to_string() })
}

/// What tells two names of one file apart from two files, for the cycle check.
pub(super) fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// `table` (read from `path`) merged over its chain of bases. `chain` holds the files on the way
/// here (for the cycle check); each base read is pushed on `bases`, nearest first.
pub(super) fn with_bases(mut table: toml::Table, path: &Path, chain: &mut Vec<PathBuf>, bases: &mut Vec<PathBuf>) -> Result<toml::Table, SpecError> {
    let err = |m: String| SpecError::Parse { path: path.to_path_buf(), message: m };
    let base = match table.remove(BASE_KEY) {
        None => toml::Table::new(),
        Some(toml::Value::String(rel)) => {
            let file = path.parent().unwrap_or(Path::new("")).join(&rel);
            let text = std::fs::read_to_string(&file).map_err(|source| SpecError::Base { spec: path.to_path_buf(), base: file.clone(), source })?;
            let id = identity(&file);
            if let Some(i) = chain.iter().position(|p| *p == id) {
                let names: Vec<String> = chain[i..].iter().chain([&id]).map(|p| p.display().to_string()).collect();
                return Err(err(format!("base = {rel:?}: a cycle of bases: {}", names.join(" -> "))));
            }
            chain.push(id);
            bases.push(file.clone());
            with_bases(parse_table(&text, &file)?, &file, chain, bases)?
        }
        Some(v) => return Err(err(format!("base: expected the path of a base spec (a string), found {}", v.type_str()))),
    };
    merge(base, table, "").map_err(err)
}

/// `child` over `base` (the rule is in the module docs); `at` is the dotted key of both, for
/// messages.
fn merge(mut base: toml::Table, child: toml::Table, at: &str) -> Result<toml::Table, String> {
    let key = |k: &str| if at.is_empty() { k.to_string() } else { format!("{at}.{k}") };
    for k in child.keys() {
        if let Some(name) = k.strip_suffix(EXTRA_SUFFIX).filter(|n| child.contains_key(*n)) {
            return Err(format!("{} and {}: give one (the array, or what to append to the base's)", key(name), key(k)));
        }
    }
    for (k, v) in child {
        if let Some(name) = k.strip_suffix(EXTRA_SUFFIX).filter(|n| !n.is_empty()) {
            let toml::Value::Array(extra) = v else {
                return Err(format!("{}: appends to the base's {}, so it is an array, not a {}", key(&k), key(name), v.type_str()));
            };
            let items = match base.remove(name) {
                None => extra,
                Some(toml::Value::Array(mut items)) => {
                    items.extend(extra);
                    items
                }
                Some(other) => return Err(format!("{}: the base's {} is a {}, not an array to append to", key(&k), key(name), other.type_str())),
            };
            base.insert(name.to_string(), toml::Value::Array(items));
            continue;
        }
        let v = match (base.remove(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(c)) => toml::Value::Table(merge(b, c, &key(&k))?),
            // A table the base does not have as a table still has its `_extra` keys resolved.
            (_, toml::Value::Table(c)) => toml::Value::Table(merge(toml::Table::new(), c, &key(&k))?),
            (_, v) => v,
        };
        base.insert(k, v);
    }
    Ok(base)
}
