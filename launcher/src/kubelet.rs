//! Which kubelet binary goes to the node: one given by path, one from a minikube-style cache
//! (`CACHE/linux/ARCH/VERSION/kubelet`), or — nothing can be downloaded here — a test double.
//!
//! The test double is a shell script named [`TEST_DOUBLE_NAME`]: it answers `--version` like
//! kubelet and otherwise prints what it is and sleeps, so systemd keeps it active. It exists only
//! because no real kubelet is available offline; a real one is used whenever it is given.

use std::path::{Path, PathBuf};

/// The file name of the test double (says what it is).
pub const TEST_DOUBLE_NAME: &str = "kubelet-test-double";
/// Default Kubernetes version (minikube's default at the time of writing).
pub const DEFAULT_VERSION: &str = "v1.34.1";

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("kubelet {0}: no such file")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cache {cache}: no kubelet at {expected}")]
    NotInCache { cache: PathBuf, expected: PathBuf },
}

/// Where the kubelet came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeletSource {
    Given(PathBuf),
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

/// The Go architecture name of this host (the node has the host's architecture).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
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

/// Choose the kubelet: `given` path, else `cache` dir, else write the test double to
/// `double_path`.
pub fn resolve(given: Option<&Path>, cache: Option<&Path>, version: &str, double_path: &Path) -> Result<KubeletSource, KubeletError> {
    if let Some(p) = given {
        if !p.is_file() {
            return Err(KubeletError::Missing(p.to_path_buf()));
        }
        return Ok(KubeletSource::Given(p.to_path_buf()));
    }
    if let Some(c) = cache {
        let expected = c.join("linux").join(go_arch()).join(version).join("kubelet");
        if expected.is_file() {
            return Ok(KubeletSource::Cache(expected));
        }
        return Err(KubeletError::NotInCache { cache: c.to_path_buf(), expected });
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
        let src = resolve(None, None, "v1.34.1", &d.path().join(TEST_DOUBLE_NAME)).unwrap();
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
        let k = d.path().join("cache/linux").join(go_arch()).join("v1.30.0/kubelet");
        std::fs::create_dir_all(k.parent().unwrap()).unwrap();
        std::fs::write(&k, b"ELF").unwrap();
        let dbl = d.path().join("dbl");
        assert_eq!(resolve(None, Some(&d.path().join("cache")), "v1.30.0", &dbl).unwrap(), KubeletSource::Cache(k.clone()));
        assert!(matches!(resolve(None, Some(&d.path().join("cache")), "v1.31.0", &dbl), Err(KubeletError::NotInCache { .. })));
        assert_eq!(resolve(Some(&k), None, "v1.30.0", &dbl).unwrap(), KubeletSource::Given(k));
        assert!(matches!(resolve(Some(&d.path().join("nope")), None, "v1.30.0", &dbl), Err(KubeletError::Missing(_))));
        assert!(!dbl.exists());
    }
}
