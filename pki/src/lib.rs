//! Certificates for minikube nodes.
//!
//! - [`Ca`] issues server certificates (DNS + IP SANs) and client certificates (CN + O) with a
//!   chosen [`Validity`] (an already expired one too, for tests).
//! - [`Identity`] is a certificate + key in PEM; [`Identity::save`] writes keys 0600, atomically.
//! - [`subject_hash`] is OpenSSL's `X509_NAME_hash`, used for `/etc/ssl/certs/HASH.0` links;
//!   [`public_key_pin`] is the CA pin of `kubeadm join`.
//! - [`atomic`] replaces files atomically (temp beside the target, fsync, rename, fsync dir).

pub mod atomic;
pub mod digest;
mod issue;
mod name;

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use issue::{Ca, Identity, Validity};
pub use name::{name_hash, public_key_pin, subject_hash, subject_hash_hex, subject_string};
pub use rustls_pki_types;

/// Errors of this crate; each names the file or the part of the certificate involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{what}: bad PEM: {reason}")]
    Pem { what: String, reason: String },
    #[error("malformed certificate DER: {0}")]
    Der(String),
    #[error("validity timestamp {0} out of range")]
    Validity(i64),
    #[error("invalid DNS name for a certificate: {0:?}")]
    Name(String),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io { path: path.to_path_buf(), source }
    }

    fn in_file(self, path: &Path) -> Error {
        match self {
            Error::Pem { what, reason } => Error::Pem { what: format!("{} ({what})", path.display()), reason },
            other => other,
        }
    }
}

/// All certificates in a PEM buffer (at least one); `what` names the input in errors.
pub fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| Error::Pem { what: what.to_string(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(Error::Pem { what: what.to_string(), reason: "no CERTIFICATE block".into() });
    }
    Ok(certs)
}
