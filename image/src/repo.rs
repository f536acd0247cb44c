//! Signed apt repositories: checking a release index (InRelease) with `gpgv`, fetching the
//! Packages indexes it lists against their SHA256, and the extra repositories a spec names in
//! `[[source.repos]]` (e.g. Kubernetes' pkgs.k8s.io).
//!
//! An extra repository is trusted only through its own key file: its InRelease must verify with
//! that key (there is no unchecked fallback, unlike the Debian archive on a machine without its
//! keyring), its Packages index must match the SHA256 in the verified InRelease, and each .deb
//! is checked by the cache against the SHA256 in that index. Its packages then join the spec's
//! [`Index`], so `packages.include` can name (and pin) them like any Debian package.

use crate::apt::signed::{fetch_listed, gpgv, parse_release_hashes, read_key, PACKAGES_FILES};
use crate::apt::{AptError, Index, Signature};
use crate::spec::{Repo, RepoLayout, Spec};
use fetch::{Cache, FetchError, Http};
use std::path::Path;

impl Repo {
    /// The directory holding InRelease (no trailing slash).
    pub fn release_dir(&self) -> String {
        match &self.layout {
            RepoLayout::Suite { suite, .. } => format!("{}/dists/{suite}", self.uri),
            RepoLayout::Flat { dir } if dir.is_empty() => self.uri.clone(),
            RepoLayout::Flat { dir } => format!("{}/{dir}", self.uri),
        }
    }

    /// A short name for messages and the index's suite label, e.g. `pkgs.k8s.io/core:/stable:/v1.34/deb`.
    pub fn label(&self) -> String {
        let host = self.uri.split_once("://").map_or(self.uri.as_str(), |(_, rest)| rest);
        match &self.layout {
            RepoLayout::Suite { suite, .. } => format!("{host} {suite}"),
            RepoLayout::Flat { dir } if dir.is_empty() => host.to_string(),
            RepoLayout::Flat { dir } => format!("{host}/{dir}"),
        }
    }

    /// For each Packages index to read: what to call it, and its candidate paths relative to
    /// [`Repo::release_dir`] (most compressed first).
    fn indexes(&self, arch: &str) -> Vec<(String, Vec<String>)> {
        match &self.layout {
            RepoLayout::Suite { components, .. } => {
                components.iter().map(|c| (format!("{c}/binary-{arch}"), PACKAGES_FILES.iter().map(|f| format!("{c}/binary-{arch}/{f}")).collect())).collect()
            }
            RepoLayout::Flat { .. } => vec![("Packages".into(), PACKAGES_FILES.iter().map(|f| f.to_string()).collect())],
        }
    }
}

/// Read one extra repository for `arch`: InRelease verified with `key` (the file as the spec
/// names it, resolved), then its Packages index(es), checked and parsed.
pub fn load_repo(repo: &Repo, key: &Path, arch: &str, http: &Http, cache: &Cache) -> Result<Index, AptError> {
    let dir = repo.release_dir();
    let rel_url = format!("{dir}/InRelease");
    let key_err = |message: String| AptError::RepoKey { url: repo.uri.clone(), key: key.to_path_buf(), message };
    let keyring = read_key(key).map_err(key_err)?;
    let data = match http.get(&rel_url) {
        Err(FetchError::Status { status: 404, .. }) => {
            return Err(AptError::Release { url: rel_url, message: "not found: check uri and suite or path in source.repos".into() })
        }
        r => r?,
    };
    let tmp = tempfile::tempdir().map_err(|e| key_err(e.to_string()))?;
    let keyring_path = tmp.path().join("keyring.gpg");
    std::fs::write(&keyring_path, keyring).map_err(|e| key_err(e.to_string()))?;
    let sig_err = |message: String| AptError::RepoSignature { url: rel_url.clone(), key: key.to_path_buf(), message };
    let text = match gpgv(&data, &keyring_path) {
        Ok(Some(text)) => text,
        Ok(None) => return Err(sig_err("gpgv is not installed (scripts/setup.sh installs it); an extra repository is never read unchecked".into())),
        Err(m) => return Err(sig_err(m)),
    };
    tracing::info!(repo = %repo.label(), key = %key.display(), "release signature verified");
    let hashes = parse_release_hashes(&text);
    let mut all = String::new();
    for (what, names) in repo.indexes(arch) {
        let Some(t) = fetch_listed(http, cache, &dir, &hashes, &names)? else {
            return Err(AptError::Release { url: rel_url, message: format!("lists no Packages index for {what}") });
        };
        all.push_str(&t);
        all.push_str("\n\n");
    }
    let mut idx = Index::parse(&all, &repo.uri, &repo.label(), arch).map_err(|m| AptError::Index { url: dir.clone(), message: m })?;
    idx.retain_arch(arch);
    if idx.packages.is_empty() {
        tracing::warn!(repo = %repo.label(), arch, "the repository has no packages for this architecture");
    }
    idx.signature = Some(Signature::Verified { keyring: key.to_path_buf() });
    Ok(idx)
}

/// Read every repository in the spec's `[[source.repos]]` and add its packages to `index`.
pub fn merge_repos(index: &mut Index, spec: &Spec, http: &Http, cache: &Cache) -> Result<(), AptError> {
    for repo in &spec.source.repos {
        let key = spec.resolve_path(&repo.key);
        tracing::info!(repo = %repo.label(), "package source (extra repository)");
        index.merge(load_repo(repo, &key, spec.source.arch.debian(), http, cache)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(layout: RepoLayout) -> Repo {
        Repo { uri: "https://pkgs.k8s.io/core:/stable:/v1.34/deb".into(), layout, key: "k.asc".into() }
    }

    #[test]
    fn flat_and_suite_layouts_find_their_files() {
        let flat = repo(RepoLayout::Flat { dir: String::new() });
        assert_eq!(flat.release_dir(), "https://pkgs.k8s.io/core:/stable:/v1.34/deb");
        assert_eq!(flat.label(), "pkgs.k8s.io/core:/stable:/v1.34/deb");
        assert_eq!(flat.indexes("amd64")[0].1, ["Packages.xz", "Packages.gz", "Packages"]);
        let sub = repo(RepoLayout::Flat { dir: "amd64".into() });
        assert_eq!(sub.release_dir(), "https://pkgs.k8s.io/core:/stable:/v1.34/deb/amd64");
        let suite = repo(RepoLayout::Suite { suite: "stable".into(), components: vec!["main".into(), "extra".into()] });
        assert_eq!(suite.release_dir(), "https://pkgs.k8s.io/core:/stable:/v1.34/deb/dists/stable");
        let ix = suite.indexes("arm64");
        assert_eq!(ix.len(), 2);
        assert_eq!(ix[1].1[0], "extra/binary-arm64/Packages.xz");
    }
}
