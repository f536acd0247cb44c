//! minikube-agent: provisions a minikube node over HTTPS with mutual TLS.
//!
//! The agent replaces SSH provisioning: the host's launcher calls [`client::Client`], the
//! guest runs `minikube-agent serve` ([`server::Server`]). What both sides share (wire types,
//! endpoint table, node document, framing, TLS, client) is the `agent-api` crate. Each operation in [`ops`] is
//! idempotent. [`boot`] prepares the persistent disk at first boot; [`trust`] finds the TLS
//! material. Everything that touches the running system outside the file tree goes through
//! [`host::Host`].

pub mod accounts;
pub mod audit;
pub mod boot;
pub mod boot_lock;
pub mod console;
pub mod entrypoint;
pub mod error;
pub mod gate;
pub mod hooks;
pub mod host;
pub mod ops;
pub mod paths;
pub mod process;
pub mod server;
pub mod trust;

// The wire model lives in `agent-api`; these are its old paths (the launcher's until it
// depends on `agent-api` alone).
pub use agent_api::{client, endpoints, http, tls, userdata};
pub use agent_api::{AUDIT_LOG, DEFAULT_PORT, DOCUMENT_MARKER, NOT_SERVING_MARKER, READY_MARKER, STATE_DIR};

/// [`agent_api::api`] under its old path and names.
pub mod api {
    /// The old name of [`FileUpload`].
    pub use agent_api::api::FileUpload as Upload;
    pub use agent_api::api::*;
}

/// [`agent_api::document`] under its old path and names.
pub mod document {
    /// The old name of [`BootOutcome`].
    pub use agent_api::document::BootOutcome as Outcome;
    pub use agent_api::document::*;
}
