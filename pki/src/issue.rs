//! Issuing certificates with rcgen: a CA, server certificates (DNS and IP SANs) and client
//! certificates (CN and O). Keys are ECDSA P-256.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use crate::atomic::write_atomic;
use crate::Error;

/// The period a certificate is valid for, in Unix seconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// `days` days starting at `start` (Unix seconds).
    pub fn days_from(start: i64, days: u32) -> Validity {
        Validity { not_before: start, not_after: start + i64::from(days) * 86_400 }
    }

    /// Valid from one hour ago (clock skew between host and guest) for `days` days.
    pub fn days_from_now(days: u32) -> Validity {
        let now = unix_now();
        Validity { not_before: now - 3600, not_after: now + i64::from(days) * 86_400 }
    }

    /// A period that ended yesterday: for testing that expired certificates are refused.
    pub fn expired() -> Validity {
        let now = unix_now();
        Validity { not_before: now - 30 * 86_400, not_after: now - 86_400 }
    }

    fn apply(&self, params: &mut CertificateParams) -> Result<(), Error> {
        let at = |t: i64| OffsetDateTime::from_unix_timestamp(t).map_err(|_| Error::Validity(t));
        params.not_before = at(self.not_before)?;
        params.not_after = at(self.not_after)?;
        Ok(())
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("cert_pem", &self.cert_pem).field("key_pem", &"<redacted>").finish()
    }
}

impl Identity {
    /// The certificate chain in the PEM (leaf first).
    pub fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>, Error> {
        crate::certs_from_pem(self.cert_pem.as_bytes(), "certificate")
    }

    /// The leaf certificate (first in the PEM).
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, Error> {
        Ok(self.cert_chain()?.remove(0))
    }

    /// The private key.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, Error> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| Error::Pem { what: "private key".into(), reason: e.to_string() })
    }

    /// Write the certificate (0644) and the key (0600), each atomically.
    pub fn save(&self, cert_path: &Path, key_path: &Path) -> Result<(), Error> {
        write_atomic(cert_path, self.cert_pem.as_bytes(), 0o644).map_err(|e| Error::io(cert_path, e))?;
        write_atomic(key_path, self.key_pem.as_bytes(), 0o600).map_err(|e| Error::io(key_path, e))
    }

    /// Read a certificate and key pair written by [`Identity::save`] (or by anyone else) and check
    /// that both parse.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Identity, Error> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io(p, e));
        let id = Identity { cert_pem: read(cert_path)?, key_pem: read(key_path)? };
        id.cert_der().map_err(|e| e.in_file(cert_path))?;
        id.key_der().map_err(|e| e.in_file(key_path))?;
        Ok(id)
    }
}

/// A certificate authority that can issue server and client certificates.
pub struct Ca {
    identity: Identity,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA with subject `CN=common_name`.
    pub fn generate(common_name: &str, validity: Validity) -> Result<Ca, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity.apply(&mut params)?;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let identity = Identity { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Ok(Ca { identity, issuer: Issuer::new(params, key) })
    }

    /// An existing CA (certificate and PKCS#8 key, ECDSA or RSA).
    pub fn from_identity(identity: Identity) -> Result<Ca, Error> {
        let key = KeyPair::from_pem(&identity.key_pem)?;
        let issuer = Issuer::from_ca_cert_der(&identity.cert_der()?, key)?;
        Ok(Ca { identity, issuer })
    }

    /// The CA's certificate and key.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.identity.cert_pem
    }

    /// A server certificate `CN=common_name` for the given DNS names and IP addresses.
    pub fn issue_server(&self, common_name: &str, dns_names: &[&str], ips: &[IpAddr], validity: Validity) -> Result<Identity, Error> {
        let mut params = leaf_params(common_name, &[], validity)?;
        for name in dns_names {
            let ia5 = (*name).try_into().map_err(|_| Error::Name((*name).to_string()))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        params.subject_alt_names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate `CN=common_name` with one `O=` per organization (Kubernetes groups).
    pub fn issue_client(&self, common_name: &str, organizations: &[&str], validity: Validity) -> Result<Identity, Error> {
        let mut params = leaf_params(common_name, organizations, validity)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<Identity, Error> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut cert_pem = cert.pem();
        if !cert_pem.ends_with('\n') {
            cert_pem.push('\n');
        }
        Ok(Identity { cert_pem, key_pem: key.serialize_pem() })
    }
}

fn leaf_params(common_name: &str, organizations: &[&str], validity: Validity) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for org in organizations {
        params.distinguished_name.push(DnType::OrganizationName, *org);
    }
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    validity.apply(&mut params)?;
    Ok(params)
}
