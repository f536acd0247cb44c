//! systemd units as `systemctl enable` and `mask` would leave them: links from the `[Install]`
//! section (WantedBy, RequiredBy, Alias, Also, DefaultInstance), masks to /dev/null.

use super::{put_link, text, SystemError};
use crate::rootfs::Tree;
use std::collections::{BTreeMap, BTreeSet};

/// Find a unit file in the tree.
fn unit_path(tree: &Tree, unit: &str) -> Option<String> {
    for dir in ["/etc/systemd/system", "/usr/lib/systemd/system"] {
        let p = format!("{dir}/{unit}");
        if tree.contains(&p) {
            return Some(p);
        }
    }
    None
}

/// `[Install]` keys of a unit file.
fn install_section(body: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_install = false;
    for l in body.lines() {
        let l = l.trim();
        if l.starts_with('[') {
            in_install = l == "[Install]";
            continue;
        }
        if !in_install || l.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            out.entry(k.trim().to_string()).or_default().extend(v.split_whitespace().map(String::from));
        }
    }
    out
}

/// Enable units as `systemctl enable` would: wants/requires symlinks, aliases, `Also=`.
pub fn enable_units(tree: &mut Tree, units: &[String], epoch: u64) -> Result<(), SystemError> {
    let mut todo: Vec<String> = units.to_vec();
    let mut done = BTreeSet::new();
    while let Some(unit) = todo.pop() {
        if !done.insert(unit.clone()) {
            continue;
        }
        // A template instance (getty@tty1.service) is enabled through its template file.
        let (file_unit, instance) = match unit.split_once('@') {
            Some((pre, rest)) if !rest.starts_with('.') => {
                let (inst, suffix) = rest.rsplit_once('.').unwrap_or((rest, "service"));
                (format!("{pre}@.{suffix}"), Some(inst.to_string()))
            }
            _ => (unit.clone(), None),
        };
        let path = unit_path(tree, &file_unit).ok_or_else(|| SystemError::UnitNotFound { unit: unit.clone() })?;
        let body = text(tree, &path).unwrap_or_default();
        let inst = install_section(&body);
        let instance = instance.or_else(|| inst.get("DefaultInstance").and_then(|v| v.first().cloned()));
        let link_name = match (&instance, file_unit.split_once("@.")) {
            (Some(i), Some((pre, suffix))) => format!("{pre}@{i}.{suffix}"),
            _ => file_unit.clone(),
        };
        for (key, dir) in [("WantedBy", "wants"), ("RequiredBy", "requires")] {
            for target in inst.get(key).into_iter().flatten() {
                put_link(tree, &format!("/etc/systemd/system/{target}.{dir}/{link_name}"), &path, epoch);
            }
        }
        for alias in inst.get("Alias").into_iter().flatten() {
            put_link(tree, &format!("/etc/systemd/system/{alias}"), &path, epoch);
        }
        todo.extend(inst.get("Also").into_iter().flatten().cloned());
    }
    Ok(())
}

/// Mask units: a link to /dev/null in /etc/systemd/system, as `systemctl mask` makes.
pub fn mask_units(tree: &mut Tree, units: &[String], epoch: u64) {
    for u in units {
        put_link(tree, &format!("/etc/systemd/system/{u}"), "/dev/null", epoch);
    }
}

/// Whether the unit (or, for an instance like `getty@tty1.service`, its template) is in the tree.
pub fn has_unit(tree: &Tree, unit: &str) -> bool {
    let file_unit = match unit.split_once('@') {
        Some((pre, rest)) if !rest.starts_with('.') => {
            let suffix = rest.rsplit_once('.').map(|(_, s)| s).unwrap_or("service");
            format!("{pre}@.{suffix}")
        }
        _ => unit.to_string(),
    };
    unit_path(tree, &file_unit).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::Entry;
    use crate::system::is_link_to;

    #[test]
    fn enable_follows_install_section() {
        let mut t = Tree::new();
        t.insert(
            "/usr/lib/systemd/system/a.service",
            Entry::file(b"[Unit]\n[Install]\nWantedBy=multi-user.target\nAlias=b.service\nAlso=c.socket\n".to_vec(), 0o644),
        );
        t.insert("/usr/lib/systemd/system/c.socket", Entry::file(b"[Install]\nWantedBy=sockets.target\n".to_vec(), 0o644));
        t.insert("/usr/lib/systemd/system/getty@.service", Entry::file(b"[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n".to_vec(), 0o644));
        enable_units(&mut t, &["a.service".into(), "getty@.service".into()], 0).unwrap();
        assert!(is_link_to(&t, "/etc/systemd/system/multi-user.target.wants/a.service", "/usr/lib/systemd/system/a.service"));
        assert!(is_link_to(&t, "/etc/systemd/system/b.service", "/usr/lib/systemd/system/a.service"));
        assert!(is_link_to(&t, "/etc/systemd/system/sockets.target.wants/c.socket", "/usr/lib/systemd/system/c.socket"));
        assert!(is_link_to(&t, "/etc/systemd/system/getty.target.wants/getty@tty1.service", "/usr/lib/systemd/system/getty@.service"));
        let e = enable_units(&mut t, &["nope.service".into()], 0).unwrap_err();
        assert!(e.to_string().contains("nope.service"));
    }
}
