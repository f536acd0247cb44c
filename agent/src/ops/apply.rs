//! The node document applied: every section is checked first (a bad document changes nothing),
//! then each runs through the same operation the API runs — hostname, certs, file upload,
//! runtime, kubelet — with the service starts deferred to one queued batch at the end
//! ([`Deferred`]). [`at_boot`] chooses the document (delivered or stored), applies it and
//! reports; [`remember`] keeps the stored copy in step with the API.

use std::path::{Path, PathBuf};

use crate::api::FileUpload;
use crate::document::{self, BootApply, BootOutcome, DocumentError, FileContent, NodeDocument, Stored};
use crate::ops::{blobs, certs, files, hostname, kubelet, network, runtime, Deferred, Node, OpError};

/// The test hook that kills the boot step before a section ([`crate::hooks::CRASH_BEFORE`]).
pub const CRASH_HOOK: &str = crate::hooks::CRASH_BEFORE;

fn prefixed(e: OpError, section: &str) -> OpError {
    let field = e.field.as_ref().map(|f| format!("{section}.{f}"));
    OpError { message: format!("{section}.{}", e.message), field, ..e }
}

/// The upload a file section stands for: [`FileContent::upload`] under its old path.
pub fn upload_of(f: &FileContent) -> FileUpload {
    f.upload()
}

/// Check every section; nothing is touched. Errors name the field (`runtime.pause_image`).
pub fn validate(node: &Node, doc: &NodeDocument) -> Result<(), OpError> {
    if let Some(u) = &doc.uplink {
        network::validate_uplink(u).map_err(|e| prefixed(e, "uplink"))?;
    }
    if let Some(n) = &doc.network {
        network::validate(n).map_err(|e| prefixed(e, "network"))?;
    }
    if let Some(h) = &doc.hostname {
        hostname::validate(h).map_err(|e| prefixed(e, "hostname"))?;
    }
    if let Some(c) = &doc.certs {
        certs::validate(node, c).map_err(|e| prefixed(e, "certs"))?;
    }
    for (i, f) in doc.files.iter().enumerate() {
        files::check_upload(node, &f.upload(), "").map_err(|e| prefixed(e, &format!("files[{i}]")))?;
    }
    if let Some(r) = &doc.runtime {
        runtime::validate(r).map_err(|e| prefixed(e, "runtime"))?;
    }
    if let Some(k) = &doc.kubelet {
        kubelet::validate(k).map_err(|e| prefixed(e, "kubelet"))?;
    }
    Ok(())
}

/// What applying did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Sections that changed something.
    pub changed: Vec<&'static str>,
    /// Sections left for the API, with the reason (a kubelet whose binary is not on the node).
    pub skipped: Vec<String>,
    /// How long each section present took, in order.
    pub took: Vec<(&'static str, std::time::Duration)>,
}

/// Apply a checked document; the service starts are left in `deferred`. `reachable` is called
/// once the NIC to the host is configured (after the uplink section, or first when there is none):
/// from then on the server can answer ([`crate::boot_lock`]).
pub fn apply(node: &Node, doc: &NodeDocument, deferred: &mut Deferred, reachable: &dyn Fn()) -> Result<Applied, OpError> {
    let mut out = Applied::default();
    let mut t = std::time::Instant::now();
    let mut note = |section: &'static str, changed: bool| {
        if changed {
            out.changed.push(section);
        }
        out.took.push((section, t.elapsed()));
        t = std::time::Instant::now();
    };
    if let Some(u) = &doc.uplink {
        crate::hooks::crash_before("uplink");
        note("uplink", network::apply_uplink_in(node, u, Some(deferred)).map_err(|e| prefixed(e, "uplink"))?);
    }
    reachable();
    if let Some(n) = &doc.network {
        crate::hooks::crash_before("network");
        note("network", network::apply_in(node, n, Some(deferred)).map_err(|e| prefixed(e, "network"))?);
    }
    if let Some(h) = &doc.hostname {
        crate::hooks::crash_before("hostname");
        note("hostname", hostname::apply(node, h).map_err(|e| prefixed(e, "hostname"))?.changed);
    }
    if let Some(c) = &doc.certs {
        crate::hooks::crash_before("certs");
        note("certs", certs::apply(node, c).map_err(|e| prefixed(e, "certs"))?.changed);
    }
    let mut files_changed = false;
    for (i, f) in doc.files.iter().enumerate() {
        crate::hooks::crash_before("files");
        let c = files::upload(node, &f.upload(), &mut f.content.as_bytes(), f.content.len() as u64).map_err(|e| prefixed(e, &format!("files[{i}]")))?;
        files_changed |= c.changed;
    }
    note("files", files_changed);
    if let Some(r) = &doc.runtime {
        crate::hooks::crash_before("runtime");
        note("runtime", runtime::apply_in(node, r, Some(deferred)).map_err(|e| prefixed(e, "runtime"))?.changed);
    }
    if let Some(k) = &doc.kubelet {
        crate::hooks::crash_before("kubelet");
        if kubelet::binary_ready(node, k).map_err(|e| prefixed(e, "kubelet"))? {
            note("kubelet", kubelet::apply_in(node, k, Some(deferred)).map_err(|e| prefixed(e, "kubelet"))?.changed);
        } else {
            out.skipped.push(format!("kubelet: {}/{}/kubelet is not on the node yet (the API uploads it)", kubelet::BINARIES_DIR, k.version));
        }
    }
    Ok(out)
}

/// The stored document, if any.
pub fn load_stored(node: &Node) -> Result<Option<Stored>, DocumentError> {
    let path = node.root.host(document::STORED);
    let source_name = path.display().to_string();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Stored>(&bytes).map_err(|e| DocumentError::Field { source_name, message: e.to_string() }).and_then(|s| {
            // The format check of a delivered document, for the stored one's.
            document::parse(&serde_json::to_vec(&s.document).unwrap_or_default(), document::STORED)?;
            Ok(Some(s))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DocumentError::NotJson { source_name, message: e.to_string() }),
    }
}

fn save_stored(node: &Node, stored: &Stored) -> Result<(), OpError> {
    let path = node.root.host(document::STORED);
    let mut bytes = serde_json::to_vec_pretty(stored).expect("serialisable");
    bytes.push(b'\n');
    super::ensure::file(&path, &bytes, 0o600, None).map(drop).map_err(|e| OpError::io(&path, e))
}

/// Record what an API operation applied in the stored document (so that the next boot keeps
/// it). A failure to save it is the operation's failure: the node is changed, but a reboot would
/// undo it, so the caller must hear of it (and a retry, changing nothing, saves it).
pub fn remember(node: &Node, update: impl FnOnce(&mut NodeDocument)) -> Result<(), OpError> {
    let _w = node.lock_writes();
    let mut stored = match load_stored(node) {
        Ok(Some(s)) => s,
        Ok(None) => Stored { document: NodeDocument::new(0), delivered_serial: 0 },
        Err(e) => {
            tracing::warn!("{e}: starting a new stored document");
            Stored { document: NodeDocument::new(0), delivered_serial: 0 }
        }
    };
    let before = stored.clone();
    update(&mut stored.document);
    if stored != before {
        save_stored(node, &stored).map_err(|e| OpError { message: format!("applied, but not recorded for the next boot: {}", e.message), ..e })?;
    }
    Ok(())
}

/// A document delivered for this boot: where from, and what it said.
pub type Delivered = (String, Result<NodeDocument, DocumentError>);

/// Choose the document (the newest delivered one if it is newer than the last applied delivery,
/// else the stored one), check it, apply it, queue the service starts, store it, and write the
/// report to [`document::STATUS`]. Blobs the document names are imported from `blob_dirs`
/// (a kic trust directory's `blobs/`) first.
pub fn at_boot(node: &Node, delivered: Vec<Delivered>, blob_dirs: &[PathBuf]) -> BootApply {
    at_boot_reachable(node, delivered, blob_dirs, &|| {})
}

/// [`at_boot`], calling `reachable` as soon as the server could answer (see [`apply`]); the
/// caller calls it again at the end whatever happened (a refused or absent document).
pub fn at_boot_reachable(node: &Node, delivered: Vec<Delivered>, blob_dirs: &[PathBuf], reachable: &dyn Fn()) -> BootApply {
    let report = choose_and_apply(node, delivered, blob_dirs, reachable);
    let status = node.root.host(document::STATUS);
    let bytes = serde_json::to_vec(&report).expect("serialisable");
    if let Err(e) = super::ensure::file(&status, &bytes, 0o644, None) {
        tracing::warn!("{}: {e}", status.display());
    }
    report
}

fn choose_and_apply(node: &Node, delivered: Vec<Delivered>, blob_dirs: &[PathBuf], reachable: &dyn Fn()) -> BootApply {
    let refused = |source: &str, message: String| BootApply { outcome: BootOutcome::Refused, source: source.to_string(), message };
    let mut newest: Option<(String, NodeDocument)> = None;
    for (source, doc) in delivered {
        match doc {
            Err(e) => return refused(&source, format!("{e}; nothing applied, the API converges the node")),
            Ok(d) if newest.as_ref().is_none_or(|(_, n)| d.serial > n.serial) => newest = Some((source, d)),
            Ok(_) => {}
        }
    }
    let stored = match load_stored(node) {
        Ok(s) => s,
        Err(e) if newest.is_none() => return refused(document::STORED, format!("{e}; nothing applied, the API converges the node")),
        Err(e) => {
            tracing::warn!("{e}: replaced by the delivered document");
            None
        }
    };
    let delivered_serial = stored.as_ref().map_or(0, |s| s.delivered_serial);
    let (source, doc, next) = match (newest, stored) {
        (Some((source, d)), _) if d.serial > delivered_serial => {
            let next = Stored { document: d.clone(), delivered_serial: d.serial };
            (source, d, next)
        }
        (_, Some(s)) => ("stored copy".to_string(), s.document.clone(), s),
        (Some((source, _)), None) => {
            return BootApply { outcome: BootOutcome::NoDocument, source, message: "the delivered document was already applied and none is stored".into() }
        }
        (None, None) => return BootApply { outcome: BootOutcome::NoDocument, source: String::new(), message: "no node document delivered or stored".into() },
    };
    if let Err(e) = validate(node, &doc) {
        return refused(&source, format!("{}; nothing applied, the API converges the node", e.message));
    }
    if let Some(sha) = doc.kubelet.as_ref().and_then(|k| k.binary_sha256.as_deref()) {
        for dir in blob_dirs {
            let from = dir.join(sha);
            if from.is_file() && !blobs::path(&node.root, sha).is_file() {
                if let Err(e) = blobs::import(&node.root, sha, &from) {
                    return BootApply { outcome: BootOutcome::Failed, source, message: e.message };
                }
            }
        }
    }
    let failed = |source: &str, message: String| BootApply { outcome: BootOutcome::Failed, source: source.to_string(), message };
    let mut deferred = Deferred::default();
    let mut applied = match apply(node, &doc, &mut deferred, reachable) {
        Ok(a) => a,
        Err(e) => return failed(&source, e.message),
    };
    let t = std::time::Instant::now();
    if let Err(e) = deferred.run(node.host.as_ref()) {
        return failed(&source, format!("queueing the services: {e}"));
    }
    applied.took.push(("services", t.elapsed()));
    if let Err(e) = save_stored(node, &next) {
        return failed(&source, e.message);
    }
    let mut message = format!("applied {}", doc.sections().join(", "));
    message.push_str(&match applied.changed.is_empty() {
        true => "; nothing changed".to_string(),
        false => format!("; changed {}", applied.changed.join(", ")),
    });
    if !deferred.start.is_empty() {
        message.push_str(&format!("; starting {}", deferred.start.join(" ")));
    }
    for s in &applied.skipped {
        message.push_str(&format!("; {s}"));
    }
    let took: Vec<String> = applied.took.iter().map(|(what, d)| format!("{what} {:.1} s", d.as_secs_f64())).collect();
    message.push_str(&format!("; took {}", took.join(", ")));
    BootApply { outcome: BootOutcome::Applied, source, message }
}

/// Read a delivered document at `path`, if there is one.
pub fn read_delivered(path: &Path, source: &str) -> Option<Delivered> {
    match std::fs::read(path) {
        Ok(bytes) => Some((source.to_string(), document::parse(&bytes, source))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some((source.to_string(), Err(DocumentError::NotJson { source_name: format!("{source} ({})", path.display()), message: e.to_string() }))),
    }
}
