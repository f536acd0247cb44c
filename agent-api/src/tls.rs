//! rustls configurations: the agent's server (TLS 1.3, client certificates required and checked
//! against the cluster CA) and the client used by the host.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] pki::Error),
    #[error("{what}: {source}")]
    Rustls { what: &'static str, source: rustls::Error },
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The crypto provider (ring), passed explicitly so that no process-wide default is needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in pki::certs_from_pem(ca_pem.as_bytes(), "ca.crt")? {
        roots.add(cert).map_err(|source| TlsError::Rustls { what: "ca.crt", source })?;
    }
    Ok(roots)
}

/// Server side: TLS 1.3 only, a client certificate issued by `ca_pem` is required.
pub fn server_config(ca_pem: &str, identity: &pki::Identity) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider.clone()).build()?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls { what: "protocol versions", source })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain()?, identity.key_der()?)
        .map_err(|source| TlsError::Rustls { what: "agent.crt/agent.key", source })?;
    Ok(Arc::new(config))
}

/// Client side: trust `ca_pem` for the agent's certificate and present `identity`.
pub fn client_config(ca_pem: &str, identity: &pki::Identity) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls { what: "protocol versions", source })?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(identity.cert_chain()?, identity.key_der()?)
        .map_err(|source| TlsError::Rustls { what: "client certificate", source })?;
    Ok(Arc::new(config))
}
