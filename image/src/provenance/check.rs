//! `cargo xtask verify`'s checks: the artifact against its statement, the statement against the
//! tree as it is now, and a rebuild's bytes against the original's.

use super::{collect, Material, ProvenanceError, Source, Statement};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The artifact's SHA-256, checked against the statement's subject (read from `provenance`),
/// and every other subject's (the files of a bundle), each beside the artifact. The first file
/// that differs is the error.
pub fn artifact(artifact: &Path, statement: &Statement, provenance: &Path) -> Result<String, ProvenanceError> {
    let name = artifact.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let subjects = statement.subjects();
    if !subjects.iter().any(|s| s.name == name) {
        return Err(ProvenanceError::NotASubject {
            artifact: artifact.to_path_buf(),
            provenance: provenance.to_path_buf(),
            subjects: subjects.into_iter().map(|s| s.name).collect(),
        });
    }
    let dir = artifact.parent().unwrap_or(Path::new("."));
    let mut mine = String::new();
    for s in subjects {
        let file = dir.join(&s.name);
        let (actual, _) = pki::digest::sha256_file(&file).map_err(|source| ProvenanceError::Io { path: file.clone(), source })?;
        if actual != s.sha256 {
            return Err(ProvenanceError::DigestMismatch { artifact: file, provenance: provenance.to_path_buf(), recorded: s.sha256, actual });
        }
        if s.name == name {
            mine = actual;
        }
    }
    Ok(mine)
}

/// The tree and machine as they are now, for [`inputs`].
pub struct Now {
    pub source: Source,
    /// The root the recorded file paths are relative to (the workspace).
    pub root: PathBuf,
    /// Tool name -> version line now (for the tools the statement records).
    pub tools: BTreeMap<String, String>,
}

impl Now {
    /// Read from the workspace at `root` and this machine, for the tools `statement` records.
    pub fn read(root: &Path, statement: &Statement) -> Result<Now, ProvenanceError> {
        let names: Vec<&str> = statement.predicate.run_details.builder.version.keys().map(String::as_str).collect();
        Ok(Now { source: collect::source(root)?, root: root.to_path_buf(), tools: collect::tools(&names)? })
    }
}

/// Whether `statement` (read from `provenance`) was made from the tree `now` describes: the
/// commit, each recorded file's SHA-256 and each tool's version. Every difference is named in
/// one error. What does not stop a rebuild but may change its bytes (a dirty tree, then or now)
/// comes back as warnings.
pub fn inputs(statement: &Statement, provenance: &Path, now: &Now) -> Result<Vec<String>, ProvenanceError> {
    let mut differences = Vec::new();
    let mut warnings = Vec::new();
    match (statement.source(), &now.source) {
        (Source::Git { commit: then, dirty: was_dirty }, Source::Git { commit, dirty }) => {
            if &then != commit {
                differences.push(format!("commit: built from {then}, the tree is at {commit}"));
            }
            if was_dirty {
                warnings.push(format!("the tree was dirty when it was built (changes not committed on {then}): a rebuild may differ"));
            }
            if *dirty {
                warnings.push("the tree is dirty now (changes not committed): the rebuild takes them".to_string());
            }
        }
        (Source::Git { commit, .. }, Source::Unknown) => {
            differences.push(format!("commit: built from {commit}, but {} is not a git checkout", now.root.display()))
        }
        (Source::Unknown, Source::Git { commit, .. }) => {
            warnings.push(format!("the provenance names no commit (built outside a git checkout); the tree is at {commit}"))
        }
        (Source::Unknown, Source::Unknown) => {}
    }
    for Material { path, sha256 } in statement.materials() {
        let p = now.root.join(&path);
        match pki::digest::sha256_file(&p) {
            Ok((d, _)) if d == sha256 => {}
            Ok((d, _)) => differences.push(format!("{path}: changed since the build (sha256 {sha256} then, {d} now)")),
            Err(e) => differences.push(format!("{path}: recorded with sha256 {sha256}, now unreadable: {e}")),
        }
    }
    for (tool, then) in &statement.predicate.run_details.builder.version {
        match now.tools.get(tool) {
            Some(v) if v == then => {}
            Some(v) => differences.push(format!("{tool}: built with {then:?}, this machine has {v:?}")),
            None => differences.push(format!("{tool}: built with {then:?}, not found on this machine")),
        }
    }
    if differences.is_empty() {
        Ok(warnings)
    } else {
        Err(ProvenanceError::Inputs { provenance: provenance.to_path_buf(), differences })
    }
}

/// How a rebuild compares with the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    Equal {
        size: u64,
    },
    /// The first byte that differs (or where the shorter ends), the sizes, and for a tar archive
    /// its members that differ.
    Differ {
        offset: u64,
        original: u64,
        rebuilt: u64,
        members: Vec<MemberDiff>,
    },
}

/// A member of a tar archive present in one archive only, or in both with other bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberDiff {
    OnlyInOriginal(String),
    OnlyInRebuild(String),
    Changed(String),
}

/// Compare `original` and `rebuilt` byte by byte; when they differ and both are tar archives
/// (kicbase's OCI layout), also member by member.
pub fn bytes(original: &Path, rebuilt: &Path) -> Result<Comparison, ProvenanceError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ProvenanceError::Io { path, source }
    };
    let (mut a, mut b) = (std::fs::File::open(original).map_err(io(original))?, std::fs::File::open(rebuilt).map_err(io(rebuilt))?);
    let (la, lb) = (a.metadata().map_err(io(original))?.len(), b.metadata().map_err(io(rebuilt))?.len());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    let differ = loop {
        let na = read_full(&mut a, &mut ba).map_err(io(original))?;
        let nb = read_full(&mut b, &mut bb).map_err(io(rebuilt))?;
        let n = na.min(nb);
        if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
            break Some(offset + i as u64);
        }
        if na != nb {
            break Some(offset + n as u64);
        }
        if na == 0 {
            break None;
        }
        offset += n as u64;
    };
    let Some(offset) = differ else { return Ok(Comparison::Equal { size: la }) };
    let members = match (tar_members(original), tar_members(rebuilt)) {
        (Some(x), Some(y)) => {
            let mut d: Vec<MemberDiff> = x
                .iter()
                .filter_map(|(name, digest)| match y.get(name) {
                    None => Some(MemberDiff::OnlyInOriginal(name.clone())),
                    Some(other) if other != digest => Some(MemberDiff::Changed(name.clone())),
                    Some(_) => None,
                })
                .collect();
            d.extend(y.keys().filter(|n| !x.contains_key(*n)).map(|n| MemberDiff::OnlyInRebuild(n.clone())));
            d
        }
        _ => Vec::new(),
    };
    Ok(Comparison::Differ { offset, original: la, rebuilt: lb, members })
}

/// Read until `buf` is full or the file ends.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Each member of a tar archive with the SHA-256 of its bytes; `None` when `path` is not a tar
/// archive (an ISO).
fn tar_members(path: &Path) -> Option<BTreeMap<String, String>> {
    let mut ar = tar::Archive::new(std::fs::File::open(path).ok()?);
    let mut out = BTreeMap::new();
    for e in ar.entries().ok()? {
        let mut e = e.ok()?;
        let name = e.path().ok()?.to_string_lossy().into_owned();
        let (digest, _) = pki::digest::sha256_reader(&mut e).ok()?;
        out.insert(name, digest);
    }
    (!out.is_empty()).then_some(out)
}
