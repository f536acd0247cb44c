//! Preload: the Kubernetes bundle's images (`cargo xtask kubernetes`) imported into the node's
//! runtime before kubeadm runs, so that a node needs no registry. Each archive travels by its
//! SHA-256 as recorded in the bundle's manifest (never recomputed here, so a corrupted file in
//! the cache is refused by the agent and the node is left as it was); the agent asks the runtime
//! first and reads nothing when it holds the image at the manifest's digest. The step reports
//! the bytes it sent.

use std::io::Read;
use std::time::Instant;

use agent_api::api::ImageUpload;
use agent_api::client::{Client, ClientError};

use crate::model::MachineState;
use crate::report::Reporter;
use crate::resources::bundle::Bundle;
use crate::retry::{with_retry, StepError};

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
pub fn run(connect: &(dyn Fn() -> Result<Client, ClientError> + Sync), state: &MachineState, b: &Bundle, rep: &mut Reporter) -> Result<u64, StepError> {
    let t = Instant::now();
    let results = fetch::parallel::try_map(&b.manifest.images, PARALLEL, |_, image| -> Result<(bool, u64), StepError> {
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
