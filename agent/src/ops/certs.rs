//! `certs`: certificates and keys into place (keys 0600, certificates 0644), CAs into the
//! system trust store with OpenSSL subject-hash links, the way minikube lays them out.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use crate::api::{CertsRequest, Changed};
use crate::ops::{ensure, Node, OpError};
use crate::paths::Access;

pub use agent_api::render::certs::{CA_LINK_DIR, CA_SHARE_DIR};

/// What a checked request places: (host path, PEM, mode) files and (name, PEM, subject hash) CAs.
type Checked<'a> = (Vec<(std::path::PathBuf, &'a [u8], u32)>, Vec<(&'a str, &'a [u8], String)>);

/// Check the whole request (every error names its field); nothing is touched.
pub fn validate<'a>(node: &Node, req: &'a CertsRequest) -> Result<Checked<'a>, OpError> {
    let mut files = Vec::new();
    for (i, f) in req.files.iter().enumerate() {
        let field = format!("files[{i}].path");
        let (_, host) = node.root.resolve(&f.path, &field, Access::Write)?;
        let pem_field = format!("files[{i}].pem");
        if f.private {
            PrivateKeyDer::from_pem_slice(f.pem.as_bytes()).map_err(|e| OpError::bad(&pem_field, format!("not a PEM private key: {e}")))?;
        } else {
            pki::certs_from_pem(f.pem.as_bytes(), &pem_field).map_err(|e| OpError::bad(&pem_field, e.to_string()))?;
        }
        files.push((host, f.pem.as_bytes(), if f.private { 0o600 } else { 0o644 }));
    }
    let mut cas = Vec::new();
    for (i, ca) in req.trust.iter().enumerate() {
        let field = format!("trust[{i}].name");
        let name = &ca.name;
        if name.is_empty() || name.contains('/') || name.starts_with('.') || !(name.ends_with(".pem") || name.ends_with(".crt")) {
            return Err(OpError::bad(&field, format!("{name:?} must be a file name ending in .pem or .crt")));
        }
        let pem_field = format!("trust[{i}].pem");
        let der = pki::certs_from_pem(ca.pem.as_bytes(), &pem_field).map_err(|e| OpError::bad(&pem_field, e.to_string()))?.remove(0);
        let hash = pki::subject_hash_hex(&der).map_err(|e| OpError::bad(&pem_field, e.to_string()))?;
        cas.push((name.as_str(), ca.pem.as_bytes(), hash));
    }
    Ok((files, cas))
}

/// Validate and place everything; a repeat changes nothing.
pub fn apply(node: &Node, req: &CertsRequest) -> Result<Changed, OpError> {
    let (files, cas) = validate(node, req)?;
    let _w = node.lock_writes();
    let mut changed = false;
    for (host, pem, mode) in files {
        changed |= ensure::file(&host, pem, mode, Some((0, 0))).map_err(|e| OpError::io(&host, e))?;
    }
    for (name, pem, hash) in cas {
        let shared = format!("{CA_SHARE_DIR}/{name}");
        let host = node.root.host(&shared);
        changed |= ensure::file(&host, pem, 0o644, Some((0, 0))).map_err(|e| OpError::io(&host, e))?;
        let link = node.root.host(&format!("{CA_LINK_DIR}/{name}"));
        changed |= ensure::symlink(&link, &shared).map_err(|e| OpError::io(&link, e))?;
        let hash_link = node.root.host(&format!("{CA_LINK_DIR}/{hash}.0"));
        changed |= ensure::symlink(&hash_link, &format!("{CA_LINK_DIR}/{name}")).map_err(|e| OpError::io(&hash_link, e))?;
    }
    Ok(Changed { changed })
}
