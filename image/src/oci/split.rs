//! Partition one final tree into disjoint, ordered layer trees.

use super::OciError;
use crate::rootfs::{parent, Entry, Kind, Tree};

/// Split `tree` into `layers` trees, bottom first. `classify(path, entry)` names the layer of
/// every entry except the root (e.g. 0 = base packages, 1 = runtime packages, 2 = our files).
///
/// Each entry lands in exactly one layer, so no whiteouts are needed; every directory that a
/// layer's entries sit under is repeated in that layer with the final tree's metadata (mode,
/// owner, mtime), so extracting the layers in order in any OCI runtime gives exactly `tree`
/// ([`stack_layers`] is that stacking, as a value). Every layer's root carries the final root's
/// metadata. A layer may end up empty.
pub fn split_layers(tree: &Tree, layers: usize, mut classify: impl FnMut(&str, &Entry) -> usize) -> Result<Vec<Tree>, OciError> {
    let root = tree.get("/").cloned().unwrap_or_else(|| Entry::dir(0o755));
    let mut out: Vec<Tree> = (0..layers)
        .map(|_| {
            let mut t = Tree::new();
            if let Some(r) = t.get_mut("/") {
                *r = root.clone();
            }
            t
        })
        .collect();
    for (path, entry) in tree.iter() {
        if path == "/" {
            continue;
        }
        let index = classify(path, entry);
        let layer = out.get_mut(index).ok_or_else(|| OciError::LayerIndex { path: path.clone(), index, layers })?;
        // Parents missing from this layer, nearest first; insert them top-down.
        let mut missing = Vec::new();
        let mut cur = parent(path);
        while let Some(p) = cur {
            if p == "/" || layer.contains(p) {
                break;
            }
            match tree.get(p) {
                Some(e) if e.kind == Kind::Dir => missing.push((p, e)),
                _ => return Err(OciError::BadParent { path: path.clone(), parent: p.to_string() }),
            }
            cur = parent(p);
        }
        for (p, e) in missing.into_iter().rev() {
            layer.insert(p, e.clone());
        }
        layer.insert(path, entry.clone());
    }
    Ok(out)
}

/// Extract `layers` on top of each other (what a container runtime does with disjoint layers
/// without whiteouts): later layers win, the root comes from the top layer.
pub fn stack_layers(layers: &[Tree]) -> Tree {
    let mut t = Tree::new();
    for l in layers {
        if let (Some(dst), Some(src)) = (t.get_mut("/"), l.get("/")) {
            *dst = src.clone();
        }
        t.merge(l);
    }
    t
}
