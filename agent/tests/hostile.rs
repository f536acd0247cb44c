//! Peers that never finish a TLS handshake cannot keep an authenticated client out: the attack
//! that used to work (about 70 idle TCP connections filling every slot), with reconnecting and
//! byte-a-second variants, against a server with a short deadline so the test is quick.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::gate::Limits;
use agent::host::RecordingHost;
use agent::ops::Node;
use agent::paths::GuestRoot;
use agent::server::{Agent, Server};

fn serve(pki: &common::Pki, root: &std::path::Path, limits: Limits) -> (std::net::SocketAddr, Arc<agent::gate::Gate>) {
    let tls = agent::tls::server_config(pki.ca.cert_pem(), &pki.server).unwrap();
    let node = Node::new(GuestRoot::new(root), Arc::new(RecordingHost::new("localhost")));
    let server = Server::bind_with("127.0.0.1:0".parse().unwrap(), tls, Arc::new(Agent::new(node, None)), limits).unwrap();
    let (addr, gate) = (server.local_addr().unwrap(), server.gate());
    server.spawn();
    (addr, gate)
}

#[test]
fn idle_and_slow_peers_do_not_starve_a_client_with_a_certificate() {
    let pki = common::pki();
    let root = common::guest_root();
    // A budget above the attack (the real one is 1024), a short deadline so the slow ones cycle.
    let limits = Limits { max_pending: 128, max_pending_per_peer: 128, handshake_deadline: Duration::from_secs(2), ..Limits::default() };
    let (addr, gate) = serve(&pki, root.path(), limits);
    let stop = Arc::new(AtomicBool::new(false));
    // 100 attackers (more than the 64 slots that the old server had in all) that reconnect as
    // soon as they are dropped: half idle, half trickling a byte every 300 ms.
    let mut attackers = Vec::new();
    for i in 0..100 {
        let stop = stop.clone();
        attackers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(addr) else { continue };
                s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                let mut b = [0u8; 1];
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if i % 2 == 1 && s.write_all(&[0x16]).is_err() {
                        break;
                    }
                    match s.read(&mut b) {
                        Ok(0) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                        _ => break,
                    }
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert!(gate.pending() >= 64, "the attack holds more than the old server's slots: {} pending", gate.pending());
    // Every authenticated request in 5 s gets through, each on a new connection.
    let end = Instant::now() + Duration::from_secs(5);
    let mut served = 0;
    while Instant::now() < end {
        let mut c = agent::client::Client::connect(addr, "127.0.0.1", pki.ca.cert_pem(), &pki.client).expect("handshake under attack");
        assert_eq!(c.info().expect("info under attack").hostname, "localhost");
        served += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    assert!(served > 5, "only {served} requests served");
    // The attackers were shed at the deadline, however slowly they sent; the budget held.
    assert!(gate.stats.shed_deadline.load(Ordering::Relaxed) > 0, "nothing was shed at the deadline");
    assert!(gate.pending() <= 128);
}
