//! A build from a lock: the lock's packages for one architecture fetched by their pool path
//! (or found in the package cache), checked by SHA-256, and made into an [`Index`] from their own
//! control files. Today's Packages indexes are never read.

use super::{Lock, LockError, Locked, Role};
use crate::apt::{ArchiveConfig, Index, Package, Pinned};
use crate::assemble::Options;
use crate::spec::Spec;
use fetch::{FetchError, Http, Item};
use std::collections::BTreeMap;
use std::path::Path;

/// The mirror base URL for packages of `suite`: an extra repository of the spec by its label,
/// else the mirror apt's sources name for the suite (`--mirror` or `source.mirror` for the
/// spec's own suite, as when resolving).
fn base_of(spec: &Spec, opts: &Options, suite: &str) -> Result<String, String> {
    if let Some(r) = spec.source.repos.iter().find(|r| r.label() == suite) {
        return Ok(r.uri.trim_end_matches('/').to_string());
    }
    let mirror = if suite == spec.source.suite { opts.mirror.as_deref().or(spec.source.mirror.as_deref()) } else { None };
    ArchiveConfig::from_machine(mirror, suite, spec.source.arch.debian(), &spec.source.components).map(|c| c.mirror).map_err(|e| e.to_string())
}

fn why(e: &FetchError) -> String {
    match e {
        FetchError::Status { status, .. } => format!("HTTP status {status}"),
        FetchError::Unreachable { message, .. } => format!("unreachable: {message}"),
        FetchError::Checksum { expected, actual, got, .. } => format!("its sha256 is {actual} ({got} bytes), the lock's {expected}"),
        e => e.to_string(),
    }
}

/// The index of exactly the lock's packages for `spec.source.arch` (see the module docs). The
/// lock was checked against the spec by [`super::read_for`].
pub fn pinned_index(spec: &Spec, path: &Path, lock: &Lock, opts: &Options, http: &Http) -> Result<Index, LockError> {
    let arch = spec.source.arch;
    let entries: Vec<&Locked> = lock.for_target(arch).collect();
    let mut bases: BTreeMap<&str, Result<String, String>> = BTreeMap::new();
    for e in &entries {
        bases.entry(e.suite.as_str()).or_insert_with(|| base_of(spec, opts, &e.suite));
    }
    let url = |e: &Locked| bases[e.suite.as_str()].as_ref().map(|b| format!("{b}/{}", e.filename));
    tracing::info!(lock = %path.display(), packages = entries.len(), %arch, "packages from the lock (nothing resolved)");

    let total = entries.iter().map(|e| e.size).sum();
    let bar = fetch::progress_bar(total, "download");
    let fetched = fetch::parallel::try_map(&entries, opts.jobs.max(1), |_, e| {
        let perr = |url: &str, message: String| LockError::Unavailable {
            lock: path.to_path_buf(),
            package: e.name.clone(),
            version: e.version.clone(),
            url: url.to_string(),
            message,
        };
        let mut item = Item { name: e.name.clone(), url: String::new(), sha256: e.sha256.clone(), size: e.size };
        if let Some(p) = opts.cache.lookup(&item) {
            bar.inc(e.size);
            return Ok(p);
        }
        item.url = url(e).map_err(|message| LockError::NoSource {
            lock: path.to_path_buf(),
            package: e.name.clone(),
            version: e.version.clone(),
            suite: e.suite.clone(),
            message: message.clone(),
        })?;
        opts.cache.fetch(http, &item, &|n| bar.inc(n)).map_err(|err| perr(&item.url, why(&err)))
    });
    bar.finish_and_clear();
    let fetched = fetched?;

    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let packages = fetch::parallel::try_map(&entries, jobs, |i, e| {
        let perr = |message: String| LockError::Package { lock: path.to_path_buf(), package: e.name.clone(), version: e.version.clone(), message };
        let control = crate::deb::control(&fetched[i], &e.name).map_err(|err| perr(err.to_string()))?;
        let stanza = format!("{}\nFilename: {}\nSize: {}\nSHA256: {}\n", control.trim_end(), e.filename, e.size, e.sha256);
        let mirror = bases[e.suite.as_str()].clone().unwrap_or_default();
        let idx = Index::parse(&stanza, &mirror, &e.suite, arch.debian()).map_err(|m| perr(format!("its control file: {m}")))?;
        let mut p: Package = idx.packages.into_iter().next().ok_or_else(|| perr("its control file is empty".into()))?;
        // The archive's priority, as the index had it when locked (resolving `required` uses it).
        p.priority = e.priority.clone();
        if p.name != e.name || p.version.to_string() != e.version || p.arch != e.arch {
            return Err(perr(format!("the .deb is {} {} {}, not what the lock names", p.name, p.version, p.arch)));
        }
        Ok(p)
    })?;

    let main = bases.get(spec.source.suite.as_str()).and_then(|b| b.clone().ok()).unwrap_or_default();
    let mut index = Index::from_packages(packages, &main, &spec.source.suite, arch.debian());
    let install = entries.iter().filter(|e| e.role == Role::Install).map(|e| e.name.clone()).collect();
    index.pinned = Some(Pinned { lock: path.to_path_buf(), digest: lock.digest(arch), install });
    Ok(index)
}
