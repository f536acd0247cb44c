//! Provenance of a built artifact: an in-toto Statement (v1) whose predicate is a SLSA
//! provenance (v1), written beside the artifact (`out/minikube.iso` ->
//! `out/minikube.provenance.json`, [`provenance_path`]).
//!
//! What it records: the artifact's name and SHA-256 (the subject); the build command's
//! arguments that shape the bytes (`externalParameters`, what `cargo xtask verify` runs again);
//! SOURCE_DATE_EPOCH (`internalParameters`); the git commit with whether the tree was dirty, and
//! the SHA-256 of the spec, its bases, its lock and Cargo.lock (`resolvedDependencies`); the
//! builder's id and the versions of the tools whose output is in the bytes (`runDetails.builder`:
//! rustc, cargo, mksquashfs...). No clock is read and keys come in a fixed order, so the same
//! inputs give the same bytes.
//!
//! [`check`] compares a statement with the artifact and the tree as they are now, and the bytes
//! of a rebuild with the original's.

pub mod check;
pub mod collect;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What `externalParameters` mean: a `cargo xtask` command of this repository and its arguments
/// (ARCHITECTURE.md, "Provenance").
pub const BUILD_TYPE: &str = "https://github.com/kubernetes/minikube/node-images/cargo-xtask@v1";
/// The builder id when `MINIKUBE_BUILDER_ID` is not set: a build by `cargo xtask` on a machine
/// of its own (CI sets its id).
pub const DEFAULT_BUILDER_ID: &str = "https://github.com/kubernetes/minikube/node-images/cargo-xtask/local@v1";
/// The name of the resolved dependency that is the source tree's commit.
pub const SOURCE: &str = "source";

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("provenance {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{artifact}: its SHA-256 is {actual}, but its provenance {provenance} records {recorded}: the artifact is not the one that was built")]
    DigestMismatch { artifact: PathBuf, provenance: PathBuf, recorded: String, actual: String },
    #[error("{artifact}: not a subject of its provenance {provenance} (it names {})", subjects.join(", "))]
    NotASubject { artifact: PathBuf, provenance: PathBuf, subjects: Vec<String> },
    #[error("provenance {provenance} does not match the tree as it is now:\n  {}", differences.join("\n  "))]
    Inputs { provenance: PathBuf, differences: Vec<String> },
    #[error("{0}")]
    Collect(String),
}

/// An in-toto Statement v1 with one SLSA provenance v1 predicate. Field order is the order of
/// serialization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    pub external_parameters: ExternalParameters,
    pub internal_parameters: InternalParameters,
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// The `cargo xtask` command and its arguments that shape the artifact's bytes (never the
/// output path, caches or mirrors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalParameters {
    pub command: String,
    pub args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InternalParameters {
    #[serde(rename = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetails {
    pub builder: Builder,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Builder {
    pub id: String,
    /// Tool name -> its version line (rustc, cargo, mksquashfs, ...).
    pub version: BTreeMap<String, String>,
}

/// SLSA's ResourceDescriptor, the fields we use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    pub name: String,
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, serde_json::Value>,
}

/// The tree the artifact was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A git checkout at `commit` (the full id); `dirty` when it had changes not committed.
    Git { commit: String, dirty: bool },
    /// Not a git checkout (a source archive): no commit to record.
    Unknown,
}

/// A file the build read, by its path relative to the workspace, and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub path: String,
    pub sha256: String,
}

/// Everything a statement records but the artifact's digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    pub command: String,
    pub args: Vec<String>,
    pub source: Source,
    pub materials: Vec<Material>,
    pub epoch: u64,
    pub builder_id: String,
    pub tools: BTreeMap<String, String>,
}

/// The provenance beside `artifact`: its extension replaced by `provenance.json`.
pub fn provenance_path(artifact: &Path) -> PathBuf {
    artifact.with_extension("provenance.json")
}

/// A file the statement is about: its name (relative to the statement's directory) and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub name: String,
    pub sha256: String,
}

impl Inputs {
    /// The statement for the artifact's files, `subjects`.
    pub fn statement(&self, subjects: &[Subject]) -> Statement {
        let mut deps = Vec::new();
        if let Source::Git { commit, dirty } = &self.source {
            deps.push(ResourceDescriptor {
                name: SOURCE.into(),
                digest: BTreeMap::from([("gitCommit".to_string(), commit.clone())]),
                annotations: BTreeMap::from([("dirty".to_string(), serde_json::Value::Bool(*dirty))]),
            });
        }
        let mut materials = self.materials.clone();
        materials.sort_by(|a, b| a.path.cmp(&b.path));
        deps.extend(materials.iter().map(|m| ResourceDescriptor {
            name: m.path.clone(),
            digest: BTreeMap::from([("sha256".to_string(), m.sha256.clone())]),
            annotations: BTreeMap::new(),
        }));
        Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject: subjects
                .iter()
                .map(|s| ResourceDescriptor {
                    name: s.name.clone(),
                    digest: BTreeMap::from([("sha256".to_string(), s.sha256.clone())]),
                    annotations: BTreeMap::new(),
                })
                .collect(),
            predicate_type: PREDICATE_TYPE.into(),
            predicate: Predicate {
                build_definition: BuildDefinition {
                    build_type: BUILD_TYPE.into(),
                    external_parameters: ExternalParameters { command: self.command.clone(), args: self.args.clone() },
                    internal_parameters: InternalParameters { source_date_epoch: self.epoch },
                    resolved_dependencies: deps,
                },
                run_details: RunDetails { builder: Builder { id: self.builder_id.clone(), version: self.tools.clone() } },
            },
        }
    }
}

impl Statement {
    /// Pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a statement serializes");
        v.push(b'\n');
        v
    }

    /// The subjects: each file's name (relative to the statement's directory) and SHA-256.
    pub fn subjects(&self) -> Vec<Subject> {
        self.subject.iter().map(|s| Subject { name: s.name.clone(), sha256: s.digest.get("sha256").cloned().unwrap_or_default() }).collect()
    }

    /// The SHA-256 of the subject named `name`.
    pub fn subject_sha256(&self, name: &str) -> Option<&str> {
        self.subject.iter().find(|s| s.name == name).and_then(|s| s.digest.get("sha256")).map(String::as_str)
    }

    /// The recorded source: the `source` dependency's commit and dirty flag.
    pub fn source(&self) -> Source {
        let deps = &self.predicate.build_definition.resolved_dependencies;
        match deps.iter().find(|d| d.name == SOURCE) {
            Some(d) => Source::Git {
                commit: d.digest.get("gitCommit").cloned().unwrap_or_default(),
                dirty: d.annotations.get("dirty").and_then(serde_json::Value::as_bool).unwrap_or(true),
            },
            None => Source::Unknown,
        }
    }

    /// The recorded files and their SHA-256, in the statement's order.
    pub fn materials(&self) -> Vec<Material> {
        let deps = &self.predicate.build_definition.resolved_dependencies;
        deps.iter()
            .filter(|d| d.name != SOURCE)
            .map(|d| Material { path: d.name.clone(), sha256: d.digest.get("sha256").cloned().unwrap_or_default() })
            .collect()
    }

    /// SOURCE_DATE_EPOCH of the build.
    pub fn epoch(&self) -> u64 {
        self.predicate.build_definition.internal_parameters.source_date_epoch
    }

    /// Read the statement at `path`: an error naming the file and what is wrong in it.
    pub fn read(path: &Path) -> Result<Statement, ProvenanceError> {
        let bytes = std::fs::read(path).map_err(|source| ProvenanceError::Io { path: path.to_path_buf(), source })?;
        let perr = |message: String| ProvenanceError::Parse { path: path.to_path_buf(), message };
        let s: Statement = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&bytes)).map_err(|e| perr(e.to_string()))?;
        if s.statement_type != STATEMENT_TYPE {
            return Err(perr(format!("_type is {:?}, not {STATEMENT_TYPE:?}", s.statement_type)));
        }
        if s.predicate_type != PREDICATE_TYPE {
            return Err(perr(format!("predicateType is {:?}, not {PREDICATE_TYPE:?}", s.predicate_type)));
        }
        if s.subject.is_empty() {
            return Err(perr("subject: empty, expected the artifact's files".into()));
        }
        for (i, sub) in s.subjects().iter().enumerate() {
            let safe = !sub.name.is_empty() && !Path::new(&sub.name).is_absolute();
            if !safe || sub.sha256.len() != 64 || !sub.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(perr(format!("subject[{i}] {:?}: expected a relative file name with a sha256 digest of 64 hex digits", sub.name)));
            }
        }
        Ok(s)
    }
}

/// Write the provenance of `artifact` beside it ([`provenance_path`]), atomically; the
/// artifact's SHA-256 is read from the file as it is. Returns the provenance's path.
pub fn write(artifact: &Path, inputs: &Inputs) -> Result<PathBuf, ProvenanceError> {
    let name = artifact.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    write_files(artifact, &[name], inputs)
}

/// Write the provenance of an artifact of several files beside `artifact` (the file that names
/// the others, the bundle's `bundle.json`): one subject per file of `names`, each relative to
/// the artifact's directory and hashed as it is. Returns the provenance's path.
pub fn write_files(artifact: &Path, names: &[String], inputs: &Inputs) -> Result<PathBuf, ProvenanceError> {
    let dir = artifact.parent().unwrap_or(Path::new("."));
    let subjects = names
        .iter()
        .map(|name| {
            let file = dir.join(name);
            let (sha256, _) = pki::digest::sha256_file(&file).map_err(|source| ProvenanceError::Io { path: file.clone(), source })?;
            Ok(Subject { name: name.clone(), sha256 })
        })
        .collect::<Result<Vec<_>, ProvenanceError>>()?;
    let path = provenance_path(artifact);
    let bytes = inputs.statement(&subjects).to_bytes();
    pki::atomic::write_atomic(&path, &bytes, 0o644).map_err(|source| ProvenanceError::Io { path: path.clone(), source })?;
    Ok(path)
}
