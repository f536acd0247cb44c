//! Kubernetes binaries by version: kubelet, kubeadm and kubectl in the upstream release layout
//! (`BASE/VERSION/bin/linux/ARCH/NAME` with `NAME.sha256` beside it, BASE being
//! [`RELEASE_BASE`] or `--binary-mirror`), and crictl from the cri-tools release tarball. Each is
//! cached in minikube's layout (`CACHE/linux/ARCH/VERSION/NAME`), checked against its SHA-256,
//! written atomically (a partial download never takes the name) and then served from the cache
//! with no request.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fetch::{FetchError, Http};

/// The upstream release host (minikube's `--binary-mirror` replaces it).
pub const RELEASE_BASE: &str = "https://dl.k8s.io/release";
/// Where cri-tools publishes its release tarballs (`--binary-mirror` replaces the host part:
/// `MIRROR/cri-tools/VERSION/crictl-VERSION-linux-ARCH.tar.gz`).
pub const CRI_TOOLS_BASE: &str = "https://github.com/kubernetes-sigs/cri-tools/releases/download";
/// Attempts per file (connection failures only; an HTTP status is final).
const ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error(
        "{name} {version}: cannot download {url}: {source}\n  ways out: --kubelet PATH (a kubelet you have), \
         --binary-mirror URL (a mirror in the upstream layout), or --cache-dir DIR already holding {expected}"
    )]
    Download { name: String, version: String, url: String, expected: PathBuf, source: Box<FetchError> },
    #[error("{url}: not a SHA-256 checksum file (expected 64 hexadecimal digits, got {got:?})")]
    BadChecksumFile { url: String, got: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{url}: the tarball has no {member}")]
    NotInTarball { url: String, member: String },
}

/// The Go architecture name of this host (the node has the host's architecture).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The crictl release that goes with a Kubernetes version: cri-tools follows Kubernetes'
/// minor versions (`v1.34.1` → `v1.34.0`).
pub fn crictl_version(kubernetes: &str) -> String {
    let minor: Vec<&str> = kubernetes.trim_start_matches('v').splitn(3, '.').take(2).collect();
    format!("v{}.0", minor.join("."))
}

/// Downloads into one cache from one base.
pub struct Downloader {
    http: Http,
    /// Release base, without a trailing slash.
    base: String,
    /// cri-tools base.
    cri_tools_base: String,
    cache: PathBuf,
    arch: String,
}

impl Downloader {
    /// `mirror` replaces [`RELEASE_BASE`] (and the cri-tools host); `cache` is minikube's cache
    /// directory (holding `linux/ARCH/...`).
    pub fn new(mirror: Option<&str>, cache: &Path, arch: &str) -> Downloader {
        Downloader::with_http(Http::new(Duration::from_secs(10), Duration::from_secs(30)), mirror, cache, arch)
    }

    /// The same with a given client (tests use short timeouts).
    pub fn with_http(http: Http, mirror: Option<&str>, cache: &Path, arch: &str) -> Downloader {
        let (base, cri_tools_base) = match mirror {
            Some(m) => (m.trim_end_matches('/').to_string(), format!("{}/cri-tools", m.trim_end_matches('/'))),
            None => (RELEASE_BASE.to_string(), CRI_TOOLS_BASE.to_string()),
        };
        Downloader { http, base, cri_tools_base, cache: cache.to_path_buf(), arch: arch.to_string() }
    }

    pub fn url(&self, version: &str, name: &str) -> String {
        format!("{}/{version}/bin/linux/{}/{name}", self.base, self.arch)
    }

    /// Where `name` of `version` is cached.
    pub fn cached(&self, version: &str, name: &str) -> PathBuf {
        self.cache.join("linux").join(&self.arch).join(version).join(name)
    }

    fn download_err(&self, name: &str, version: &str, url: &str, expected: PathBuf) -> impl FnOnce(FetchError) -> BinaryError {
        let (name, version, url) = (name.to_string(), version.to_string(), url.to_string());
        move |source| BinaryError::Download { name, version, url, expected, source: Box::new(source) }
    }

    /// The checksum file at `url`: its first word, 64 hex digits.
    fn checksum(&self, url: &str, name: &str, version: &str, expected: &Path) -> Result<String, BinaryError> {
        let text = self.http.get(url).map_err(self.download_err(name, version, url, expected.to_path_buf()))?;
        let text = String::from_utf8_lossy(&text);
        let word = text.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
        if word.len() != 64 || !word.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BinaryError::BadChecksumFile { url: url.to_string(), got: text.chars().take(80).collect() });
        }
        Ok(word)
    }

    /// `name` (kubelet, kubeadm, kubectl) of `version`, from the cache or downloaded into it.
    pub fn ensure(&self, version: &str, name: &str) -> Result<PathBuf, BinaryError> {
        let target = self.cached(version, name);
        if target.is_file() {
            return Ok(target);
        }
        let url = self.url(version, name);
        let sha = self.checksum(&format!("{url}.sha256"), name, version, &target)?;
        tracing::info!("downloading {url}");
        self.http.download_verified(&url, &target, &sha, 0o755, ATTEMPTS).map_err(self.download_err(name, version, &url, target.clone()))?;
        Ok(target)
    }

    /// crictl `version` (e.g. `v1.34.0`) for the node, from the cache or extracted from the
    /// release tarball (checked against its `.sha256`).
    pub fn ensure_crictl(&self, version: &str) -> Result<PathBuf, BinaryError> {
        let target = self.cache.join("linux").join(&self.arch).join("cri-tools").join(version).join("crictl");
        if target.is_file() {
            return Ok(target);
        }
        let file = format!("crictl-{version}-linux-{}.tar.gz", self.arch);
        let url = format!("{}/{version}/{file}", self.cri_tools_base);
        let sha = self.checksum(&format!("{url}.sha256"), "crictl", version, &target)?;
        let tarball = target.with_file_name(&file);
        self.http.download_verified(&url, &tarball, &sha, 0o644, ATTEMPTS).map_err(self.download_err("crictl", version, &url, target.clone()))?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BinaryError::Io { path, source }
        };
        let f = std::fs::File::open(&tarball).map_err(io(&tarball))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for entry in archive.entries().map_err(io(&tarball))? {
            let mut entry = entry.map_err(io(&tarball))?;
            if entry.path().map_err(io(&tarball))?.file_name().is_some_and(|n| n == "crictl") {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(io(&tarball))?;
                pki::atomic::write_atomic(&target, &bytes, 0o755).map_err(io(&target))?;
                let _ = std::fs::remove_file(&tarball);
                return Ok(target);
            }
        }
        Err(BinaryError::NotInTarball { url, member: "crictl".into() })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crictl_follows_the_minor_version() {
        assert_eq!(super::crictl_version("v1.34.1"), "v1.34.0");
        assert_eq!(super::crictl_version("v1.35.0-alpha.1"), "v1.35.0");
    }
}
