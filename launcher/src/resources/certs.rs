//! The cluster's certificates, issued on the host with [`pki`].
//!
//! Shared by every profile (created once, in `HOME/certs`): the cluster CA (`CN=minikubeCA`),
//! the front-proxy CA (`CN=proxyClientCA`) and the agent CA (`CN=minikube-agentCA`, which
//! signs only the agents' server certificates and the launcher's client certificates, so that
//! no Kubernetes credential opens the agent).
//!
//! Per profile: the API server certificate with minikube's SANs, the kubectl client certificate
//! (`CN=minikube-user, O=system:masters`), the front-proxy client certificate, the
//! service-account key pair, the agent's server certificate (IP 127.0.0.1 and the guest IP, DNS
//! localhost) and the launcher's client certificate.
//!
//! Every leaf is reused while it is valid for at least another day, signed by the current CA
//! and carries exactly the wanted names; otherwise it is issued again. Keys are written 0600.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use pki::{Ca, Identity, Validity};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// Leaf certificates: three years, as minikube's `CertExpiration` default.
pub const LEAF_DAYS: u32 = 3 * 365;
/// CAs: ten years.
pub const CA_DAYS: u32 = 10 * 365;
/// A certificate closer than this to its end is issued again.
const RENEW_MARGIN_SECS: i64 = 86_400;

/// The cluster's service IP (first address of 10.96.0.0/12) and minikube's fixed names.
pub const APISERVER_IPS: &[&str] = &["10.96.0.1", "127.0.0.1", "10.0.0.1"];
pub const APISERVER_DNS: &[&str] =
    &["localhost", "control-plane.minikube.internal", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"];

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Pki(#[from] pki::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a readable certificate: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("node IP {0:?} is not an IP address")]
    NodeIp(String),
    #[error("service-account key: {0}")]
    Key(#[from] rcgen::Error),
}

/// The three shared CAs.
pub struct SharedCas {
    pub cluster: Ca,
    pub proxy_client: Ca,
    pub agent: Ca,
    pub dir: PathBuf,
}

impl SharedCas {
    pub fn cluster_ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

/// Load the CA `NAME.crt`/`NAME.key` from `dir`, or create it with `CN=common_name`.
pub fn ensure_ca(dir: &Path, name: &str, common_name: &str) -> Result<Ca, CertError> {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    if crt.exists() && key.exists() {
        let id = Identity::load(&crt, &key)?;
        let info = inspect(&id.cert_pem, &crt)?;
        if info.not_after - RENEW_MARGIN_SECS > now() && info.subject_cn.as_deref() == Some(common_name) {
            return Ok(Ca::from_identity(id)?);
        }
        tracing::warn!("{}: expired or not {common_name}: creating a new CA", crt.display());
    }
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io { path: dir.to_path_buf(), source })?;
    let ca = Ca::generate(common_name, Validity::days_from_now(CA_DAYS))?;
    ca.identity().save(&crt, &key)?;
    tracing::info!("created CA {common_name} in {}", crt.display());
    Ok(ca)
}

/// The shared CAs in `dir`, created on first use.
pub fn shared_cas(dir: &Path) -> Result<SharedCas, CertError> {
    Ok(SharedCas {
        cluster: ensure_ca(dir, "ca", "minikubeCA")?,
        proxy_client: ensure_ca(dir, "proxy-client-ca", "proxyClientCA")?,
        agent: ensure_ca(dir, "agent-ca", "minikube-agentCA")?,
        dir: dir.to_path_buf(),
    })
}

/// What [`inspect`] reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject_cn: Option<String>,
    pub organizations: Vec<String>,
    /// Raw DER of the issuer name.
    pub issuer_der: Vec<u8>,
    pub not_after: i64,
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

/// Parse the first certificate of `pem`; `path` names it in errors.
pub fn inspect(pem: &str, path: &Path) -> Result<CertInfo, CertError> {
    let bad = |reason: String| CertError::Parse { path: path.to_path_buf(), reason };
    let der = pki::certs_from_pem(pem.as_bytes(), &path.display().to_string())?.remove(0);
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).map_err(|e| bad(e.to_string()))?;
    let subject_cn = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).map(str::to_string);
    let organizations = cert.subject().iter_organization().filter_map(|o| o.as_str().ok()).map(str::to_string).collect();
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    dns.insert(d.to_string());
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*b).expect("length checked")),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*b).expect("length checked")),
                        n => return Err(bad(format!("IP SAN of {n} bytes"))),
                    };
                    ips.insert(ip);
                }
                _ => {}
            }
        }
    }
    Ok(CertInfo { subject_cn, organizations, issuer_der: cert.issuer().as_raw().to_vec(), not_after: cert.validity().not_after.timestamp(), dns, ips })
}

fn subject_der(ca: &Ca) -> Result<Vec<u8>, CertError> {
    let der = ca.identity().cert_der()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref())
        .map_err(|e| CertError::Parse { path: PathBuf::from("CA certificate"), reason: e.to_string() })?;
    Ok(cert.subject().as_raw().to_vec())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// What a leaf certificate must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafSpec {
    Server { cn: String, dns: Vec<String>, ips: Vec<IpAddr> },
    Client { cn: String, orgs: Vec<String> },
}

/// Whether the existing certificate (if any) can be kept.
fn reusable(ca: &Ca, spec: &LeafSpec, crt: &Path, key: &Path) -> Result<Option<Identity>, CertError> {
    if !crt.exists() || !key.exists() {
        return Ok(None);
    }
    let Ok(id) = Identity::load(crt, key) else { return Ok(None) };
    let Ok(info) = inspect(&id.cert_pem, crt) else { return Ok(None) };
    if info.issuer_der != subject_der(ca)? || info.not_after - RENEW_MARGIN_SECS <= now() {
        return Ok(None);
    }
    let ok = match spec {
        LeafSpec::Server { cn, dns, ips } => {
            info.subject_cn.as_deref() == Some(cn) && info.dns == dns.iter().cloned().collect() && info.ips == ips.iter().copied().collect()
        }
        LeafSpec::Client { cn, orgs } => info.subject_cn.as_deref() == Some(cn) && info.organizations.iter().collect::<BTreeSet<_>>() == orgs.iter().collect(),
    };
    Ok(ok.then_some(id))
}

/// Keep `NAME.crt`/`NAME.key` in `dir` if it matches `spec`, otherwise issue it. Returns the
/// identity and whether it was (re)issued.
pub fn ensure_leaf(ca: &Ca, spec: &LeafSpec, dir: &Path, name: &str) -> Result<(Identity, bool), CertError> {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    if let Some(id) = reusable(ca, spec, &crt, &key)? {
        return Ok((id, false));
    }
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io { path: dir.to_path_buf(), source })?;
    let validity = Validity::days_from_now(LEAF_DAYS);
    let id = match spec {
        LeafSpec::Server { cn, dns, ips } => {
            let dns: Vec<&str> = dns.iter().map(String::as_str).collect();
            ca.issue_server(cn, &dns, ips, validity)?
        }
        LeafSpec::Client { cn, orgs } => {
            let orgs: Vec<&str> = orgs.iter().map(String::as_str).collect();
            ca.issue_client(cn, &orgs, validity)?
        }
    };
    id.save(&crt, &key)?;
    tracing::info!("issued {}", crt.display());
    Ok((id, true))
}

/// The API server's names: minikube's fixed SANs plus the node IP.
pub fn apiserver_spec(node_ip: &str) -> Result<LeafSpec, CertError> {
    let node: IpAddr = node_ip.parse().map_err(|_| CertError::NodeIp(node_ip.to_string()))?;
    let mut ips: Vec<IpAddr> = APISERVER_IPS.iter().map(|s| s.parse().expect("constant IP")).collect();
    if !ips.contains(&node) {
        ips.push(node);
    }
    Ok(LeafSpec::Server { cn: "minikube".into(), dns: APISERVER_DNS.iter().map(|s| s.to_string()).collect(), ips })
}

/// The agent's server certificate: reached through the host forward (127.0.0.1) or directly.
pub fn agent_spec(guest_ip: &str) -> Result<LeafSpec, CertError> {
    let guest: IpAddr = guest_ip.parse().map_err(|_| CertError::NodeIp(guest_ip.to_string()))?;
    let mut ips = vec![IpAddr::from([127, 0, 0, 1])];
    if !ips.contains(&guest) {
        ips.push(guest);
    }
    Ok(LeafSpec::Server { cn: "minikube-agent".into(), dns: vec!["localhost".into()], ips })
}

/// Everything one profile needs.
pub struct ProfileCerts {
    pub cluster_ca: Identity,
    pub proxy_client_ca: Identity,
    pub agent_ca_pem: String,
    pub apiserver: Identity,
    pub client: Identity,
    pub proxy_client: Identity,
    pub sa_key_pem: String,
    pub sa_pub_pem: String,
    pub agent: Identity,
    pub launcher: Identity,
    /// Names of the certificates issued by this call (empty when everything was reused).
    pub issued: Vec<&'static str>,
    pub certs_dir: PathBuf,
}

/// Issue or reuse every certificate of a profile. `certs_dir` holds the profile's leaves,
/// `trust_dir` the agent's trust files (what fw_cfg and the data disk carry).
pub fn ensure_profile(cas: &SharedCas, certs_dir: &Path, trust_dir: &Path, node_ip: &str) -> Result<ProfileCerts, CertError> {
    let mut issued = Vec::new();
    let mut leaf = |ca: &Ca, spec: LeafSpec, dir: &Path, name: &'static str| -> Result<Identity, CertError> {
        let (id, new) = ensure_leaf(ca, &spec, dir, name)?;
        if new {
            issued.push(name);
        }
        Ok(id)
    };
    let apiserver = leaf(&cas.cluster, apiserver_spec(node_ip)?, certs_dir, "apiserver")?;
    let client = leaf(&cas.cluster, LeafSpec::Client { cn: "minikube-user".into(), orgs: vec!["system:masters".into()] }, certs_dir, "client")?;
    let proxy_client = leaf(&cas.proxy_client, LeafSpec::Client { cn: "front-proxy-client".into(), orgs: vec![] }, certs_dir, "proxy-client")?;
    let launcher = leaf(&cas.agent, LeafSpec::Client { cn: "minikube-node-launcher".into(), orgs: vec![] }, certs_dir, "launcher")?;
    let agent = leaf(&cas.agent, agent_spec(crate::model::GUEST_IP)?, trust_dir, "agent")?;
    // The agent's CA file sits beside its certificate (the names the agent reads).
    let ca_path = trust_dir.join(agent_api::trust::CA_FILE);
    if std::fs::read_to_string(&ca_path).ok().as_deref() != Some(cas.agent.cert_pem()) {
        pki::atomic::write_atomic(&ca_path, cas.agent.cert_pem().as_bytes(), 0o644).map_err(|source| CertError::Io { path: ca_path, source })?;
    }
    let (sa_key_pem, sa_pub_pem) = ensure_sa_key(certs_dir, &mut issued)?;
    Ok(ProfileCerts {
        cluster_ca: cas.cluster.identity().clone(),
        proxy_client_ca: cas.proxy_client.identity().clone(),
        agent_ca_pem: cas.agent.cert_pem().to_string(),
        apiserver,
        client,
        proxy_client,
        sa_key_pem,
        sa_pub_pem,
        agent,
        launcher,
        issued,
        certs_dir: certs_dir.to_path_buf(),
    })
}

/// The service-account signing key pair (ECDSA P-256, PKCS#8 private key and SPKI public key).
fn ensure_sa_key(dir: &Path, issued: &mut Vec<&'static str>) -> Result<(String, String), CertError> {
    let (key_path, pub_path) = (dir.join("sa.key"), dir.join("sa.pub"));
    if let (Ok(k), Ok(p)) = (std::fs::read_to_string(&key_path), std::fs::read_to_string(&pub_path)) {
        if let Ok(pair) = rcgen::KeyPair::from_pem(&k) {
            if pair.public_key_pem() == p {
                return Ok((k, p));
            }
        }
    }
    let pair = rcgen::KeyPair::generate()?;
    let (k, p) = (pair.serialize_pem(), pair.public_key_pem());
    pki::atomic::write_atomic(&key_path, k.as_bytes(), 0o600).map_err(|source| CertError::Io { path: key_path, source })?;
    pki::atomic::write_atomic(&pub_path, p.as_bytes(), 0o644).map_err(|source| CertError::Io { path: pub_path, source })?;
    issued.push("sa");
    Ok((k, p))
}

/// Guest directory of the Kubernetes certificates.
pub const GUEST_CERTS_DIR: &str = "/var/lib/minikube/certs";

/// Guest path of the service-account public key: not a certificate, so it goes through the
/// agent's file upload rather than `certs`.
pub const GUEST_SA_PUB: &str = "/var/lib/minikube/certs/sa.pub";

/// The agent `certs` request: files into /var/lib/minikube/certs and minikubeCA trusted
/// (everything but `sa.pub`, see [`GUEST_SA_PUB`]).
pub fn certs_request(p: &ProfileCerts) -> agent_api::api::CertsRequest {
    use agent_api::api::{CertFile, TrustedCa};
    let file = |name: &str, pem: &str, private: bool| CertFile { path: format!("{GUEST_CERTS_DIR}/{name}"), pem: pem.to_string(), private };
    agent_api::api::CertsRequest {
        files: vec![
            file("ca.crt", &p.cluster_ca.cert_pem, false),
            file("ca.key", &p.cluster_ca.key_pem, true),
            file("apiserver.crt", &p.apiserver.cert_pem, false),
            file("apiserver.key", &p.apiserver.key_pem, true),
            file("proxy-client-ca.crt", &p.proxy_client_ca.cert_pem, false),
            file("proxy-client-ca.key", &p.proxy_client_ca.key_pem, true),
            file("proxy-client.crt", &p.proxy_client.cert_pem, false),
            file("proxy-client.key", &p.proxy_client.key_pem, true),
            file("sa.key", &p.sa_key_pem, true),
        ],
        trust: vec![TrustedCa { name: "minikubeCA.pem".into(), pem: p.cluster_ca.cert_pem.clone() }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn issued_once_reused_then_reissued_on_san_change() {
        let d = tempfile::tempdir().unwrap();
        let cas = shared_cas(&d.path().join("shared")).unwrap();
        let (certs, trust) = (d.path().join("p/certs"), d.path().join("p/trust"));
        let first = ensure_profile(&cas, &certs, &trust, "10.0.2.15").unwrap();
        assert_eq!(first.issued, vec!["apiserver", "client", "proxy-client", "launcher", "agent", "sa"]);
        for key in ["apiserver.key", "client.key", "proxy-client.key", "launcher.key", "sa.key"] {
            let mode = std::fs::metadata(certs.join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
        assert_eq!(std::fs::metadata(trust.join("agent.key")).unwrap().permissions().mode() & 0o777, 0o600);
        let info = inspect(&first.apiserver.cert_pem, Path::new("apiserver.crt")).unwrap();
        for ip in ["10.96.0.1", "127.0.0.1", "10.0.0.1", "10.0.2.15"] {
            assert!(info.ips.contains(&ip.parse().unwrap()), "{ip}");
        }
        assert!(info.dns.contains("control-plane.minikube.internal"));
        let client = inspect(&first.client.cert_pem, Path::new("client.crt")).unwrap();
        assert_eq!(client.subject_cn.as_deref(), Some("minikube-user"));
        assert_eq!(client.organizations, vec!["system:masters".to_string()]);

        // Same inputs, CAs loaded again from disk: nothing is issued.
        let cas2 = shared_cas(&d.path().join("shared")).unwrap();
        assert_eq!(cas2.cluster.cert_pem(), cas.cluster.cert_pem());
        let again = ensure_profile(&cas2, &certs, &trust, "10.0.2.15").unwrap();
        assert!(again.issued.is_empty(), "{:?}", again.issued);
        assert_eq!(again.apiserver.cert_pem, first.apiserver.cert_pem);

        // A new node IP changes the API server's SANs only.
        let moved = ensure_profile(&cas2, &certs, &trust, "192.168.39.2").unwrap();
        assert_eq!(moved.issued, vec!["apiserver"]);
        let info = inspect(&moved.apiserver.cert_pem, Path::new("apiserver.crt")).unwrap();
        assert!(info.ips.contains(&"192.168.39.2".parse().unwrap()));
        assert!(!info.ips.contains(&"10.0.2.15".parse().unwrap()));
    }

    #[test]
    fn launcher_and_agent_certs_work_over_mtls_config() {
        let d = tempfile::tempdir().unwrap();
        let cas = shared_cas(d.path()).unwrap();
        let p = ensure_profile(&cas, &d.path().join("c"), &d.path().join("t"), "10.0.2.15").unwrap();
        agent_api::tls::server_config(&p.agent_ca_pem, &p.agent).unwrap();
        agent_api::tls::client_config(&p.agent_ca_pem, &p.launcher).unwrap();
        let req = certs_request(&p);
        assert!(req.files.iter().all(|f| f.path.starts_with(GUEST_CERTS_DIR)));
        assert_eq!(req.files.iter().filter(|f| f.private).count(), 5);
        assert!(req.files.iter().all(|f| f.private || f.pem.contains("BEGIN CERTIFICATE")), "the agent accepts only certificates and keys");
    }
}
