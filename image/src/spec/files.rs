//! `[files]`: overlays, the generic drops (docs, man pages, locales) with their exceptions, and
//! `[[files.unused]]`: what a package brings that the image never uses, each with its reason.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSection {
    /// Overlay directories copied on top of the unpacked packages, in order.
    #[serde(default)]
    pub overlays: Vec<PathBuf>,
    /// Paths (with `*` globs per component) removed from the tree: docs, man pages, locales...
    #[serde(default)]
    pub drop: Vec<String>,
    /// Exceptions to `drop` (globs), e.g. copyright files.
    #[serde(default)]
    pub keep: Vec<String>,
    /// Files of the packages that the image never uses, removed with their subtree after `drop`.
    /// Unlike `drop`, each pattern must match something in the packages when the image is built
    /// (else the package changed and the entry is stale: an error naming it).
    #[serde(default)]
    pub unused: Vec<Unused>,
}

/// One `[[files.unused]]` entry: the paths and why a node never uses them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unused {
    pub paths: Vec<PathGlob>,
    pub reason: String,
}

/// An absolute path in the tree's key form (no `.`, `..`, doubled or trailing slash, not `/`),
/// whose components may hold `*` (see [`crate::rootfs::glob_match`]). Checked when read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PathGlob(String);

impl PathGlob {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PathGlob {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("path {s:?} must be absolute"));
        }
        if s == "/" || crate::rootfs::normalize(&s).as_deref() != Some(s.as_str()) {
            return Err(format!("path {s:?} must name something below / in normal form (no `.`, `..`, doubled or trailing `/`)"));
        }
        Ok(PathGlob(s))
    }
}

impl std::fmt::Display for PathGlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl FilesSection {
    /// The checks that need more than one field: every `unused` entry has paths and a reason.
    pub(super) fn validate(&self) -> Result<(), String> {
        for (i, u) in self.unused.iter().enumerate() {
            if u.paths.is_empty() {
                return Err(format!("files.unused[{i}].paths: empty"));
            }
            if u.reason.trim().is_empty() {
                return Err(format!("files.unused[{i}].reason: say why the image never uses {}", u.paths[0]));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::Spec;
    use std::path::Path;

    fn spec(files: &str) -> Result<Spec, String> {
        Spec::parse(&format!("[image]\nname='x'\n[packages]\ninclude=['a']\n{files}"), Path::new("s.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn unused_entries_are_typed_when_read() {
        let s = spec("[[files.unused]]\npaths = ['/usr/bin/dnet', '/usr/lib/*-linux-gnu/x']\nreason = 'test tools'\n").unwrap();
        assert_eq!(s.files.unused[0].paths[1].as_str(), "/usr/lib/*-linux-gnu/x");
        assert_eq!(s.files.unused[0].reason, "test tools");
    }

    #[test]
    fn bad_unused_entries_name_file_and_field() {
        for (body, want) in [
            ("paths = ['usr/bin/x']\nreason = 'r'", "must be absolute"),
            ("paths = ['/usr/bin/../x']\nreason = 'r'", "normal form"),
            ("paths = ['/usr/bin/']\nreason = 'r'", "normal form"),
            ("paths = ['/']\nreason = 'r'", "normal form"),
            ("paths = []\nreason = 'r'", "files.unused[0].paths: empty"),
            ("paths = ['/usr/bin/x']\nreason = ' '", "files.unused[0].reason"),
            ("paths = ['/usr/bin/x']", "reason"),
            ("paths = ['/usr/bin/x']\nreason = 'r'\nwhy = 'r'", "why"),
        ] {
            let e = spec(&format!("[[files.unused]]\n{body}\n")).unwrap_err();
            assert!(e.contains("s.toml") && e.contains(want), "{body}: {e}");
        }
    }
}
