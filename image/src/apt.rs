//! The Debian archive as a package source: the machine's apt sources (to find the mirror), the
//! signed Release file (checked with `gpgv` when the archive keyring is present) and the Packages
//! index, checked against the Release hashes and parsed into [`Index`].

use fetch::{Cache, FetchError, Http, Item};
pub use crate::repo::parse_release_hashes;
use debversion::Version;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("no apt source for suite {suite:?} in {searched}; pass --mirror URL")]
    NoMirror { suite: String, searched: String },
    #[error("apt sources {path}: {message}; fix the file or pass --mirror URL")]
    Sources { path: PathBuf, message: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("Release file {url}: signature check failed: {message}")]
    Signature { url: String, message: String },
    #[error("Release file {url}: {message}")]
    Release { url: String, message: String },
    #[error("Packages index {url}: {message}")]
    Index { url: String, message: String },
    /// An extra repository's InRelease did not verify with its own key (never skipped).
    #[error("repository {url}: signature check with key {key} failed: {message}")]
    RepoSignature { url: String, key: PathBuf, message: String },
    #[error("repository {url}: key file {key}: {message}")]
    RepoKey { url: String, key: PathBuf, message: String },
}

/// One `deb` line or stanza from apt's sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub signed_by: Option<PathBuf>,
}

/// Parse apt sources under `root` (normally "/"): `etc/apt/sources.list`, and
/// `etc/apt/sources.list.d/*.list` (one-line style) and `*.sources` (deb822 style). A file
/// that cannot be read or parsed is an error naming it, never skipped.
pub fn read_sources(root: &Path) -> Result<Vec<Source>, AptError> {
    let mut out = Vec::new();
    let etc = root.join("etc/apt");
    if let Ok(t) = std::fs::read_to_string(etc.join("sources.list")) {
        out.extend(parse_one_line_sources(&t));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(etc.join("sources.list.d"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let ext = f.extension().and_then(|e| e.to_str());
        if !matches!(ext, Some("list" | "sources")) {
            continue;
        }
        let t = std::fs::read_to_string(&f).map_err(|e| AptError::Sources { path: f.clone(), message: e.to_string() })?;
        match ext {
            Some("list") => out.extend(parse_one_line_sources(&t)),
            _ => out.extend(parse_deb822_sources(&t).map_err(|message| AptError::Sources { path: f.clone(), message })?),
        }
    }
    Ok(out)
}

pub fn parse_one_line_sources(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace().peekable();
        if words.next() != Some("deb") {
            continue;
        }
        let mut signed_by = None;
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            let mut opts = String::new();
            for w in words.by_ref() {
                opts.push_str(w);
                opts.push(' ');
                if w.ends_with(']') {
                    break;
                }
            }
            for o in opts.trim_matches(|c| c == '[' || c == ']' || c == ' ').split_whitespace() {
                if let Some(v) = o.strip_prefix("signed-by=") {
                    signed_by = Some(PathBuf::from(v));
                }
            }
        }
        let Some(uri) = words.next() else { continue };
        let Some(suite) = words.next() else { continue };
        out.push(Source {
            uri: uri.trim_end_matches('/').to_string(),
            suites: vec![suite.to_string()],
            components: words.map(String::from).collect(),
            signed_by,
        });
    }
    out
}

pub fn parse_deb822_sources(text: &str) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    let doc = text.parse::<deb822_fast::Deb822>().map_err(|e| format!("not deb822: {e}"))?;
    for p in doc.iter() {
        let types = p.get("Types").unwrap_or("");
        if !types.split_whitespace().any(|t| t == "deb") {
            continue;
        }
        if p.get("Enabled").is_some_and(|v| v.trim() == "no") {
            continue;
        }
        let words = |k: &str| -> Vec<String> {
            p.get(k).unwrap_or("").split_whitespace().map(String::from).collect()
        };
        let signed_by = p.get("Signed-By").map(|s| s.trim()).filter(|s| s.starts_with('/')).map(PathBuf::from);
        for uri in words("URIs") {
            out.push(Source {
                uri: uri.trim_end_matches('/').to_string(),
                suites: words("Suites"),
                components: words("Components"),
                signed_by: signed_by.clone(),
            });
        }
    }
    Ok(out)
}

/// The mirror serving `suite`, from the machine's apt sources.
pub fn find_mirror<'a>(sources: &'a [Source], suite: &str) -> Option<&'a Source> {
    sources.iter().find(|s| s.suites.iter().any(|x| x == suite))
}

/// How far the Release file was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// `gpgv` verified InRelease against this keyring.
    Verified { keyring: PathBuf },
    /// Not checked, with the reason (no keyring or no gpgv on this machine).
    NotChecked { reason: String },
}

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

/// One alternative in a dependency: `name (op version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    pub constraint: Option<(Op, Version)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    pub fn holds(self, have: &Version, want: &Version) -> bool {
        use std::cmp::Ordering::*;
        let c = have.cmp(want);
        match self {
            Op::Lt => c == Less,
            Op::Le => c != Greater,
            Op::Eq => c == Equal,
            Op::Ge => c != Less,
            Op::Gt => c == Greater,
        }
    }
}

impl std::fmt::Display for Dep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.constraint {
            None => write!(f, "{}", self.name),
            Some((op, v)) => {
                let o = match op {
                    Op::Lt => "<<",
                    Op::Le => "<=",
                    Op::Eq => "=",
                    Op::Ge => ">=",
                    Op::Gt => ">>",
                };
                write!(f, "{} ({o} {v})", self.name)
            }
        }
    }
}

/// Parse a Depends-style field: `a (>= 1), b | c:any, d [amd64]`.
pub fn parse_relations(field: &str) -> Result<Vec<Vec<Dep>>, String> {
    let mut out = Vec::new();
    for group in field.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let mut alts = Vec::new();
        for alt in group.split('|') {
            let alt = alt.trim();
            // name [(constraint)] [arch restriction] [<build profile>]: the restrictions are
            // not used in binary indexes and are dropped.
            let name_end = alt.find(['(', '[', '<', ' ']).unwrap_or(alt.len());
            let name_part = &alt[..name_end];
            let cons = match (alt.find('('), alt.find(')')) {
                (Some(i), Some(j)) if j > i => Some(alt[i + 1..j].trim()),
                (Some(_), _) => return Err(format!("unclosed parenthesis in {alt:?}")),
                _ => None,
            };
            let name = name_part.trim().split(':').next().unwrap_or("").to_string();
            if name.is_empty() {
                return Err(format!("empty package name in {group:?}"));
            }
            let constraint = match cons {
                None => None,
                Some(c) => {
                    let (op, rest) = if let Some(r) = c.strip_prefix(">=") {
                        (Op::Ge, r)
                    } else if let Some(r) = c.strip_prefix("<=") {
                        (Op::Le, r)
                    } else if let Some(r) = c.strip_prefix(">>") {
                        (Op::Gt, r)
                    } else if let Some(r) = c.strip_prefix("<<") {
                        (Op::Lt, r)
                    } else if let Some(r) = c.strip_prefix('=') {
                        (Op::Eq, r)
                    } else if let Some(r) = c.strip_prefix('>') {
                        (Op::Ge, r) // obsolete spelling of >=
                    } else if let Some(r) = c.strip_prefix('<') {
                        (Op::Le, r)
                    } else {
                        return Err(format!("bad version constraint {c:?}"));
                    };
                    let v: Version = rest.trim().parse().map_err(|e| format!("bad version {rest:?}: {e:?}"))?;
                    Some((op, v))
                }
            };
            alts.push(Dep { name, constraint });
        }
        out.push(alts);
    }
    Ok(out)
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
            let version: Version = get("Version")
                .ok_or_else(|| ctx("no Version".into()))?
                .parse()
                .map_err(|e| ctx(format!("bad Version: {e:?}")))?;
            let rel = |k: &str| -> Result<Vec<Vec<Dep>>, String> {
                get(k).map(parse_relations).transpose().map(|o| o.unwrap_or_default()).map_err(|m| ctx(format!("{k}: {m}")))
            };
            let provides = rel("Provides")?
                .into_iter()
                .flatten()
                .map(|d| (d.name, d.constraint.map(|(_, v)| v)))
                .collect();
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

/// Where and what to read from the archive.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub mirror: String,
    pub suite: String,
    pub arch: String,
    pub components: Vec<String>,
    pub keyring: Option<PathBuf>,
}

impl ArchiveConfig {
    /// Mirror from `mirror` or else the machine's apt sources; keyring from the source's
    /// Signed-By or the Debian archive keyring when present.
    pub fn from_machine(mirror: Option<&str>, suite: &str, arch: &str, components: &[String]) -> Result<Self, AptError> {
        let sources = read_sources(Path::new("/"))?;
        let (mirror, signed_by) = match mirror {
            Some(m) => (m.trim_end_matches('/').to_string(), None),
            None => {
                let s = find_mirror(&sources, suite).ok_or_else(|| AptError::NoMirror {
                    suite: suite.into(),
                    searched: "/etc/apt/sources.list and /etc/apt/sources.list.d".into(),
                })?;
                (s.uri.clone(), s.signed_by.clone())
            }
        };
        let default_keyring = PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg");
        let keyring = signed_by.filter(|p| p.exists()).or_else(|| default_keyring.exists().then_some(default_keyring));
        Ok(ArchiveConfig { mirror, suite: suite.into(), arch: arch.into(), components: components.to_vec(), keyring })
    }
}

/// Check an InRelease file with gpgv; returns the signed text.
fn verify_inrelease(data: &[u8], keyring: Option<&Path>, url: &str) -> Result<(String, Signature), AptError> {
    let cleartext = || -> String {
        // Strip the OpenPGP armour: the text between the first blank line and the signature.
        let t = String::from_utf8_lossy(data);
        let body = t.split_once("\n\n").map(|(_, b)| b).unwrap_or(&t);
        body.split("\n-----BEGIN PGP SIGNATURE-----").next().unwrap_or("").to_string()
    };
    let Some(keyring) = keyring else {
        return Ok((cleartext(), Signature::NotChecked { reason: "no Debian archive keyring on this machine".into() }));
    };
    match crate::repo::gpgv(data, keyring) {
        Ok(Some(text)) => Ok((text, Signature::Verified { keyring: keyring.to_path_buf() })),
        Ok(None) => Ok((cleartext(), Signature::NotChecked { reason: "gpgv is not installed".into() })),
        Err(message) => Err(AptError::Signature { url: url.into(), message }),
    }
}

/// Fetch and check the Release file and the Packages indexes, using the cache for indexes.
pub fn load_index(cfg: &ArchiveConfig, http: &Http, cache: &Cache) -> Result<Index, AptError> {
    let rel_url = format!("{}/dists/{}/InRelease", cfg.mirror, cfg.suite);
    let data = match http.get(&rel_url) {
        Err(FetchError::Status { status: 404, .. }) => {
            return Err(AptError::Release {
                url: rel_url,
                message: format!("suite {:?} not found on this mirror", cfg.suite),
            })
        }
        r => r?,
    };
    let (text, sig) = verify_inrelease(&data, cfg.keyring.as_deref(), &rel_url)?;
    match &sig {
        Signature::Verified { keyring } => tracing::info!(keyring = %keyring.display(), "Release signature verified"),
        Signature::NotChecked { reason } => tracing::warn!("Release signature NOT checked: {reason}"),
    }
    let hashes = parse_release_hashes(&text);
    let base = format!("{}/dists/{}", cfg.mirror, cfg.suite);
    let mut all = String::new();
    for comp in &cfg.components {
        let names: Vec<String> = crate::repo::PACKAGES_FILES.iter().map(|f| format!("{comp}/binary-{}/{f}", cfg.arch)).collect();
        let Some(text) = crate::repo::fetch_listed(http, cache, &base, &hashes, &names)? else {
            return Err(AptError::Release {
                url: rel_url.clone(),
                message: format!("lists no Packages index for {comp}/binary-{}", cfg.arch),
            });
        };
        all.push_str(&text);
        all.push_str("\n\n");
    }
    let mut idx = Index::parse(&all, &cfg.mirror, &cfg.suite, &cfg.arch)
        .map_err(|m| AptError::Index { url: rel_url.clone(), message: m })?;
    idx.signature = Some(sig);
    Ok(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_source_styles() {
        let one = "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian/ bookworm main contrib\ndeb-src http://x y z\n";
        let s = parse_one_line_sources(one);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].uri, "http://m.example/debian");
        assert_eq!(s[0].suites, ["bookworm"]);
        assert_eq!(s[0].signed_by.as_deref(), Some(Path::new("/k.gpg")));
        let d = "Types: deb\nURIs: http://a/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/k.gpg\n\nTypes: deb-src\nURIs: http://b\nSuites: x\n";
        let s = parse_deb822_sources(d).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(find_mirror(&s, "bookworm-updates").unwrap().uri, "http://a/debian");
        assert!(find_mirror(&s, "trixie").is_none());
    }

    #[test]
    fn parses_relations() {
        let r = parse_relations("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any, foo [amd64], bar (<< 2.0) <!nocheck>").unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[4][0].to_string(), "bar (<< 2.0)");
        assert_eq!(r[1].len(), 2);
        assert_eq!(r[1][1].name, "debconf-2.0");
        assert_eq!(r[2][0].name, "python3");
        assert_eq!(r[3][0].name, "foo");
        assert_eq!(r[0][0].to_string(), "libc6 (>= 2.34)");
        let v: Version = "2.36-9".parse().unwrap();
        assert!(Op::Ge.holds(&v, &"2.34".parse().unwrap()));
        assert!(!Op::Lt.holds(&v, &"2.34".parse().unwrap()));
    }
}
