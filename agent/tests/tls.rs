//! Who may talk to the agent: only clients with a current certificate from the cluster CA.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use agent::client::Client;
use pki::{Ca, Validity};

/// Connect and ask for `info` with `identity`; the outcome as text.
fn try_info(addr: std::net::SocketAddr, ca_pem: &str, identity: &pki::Identity) -> Result<String, String> {
    let mut c = Client::connect(addr, "127.0.0.1", ca_pem, identity).map_err(|e| e.to_string())?;
    c.info().map(|i| i.hostname).map_err(|e| e.to_string())
}

#[test]
fn valid_client_certificate_is_served() {
    let a = common::start();
    assert_eq!(try_info(a.addr, a.pki.ca.cert_pem(), &a.pki.client).unwrap(), "localhost");
}

#[test]
fn client_from_another_ca_is_refused() {
    let a = common::start();
    let other = Ca::generate("minikubeCA", Validity::days_from_now(10)).unwrap();
    let intruder = other.issue_client("minikube-user", &["system:masters"], Validity::days_from_now(1)).unwrap();
    let err = try_info(a.addr, a.pki.ca.cert_pem(), &intruder).unwrap_err();
    assert!(err.contains("UnknownCA") || err.contains("unknown") || err.contains("alert"), "{err}");
    assert!(a.audit_log().is_empty());
}

#[test]
fn expired_client_certificate_is_refused() {
    let a = common::start();
    let expired = a.pki.ca.issue_client("minikube-user", &["system:masters"], Validity::expired()).unwrap();
    let err = try_info(a.addr, a.pki.ca.cert_pem(), &expired).unwrap_err();
    assert!(err.to_lowercase().contains("expired") || err.contains("alert"), "{err}");
}

#[test]
fn self_signed_server_certificate_is_refused_by_the_client() {
    // The client must not trust an agent whose certificate is not from the cluster CA.
    let a = common::start();
    let other = Ca::generate("minikubeCA", Validity::days_from_now(10)).unwrap();
    let err = try_info(a.addr, other.cert_pem(), &a.pki.client).unwrap_err();
    assert!(err.contains("UnknownIssuer") || err.contains("invalid peer certificate"), "{err}");
}

#[test]
fn no_client_certificate_is_refused() {
    let a = common::start();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(a.pki.ca.identity().cert_der().unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(agent::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), "127.0.0.1".try_into().unwrap()).unwrap();
    let mut sock = TcpStream::connect(a.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let sent = tls.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n").and_then(|_| tls.flush());
    let mut buf = Vec::new();
    let read = tls.read_to_end(&mut buf);
    assert!(sent.is_err() || read.is_err(), "expected an alert, read {:?}", String::from_utf8_lossy(&buf));
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1"), "no HTTP answer without a client certificate");
}

#[test]
fn plain_http_is_refused() {
    let a = common::start();
    let mut sock = TcpStream::connect(a.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = sock.read_to_end(&mut buf);
    assert!(!buf.starts_with(b"HTTP/1.1 200"), "plain HTTP must get no answer");
    assert!(!String::from_utf8_lossy(&buf).contains("hostname"), "no data leaked over plain HTTP");
}

#[test]
fn tls12_is_refused() {
    let a = common::start();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(a.pki.ca.identity().cert_der().unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(agent::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(a.pki.client.cert_chain().unwrap(), a.pki.client.key_der().unwrap())
        .unwrap();
    let err = Client::with_config(a.addr, "127.0.0.1", Arc::new(config)).err().expect("TLS 1.2 handshake refused");
    assert!(err.to_string().contains("alert") || err.to_string().contains("version"), "{err}");
}
