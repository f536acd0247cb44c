//! minikube-agent: provisions a minikube node over HTTPS with mutual TLS.
//!
//! The agent replaces SSH provisioning: the host's launcher calls [`client::Client`], the
//! guest runs `minikube-agent serve` ([`server::Server`]). Each operation in [`ops`] is
//! idempotent. [`boot`] prepares the persistent disk at first boot; [`trust`] finds the TLS
//! material. Everything that touches the running system outside the file tree goes through
//! [`host::Host`].

pub mod accounts;
pub mod api;
pub mod audit;
pub mod boot;
pub mod client;
pub mod console;
pub mod document;
pub mod endpoints;
pub mod entrypoint;
pub mod gate;
pub mod host;
pub mod http;
pub mod ops;
pub mod paths;
pub mod process;
pub mod server;
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
