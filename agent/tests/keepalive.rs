//! A kept-alive connection the agent closed while it sat idle is replaced, not reported: the
//! request that finds it gone is sent again on a new connection (the launcher's long steps, such
//! as an image import over another connection, leave its main connection idle for minutes).

mod common;

use std::time::Duration;

use agent::gate::Limits;

/// An agent that closes connections idle for 200 ms, and a client that waits longer than that
/// between calls: each call after the first finds its connection closed by the agent.
fn idle_closing_agent() -> (common::Pki, tempfile::TempDir, std::net::SocketAddr) {
    let pki = common::pki();
    let root = common::guest_root();
    let (addr, _gate) = common::serve_limited(&pki, root.path(), Limits { idle: Duration::from_millis(200), ..Limits::default() });
    (pki, root, addr)
}

#[test]
fn a_call_on_a_connection_the_agent_closed_goes_out_again() {
    let (pki, _root, addr) = idle_closing_agent();
    let mut c = agent::client::Client::connect(addr, "127.0.0.1", pki.ca.cert_pem(), &pki.client).unwrap();
    for i in 0..3 {
        assert_eq!(c.info().unwrap_or_else(|e| panic!("info {i} after an idle gap: {e}")).hostname, "localhost");
        std::thread::sleep(Duration::from_millis(600));
    }
    // A JSON request body is sent again as well.
    let changed = c.hostname("keepalive").unwrap_or_else(|e| panic!("hostname after an idle gap: {e}"));
    assert!(changed.changed);
}

#[test]
fn an_upload_on_a_connection_the_agent_closed_goes_out_again() {
    let (pki, root, addr) = idle_closing_agent();
    let mut c = agent::client::Client::connect(addr, "127.0.0.1", pki.ca.cert_pem(), &pki.client).unwrap();
    c.info().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    // A streamed body waits for the agent's go-ahead: the closed connection shows before any of
    // it is read, so the same reader goes out on the new connection.
    let body = b"kept alive\n";
    let r = c.upload_bytes("/etc/keepalive.txt", body, 0o644, None).unwrap_or_else(|e| panic!("upload after an idle gap: {e}"));
    assert!(r.changed);
    assert_eq!(std::fs::read(root.path().join("etc/keepalive.txt")).unwrap(), body);
}
