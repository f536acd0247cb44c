//! The signed Release file: InRelease fetched and checked with `gpgv` against the archive keyring,
//! then each Packages index it lists fetched and checked against its SHA-256 ([`load_index`]).

use super::{parse_release_hashes, AptError, ArchiveConfig, Index};
use fetch::{Cache, FetchError, Http};
use std::path::{Path, PathBuf};

/// How far the Release file was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// `gpgv` verified InRelease against this keyring.
    Verified { keyring: PathBuf },
    /// Not checked, with the reason (no keyring or no gpgv on this machine).
    NotChecked { reason: String },
}

/// Check an InRelease file with gpgv; returns the signed text.
fn verify_inrelease(data: &[u8], keyring: Option<&Path>, url: &str) -> Result<(String, Signature), AptError> {
    let cleartext = || -> String {
        // Strip the OpenPGP armour: the text between the first blank line and the signature.
        let t = String::from_utf8_lossy(data);
        let body = t.split_once("\n\n").map(|(_, b)| b).unwrap_or(&t);
        body.split("\n-----BEGIN PGP SIGNATURE-----").next().unwrap_or("").to_string()
    };
    let Some(keyring) = keyring else {
        return Ok((cleartext(), Signature::NotChecked { reason: "no Debian archive keyring on this machine".into() }));
    };
    match super::signed::gpgv(data, keyring) {
        Ok(Some(text)) => Ok((text, Signature::Verified { keyring: keyring.to_path_buf() })),
        Ok(None) => Ok((cleartext(), Signature::NotChecked { reason: "gpgv is not installed".into() })),
        Err(message) => Err(AptError::Signature { url: url.into(), message }),
    }
}

/// Fetch and check the Release file and the Packages indexes, using the cache for indexes.
pub fn load_index(cfg: &ArchiveConfig, http: &Http, cache: &Cache) -> Result<Index, AptError> {
    let rel_url = format!("{}/dists/{}/InRelease", cfg.mirror, cfg.suite);
    let data = match http.get(&rel_url) {
        Err(FetchError::Status { status: 404, .. }) => {
            return Err(AptError::Release { url: rel_url, message: format!("suite {:?} not found on this mirror", cfg.suite) })
        }
        r => r?,
    };
    let (text, sig) = verify_inrelease(&data, cfg.keyring.as_deref(), &rel_url)?;
    match &sig {
        Signature::Verified { keyring } => tracing::info!(keyring = %keyring.display(), "Release signature verified"),
        Signature::NotChecked { reason } => tracing::warn!("Release signature NOT checked: {reason}"),
    }
    let hashes = parse_release_hashes(&text);
    let base = format!("{}/dists/{}", cfg.mirror, cfg.suite);
    let mut all = String::new();
    for comp in &cfg.components {
        let names: Vec<String> = super::signed::PACKAGES_FILES.iter().map(|f| format!("{comp}/binary-{}/{f}", cfg.arch)).collect();
        let Some(text) = super::signed::fetch_listed(http, cache, &base, &hashes, &names)? else {
            return Err(AptError::Release { url: rel_url.clone(), message: format!("lists no Packages index for {comp}/binary-{}", cfg.arch) });
        };
        all.push_str(&text);
        all.push_str("\n\n");
    }
    let mut idx = Index::parse(&all, &cfg.mirror, &cfg.suite, &cfg.arch).map_err(|m| AptError::Index { url: rel_url.clone(), message: m })?;
    idx.signature = Some(sig);
    Ok(idx)
}
