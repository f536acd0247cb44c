//! A root filesystem as a value: a sorted map from absolute path to [`Entry`].
//!
//! Nothing here touches the host filesystem's ownership or device nodes, so archives written from
//! a `Tree` carry correct owners, modes and device numbers without root.

use std::collections::BTreeMap;
use std::sync::Arc;

/// What a path holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// Regular file content (shared, so copies of a tree are cheap).
    File(Arc<Vec<u8>>),
    /// Symbolic link target, exactly as stored (may be relative).
    Symlink(String),
    CharDev {
        major: u32,
        minor: u32,
    },
    BlockDev {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One filesystem entry. `mode` holds permission bits only (including setuid/setgid/sticky).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
}

impl Entry {
    pub fn dir(mode: u32) -> Self {
        Entry { kind: Kind::Dir, mode, uid: 0, gid: 0, mtime: 0 }
    }
    pub fn file(content: impl Into<Vec<u8>>, mode: u32) -> Self {
        Entry { kind: Kind::File(Arc::new(content.into())), mode, uid: 0, gid: 0, mtime: 0 }
    }
    pub fn symlink(target: impl Into<String>) -> Self {
        Entry { kind: Kind::Symlink(target.into()), mode: 0o777, uid: 0, gid: 0, mtime: 0 }
    }
    pub fn with_owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    /// The `st_mode` file-type bits for this entry.
    pub fn type_bits(&self) -> u32 {
        match self.kind {
            Kind::Dir => 0o040000,
            Kind::File(_) => 0o100000,
            Kind::Symlink(_) => 0o120000,
            Kind::CharDev { .. } => 0o020000,
            Kind::BlockDev { .. } => 0o060000,
            Kind::Fifo => 0o010000,
        }
    }
    /// Full `st_mode`: type bits | permission bits.
    pub fn st_mode(&self) -> u32 {
        self.type_bits() | (self.mode & 0o7777)
    }
    pub fn content(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::File(c) => Some(c),
            _ => None,
        }
    }
}

/// A whole tree. Keys are normalised absolute paths without a trailing slash ("/" is the root).
/// Iteration order (BTreeMap) is the archive order: parents always come before children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
    /// Extended attributes by path (e.g. `security.capability`): few paths have any.
    xattrs: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// Normalise a path from an archive or a spec into the tree's key form: absolute, no `.`/`..`
/// components, no duplicate or trailing slashes. Returns `None` for paths that escape the root.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Some("/".to_string());
    }
    let mut s = String::with_capacity(path.len() + 1);
    for p in parts {
        s.push('/');
        s.push_str(p);
    }
    Some(s)
}

/// Parent key of a normalised path (`None` for "/").
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// Glob over path components, for the spec's path and module patterns: `*` matches any run of
/// characters inside one component, every other byte matches itself, and pattern and path have
/// the same number of components (`/usr/share/doc/*/copyright` does not match a deeper path).
pub fn glob_match(pat: &str, path: &str) -> bool {
    let pc: Vec<&str> = pat.split('/').collect();
    let xc: Vec<&str> = path.split('/').collect();
    pc.len() == xc.len() && pc.iter().zip(xc.iter()).all(|(p, x)| component_match(p.as_bytes(), x.as_bytes()))
}

fn component_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| component_match(&p[1..], &s[i..])),
        Some(c) => s.first() == Some(c) && component_match(&p[1..], &s[1..]),
    }
}

impl Tree {
    pub fn new() -> Self {
        let mut t = Tree::default();
        t.entries.insert("/".into(), Entry::dir(0o755));
        t
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(normalize(path)?.as_str())
    }
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Entry> {
        let k = normalize(path)?;
        self.entries.get_mut(k.as_str())
    }
    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }
    /// Iterate in archive order (parents first).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }
    /// Entries under `dir` (not including `dir` itself), in order.
    pub fn children_of<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        let d = normalize(dir).unwrap_or_else(|| "/".into());
        let prefix = if d == "/" { "/".to_string() } else { format!("{d}/") };
        self.entries.range(prefix.clone()..).take_while(move |(k, _)| k.starts_with(&prefix))
    }
    /// Insert an entry, creating missing parent directories (0755 root:root, same mtime).
    /// Replaces whatever was at `path`. Panics never; ignores paths that escape the root.
    /// A replaced entry loses its extended attributes, as a file unpacked over another does.
    pub fn insert(&mut self, path: &str, entry: Entry) {
        let Some(key) = normalize(path) else { return };
        self.ensure_parents(&key, entry.mtime);
        self.xattrs.remove(&key);
        self.entries.insert(key, entry);
    }
    /// Set an extended attribute on an existing path; false when the path is not in the tree.
    pub fn set_xattr(&mut self, path: &str, name: &str, value: Vec<u8>) -> bool {
        let Some(key) = normalize(path).filter(|k| self.entries.contains_key(k)) else { return false };
        self.xattrs.entry(key).or_default().insert(name.to_string(), value);
        true
    }
    /// The extended attributes of `path` (`None` for most paths). `path` is a key as the tree
    /// holds it (normalised, as [`Tree::iter`] yields it).
    pub fn xattrs(&self, path: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.xattrs.get(path)
    }
    fn ensure_parents(&mut self, key: &str, mtime: u64) {
        let mut cur = parent(key);
        let mut missing = Vec::new();
        while let Some(p) = cur {
            if self.entries.contains_key(p) {
                break;
            }
            missing.push(p.to_string());
            cur = parent(p);
        }
        for p in missing {
            let mut d = Entry::dir(0o755);
            d.mtime = mtime;
            self.entries.insert(p, d);
        }
    }
    /// Remove `path` and everything under it. Returns how many entries were removed.
    pub fn remove_tree(&mut self, path: &str) -> usize {
        let Some(key) = normalize(path) else { return 0 };
        let under: Vec<String> = self.children_of(&key).map(|(k, _)| k.clone()).collect();
        let mut n = under.len();
        for k in under {
            self.entries.remove(&k);
            self.xattrs.remove(&k);
        }
        self.xattrs.remove(&key);
        if key != "/" && self.entries.remove(&key).is_some() {
            n += 1;
        }
        n
    }
    /// Keep only the entries for which `keep` is true (the root always stays); a removed entry's
    /// extended attributes go with it. Children of a removed directory are not removed with it:
    /// `keep` sees every path on its own, and a caller that drops a directory drops its subtree too
    /// (as [`crate::system::drop_paths`] does), or the kept children are left without a parent.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Entry) -> bool) {
        self.entries.retain(|k, e| k == "/" || keep(k, e));
        let entries = &self.entries;
        self.xattrs.retain(|k, _| entries.contains_key(k));
    }
    /// Set every mtime to `epoch` (reproducible builds clamp to SOURCE_DATE_EPOCH).
    pub fn clamp_mtime(&mut self, epoch: u64) {
        for e in self.entries.values_mut() {
            if e.mtime > epoch {
                e.mtime = epoch;
            }
        }
    }
    /// Overlay `other` on top of `self` (other's entries win).
    pub fn merge(&mut self, other: &Tree) {
        for (k, e) in other.iter() {
            if k == "/" {
                continue;
            }
            self.insert(k, e.clone());
            if let Some(x) = other.xattrs.get(k) {
                self.xattrs.insert(k.clone(), x.clone());
            }
        }
    }
    /// Total bytes of regular-file content.
    pub fn content_bytes(&self) -> u64 {
        self.entries.values().filter_map(|e| e.content()).map(|c| c.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("./usr/bin/").as_deref(), Some("/usr/bin"));
        assert_eq!(normalize("/a//b/./c").as_deref(), Some("/a/b/c"));
        assert_eq!(normalize("/a/../b").as_deref(), Some("/b"));
        assert_eq!(normalize("../etc"), None);
        assert_eq!(normalize(".").as_deref(), Some("/"));
    }

    #[test]
    fn insert_creates_parents_in_order() {
        let mut t = Tree::new();
        t.insert("/usr/lib/x/file", Entry::file(b"hi".to_vec(), 0o644));
        let keys: Vec<_> = t.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["/", "/usr", "/usr/lib", "/usr/lib/x", "/usr/lib/x/file"]);
        assert_eq!(t.get("/usr/lib").unwrap().kind, Kind::Dir);
        assert_eq!(t.content_bytes(), 2);
    }

    #[test]
    fn globs() {
        assert!(glob_match("/usr/share/doc/*/copyright", "/usr/share/doc/bash/copyright"));
        assert!(!glob_match("/usr/share/doc/*/copyright", "/usr/share/doc/bash/x/copyright"));
        assert!(glob_match("/usr/share/man", "/usr/share/man"));
        assert!(glob_match("xt_*", "xt_conntrack"));
        assert!(!glob_match("xt_*", "nf_conntrack"));
    }

    #[test]
    fn remove_tree_removes_subtree_only() {
        let mut t = Tree::new();
        t.insert("/a/b/c", Entry::file(b"".to_vec(), 0o644));
        t.insert("/a/bb", Entry::file(b"".to_vec(), 0o644));
        assert_eq!(t.remove_tree("/a/b"), 2);
        assert!(t.contains("/a/bb"));
        assert!(!t.contains("/a/b/c"));
    }
}
