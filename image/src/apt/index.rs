//! The Packages index: its stanzas parsed into [`Package`]s, looked up by name and by provided
//! (virtual) name, merged across suites.

use super::{parse_relations, Dep, Signature};
use debversion::Version;
use fetch::Item;
use std::collections::HashMap;

/// One binary package from the index.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: Version,
    pub arch: String,
    pub priority: String,
    pub essential: bool,
    pub depends: Vec<Vec<Dep>>,
    pub pre_depends: Vec<Vec<Dep>>,
    pub provides: Vec<(String, Option<Version>)>,
    /// `Breaks` and `Conflicts` (checked on the resolved set; alternatives are not used there).
    pub breaks: Vec<Dep>,
    pub conflicts: Vec<Dep>,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
    /// The index stanza as text (used for the dpkg status file).
    pub stanza: String,
    /// The mirror and suite this stanza came from (an image can read several suites).
    pub mirror: String,
    pub suite: String,
}

/// All packages of one suite/arch, with lookup by name and by provided (virtual) name.
#[derive(Debug, Default)]
pub struct Index {
    pub packages: Vec<Package>,
    by_name: HashMap<String, Vec<usize>>,
    providers: HashMap<String, Vec<usize>>,
    /// Mirror base URI (for .deb URLs).
    pub mirror: String,
    pub suite: String,
    pub arch: String,
    pub signature: Option<Signature>,
    /// Set when the packages come from a lock file ([`crate::lock`]): the set to install is the
    /// lock's, never resolved.
    pub pinned: Option<Pinned>,
}

/// What a lock fixes about an [`Index`] made from it.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// The lock file.
    pub lock: std::path::PathBuf,
    /// SHA-256 of the lock's entries for this architecture (part of cache keys).
    pub digest: String,
    /// The packages to install, by name (the lock's `role = "install"` entries).
    pub install: Vec<String>,
}

impl Index {
    /// Parse a Packages file.
    pub fn parse(text: &str, mirror: &str, suite: &str, arch: &str) -> Result<Index, String> {
        let mut idx = Index { mirror: mirror.into(), suite: suite.into(), arch: arch.into(), ..Default::default() };
        for stanza in text.split("\n\n") {
            if stanza.trim().is_empty() {
                continue;
            }
            let p: deb822_fast::Paragraph = stanza.parse().map_err(|e| format!("{e}"))?;
            let get = |k: &str| p.get(k).map(str::trim);
            let name = get("Package").ok_or("stanza without Package")?.to_string();
            let ctx = |m: String| format!("package {name}: {m}");
            let version: Version = get("Version").ok_or_else(|| ctx("no Version".into()))?.parse().map_err(|e| ctx(format!("bad Version: {e:?}")))?;
            let rel = |k: &str| -> Result<Vec<Vec<Dep>>, String> {
                get(k).map(parse_relations).transpose().map(|o| o.unwrap_or_default()).map_err(|m| ctx(format!("{k}: {m}")))
            };
            let provides = rel("Provides")?.into_iter().flatten().map(|d| (d.name, d.constraint.map(|(_, v)| v))).collect();
            let pkg = Package {
                version,
                arch: get("Architecture").unwrap_or("").to_string(),
                priority: get("Priority").unwrap_or("optional").to_string(),
                essential: get("Essential") == Some("yes"),
                depends: rel("Depends")?,
                pre_depends: rel("Pre-Depends")?,
                provides,
                breaks: rel("Breaks")?.into_iter().flatten().collect(),
                conflicts: rel("Conflicts")?.into_iter().flatten().collect(),
                filename: get("Filename").ok_or_else(|| ctx("no Filename".into()))?.to_string(),
                sha256: get("SHA256").ok_or_else(|| ctx("no SHA256".into()))?.to_string(),
                size: get("Size").and_then(|s| s.parse().ok()).ok_or_else(|| ctx("no Size".into()))?,
                stanza: stanza.trim().to_string(),
                mirror: mirror.to_string(),
                suite: suite.to_string(),
                name,
            };
            idx.push(pkg);
        }
        Ok(idx)
    }

    /// An index of exactly `packages` (each keeps its own mirror and suite).
    pub fn from_packages(packages: Vec<Package>, mirror: &str, suite: &str, arch: &str) -> Index {
        let mut idx = Index { mirror: mirror.into(), suite: suite.into(), arch: arch.into(), ..Default::default() };
        for p in packages {
            idx.push(p);
        }
        idx
    }

    fn push(&mut self, p: Package) {
        let i = self.packages.len();
        self.by_name.entry(p.name.clone()).or_default().push(i);
        for (v, _) in &p.provides {
            self.providers.entry(v.clone()).or_default().push(i);
        }
        self.packages.push(p);
    }

    /// Versions of a real package, newest first.
    pub fn by_name(&self, name: &str) -> Vec<&Package> {
        let mut v: Vec<&Package> = self.by_name.get(name).map(|ix| ix.iter().map(|&i| &self.packages[i]).collect()).unwrap_or_default();
        v.sort_by(|a, b| b.version.cmp(&a.version));
        v
    }

    /// Packages that declare `Provides: name`, with the provided version.
    pub fn providers(&self, name: &str) -> Vec<(&Package, Option<&Version>)> {
        let mut v: Vec<(&Package, Option<&Version>)> = self
            .providers
            .get(name)
            .map(|ix| {
                ix.iter()
                    .map(|&i| {
                        let p = &self.packages[i];
                        let pv = p.provides.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_ref());
                        (p, pv)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.name.cmp(&b.0.name).then(b.0.version.cmp(&a.0.version)));
        v
    }

    /// Add the packages of another suite's index (e.g. `bookworm-updates`, `bookworm-security`):
    /// lookups then see every version, newest first.
    pub fn merge(&mut self, other: Index) {
        self.suite = format!("{}+{}", self.suite, other.suite);
        for p in other.packages {
            self.push(p);
        }
    }

    /// Keep only packages for `arch` and `Architecture: all` (a flat repository's one Packages
    /// index lists every architecture).
    pub fn retain_arch(&mut self, arch: &str) {
        let all = std::mem::take(&mut self.packages);
        (self.by_name, self.providers) = Default::default();
        for p in all.into_iter().filter(|p| p.arch == arch || p.arch == "all") {
            self.push(p);
        }
    }

    /// Download URL of a package (from the mirror that listed it).
    pub fn url(&self, p: &Package) -> String {
        let base = if p.mirror.is_empty() { &self.mirror } else { &p.mirror };
        format!("{base}/{}", p.filename)
    }

    /// The download item (for the cache) of a package.
    pub fn item(&self, p: &Package) -> Item {
        Item { name: p.name.clone(), url: self.url(p), sha256: p.sha256.clone(), size: p.size }
    }
}
