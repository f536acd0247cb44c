//! Dependency resolution over an [`Index`]: Depends and Pre-Depends, alternatives, virtual
//! packages through Provides, and version constraints. Recommends are not followed (like
//! `--no-install-recommends`). Choices are deterministic: the same index and request always give
//! the same set.

use crate::apt::{Dep, Index, Package};
use debversion::Version;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// `index` is "suite/arch", as in the other messages.
    #[error("package {name:?} is pinned to version {version}, which {index} does not have (it has: {available})")]
    NoVersion { name: String, version: String, index: String, available: String },
    #[error("package {name:?} is not in {suite}/{arch} (requested by {by})")]
    Unknown { name: String, suite: String, arch: String, by: String },
    #[error("{package}: cannot satisfy dependency \"{dep}\" in {suite}/{arch}: {why}")]
    Unsatisfiable { package: String, dep: String, suite: String, arch: String, why: String },
    /// `package` and `other` are "name version".
    #[error("{package} {field} \"{dep}\", but {other} is in the set too (exclude one of them, or pin another provider in packages.prefer)")]
    Conflict { package: String, field: &'static str, dep: String, other: String },
}

/// A package the spec asks for: `name`, or `name=version` (apt's spelling) to pin that exact
/// version. Checked when the spec is read; the resolver only compares versions.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct PackageRef {
    pub name: String,
    pub version: Option<Version>,
}

impl PackageRef {
    /// The package name (what `exclude`, `prefer` and kicbase's layer split compare).
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl TryFrom<String> for PackageRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = |why: &str| format!("packages.include: {s:?}: {why}");
        let (name, version) = match s.split_once('=') {
            None => (s.as_str(), None),
            Some((n, v)) => {
                let v: Version = v.trim().parse().map_err(|e| bad(&format!("bad version: {e:?}")))?;
                (n, Some(v))
            }
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
            return Err(bad("not a package name (write `name` or `name=version`)"));
        }
        Ok(PackageRef { name: name.to_string(), version })
    }
}

/// An unpinned package, by name (for requests built in code).
impl From<&str> for PackageRef {
    fn from(name: &str) -> Self {
        PackageRef { name: name.to_string(), version: None }
    }
}

impl std::fmt::Display for PackageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            None => f.write_str(&self.name),
            Some(v) => write!(f, "{}={v}", self.name),
        }
    }
}

/// Equal to its spelling in the spec: `"kubelet"` or `"kubelet=1.34.1-1.1"`.
impl PartialEq<str> for PackageRef {
    fn eq(&self, other: &str) -> bool {
        match (&self.version, other.split_once('=')) {
            (None, None) => self.name == other,
            (Some(v), Some((n, ov))) => self.name == n && v.to_string() == ov,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub include: Vec<PackageRef>,
    /// Add every `Priority: required` package.
    pub required: bool,
    pub exclude: Vec<String>,
    /// virtual name -> preferred provider
    pub prefer: BTreeMap<String, String>,
}

/// The resolved set, sorted by package name.
pub fn resolve<'a>(index: &'a Index, req: &Request) -> Result<Vec<&'a Package>, ResolveError> {
    let mut r = Resolver { index, req, chosen: BTreeMap::new(), queue: VecDeque::new() };
    let mut roots: Vec<(PackageRef, &str)> = req.include.iter().map(|n| (n.clone(), "the spec")).collect();
    if req.required {
        let mut req_names: BTreeSet<&str> = BTreeSet::new();
        for p in &index.packages {
            if p.priority == "required" {
                req_names.insert(&p.name);
            }
        }
        roots.extend(req_names.into_iter().map(|n| (PackageRef::from(n), "Priority: required")));
    }
    // Pinned roots first, so a dependency on the same name meets the pinned version.
    roots.sort_by_key(|(r, _)| r.version.is_none());
    for (root, by) in &roots {
        let name = &root.name;
        if req.exclude.contains(name) || r.chosen.contains_key(name) {
            continue;
        }
        let cands = index.by_name(name);
        if let Some(want) = &root.version {
            let Some(p) = cands.iter().find(|p| &p.version == want) else {
                return Err(ResolveError::NoVersion {
                    name: name.clone(),
                    version: want.to_string(),
                    index: format!("{}/{}", index.suite, index.arch),
                    available: if cands.is_empty() { "none".into() } else { cands.iter().map(|p| p.version.to_string()).collect::<Vec<_>>().join(", ") },
                });
            };
            r.choose(p);
            continue;
        }
        let pick = match cands.first() {
            Some(p) => *p,
            None => match r.pick_provider(name, None) {
                Some(p) => p,
                None => return Err(ResolveError::Unknown { name: name.clone(), suite: index.suite.clone(), arch: index.arch.clone(), by: by.to_string() }),
            },
        };
        r.choose(pick);
    }
    while let Some(p) = r.queue.pop_front() {
        for group in p.pre_depends.iter().chain(p.depends.iter()) {
            if group.iter().any(|d| r.satisfied(d)) {
                continue;
            }
            let mut picked = None;
            let mut why = Vec::new();
            for d in group {
                if r.req.exclude.contains(&d.name) {
                    why.push(format!("{} is excluded by the spec", d.name));
                    continue;
                }
                if let Some(have) = r.chosen.get(&d.name) {
                    // Another version is already in the set (pinned by the spec, or chosen first).
                    why.push(format!("{} {} is in the set", have.name, have.version));
                    continue;
                }
                if let Some(c) = r.candidate(d) {
                    picked = Some(c);
                    break;
                }
                why.push(format!("no candidate for {d}"));
            }
            match picked {
                Some(c) => r.choose(c),
                None => {
                    return Err(ResolveError::Unsatisfiable {
                        package: p.name.clone(),
                        dep: group.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" | "),
                        suite: index.suite.clone(),
                        arch: index.arch.clone(),
                        why: why.join("; "),
                    })
                }
            }
        }
    }
    check_conflicts(&r.chosen)?;
    Ok(r.chosen.into_values().collect())
}

/// A versioned relation on a virtual name holds only if the provider states a version.
fn provided_version_holds(cons: Option<&(crate::apt::Op, debversion::Version)>, provided: Option<&debversion::Version>) -> bool {
    match (cons, provided) {
        (None, _) => true,
        (Some((op, v)), Some(pv)) => op.holds(pv, v),
        (Some(_), None) => false,
    }
}

/// `p` is what `d` names: the package itself in a matching version, or a provider of it.
fn satisfies(p: &Package, d: &Dep) -> bool {
    (p.name == d.name && d.constraint.as_ref().is_none_or(|(op, v)| op.holds(&p.version, v)))
        || p.provides.iter().any(|(n, pv)| n == &d.name && provided_version_holds(d.constraint.as_ref(), pv.as_ref()))
}

/// No chosen package `Breaks` or `Conflicts` another chosen one (by name with its version, or
/// through a virtual name the other provides). A package never conflicts with itself.
pub fn check_conflicts(chosen: &BTreeMap<String, &Package>) -> Result<(), ResolveError> {
    for p in chosen.values() {
        for (field, deps) in [("Breaks", &p.breaks), ("Conflicts", &p.conflicts)] {
            for d in deps {
                if let Some(q) = chosen.values().find(|q| q.name != p.name && satisfies(q, d)) {
                    return Err(ResolveError::Conflict {
                        package: format!("{} {}", p.name, p.version),
                        field,
                        dep: d.to_string(),
                        other: format!("{} {}", q.name, q.version),
                    });
                }
            }
        }
    }
    Ok(())
}

struct Resolver<'a, 'r> {
    index: &'a Index,
    req: &'r Request,
    chosen: BTreeMap<String, &'a Package>,
    queue: VecDeque<&'a Package>,
}

impl<'a> Resolver<'a, '_> {
    fn choose(&mut self, p: &'a Package) {
        if self.chosen.contains_key(&p.name) {
            return;
        }
        self.chosen.insert(p.name.clone(), p);
        self.queue.push_back(p);
    }

    /// Already satisfied by a chosen package (directly or through Provides)?
    fn satisfied(&self, d: &Dep) -> bool {
        self.chosen.values().any(|p| satisfies(p, d))
    }

    /// Best package that satisfies `d`, if any. A candidate whose own dependencies cannot
    /// possibly be met (one level of look-ahead) is passed over, so an alternative is tried
    /// instead of failing later.
    fn candidate(&self, d: &Dep) -> Option<&'a Package> {
        for p in self.index.by_name(&d.name) {
            if d.constraint.as_ref().is_none_or(|(op, v)| op.holds(&p.version, v)) && self.plausible(p) {
                return Some(p);
            }
        }
        self.pick_provider(&d.name, d.constraint.as_ref())
    }

    /// Every dependency group of `p` has at least one alternative present in the index.
    fn plausible(&self, p: &Package) -> bool {
        p.pre_depends.iter().chain(p.depends.iter()).all(|group| {
            group.iter().any(|d| {
                self.satisfied(d)
                    || self.index.by_name(&d.name).iter().any(|c| d.constraint.as_ref().is_none_or(|(op, v)| op.holds(&c.version, v)))
                    || !self.index.providers(&d.name).is_empty()
            })
        })
    }

    fn pick_provider(&self, name: &str, cons: Option<&(crate::apt::Op, debversion::Version)>) -> Option<&'a Package> {
        let provs: Vec<&'a Package> = self
            .index
            .providers(name)
            .into_iter()
            .filter(|(p, pv)| !self.req.exclude.contains(&p.name) && self.plausible(p) && provided_version_holds(cons, *pv))
            .map(|(p, _)| p)
            .collect();
        if let Some(pref) = self.req.prefer.get(name) {
            if let Some(p) = provs.iter().find(|p| &p.name == pref) {
                return Some(p);
            }
        }
        // Prefer a provider the spec asked for, then one of higher priority, then by name.
        let rank = |p: &Package| match p.priority.as_str() {
            "required" => 0,
            "important" => 1,
            "standard" => 2,
            _ => 3,
        };
        provs.iter().copied().min_by_key(|p| (!self.req.include.iter().any(|r| r.name == p.name), rank(p), p.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx() -> Index {
        let text = "\
Package: app
Version: 1.0
Architecture: amd64
Depends: libc6 (>= 2.30), mail-transport-agent | sendmail-lite, awk
Filename: pool/a/app.deb
Size: 1
SHA256: 00

Package: libc6
Version: 2.36-9
Architecture: amd64
Priority: required
Filename: pool/l/libc6.deb
Size: 1
SHA256: 01

Package: postfix
Version: 3.7
Architecture: amd64
Provides: mail-transport-agent
Depends: libc6 (>= 2.40)
Filename: pool/p/postfix.deb
Size: 1
SHA256: 02

Package: sendmail-lite
Version: 1
Architecture: amd64
Filename: pool/s/s.deb
Size: 1
SHA256: 03

Package: mawk
Version: 1.3.4
Architecture: amd64
Priority: required
Provides: awk
Filename: pool/m/mawk.deb
Size: 1
SHA256: 04

Package: gawk
Version: 5.2
Architecture: amd64
Provides: awk
Filename: pool/g/gawk.deb
Size: 1
SHA256: 05
";
        Index::parse(text, "http://m", "bookworm", "amd64").unwrap()
    }

    fn names(v: &[&Package]) -> Vec<String> {
        v.iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn resolves_alternatives_virtuals_and_versions() {
        let i = idx();
        let got = resolve(&i, &Request { include: vec!["app".into()], ..Default::default() }).unwrap();
        // postfix provides the MTA but needs libc6 >= 2.40, which the index lacks: the resolver
        // passes over it to the next alternative. awk is virtual: mawk (required) beats gawk.
        assert_eq!(names(&got), ["app", "libc6", "mawk", "sendmail-lite"]);
        assert_eq!(got[1].version.to_string(), "2.36-9");
    }

    #[test]
    fn unknown_package_names_the_suite() {
        let i = idx();
        let e = resolve(&i, &Request { include: vec!["nosuch".into()], ..Default::default() }).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("\"nosuch\"") && s.contains("bookworm/amd64"), "{s}");
    }

    #[test]
    fn exclusion_moves_to_next_alternative_and_priority_picks_provider() {
        let i = idx();
        let got = resolve(&i, &Request { include: vec!["app".into()], exclude: vec!["postfix".into()], ..Default::default() }).unwrap();
        assert_eq!(names(&got), ["app", "libc6", "mawk", "sendmail-lite"]);
    }

    #[test]
    fn preferred_provider_wins() {
        let i = idx();
        let mut prefer = BTreeMap::new();
        prefer.insert("awk".to_string(), "gawk".to_string());
        let got = resolve(&i, &Request { include: vec!["app".into()], exclude: vec!["postfix".into()], prefer, ..Default::default() }).unwrap();
        assert!(names(&got).contains(&"gawk".to_string()));
        assert!(!names(&got).contains(&"mawk".to_string()));
    }

    #[test]
    fn unsatisfiable_version_is_reported_with_package_and_dep() {
        let i = idx();
        let e = resolve(&i, &Request { include: vec!["postfix".into()], ..Default::default() }).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("postfix") && s.contains("libc6 (>= 2.40)"), "{s}");
    }

    #[test]
    fn breaks_and_conflicts_are_errors_naming_both_packages() {
        let text = "\
Package: new-tool
Version: 2.0
Architecture: amd64
Breaks: old-lib (<< 2)
Conflicts: mta
Provides: mta
Filename: pool/n/n.deb
Size: 1
SHA256: 10

Package: old-lib
Version: 1.5
Architecture: amd64
Filename: pool/o/o.deb
Size: 1
SHA256: 11

Package: exim
Version: 4
Architecture: amd64
Provides: mta
Filename: pool/e/e.deb
Size: 1
SHA256: 12
";
        let i = Index::parse(text, "http://m", "bookworm", "amd64").unwrap();
        let req = |names: &[&str]| Request { include: names.iter().map(|&s| s.into()).collect(), ..Default::default() };
        // Conflicting with a virtual name it provides itself is fine.
        assert!(resolve(&i, &req(&["new-tool"])).is_ok());
        let e = resolve(&i, &req(&["new-tool", "old-lib"])).unwrap_err().to_string();
        assert!(e.contains("new-tool 2.0 Breaks \"old-lib (<< 2)\"") && e.contains("old-lib 1.5"), "{e}");
        let e = resolve(&i, &req(&["new-tool", "exim"])).unwrap_err().to_string();
        assert!(e.contains("Conflicts \"mta\"") && e.contains("exim 4"), "{e}");
    }

    #[test]
    fn pinned_version_wins_and_a_dependency_cannot_replace_it() {
        let text = "\
Package: kubelet
Version: 1.34.1-1.1
Architecture: amd64
Filename: pool/k/kubelet_new.deb
Size: 1
SHA256: 20

Package: kubelet
Version: 1.33.5-1.1
Architecture: amd64
Filename: pool/k/kubelet_old.deb
Size: 1
SHA256: 21

Package: kubeadm
Version: 1.34.1-1.1
Architecture: amd64
Depends: kubelet (>= 1.34.0)
Filename: pool/k/kubeadm.deb
Size: 1
SHA256: 22
";
        let i = Index::parse(text, "http://m", "k8s", "amd64").unwrap();
        let pin = |s: &str| PackageRef::try_from(s.to_string()).unwrap();
        let got = resolve(&i, &Request { include: vec![pin("kubelet=1.33.5-1.1")], ..Default::default() }).unwrap();
        assert_eq!(got[0].filename, "pool/k/kubelet_old.deb");
        // The pin is honoured even when listed after what depends on the package, and a
        // dependency the pinned version does not meet is an error, never a silent swap.
        let e = resolve(&i, &Request { include: vec![pin("kubeadm"), pin("kubelet=1.33.5-1.1")], ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("kubelet (>= 1.34.0)") && e.contains("kubelet 1.33.5-1.1 is in the set"), "{e}");
        let e = resolve(&i, &Request { include: vec![pin("kubelet=1.30.0-1.1")], ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("pinned to version 1.30.0-1.1") && e.contains("1.34.1-1.1, 1.33.5-1.1"), "{e}");
    }

    #[test]
    fn package_refs_are_checked_when_read() {
        let r = PackageRef::try_from("cri-tools=1.34.0-1.1".to_string()).unwrap();
        assert_eq!((r.name.as_str(), r.version.as_ref().unwrap().to_string().as_str()), ("cri-tools", "1.34.0-1.1"));
        assert!(r == *"cri-tools=1.34.0-1.1" && r.as_str() == "cri-tools");
        for bad in ["kubelet=", "=1.0", "kube let", "kubelet==1"] {
            let e = PackageRef::try_from(bad.to_string()).unwrap_err();
            assert!(e.starts_with("packages.include:"), "{bad}: {e}");
        }
    }
}
