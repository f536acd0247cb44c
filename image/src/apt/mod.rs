//! The Debian archive as a package source, in four parts re-exported here:
//!
//! - `sources`: the machine's apt sources (to find the mirror), [`ArchiveConfig`];
//! - `release`: the signed Release file (checked with `gpgv` when the archive keyring is present)
//!   and [`load_index`], which checks each Packages index against the Release hashes;
//! - `index`: the Packages index parsed into [`Index`];
//! - `relations`: dependency relation parsing ([`parse_relations`], [`Dep`], [`Op`]);
//! - `signed`: gpgv, Release hashes, checked index downloads and armored keys, for the archive
//!   and extra repositories alike.

mod index;
mod relations;
mod release;
pub mod signed;
mod sources;

pub use index::{Index, Package, Pinned};
pub use relations::{parse_relations, Dep, Op};
pub use release::{load_index, Signature};
pub use signed::parse_release_hashes;
pub use sources::{find_mirror, parse_deb822_sources, parse_one_line_sources, read_sources, ArchiveConfig, Source};

use fetch::FetchError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("no apt source for suite {suite:?} in {searched}; pass --mirror URL")]
    NoMirror { suite: String, searched: String },
    #[error("apt sources {path}: {message}; fix the file or pass --mirror URL")]
    Sources { path: PathBuf, message: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("Release file {url}: signature check failed: {message}")]
    Signature { url: String, message: String },
    #[error("Release file {url}: {message}")]
    Release { url: String, message: String },
    #[error("Packages index {url}: {message}")]
    Index { url: String, message: String },
    /// An extra repository's InRelease did not verify with its own key (never skipped).
    #[error("repository {url}: signature check with key {key} failed: {message}")]
    RepoSignature { url: String, key: PathBuf, message: String },
    #[error("repository {url}: key file {key}: {message}")]
    RepoKey { url: String, key: PathBuf, message: String },
}
