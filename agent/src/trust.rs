//! Where the agent's TLS material comes from, in order: `--trust-dir`, qemu's fw_cfg, then the
//! copy in the state directory (written by an earlier boot, or by `minikube-agent boot` from the
//! data disk's userdata tar). A fresh source is copied into the state directory so that later
//! boots find it there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::Host;
use crate::ops::ensure;
use crate::paths::GuestRoot;

pub use agent_api::trust::{CA_FILE, CERT_FILE, FW_CFG_DIR, KEY_FILE, STATE_TRUST_DIR};

/// The cluster CA (for client certificates) and the agent's own certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    pub ca_pem: String,
    pub identity: pki::Identity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    TrustDir(PathBuf),
    FwCfg,
    StateDir,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::TrustDir(p) => write!(f, "trust directory {}", p.display()),
            Source::FwCfg => write!(f, "qemu fw_cfg {FW_CFG_DIR}"),
            Source::StateDir => write!(f, "saved copy {STATE_TRUST_DIR}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("no TLS trust material found; tried: {}", .0.join("; "))]
    NotFound(Vec<String>),
    #[error("{source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
    #[error("saving trust material to {path}: {source}")]
    Save { path: PathBuf, source: std::io::Error },
}

/// Read the three files; `file_path` maps a file name to where it is in this source.
fn read_source(file_path: impl Fn(&str) -> PathBuf, name: &str) -> Result<Option<Trust>, TrustError> {
    let paths = [CA_FILE, CERT_FILE, KEY_FILE].map(&file_path);
    if !paths[0].exists() {
        return Ok(None);
    }
    let read =
        |p: &Path| std::fs::read_to_string(p).map_err(|e| TrustError::Invalid { source_name: name.to_string(), reason: format!("{}: {e}", p.display()) });
    let trust = Trust { ca_pem: read(&paths[0])?, identity: pki::Identity { cert_pem: read(&paths[1])?, key_pem: read(&paths[2])? } };
    let invalid = |reason: String| TrustError::Invalid { source_name: name.to_string(), reason };
    pki::certs_from_pem(trust.ca_pem.as_bytes(), CA_FILE).map_err(|e| invalid(e.to_string()))?;
    trust.identity.cert_der().map_err(|e| invalid(format!("{CERT_FILE}: {e}")))?;
    trust.identity.key_der().map_err(|e| invalid(format!("{KEY_FILE}: {e}")))?;
    Ok(Some(trust))
}

/// Write the trust files into `dir` (host path): certificates 0644, key 0600.
pub fn save(dir: &Path, trust: &Trust) -> std::io::Result<bool> {
    let mut changed = ensure::file(&dir.join(CA_FILE), trust.ca_pem.as_bytes(), 0o644, None)?;
    changed |= ensure::file(&dir.join(CERT_FILE), trust.identity.cert_pem.as_bytes(), 0o644, None)?;
    changed |= ensure::file(&dir.join(KEY_FILE), trust.identity.key_pem.as_bytes(), 0o600, None)?;
    Ok(changed)
}

/// Load the qemu_fw_cfg module if its sysfs directory is missing (early in boot,
/// systemd-modules-load may not have run yet).
pub fn load_fw_cfg_module(root: &GuestRoot, host: &dyn Host) -> Result<(), String> {
    if root.host("/sys/firmware/qemu_fw_cfg").exists() {
        return Ok(());
    }
    crate::host::run_ok(host, &["modprobe", "qemu_fw_cfg"], None, Duration::from_secs(30)).map(drop).map_err(|e| format!("modprobe qemu_fw_cfg: {e}"))
}

/// Find the trust material (see the module documentation), persisting a fresh source.
/// `load_fw_cfg` loads the qemu_fw_cfg module first if its directory is missing (not in
/// containers).
pub fn locate(root: &GuestRoot, trust_dir: Option<&Path>, host: &dyn Host, load_fw_cfg: bool) -> Result<(Trust, Source), TrustError> {
    let mut tried = Vec::new();
    let state = root.host(STATE_TRUST_DIR);
    let persist = |trust: Trust, source: Source| -> Result<(Trust, Source), TrustError> {
        save(&state, &trust).map_err(|source| TrustError::Save { path: state.clone(), source })?;
        Ok((trust, source))
    };
    match trust_dir {
        Some(dir) => {
            let source = Source::TrustDir(dir.to_path_buf());
            if let Some(t) = read_source(|n| dir.join(n), &source.to_string())? {
                return persist(t, source);
            }
            tried.push(format!("{}: no {CA_FILE}", dir.display()));
        }
        None => tried.push("--trust-dir: not given".into()),
    }
    let fw = root.host(FW_CFG_DIR);
    if load_fw_cfg {
        if let Err(e) = load_fw_cfg_module(root, host) {
            tried.push(e);
        }
    }
    if let Some(t) = read_source(|n| fw.join(n).join("raw"), &Source::FwCfg.to_string())? {
        return persist(t, Source::FwCfg);
    }
    tried.push(format!("{FW_CFG_DIR}/{CA_FILE}/raw: not present"));
    if let Some(t) = read_source(|n| state.join(n), &Source::StateDir.to_string())? {
        return Ok((t, Source::StateDir));
    }
    tried.push(format!("{STATE_TRUST_DIR}/{CA_FILE}: not present (the data disk's userdata tar had no minikube-agent/ files)"));
    Err(TrustError::NotFound(tried))
}
