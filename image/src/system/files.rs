//! What maintainer scripts do to files, done on the tree: docs and locales dropped, alternatives
//! links, template copies (`ucf`), file capabilities (`setcap`), the CA bundle and its OpenSSL
//! hash links (`update-ca-certificates`), /var/run and /var/lock as links into /run.

use super::{is_link_to, put_file, put_link, SystemError};
use crate::rootfs::{glob_match, Entry, Kind, Tree};
use std::collections::BTreeMap;

/// The alternatives symlinks of the spec; the target must be in the tree.
pub fn apply_alternatives(tree: &mut Tree, alts: &BTreeMap<String, String>, epoch: u64) -> Result<(), SystemError> {
    for (link, target) in alts {
        let t = crate::deb::merged_path(target);
        if !tree.contains(&t) {
            return Err(SystemError::MissingAlternative { link: link.clone(), target: target.clone() });
        }
        put_link(tree, &crate::deb::merged_path(link), &t, epoch);
    }
    Ok(())
}

/// Copy template files inside the tree (what `ucf` does in postinst scripts).
pub fn apply_copies(tree: &mut Tree, copies: &BTreeMap<String, String>, epoch: u64) -> Result<(), SystemError> {
    for (dest, src) in copies {
        let e = tree
            .get(&crate::deb::merged_path(src))
            .cloned()
            .ok_or_else(|| SystemError::Bad { path: src.clone(), message: format!("copies.\"{dest}\": source is not in the image") })?;
        let mut e = e;
        e.mtime = epoch;
        // A copy is a file of its own, never a hard link to its template.
        if let Kind::File(c) = &e.kind {
            e.kind = Kind::File(std::sync::Arc::new(c.as_ref().clone()));
        }
        tree.insert(&crate::deb::merged_path(dest), e);
    }
    Ok(())
}

/// File capabilities from the spec's `[capabilities]` (what `setcap` in a maintainer script does).
pub fn apply_capabilities(tree: &mut Tree, caps: &BTreeMap<String, crate::caps::FileCaps>) -> Result<(), SystemError> {
    for (path, c) in caps {
        let p = crate::deb::merged_path(path);
        if !matches!(tree.get(&p).map(|e| &e.kind), Some(Kind::File(_))) {
            return Err(SystemError::Bad { path: path.clone(), message: format!("capabilities.\"{path}\": not a regular file in the image") });
        }
        tree.set_xattr(&p, crate::caps::XATTR, c.xattr_value());
    }
    Ok(())
}

/// OpenSSL's subject hash of a PEM certificate, None when it cannot be read.
pub type SubjectHash = dyn Fn(&[u8]) -> Option<String>;

/// The CA bundle and per-certificate links, as update-ca-certificates makes them.
/// `hash` computes the subject hash of each certificate (hash links are skipped if None).
pub fn ca_certificates(tree: &mut Tree, epoch: u64, hash: Option<&SubjectHash>) {
    let certs: Vec<(String, Vec<u8>)> = tree
        .children_of("/usr/share/ca-certificates")
        .filter(|(k, e)| k.ends_with(".crt") && e.content().is_some())
        .map(|(k, e)| (k.clone(), e.content().unwrap().to_vec()))
        .collect();
    if certs.is_empty() {
        return;
    }
    let mut conf = String::from("# Generated at image build time: every certificate is trusted.\n");
    let mut bundle = Vec::new();
    let mut hashes: BTreeMap<String, u32> = BTreeMap::new();
    for (path, pem) in &certs {
        let rel = path.trim_start_matches("/usr/share/ca-certificates/");
        conf.push_str(rel);
        conf.push('\n');
        bundle.extend_from_slice(pem);
        if !pem.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        let base = rel.rsplit('/').next().unwrap().trim_end_matches(".crt");
        let pem_name = format!("{base}.pem");
        put_link(tree, &format!("/etc/ssl/certs/{pem_name}"), path, epoch);
        if let Some(h) = hash.and_then(|f| f(pem)) {
            let n = hashes.entry(h.clone()).or_insert(0);
            put_link(tree, &format!("/etc/ssl/certs/{h}.{n}"), &pem_name, epoch);
            *n += 1;
        }
    }
    put_file(tree, "/etc/ca-certificates.conf", conf, 0o644, epoch);
    put_file(tree, "/etc/ssl/certs/ca-certificates.crt", bundle, 0o644, epoch);
}

/// FHS links that base-files' maintainer script makes: /var/run -> /run, /var/lock -> /run/lock.
pub fn runtime_dir_links(tree: &mut Tree, epoch: u64) {
    for (link, target) in [("/var/run", "/run"), ("/var/lock", "/run/lock")] {
        if !is_link_to(tree, link, target) {
            tree.remove_tree(link);
            put_link(tree, link, target, epoch);
        }
    }
    if !tree.contains("/run") {
        let mut d = Entry::dir(0o755);
        d.mtime = epoch;
        tree.insert("/run", d);
    }
}

/// Remove paths matching `drop` globs unless they match `keep` globs. Returns entries removed.
pub fn drop_paths(tree: &mut Tree, drop: &[String], keep: &[String]) -> usize {
    let before = tree.len();
    let matches = |pat: &str, path: &str| glob_match(pat, path);
    // Remove p if p or one of its ancestors matches a drop pattern, and no keep pattern matches
    // p itself; directories that still hold kept files stay.
    let kept: Vec<String> = tree.iter().filter(|(k, _)| keep.iter().any(|g| matches(g, k))).map(|(k, _)| k.clone()).collect();
    tree.retain(|k, _| {
        let mut cur = Some(k);
        let mut dropped = false;
        while let Some(p) = cur {
            if drop.iter().any(|g| matches(g, p)) {
                dropped = true;
                break;
            }
            cur = crate::rootfs::parent(p);
        }
        if !dropped {
            return true;
        }
        // keep it if it is kept itself or is an ancestor of a kept path
        kept.iter().any(|kp| kp == k || kp.starts_with(&format!("{k}/")))
    });
    before - tree.len()
}

/// What `[[files.unused]]` removed: per entry, per pattern, the entries and file bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnusedDropped {
    /// `(entry index, pattern, entries removed, bytes of file content removed)`.
    pub removed: Vec<(usize, String, usize, u64)>,
}

/// Remove each `[[files.unused]]` pattern's paths (with their subtrees, unless `keep` matches
/// them, as [`drop_paths`]). A pattern that matches nothing is an error naming the entry: the
/// package changed, and the entry must be revisited.
pub fn drop_unused(tree: &mut Tree, unused: &[crate::spec::Unused], keep: &[String]) -> Result<UnusedDropped, SystemError> {
    let mut out = UnusedDropped::default();
    for (i, u) in unused.iter().enumerate() {
        for p in &u.paths {
            let before = tree.content_bytes();
            let n = drop_paths(tree, &[p.to_string()], keep);
            if n == 0 {
                return Err(SystemError::Bad {
                    path: p.to_string(),
                    message: format!("files.unused[{i}] ({}): matches nothing in the packages (did a package change? revisit the entry)", u.reason.trim()),
                });
            }
            out.removed.push((i, p.to_string(), n, before - tree.content_bytes()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unused(paths: &[&str], reason: &str) -> crate::spec::Unused {
        crate::spec::Unused { paths: paths.iter().map(|p| p.to_string().try_into().unwrap()).collect(), reason: reason.into() }
    }

    #[test]
    fn unused_paths_go_with_their_subtree_and_are_counted() {
        let mut t = Tree::new();
        t.insert("/usr/bin/dnet", Entry::file(vec![0; 10], 0o755));
        t.insert("/usr/bin/docker", Entry::file(vec![0; 7], 0o755));
        t.insert("/usr/lib/udev/hwdb.d/20-OUI.hwdb", Entry::file(vec![0; 5], 0o644));
        t.insert("/usr/share/doc/x/copyright", Entry::file(vec![0; 3], 0o644));
        t.insert("/usr/share/doc/x/changelog", Entry::file(vec![0; 4], 0o644));
        let got = drop_unused(
            &mut t,
            &[unused(&["/usr/bin/dnet", "/usr/lib/udev/hwdb.d"], "r"), unused(&["/usr/share/doc/*"], "r")],
            &["/usr/share/doc/*/copyright".into()],
        )
        .unwrap();
        assert_eq!(got.removed[0], (0, "/usr/bin/dnet".into(), 1, 10));
        assert_eq!(got.removed[1], (0, "/usr/lib/udev/hwdb.d".into(), 2, 5));
        assert!(t.contains("/usr/bin/docker") && !t.contains("/usr/lib/udev/hwdb.d") && t.contains("/usr/lib/udev"));
        assert_eq!(got.removed[2], (1, "/usr/share/doc/*".into(), 1, 4));
        assert!(t.contains("/usr/share/doc/x/copyright"), "keep still applies");
    }

    #[test]
    fn an_unused_pattern_that_matches_nothing_is_an_error() {
        let mut t = Tree::new();
        t.insert("/usr/bin/docker", Entry::file(vec![0; 7], 0o755));
        let e = drop_unused(&mut t, &[unused(&["/usr/bin/docker"], "a"), unused(&["/usr/bin/gone"], "old test tool")], &[]).unwrap_err().to_string();
        assert!(e.contains("/usr/bin/gone") && e.contains("files.unused[1]") && e.contains("old test tool"), "{e}");
    }

    #[test]
    fn var_run_becomes_a_link() {
        let mut t = Tree::new();
        t.insert("/var/run/sshd", Entry::dir(0o755));
        runtime_dir_links(&mut t, 0);
        assert!(is_link_to(&t, "/var/run", "/run"));
        assert!(is_link_to(&t, "/var/lock", "/run/lock"));
        assert!(!t.contains("/var/run/sshd"));
        assert!(matches!(t.get("/run").unwrap().kind, Kind::Dir));
    }

    #[test]
    fn drop_keeps_copyright() {
        let mut t = Tree::new();
        t.insert("/usr/share/doc/bash/copyright", Entry::file(b"c".to_vec(), 0o644));
        t.insert("/usr/share/doc/bash/README", Entry::file(b"r".to_vec(), 0o644));
        t.insert("/usr/share/man/man1/ls.1.gz", Entry::file(b"m".to_vec(), 0o644));
        let n = drop_paths(&mut t, &["/usr/share/doc/*/*".into(), "/usr/share/man".into()], &["/usr/share/doc/*/copyright".into()]);
        assert_eq!(n, 4);
        assert!(t.contains("/usr/share/doc/bash/copyright"));
        assert!(!t.contains("/usr/share/doc/bash/README"));
        assert!(!t.contains("/usr/share/man"));
    }
}
