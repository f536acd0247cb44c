//! Which kubelet binary goes to the node: one given by path, one by version from the cache or the
//! release host ([`crate::resources::binaries`]), or — only when asked for with `--kubelet-test-double` —
//! a test double.
//!
//! The test double is a shell script named [`TEST_DOUBLE_NAME`]: it answers `--version` like
//! kubelet and otherwise prints what it is and sleeps, so systemd keeps it active. It exists for
//! machines with no route to the release host (this project's CI); it is never a fallback.

use std::path::{Path, PathBuf};

use crate::resources::binaries::{BinaryError, Downloader};

/// The file name of the test double (says what it is).
pub const TEST_DOUBLE_NAME: &str = "kubelet-test-double";
/// Default Kubernetes version: the one `cargo xtask kubernetes` builds.
pub const DEFAULT_VERSION: &str = platform::bundle::DEFAULT_KUBERNETES_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("kubelet {0}: no such file")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Download(#[from] BinaryError),
}

/// Where the kubelet came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeletSource {
    Given(PathBuf),
    /// By version, from the cache (downloaded into it if it was not there).
    Cache(PathBuf),
    TestDouble(PathBuf),
}

impl KubeletSource {
    pub fn path(&self) -> &Path {
        match self {
            KubeletSource::Given(p) | KubeletSource::Cache(p) | KubeletSource::TestDouble(p) => p,
        }
    }
    pub fn is_test_double(&self) -> bool {
        matches!(self, KubeletSource::TestDouble(_))
    }
}

/// The script's text for `version`.
pub fn test_double_script(version: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # {TEST_DOUBLE_NAME}: stands in for kubelet {version}, which cannot be downloaded here.\n\
         # It does nothing but report a version and stay alive.\n\
         case \"$1\" in --version) echo \"Kubernetes {version} ({TEST_DOUBLE_NAME})\"; exit 0;; esac\n\
         echo \"{TEST_DOUBLE_NAME} {version}: not a real kubelet; args: $*\"\n\
         exec sleep infinity\n"
    )
}

/// Choose the kubelet: the `given` path; else, if asked for, the test double written to
/// `double_path`; else `version` from the downloader's cache or its release host.
pub fn resolve(given: Option<&Path>, test_double: bool, downloader: &Downloader, version: &str, double_path: &Path) -> Result<KubeletSource, KubeletError> {
    if let Some(p) = given {
        if !p.is_file() {
            return Err(KubeletError::Missing(p.to_path_buf()));
        }
        return Ok(KubeletSource::Given(p.to_path_buf()));
    }
    if !test_double {
        return Ok(KubeletSource::Cache(downloader.ensure(version, "kubelet")?));
    }
    let script = test_double_script(version);
    if std::fs::read_to_string(double_path).ok().as_deref() != Some(&script) {
        pki::atomic::write_atomic(double_path, script.as_bytes(), 0o755).map_err(|source| KubeletError::Io { path: double_path.to_path_buf(), source })?;
    }
    Ok(KubeletSource::TestDouble(double_path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_double_runs_and_reports_version() {
        let d = tempfile::tempdir().unwrap();
        let dl = Downloader::new(Some("http://127.0.0.1:9"), &d.path().join("cache"), "amd64");
        let src = resolve(None, true, &dl, "v1.34.1", &d.path().join(TEST_DOUBLE_NAME)).unwrap();
        assert!(src.is_test_double());
        // Another test thread forking while the script was open for writing makes exec fail
        // with ETXTBSY for a moment: retry that only.
        let run = || std::process::Command::new(src.path()).arg("--version").output();
        let mut out = run();
        for _ in 0..50 {
            match &out {
                Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => std::thread::sleep(std::time::Duration::from_millis(20)),
                _ => break,
            }
            out = run();
        }
        let out = out.unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("Kubernetes v1.34.1 ({TEST_DOUBLE_NAME})\n"));
    }

    #[test]
    fn cache_layout_and_given_path() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("cache/linux/amd64/v1.30.0/kubelet");
        std::fs::create_dir_all(k.parent().unwrap()).unwrap();
        std::fs::write(&k, b"ELF").unwrap();
        let dbl = d.path().join("dbl");
        // Nothing listens on the mirror: a cached file is used with no request, a missing one
        // is an error naming the URL and the ways out, never the test double.
        let dl = Downloader::new(Some("http://127.0.0.1:9"), &d.path().join("cache"), "amd64");
        assert_eq!(resolve(None, false, &dl, "v1.30.0", &dbl).unwrap(), KubeletSource::Cache(k.clone()));
        let e = resolve(None, false, &dl, "v1.31.0", &dbl).unwrap_err().to_string();
        for want in ["http://127.0.0.1:9/v1.31.0/bin/linux/amd64/kubelet", "--kubelet PATH", "--binary-mirror URL", "--cache-dir"] {
            assert!(e.contains(want), "{want} missing in: {e}");
        }
        assert_eq!(resolve(Some(&k), false, &dl, "v1.30.0", &dbl).unwrap(), KubeletSource::Given(k));
        assert!(matches!(resolve(Some(&d.path().join("nope")), false, &dl, "v1.30.0", &dbl), Err(KubeletError::Missing(_))));
        assert!(!dbl.exists());
    }
}
