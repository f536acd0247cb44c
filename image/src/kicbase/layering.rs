//! Which layer each path goes to: the spec's `[[container.place]]` rules (see the module docs
//! of [`crate::kicbase`]), and the split of the assembled tree into layers.

use std::collections::{BTreeMap, BTreeSet};

use super::{container, KicbaseError};
use crate::assemble::{self, Assembly};
use crate::oci;
use crate::rootfs::{Kind, Tree};
use crate::spec::{ContainerSection, Placement, Select, Spec};

/// The packages of `asm` that only `roots` bring in (a `brought_by` rule, see the module docs):
/// names in the full set but not in the set resolved without `roots`.
pub fn brought_by(spec: &Spec, asm: &Assembly, roots: &[String]) -> Result<BTreeSet<String>, KicbaseError> {
    let mut base = spec.clone();
    base.packages.include.retain(|p| !roots.iter().any(|r| r == p.as_str()));
    if base.packages.include.is_empty() {
        // resolve() refuses an empty request; the required set alone is the base then.
        base.packages.include.push("base-files".into());
    }
    let base_set: BTreeSet<String> = assemble::resolve_request(&base, &asm.index)?.iter().map(|p| p.name.clone()).collect();
    Ok(asm.packages.iter().map(|p| p.name.clone()).filter(|n| !base_set.contains(n)).collect())
}

/// The local paths (a `select = "local"` rule): the files of the spec's overlays and the
/// `extra` files the build adds (the agent).
pub fn local_paths(spec: &Spec, extra: &BTreeMap<String, (Vec<u8>, u32)>, epoch: u64) -> Result<BTreeSet<String>, KicbaseError> {
    let mut local: BTreeSet<String> = extra.keys().cloned().collect();
    for o in &spec.files.overlays {
        let t = assemble::read_overlay(&spec.resolve_path(o), epoch)?;
        local.extend(t.iter().filter(|(k, e)| k.as_str() != "/" && e.kind != Kind::Dir).map(|(k, _)| k.clone()));
    }
    Ok(local)
}

/// The spec's `[[container.place]]` rules with what they need from a build.
pub struct Layering<'a> {
    pub rules: &'a [Placement],
    /// Path -> the package that has it. (A directory goes with the first package in name order
    /// that has it; `split_layers` repeats it in every layer that has something under it.)
    pub owner: &'a BTreeMap<String, String>,
    /// What `select = "local"` matches ([`local_paths`]).
    pub local: BTreeSet<String>,
    /// For each `brought_by` rule, by its index in `rules`: its packages ([`brought_by`]).
    pub brought: BTreeMap<usize, BTreeSet<String>>,
}

impl<'a> Layering<'a> {
    /// The rules of `c` for the build `asm` of `spec` (resolves once more per `brought_by` rule).
    pub fn new(
        spec: &Spec,
        c: &'a ContainerSection,
        asm: &'a Assembly,
        extra: &BTreeMap<String, (Vec<u8>, u32)>,
        epoch: u64,
    ) -> Result<Layering<'a>, KicbaseError> {
        let mut brought = BTreeMap::new();
        for (i, p) in c.place.iter().enumerate() {
            if let Select::BroughtBy(roots) = &p.select {
                brought.insert(i, brought_by(spec, asm, roots)?);
            }
        }
        Ok(Layering { rules: &c.place, owner: &asm.owner, local: local_paths(spec, extra, epoch)?, brought })
    }

    /// The layer (index into the spec's `container.layers`) of `path`: the first rule's that
    /// matches it.
    pub fn layer_of(&self, path: &str) -> usize {
        for (i, r) in self.rules.iter().enumerate() {
            let hit = match &r.select {
                Select::Local => self.local.contains(path),
                Select::Paths(paths) => paths.contains(path),
                Select::BroughtBy(_) => self.owner.get(path).is_some_and(|pkg| self.brought.get(&i).is_some_and(|set| set.contains(pkg))),
                Select::Packages => self.owner.contains_key(path),
                Select::TopLevel => path.matches('/').count() == 1,
                Select::Rest => true,
            };
            if hit {
                return r.layer;
            }
        }
        // The spec was checked to end with `select = "rest"`; an empty rule list has no layers.
        self.rules.last().map_or(0, |r| r.layer)
    }
}

/// The newest mtime of a package file (regular files and links owned by a package), not counting
/// files at the epoch itself: those are package files the build rewrote (/etc/hosts, os-release)
/// or clamped, and counting them would tie the date to SOURCE_DATE_EPOCH.
pub fn package_epoch(tree: &Tree, owner: &BTreeMap<String, String>, epoch: u64) -> u64 {
    tree.iter().filter(|(k, e)| e.kind != Kind::Dir && owner.contains_key(k.as_str())).map(|(_, e)| e.mtime).filter(|m| *m < epoch).max().unwrap_or(epoch)
}

/// Split the assembled tree into the spec's layers (see the module docs), lower layers' late
/// mtimes clamped to the package epoch.
pub fn split(spec: &Spec, asm: &Assembly, extra: &BTreeMap<String, (Vec<u8>, u32)>, epoch: u64) -> Result<Vec<Tree>, KicbaseError> {
    let c = container(spec)?;
    let layering = Layering::new(spec, c, asm, extra, epoch)?;
    let pkg_epoch = package_epoch(&asm.tree, &asm.owner, epoch);
    let brought: usize = layering.brought.values().map(BTreeSet::len).sum();
    tracing::info!(brought_packages = brought, local_files = layering.local.len(), pkg_epoch, "layer split");
    let top = c.layers.len() - 1;
    // Clamp first (on a copy): split_layers repeats parent directories with the final tree's
    // metadata, so the clamp must be visible in the tree it splits.
    let mut tree = asm.tree.clone();
    let mut late = Vec::new();
    for (k, e) in tree.iter() {
        let lower = k == "/" || e.kind == Kind::Dir || layering.layer_of(k) < top;
        if lower && e.mtime > pkg_epoch {
            late.push(k.clone());
        }
    }
    for k in late {
        if let Some(e) = tree.get_mut(&k) {
            e.mtime = pkg_epoch;
        }
    }
    Ok(oci::split_layers(&tree, c.layers.len(), |p, _| layering.layer_of(p))?)
}
