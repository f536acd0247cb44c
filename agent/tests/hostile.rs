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

/// `count` authenticated `info` requests, each on a new connection, while the attackers run;
/// then the attackers are stopped and joined. Every one must be served (no assertion on how
/// fast: the machine may be slow, the attack must not make a request fail).
fn serve_while_attacked(addr: std::net::SocketAddr, pki: &common::Pki, count: usize, stop: &AtomicBool, attackers: Vec<std::thread::JoinHandle<()>>) {
    for i in 0..count {
        let mut c = agent::client::Client::connect(addr, "127.0.0.1", pki.ca.cert_pem(), &pki.client)
            .unwrap_or_else(|e| panic!("handshake {i} of {count} under attack: {e}"));
        assert_eq!(c.info().unwrap_or_else(|e| panic!("info {i} of {count} under attack: {e}")).hostname, "localhost");
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
}

/// Wait (as long as a busy machine needs) until `ready` holds.
fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let t = Instant::now();
    while !ready() {
        assert!(t.elapsed() < Duration::from_secs(120), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn idle_and_slow_peers_do_not_starve_a_client_with_a_certificate() {
    let pki = common::pki();
    let root = common::guest_root();
    // A budget above the attack (the real one is 1024), a short deadline so the slow ones cycle.
    let limits = Limits { max_pending: 128, max_pending_per_peer: 128, handshake_deadline: Duration::from_secs(2), ..Limits::default() };
    let (addr, gate) = common::serve_limited(&pki, root.path(), limits);
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
    wait_until("the attack holds more than the old server's 64 slots", || gate.pending() >= 64);
    // The attackers are shed at the deadline, however slowly they send.
    wait_until("an attacker shed at the deadline", || gate.stats.shed_deadline.load(Ordering::Relaxed) > 0);
    // Every authenticated request gets through, each on a new connection.
    serve_while_attacked(addr, &pki, 20, &stop, attackers);
    assert!(gate.pending() <= 128, "the budget did not hold: {} pending", gate.pending());
}

#[test]
fn failed_handshakes_are_answered_late_so_looping_them_is_slow_and_clients_still_get_through() {
    let pki = common::pki();
    let root = common::guest_root();
    let delay = Duration::from_millis(800);
    let limits = Limits { failure_delay: delay, ..Limits::default() };
    let (addr, gate) = common::serve_limited(&pki, root.path(), limits);
    let rogue_ca = pki::Ca::generate("minikubeCA", pki::Validity::days_from_now(1)).unwrap();
    let rogue = rogue_ca.issue_client("minikube-user", &["system:masters"], pki::Validity::days_from_now(1)).unwrap();

    // One failing handshake: refused (unknown CA), but only after the delay.
    let t = Instant::now();
    let refused = agent::client::Client::connect(addr, "127.0.0.1", pki.ca.cert_pem(), &rogue).and_then(|mut c| c.info());
    assert!(refused.is_err(), "a certificate from another CA was served");
    assert!(t.elapsed() >= delay, "the refusal came after {:?}, before the {delay:?} delay", t.elapsed());

    // 16 loops of wrong-CA handshakes and 16 of garbage bytes: each failure is answered only
    // after the delay (so a loop costs the server one handshake per delay), and an
    // authenticated client is served meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let quickest = Arc::new(std::sync::Mutex::new(Duration::MAX));
    let rogue = Arc::new(rogue);
    let ca_pem = pki.ca.cert_pem().to_string();
    let mut attackers = Vec::new();
    for i in 0..32 {
        let (stop, failures, quickest, rogue, ca_pem) = (stop.clone(), failures.clone(), quickest.clone(), rogue.clone(), ca_pem.clone());
        attackers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if i % 2 == 0 {
                    let served = agent::client::Client::connect(addr, "127.0.0.1", &ca_pem, &rogue).and_then(|mut c| c.info());
                    assert!(served.is_err(), "a certificate from another CA was served");
                } else if let Ok(mut s) = TcpStream::connect(addr) {
                    let _ = s.write_all(&[0x42; 512]);
                    let mut b = [0u8; 64];
                    while matches!(s.read(&mut b), Ok(n) if n > 0) {}
                } else {
                    continue;
                }
                let took = t.elapsed();
                let mut q = quickest.lock().unwrap();
                *q = (*q).min(took);
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Every attacker has failed at least once (a round of 32 failures, each after the delay).
    wait_until("32 failed attempts", || failures.load(Ordering::Relaxed) >= 32);
    serve_while_attacked(addr, &pki, 10, &stop, attackers);
    let quickest = *quickest.lock().unwrap();
    assert!(quickest >= delay, "a failing attempt was answered after {quickest:?}, before the {delay:?} delay");
    let counted = gate.stats.failed_handshakes.load(Ordering::Relaxed);
    assert!(
        counted >= 32 && counted >= failures.load(Ordering::Relaxed),
        "{counted} failed handshakes counted for {} failures",
        failures.load(Ordering::Relaxed)
    );
}
