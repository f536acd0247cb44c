//! Making a lock: the spec resolved against today's indexes for each architecture, with the
//! kernel and bootloader packages the build takes files from ([`resolve_lock`]), and the
//! `cargo xtask lock` command ([`lock`]).

use super::diff::Diff;
use super::{lock_path, Lock, LockError, Locked, Role};
use crate::apt::{Index, Package};
use crate::assemble::{open_live_index, resolve_request, Options};
use crate::spec::Spec;
use fetch::Http;
use platform::Arch;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The architectures a lock of `spec` covers by default: every one for a container image
/// (kicbase is built for several), the spec's own for a bootable image.
pub fn default_targets(spec: &Spec) -> Vec<Arch> {
    if spec.container.is_some() {
        Arch::ALL.to_vec()
    } else {
        vec![spec.source.arch]
    }
}

fn entry(p: &Package, target: Arch, role: Role) -> Locked {
    Locked {
        name: p.name.clone(),
        version: p.version.to_string(),
        arch: p.arch.clone(),
        target,
        role,
        priority: p.priority.clone(),
        suite: p.suite.clone(),
        filename: p.filename.clone(),
        size: p.size,
        sha256: p.sha256.clone(),
    }
}

/// The packages of `spec` for `target` from `index`: the resolved set, then the kernel,
/// bootloader and initramfs packages not in it (newest version, as a build without a lock takes them).
pub fn entries_for(spec: &Spec, index: &Index, target: Arch) -> Result<Vec<Locked>, String> {
    let set = resolve_request(spec, index).map_err(|e| e.to_string())?;
    let mut out: BTreeMap<String, Locked> = set.iter().map(|p| (p.name.clone(), entry(p, target, Role::Install))).collect();
    let mut by_name = |name: &str, role: Role, what: &str| -> Result<(), String> {
        if out.contains_key(name) {
            return Ok(());
        }
        let p = index.by_name(name).into_iter().next().ok_or_else(|| format!("{what}: {name:?} is not in {}/{}", index.suite, index.arch))?;
        out.insert(name.to_string(), entry(p, target, role));
        Ok(())
    };
    if let Some(k) = &spec.kernel {
        by_name(&k.package, Role::Kernel, "kernel.package")?;
        let img = crate::kernel::image_package_name(index, &k.package).ok_or_else(|| format!("kernel.package: no image package for {:?}", k.package))?;
        by_name(&img, Role::Kernel, "kernel.package")?;
    }
    for b in spec.boot.iter().flat_map(|b| &b.bootloader_packages) {
        by_name(b, Role::Bootloader, "boot.bootloader_packages")?;
    }
    for b in spec.boot.iter().flat_map(|b| &b.initrd_packages) {
        by_name(b, Role::Initrd, "boot.initrd_packages")?;
    }
    Ok(out.into_values().collect())
}

/// Resolve `spec` for each of `targets` against today's indexes (nothing read from a lock).
pub fn resolve_lock(spec: &Spec, targets: &[Arch], opts: &Options, http: &Http) -> Result<Lock, LockError> {
    let mut all = Vec::new();
    for &arch in targets {
        let mut s = spec.clone();
        s.source.arch = arch;
        let rerr = |message: String| LockError::Resolve { spec: spec.path.clone(), arch: arch.debian().into(), message };
        let index = open_live_index(&s, opts, http).map_err(|e| rerr(e.to_string()))?;
        all.extend(entries_for(&s, &index, arch).map_err(rerr)?);
    }
    Ok(Lock::new(spec, targets.to_vec(), all))
}

/// What `cargo xtask lock` did.
#[derive(Debug)]
pub struct Outcome {
    pub path: PathBuf,
    /// The lock file as it is now.
    pub lock: Lock,
    /// From the lock that was there (none: empty) to today's resolution.
    pub diff: Diff,
    /// Whether the file was written.
    pub written: bool,
    /// Whether a lock was there before.
    pub existed: bool,
}

/// `cargo xtask lock`: resolve `spec` for `targets` (default [`default_targets`]) and compare
/// with its lock. Without `update` a missing lock is written and an existing one is only checked
/// (it must belong to the spec's selection: else an error saying to run with `--update`) and
/// compared; with `update` the new resolution replaces it.
pub fn lock(spec: &Spec, targets: Option<&[Arch]>, update: bool, opts: &Options) -> Result<Outcome, LockError> {
    let path = lock_path(&spec.path);
    let existed = path.exists();
    let old = if existed {
        match Lock::read(&path) {
            Ok(l) => Some(l),
            Err(e) if update => {
                tracing::warn!("{e}: replaced");
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    if let (Some(old), false) = (&old, update) {
        for &arch in &old.targets {
            old.check(spec, &path, arch)?;
        }
    }
    let targets = match (targets, &old) {
        (Some(t), _) => t.to_vec(),
        (None, Some(old)) => old.targets.clone(),
        (None, None) => default_targets(spec),
    };
    let new = resolve_lock(spec, &targets, opts, &Http::default())?;
    let diff = Diff::between(old.as_ref().map_or(&[][..], |l| &l.packages), &new.packages);
    let write = update || !existed;
    if write {
        new.write(&path)?;
    }
    let lock = if write { new } else { old.expect("an existing lock was read") };
    Ok(Outcome { path, lock, diff, written: write, existed })
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let targets: Vec<&str> = self.lock.targets.iter().map(|a| a.debian()).collect();
        let n = self.lock.packages.len();
        let p = self.path.display();
        match (self.existed, self.written, self.diff.is_empty()) {
            (false, _, _) => write!(f, "{p}: written, {n} packages for {}", targets.join(", ")),
            (true, _, true) => write!(f, "{p}: {n} packages for {}; the mirror resolves the same today", targets.join(", ")),
            (true, true, false) => write!(f, "{p}: updated, {n} packages for {}:\n{}", targets.join(", "), self.diff),
            (true, false, false) => write!(f, "{p}: kept ({n} packages); `cargo xtask lock --update` would change:\n{}", self.diff),
        }
    }
}
