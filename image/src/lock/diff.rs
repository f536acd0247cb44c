//! What changed between two locks: packages added, removed, upgraded (or downgraded, or the
//! same version with other bytes), and which of them come from a security suite.

use super::Locked;
use debversion::Version;
use std::collections::BTreeMap;
use std::fmt;

/// The difference from an old lock to a new one, per image architecture and package name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<Locked>,
    pub removed: Vec<Locked>,
    /// (old, new): another version, or the same version with another SHA-256.
    pub changed: Vec<(Locked, Locked)>,
}

impl Diff {
    pub fn between(old: &[Locked], new: &[Locked]) -> Diff {
        let key = |p: &Locked| (p.target.debian(), p.name.clone());
        let old_by: BTreeMap<_, &Locked> = old.iter().map(|p| (key(p), p)).collect();
        let new_by: BTreeMap<_, &Locked> = new.iter().map(|p| (key(p), p)).collect();
        let mut d = Diff::default();
        for (k, n) in &new_by {
            match old_by.get(k) {
                None => d.added.push((*n).clone()),
                Some(o) if o.version != n.version || o.sha256 != n.sha256 => d.changed.push(((*o).clone(), (*n).clone())),
                Some(_) => {}
            }
        }
        d.removed = old_by.iter().filter(|(k, _)| !new_by.contains_key(*k)).map(|(_, p)| (*p).clone()).collect();
        d
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Added or changed packages whose new version comes from a security suite.
    pub fn security(&self) -> Vec<&Locked> {
        self.added.iter().chain(self.changed.iter().map(|(_, n)| n)).filter(|p| p.is_security()).collect()
    }

    /// Changed packages whose version went up.
    pub fn upgraded(&self) -> usize {
        self.changed.iter().filter(|(o, n)| direction(o, n) == "upgraded").count()
    }
}

fn direction(o: &Locked, n: &Locked) -> &'static str {
    match (o.version.parse::<Version>(), n.version.parse::<Version>()) {
        (Ok(a), Ok(b)) if b > a => "upgraded",
        (Ok(a), Ok(b)) if b < a => "downgraded",
        _ => "rebuilt",
    }
}

fn origin(p: &Locked) -> String {
    let sec = if p.is_security() { ", security" } else { "" };
    format!("({}, {}{sec})", p.target.debian(), p.suite)
}

impl fmt::Display for Diff {
    /// One line per change, then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.added {
            writeln!(f, "added      {} {} {}", p.name, p.version, origin(p))?;
        }
        for p in &self.removed {
            writeln!(f, "removed    {} {} ({})", p.name, p.version, p.target.debian())?;
        }
        for (o, n) in &self.changed {
            let what = direction(o, n);
            if what == "rebuilt" {
                writeln!(
                    f,
                    "{what:<10} {} {} {}: sha256 {} → {}",
                    n.name,
                    n.version,
                    origin(n),
                    &o.sha256[..12.min(o.sha256.len())],
                    &n.sha256[..12.min(n.sha256.len())]
                )?;
            } else {
                writeln!(f, "{what:<10} {} {} → {} {}", n.name, o.version, n.version, origin(n))?;
            }
        }
        let sec = self.security();
        let names: Vec<&str> = sec.iter().map(|p| p.name.as_str()).collect();
        write!(
            f,
            "{} added, {} removed, {} upgraded, {} other changes; {} from a security suite{}",
            self.added.len(),
            self.removed.len(),
            self.upgraded(),
            self.changed.len() - self.upgraded(),
            sec.len(),
            if names.is_empty() { String::new() } else { format!(": {}", names.join(", ")) }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::Role;
    use super::*;
    use platform::Arch;

    fn p(name: &str, version: &str, suite: &str) -> Locked {
        Locked {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            target: Arch::X86_64,
            role: Role::Install,
            priority: "optional".into(),
            suite: suite.into(),
            filename: format!("pool/{name}_{version}.deb"),
            size: 1,
            sha256: pki::digest::sha256_hex(format!("{name}{version}").as_bytes()),
        }
    }

    #[test]
    fn added_removed_upgraded_and_security() {
        let old = vec![
            p("bash", "5.2.15-2+b2", "bookworm"),
            p("gone", "1.0", "bookworm"),
            p("libc6", "2.36-9+deb12u4", "bookworm"),
            p("same", "1", "bookworm"),
            p("tzdata", "2025a-0+deb12u1", "bookworm-updates"),
        ];
        let mut rebuilt = p("same", "1", "bookworm");
        rebuilt.sha256 = "00".repeat(32);
        let new = vec![
            p("bash", "5.2.15-2+b2", "bookworm"),
            p("libc6", "2.36-9+deb12u10", "bookworm-security"),
            p("new", "3", "bookworm-security"),
            rebuilt,
            p("tzdata", "2024a-0+deb12u1", "bookworm"),
        ];
        let d = Diff::between(&old, &new);
        assert_eq!(d.added.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["new"]);
        assert_eq!(d.removed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["gone"]);
        assert_eq!(d.changed.iter().map(|(_, n)| n.name.as_str()).collect::<Vec<_>>(), ["libc6", "same", "tzdata"]);
        assert_eq!(d.upgraded(), 1);
        assert_eq!(d.security().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["new", "libc6"]);
        let text = d.to_string();
        assert!(text.contains("added      new 3 (amd64, bookworm-security, security)\n"), "{text}");
        assert!(text.contains("removed    gone 1.0 (amd64)\n"), "{text}");
        assert!(text.contains("upgraded   libc6 2.36-9+deb12u4 → 2.36-9+deb12u10 (amd64, bookworm-security, security)\n"), "{text}");
        assert!(text.contains("downgraded tzdata 2025a-0+deb12u1 → 2024a-0+deb12u1 (amd64, bookworm)\n"), "{text}");
        assert!(text.contains("rebuilt    same 1 (amd64, bookworm): sha256 "), "{text}");
        assert!(text.ends_with("1 added, 1 removed, 1 upgraded, 2 other changes; 2 from a security suite: new, libc6"), "{text}");
        assert!(!text.contains("bash"), "{text}");
        assert!(Diff::between(&new, &new).is_empty());
        // Another architecture's entry of the same name is another package.
        let mut arm = p("bash", "5.2.15-2+b2", "bookworm");
        arm.target = Arch::Aarch64;
        assert_eq!(Diff::between(&old[..1], &[old[0].clone(), arm]).added.len(), 1);
    }
}
