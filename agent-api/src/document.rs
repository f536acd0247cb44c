//! The node document: the whole configuration of a node (a VM's NIC to the host, a cluster NIC's address, hostname and /etc/hosts lines,
//! certificates, files such as the SSH authorized keys, the container runtime, the kubelet), one
//! typed value written by the launcher and read by the agent.
//!
//! The launcher delivers it before boot beside the agent's trust (qemu: fw_cfg and the new data
//! disk's userdata tar; kic: the trust directory). `minikube-agent boot` applies it with the same
//! functions the API operations run (`agent::ops::apply`) before the runtime and the kubelet
//! start, then keeps it on the data disk ([`STORED`]). Each API operation records its section
//! there too, so a reboot re-applies what the node was last told, from whichever path.
//!
//! A delivered document replaces the stored one only when its `serial` is newer than the last
//! delivered one applied: a guest that reboots inside the same qemu (whose fw_cfg still holds the
//! document of the launcher's `start`) keeps what the API changed since.

use serde::{Deserialize, Serialize};

pub use crate::api::{BootApply, BootOutcome};
use crate::api::{CertsRequest, FileUpload, HostnameRequest, KubeletRequest, NetworkRequest, RuntimeRequest, UplinkRequest};

/// The document format this agent reads and writes.
pub const FORMAT: u32 = 1;
/// The file name in every delivery channel (trust directory, fw_cfg entry, userdata tar).
pub const FILE_NAME: &str = "node.json";
/// The last applied document (guest path, on the data disk).
pub const STORED: &str = "/var/lib/minikube-agent/node.json";
/// What the boot step did in this boot (guest path, on /run), read by `info`.
pub const STATUS: &str = "/run/minikube-agent/boot-apply.json";

/// The node's desired state. Every section is optional: a section that is absent is left as it
/// is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeDocument {
    /// [`FORMAT`].
    pub format: u32,
    /// Orders deliveries: the launcher's clock in milliseconds when it wrote the document.
    pub serial: u64,
    /// The NIC to the host, static (a qemu VM on user-mode networking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkRequest>,
    /// The cluster NIC's static address (a VM of a multi-node cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<HostnameRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certs: Option<CertsRequest>,
    /// Small files placed as a file upload would place them (e.g. sa.pub, authorized_keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletRequest>,
}

impl NodeDocument {
    /// An empty document of the current format.
    pub fn new(serial: u64) -> NodeDocument {
        NodeDocument { format: FORMAT, serial, ..Default::default() }
    }

    /// The names of the sections present, in the order they are applied.
    pub fn sections(&self) -> Vec<&'static str> {
        let mut s = Vec::new();
        if self.uplink.is_some() {
            s.push("uplink");
        }
        if self.network.is_some() {
            s.push("network");
        }
        if self.hostname.is_some() {
            s.push("hostname");
        }
        if self.certs.is_some() {
            s.push("certs");
        }
        if !self.files.is_empty() {
            s.push("files");
        }
        if self.runtime.is_some() {
            s.push("runtime");
        }
        if self.kubelet.is_some() {
            s.push("kubelet");
        }
        s
    }
}

/// A file given by content: placed as the file upload [`FileContent::upload`] describes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileContent {
    /// Absolute guest path (the same roots a file upload may write).
    pub path: String,
    pub content: String,
    /// Permission bits, e.g. 0o644.
    pub mode: u32,
    /// `user:group`, names or numbers; default root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl FileContent {
    /// The upload this file stands for: its path, mode and owner, and its content's SHA-256.
    pub fn upload(&self) -> FileUpload {
        FileUpload { path: self.path.clone(), sha256: pki::digest::sha256_hex(self.content.as_bytes()), mode: self.mode, owner: self.owner.clone() }
    }
}

/// The stored form: the document as last applied (delivered, then changed by API operations),
/// and the serial of the last delivered document applied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    pub document: NodeDocument,
    pub delivered_serial: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("{source_name}: not a JSON node document: {message}")]
    NotJson { source_name: String, message: String },
    #[error("{source_name}: field format: missing (this agent reads format {FORMAT})")]
    NoFormat { source_name: String },
    #[error("{source_name}: field format: {found} is not the format this agent reads ({FORMAT}); use an ISO and launcher of the same version")]
    UnknownFormat { source_name: String, found: u64 },
    #[error("{source_name}: {message}")]
    Field { source_name: String, message: String },
}

/// Read a document, checking the format before the fields (so that a newer format is reported
/// as such, not as an unknown field). `source_name` says where it came from, for errors.
pub fn parse(bytes: &[u8], source_name: &str) -> Result<NodeDocument, DocumentError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| DocumentError::NotJson { source_name: source_name.to_string(), message: e.to_string() })?;
    match value.get("format").and_then(serde_json::Value::as_u64) {
        None => return Err(DocumentError::NoFormat { source_name: source_name.to_string() }),
        Some(f) if f != u64::from(FORMAT) => return Err(DocumentError::UnknownFormat { source_name: source_name.to_string(), found: f }),
        Some(_) => {}
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| DocumentError::Field { source_name: source_name.to_string(), message: format!("field {}: {}", e.path(), e.inner()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_checked_before_fields() {
        let e = parse(br#"{"format": 2, "serial": 1, "something_new": {}}"#, "fw_cfg").unwrap_err();
        assert!(matches!(e, DocumentError::UnknownFormat { found: 2, .. }), "{e}");
        let e = parse(br#"{"serial": 1}"#, "fw_cfg").unwrap_err();
        assert!(matches!(e, DocumentError::NoFormat { .. }), "{e}");
        let e = parse(br#"{"format": 1, "serial": 1, "hostname": {"nam": "x"}}"#, "fw_cfg").unwrap_err();
        assert!(e.to_string().starts_with("fw_cfg: field hostname"), "{e}");
        assert!(e.to_string().contains("`nam`"), "{e}");
        let e = parse(b"{", "disk").unwrap_err();
        assert!(e.to_string().starts_with("disk: not a JSON"), "{e}");
        let mut doc = NodeDocument::new(7);
        doc.hostname = Some(HostnameRequest { name: "m".into(), hosts: vec![] });
        assert_eq!(parse(&serde_json::to_vec(&doc).unwrap(), "x").unwrap(), doc);
        assert_eq!(doc.sections(), vec!["hostname"]);
    }
}
