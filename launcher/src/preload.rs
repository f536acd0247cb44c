//! Preload: the Kubernetes bundle's images (`cargo xtask kubernetes`) imported into the node's
//! runtime before kubeadm runs, so that a node needs no registry. Each archive travels by its
//! SHA-256 as recorded in the bundle's manifest (never recomputed here, so a corrupted file in
//! the cache is refused by the agent and the node is left as it was); the agent asks the runtime
//! first and reads nothing when it holds the image at the manifest's digest. The step reports
//! the bytes it sent.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use agent::api::ImageUpload;
use agent::client::{Client, ClientError};
use platform::bundle::{self, BundleManifest};
use platform::Arch;

use crate::provision::{with_retry, Reporter, StartError};
use crate::state::MachineState;

#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    #[error("{path}: not a Kubernetes bundle manifest ({source}); build it again with `cargo xtask kubernetes`")]
    Manifest { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The bundle of `version` for `arch` in the cache, if `cargo xtask kubernetes` built one.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The version's directory (files in the manifest are relative to it).
    pub dir: PathBuf,
    pub manifest: BundleManifest,
}

impl Bundle {
    /// Read the cache's manifest; `None` when there is none (binaries then come from the
    /// release host and kubeadm pulls the images, as without a bundle).
    pub fn find(cache: &Path, arch: Arch, version: &str) -> Result<Option<Bundle>, PreloadError> {
        let path = bundle::manifest_path(cache, arch, version);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PreloadError::Io { path, source }),
        };
        let manifest = serde_json::from_slice(&bytes).map_err(|source| PreloadError::Manifest { path: path.clone(), source })?;
        Ok(Some(Bundle { dir: bundle::version_dir(cache, arch, version), manifest }))
    }
}

/// Counts what is read through it.
struct Counting<'a, R> {
    inner: R,
    count: &'a mut u64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.count += n as u64;
        Ok(n)
    }
}

/// Images imported at once: the node's two CPUs each unpack one (under emulation the import,
/// not the transfer, is what takes the time).
const PARALLEL: usize = 2;

/// The `images` step: every image of the bundle into the node's runtime, [`PARALLEL`] at a time,
/// each over a connection of its own from `connect`. Returns the bytes sent.
pub fn run(connect: &(dyn Fn() -> Result<Client, ClientError> + Sync), state: &MachineState, b: &Bundle, rep: &mut Reporter) -> Result<u64, StartError> {
    let t = Instant::now();
    let results = fetch::parallel::try_map(&b.manifest.images, PARALLEL, |_, image| -> Result<(bool, u64), StartError> {
        let path = b.dir.join(&image.file);
        let req = ImageUpload { reference: image.reference.clone(), sha256: image.sha256.clone(), digest: image.manifest_digest.clone() };
        let mut sent = 0u64;
        let changed = with_retry("images", 5, || {
            let mut client = connect()?;
            client.set_timeout(std::time::Duration::from_secs(600));
            let f = std::fs::File::open(&path).map_err(|source| ClientError::Io { addr: state.agent_addr(), source })?;
            client.upload_image(&req, &mut Counting { inner: f, count: &mut sent }, image.size)
        })?
        .changed;
        Ok((changed, sent))
    })?;
    let sent: u64 = results.iter().map(|(_, n)| n).sum();
    let imported: Vec<String> = b
        .manifest
        .images
        .iter()
        .zip(&results)
        .filter(|(_, (changed, _))| *changed)
        .map(|(i, _)| i.reference.rsplit('/').next().unwrap_or(&i.reference).to_string())
        .collect();
    let n = b.manifest.images.len();
    let detail = if imported.is_empty() {
        format!("{n} images of the bundle present, sent {sent} bytes")
    } else {
        format!("imported {} (pinned), sent {sent} bytes ({:.1} MB)", imported.join(", "), sent as f64 / 1e6)
    };
    rep.step("images", t, !imported.is_empty(), detail);
    Ok(sent)
}
