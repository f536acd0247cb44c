//! minikube-agent's wire model: everything both ends of the agent's API need, and nothing that
//! acts on a node. The host's launcher links this crate alone; the agent (`minikube-agent`, the
//! server) builds on it.
//!
//! - [`api`]: the JSON bodies and query strings; [`endpoints`]: each operation's method, path,
//!   request and response, listed once ([`endpoints::ALL`]);
//! - [`document`]: the node document (the node's whole desired state) and what the boot step
//!   reports about it;
//! - [`http`]: the HTTP/1.1 framing; [`tls`]: the rustls configurations; [`client`]: the typed
//!   client;
//! - [`trust`]: the trust files' names and where the node finds them; [`userdata`]: the data
//!   disk's userdata tar (written by the launcher, read by the agent);
//! - [`render`]: the files the operations write, as pure functions of their requests (the
//!   launcher's SSH baseline writes the same ones).

pub mod api;
pub mod client;
pub mod document;
pub mod endpoints;
pub mod http;
pub mod render;
pub mod tls;
pub mod trust;
pub mod userdata;

/// The default TCP port.
pub const DEFAULT_PORT: u16 = 7443;
/// The console line the agent prints when it serves (followed by its address).
pub const READY_MARKER: &str = "minikube-agent: ready";
/// The console line the agent prints when it cannot serve (followed by the reason).
pub const NOT_SERVING_MARKER: &str = "minikube-agent: not serving";
/// The console line `minikube-agent boot` prints about the node document (followed by the
/// outcome, the source and what was done or why not).
pub const DOCUMENT_MARKER: &str = "minikube-agent: node document";
/// The agent's state directory on the persistent disk (guest path).
pub const STATE_DIR: &str = "/var/lib/minikube-agent";
/// The audit log (guest path).
pub const AUDIT_LOG: &str = "/var/lib/minikube-agent/audit.log";
