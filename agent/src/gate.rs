//! Admission of connections, so that peers without a client certificate never starve the ones
//! that have one.
//!
//! * A connection is **pending** from accept until its TLS handshake proves a client certificate.
//!   Pending connections share a bounded budget ([`Limits::max_pending`]) with a per-peer cap
//!   ([`Limits::max_pending_per_peer`]); when either is full, one pending connection (of that
//!   peer, or overall) is shed to make room: the one that has sent the fewest bytes, the oldest
//!   among equals. A real client sends its whole ClientHello at once and finishes in
//!   milliseconds; an idle or byte-a-second peer has sent (almost) nothing, so it goes first. Shedding shuts the socket down, which wakes the
//!   thread blocked on it at once.
//! * A pending connection has an absolute deadline ([`Limits::handshake_deadline`]): a reaper
//!   sheds it then, however slowly it trickles bytes (a per-read timeout alone would let a
//!   byte-a-second peer live forever).
//! * **Authenticated** connections have their own limit ([`Limits::max_authenticated`]); one over
//!   it is answered 503 and closed. An authenticated connection idle for [`Limits::idle`] between
//!   requests is closed.
//!
//! * A peer whose handshake **fails** (bytes that are not TLS, no client certificate, one from
//!   another CA) hears so only after [`Limits::failure_delay`], as a login prompt delays a wrong
//!   password: the connection stays pending (first in line to be shed) and its thread waits on
//!   the socket. A client that loops on failing handshakes then costs one handshake per delay
//!   instead of one per round trip; without it, 125 such loops took most of both cores from the
//!   clients that do have a certificate (`cargo xtask bench agent --hostile`).
//!
//! A pending connection younger than [`Limits::grace`] is never shed: when nothing older can
//! make room, the newcomer is closed instead. So threads and memory stay bounded by
//! `max_pending + max_authenticated` connections, and an attacker who reconnects in a loop sheds
//! only its own stale sockets, never a handshake in progress.

use std::collections::VecDeque;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The agent's connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_pending: usize,
    pub max_pending_per_peer: usize,
    /// A pending connection younger than this is never shed to make room (a newcomer is turned
    /// away instead), so a peer that reconnects in a loop cannot shed a handshake in progress.
    pub grace: Duration,
    pub handshake_deadline: Duration,
    pub max_authenticated: usize,
    pub idle: Duration,
    /// How long a failed handshake waits before its alert is sent and the socket closed (never
    /// past the handshake deadline).
    pub failure_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pending: 1024,
            max_pending_per_peer: 512,
            handshake_deadline: Duration::from_secs(5),
            grace: Duration::from_millis(500),
            max_authenticated: 64,
            idle: agent_api::http::IDLE_CLOSE,
            failure_delay: Duration::from_secs(2),
        }
    }
}

struct Pending {
    id: u64,
    peer: IpAddr,
    started: Instant,
    sock: TcpStream,
    /// Bytes the handshake has read so far (shared with the connection's [`Ticket`]), with
    /// [`FAILED`] set once the handshake failed.
    received: Arc<AtomicU64>,
}

/// The bit of [`Pending::received`] that marks a failed handshake (waiting out its delay).
const FAILED: u64 = 1 << 63;

/// Counters, for logs and the benchmark.
#[derive(Debug, Default)]
pub struct GateStats {
    pub shed_budget: AtomicU64,
    pub shed_deadline: AtomicU64,
    pub turned_away: AtomicU64,
    pub refused_authenticated: AtomicU64,
    /// Handshakes that failed (and waited out [`Limits::failure_delay`]).
    pub failed_handshakes: AtomicU64,
}

/// The shared admission state of one server.
pub struct Gate {
    limits: Limits,
    pending: Mutex<VecDeque<Pending>>,
    authenticated: AtomicUsize,
    next: AtomicU64,
    pub stats: GateStats,
}

/// A connection's place in the pending budget; dropping it leaves the budget.
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    received: Arc<AtomicU64>,
}

/// A place among the authenticated connections; dropping it frees it.
pub struct Seat {
    gate: Arc<Gate>,
}

impl Gate {
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            pending: Mutex::new(VecDeque::new()),
            authenticated: AtomicUsize::new(0),
            next: AtomicU64::new(0),
            stats: GateStats::default(),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Admit a new, unauthenticated connection, shedding the oldest pending ones of its peer or
    /// overall when a budget is full. `sock` is a clone of the connection's socket.
    /// `None`: every pending connection that could make room is still in its grace period, so
    /// the newcomer is turned away (the caller closes it).
    pub fn admit(self: &Arc<Gate>, sock: TcpStream, peer: IpAddr) -> Option<Ticket> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if q.iter().filter(|p| p.peer == peer).count() >= self.limits.max_pending_per_peer {
            match victim(&q, Some(peer), now, self.limits.grace).and_then(|i| q.remove(i)) {
                Some(p) => shed(p, &self.stats.shed_budget),
                None => return self.turn_away(sock),
            }
        }
        while q.len() >= self.limits.max_pending {
            match victim(&q, None, now, self.limits.grace).and_then(|i| q.remove(i)) {
                Some(p) => shed(p, &self.stats.shed_budget),
                None => return self.turn_away(sock),
            }
        }
        let received = Arc::new(AtomicU64::new(0));
        q.push_back(Pending { id, peer, started: now, sock, received: received.clone() });
        Some(Ticket { gate: self.clone(), id, received })
    }

    fn turn_away(&self, sock: TcpStream) -> Option<Ticket> {
        let _ = sock.shutdown(Shutdown::Both);
        self.stats.turned_away.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Shed every pending connection past its deadline; returns how many.
    pub fn reap(&self) -> usize {
        let now = Instant::now();
        let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        while q.front().is_some_and(|p| now.duration_since(p.started) >= self.limits.handshake_deadline) {
            if let Some(p) = q.pop_front() {
                shed(p, &self.stats.shed_deadline);
                n += 1;
            }
        }
        n
    }

    /// Pending connections now.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Authenticated connections now.
    pub fn authenticated(&self) -> usize {
        self.authenticated.load(Ordering::SeqCst)
    }

    /// Run the deadline reaper in a background thread for as long as the gate lives.
    pub fn spawn_reaper(self: &Arc<Gate>) {
        let weak = Arc::downgrade(self);
        let tick = (self.limits.handshake_deadline / 10).clamp(Duration::from_millis(20), Duration::from_millis(500));
        std::thread::Builder::new()
            .name("agent-reaper".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(g) => {
                        g.reap();
                    }
                    None => return,
                }
            })
            .expect("spawn the reaper thread");
    }
}

/// The pending connection to shed (of `peer` only, if given): a failed handshake waiting out
/// its delay first, whatever its age; else, among those past their grace period, the one with
/// the fewest bytes received, then the oldest.
fn victim(q: &VecDeque<Pending>, peer: Option<IpAddr>, now: Instant, grace: Duration) -> Option<usize> {
    let of_peer = |p: &Pending| peer.is_none_or(|x| p.peer == x);
    if let Some(i) = q.iter().position(|p| of_peer(p) && p.received.load(Ordering::Relaxed) & FAILED != 0) {
        return Some(i);
    }
    q.iter()
        .enumerate()
        .filter(|(_, p)| of_peer(p) && now.duration_since(p.started) >= grace)
        .min_by_key(|(i, p)| (p.received.load(Ordering::Relaxed), *i))
        .map(|(i, _)| i)
}

fn shed(p: Pending, counter: &AtomicU64) {
    let _ = p.sock.shutdown(Shutdown::Both);
    counter.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(peer = %p.peer, age_ms = p.started.elapsed().as_millis() as u64, "shed an unauthenticated connection");
}

impl Ticket {
    /// Count bytes the handshake read (what the shedding order looks at).
    pub fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The handshake failed: this connection is the first to shed while it waits out its delay.
    pub fn failed(&self) {
        self.received.fetch_or(FAILED, Ordering::Relaxed);
        self.gate.stats.failed_handshakes.fetch_add(1, Ordering::Relaxed);
    }

    /// The handshake proved a client certificate: leave the pending budget and take a seat
    /// among the authenticated connections, if one is free.
    pub fn authenticate(self) -> Option<Seat> {
        let gate = self.gate.clone();
        drop(self);
        let n = gate.authenticated.fetch_add(1, Ordering::SeqCst);
        if n >= gate.limits.max_authenticated {
            gate.authenticated.fetch_sub(1, Ordering::SeqCst);
            gate.stats.refused_authenticated.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Seat { gate })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut q = self.gate.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = q.iter().position(|p| p.id == self.id) {
            q.remove(i);
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.gate.authenticated.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    #[test]
    fn a_failed_handshake_is_shed_first_even_in_its_grace_period() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let gate = Gate::new(Limits { max_pending: 2, grace: Duration::from_secs(60), ..Limits::default() });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let (_c1, s1) = pair(&l);
        let _t1 = gate.admit(s1.try_clone().unwrap(), a).unwrap();
        let (mut c2, s2) = pair(&l);
        let t2 = gate.admit(s2.try_clone().unwrap(), a).unwrap();
        // Both are fresh: a newcomer is turned away...
        let (_c3, s3) = pair(&l);
        assert!(gate.admit(s3.try_clone().unwrap(), a).is_none());
        // ...unless one of them failed: that one goes.
        t2.failed();
        let (_c4, s4) = pair(&l);
        assert!(gate.admit(s4.try_clone().unwrap(), a).is_some());
        let mut b = [0u8; 1];
        assert_eq!(c2.read(&mut b).unwrap(), 0, "the failed connection was shut down");
        assert_eq!(gate.stats.failed_handshakes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_full_budget_sheds_the_oldest_and_the_peer_cap_sheds_that_peers_oldest() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let gate = Gate::new(Limits { max_pending: 3, max_pending_per_peer: 2, grace: Duration::ZERO, ..Limits::default() });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let (mut c1, s1) = pair(&l);
        let t1 = gate.admit(s1.try_clone().unwrap(), a).unwrap();
        let (_c2, s2) = pair(&l);
        let _t2 = gate.admit(s2.try_clone().unwrap(), b).unwrap();
        let (_c3, s3) = pair(&l);
        let _t3 = gate.admit(s3.try_clone().unwrap(), b).unwrap();
        // b is at its cap: b's oldest (s2) goes, a's stays.
        let (_c4, s4) = pair(&l);
        let _t4 = gate.admit(s4.try_clone().unwrap(), b).unwrap();
        assert_eq!(gate.pending(), 3);
        assert_eq!(gate.stats.shed_budget.load(Ordering::Relaxed), 1);
        // The budget is full: the oldest overall (a's s1) goes, and its peer sees EOF.
        let (_c5, s5) = pair(&l);
        let _t5 = gate.admit(s5.try_clone().unwrap(), a).unwrap();
        assert_eq!(gate.pending(), 3);
        let mut buf = [0u8; 1];
        assert_eq!(c1.read(&mut buf).unwrap(), 0, "the shed connection was closed");
        drop(t1);
        assert_eq!(gate.pending(), 3);
    }

    #[test]
    fn a_peer_that_sent_its_hello_outlives_idle_ones() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let gate = Gate::new(Limits { max_pending: 2, max_pending_per_peer: 2, grace: Duration::ZERO, ..Limits::default() });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let (_c1, s1) = pair(&l);
        let busy = gate.admit(s1.try_clone().unwrap(), ip).unwrap();
        busy.received(517);
        let (mut c2, s2) = pair(&l);
        let _idle = gate.admit(s2.try_clone().unwrap(), ip).unwrap();
        let (_c3, s3) = pair(&l);
        let _new = gate.admit(s3.try_clone().unwrap(), ip).unwrap();
        // The idle one went, although the busy one is older.
        let mut buf = [0u8; 1];
        assert_eq!(c2.read(&mut buf).unwrap(), 0);
        assert!(busy.authenticate().is_some());
    }

    #[test]
    fn young_connections_are_not_shed_a_newcomer_is_turned_away() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let gate = Gate::new(Limits { max_pending: 1, grace: Duration::from_secs(60), ..Limits::default() });
        let (_c1, s1) = pair(&l);
        let _young = gate.admit(s1.try_clone().unwrap(), "10.0.0.1".parse().unwrap()).unwrap();
        let (mut c2, s2) = pair(&l);
        assert!(gate.admit(s2.try_clone().unwrap(), "10.0.0.2".parse().unwrap()).is_none());
        let mut buf = [0u8; 1];
        assert_eq!(c2.read(&mut buf).unwrap(), 0, "the newcomer was closed");
        assert_eq!(gate.pending(), 1);
        assert_eq!(gate.stats.turned_away.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_deadline_is_absolute_and_seats_are_limited() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let deadline = Duration::from_millis(500);
        let gate = Gate::new(Limits { handshake_deadline: deadline, max_authenticated: 1, ..Limits::default() });
        let (_c, s) = pair(&l);
        let admitted = std::time::Instant::now();
        let _t = gate.admit(s.try_clone().unwrap(), "10.0.0.1".parse().unwrap()).unwrap();
        // Not reaped before its deadline, reaped once it has passed (however long that takes to
        // be seen on a busy machine).
        let mut reaped = gate.reap();
        assert!(reaped == 0 || admitted.elapsed() >= deadline, "reaped before its deadline");
        while reaped == 0 {
            assert!(admitted.elapsed() < Duration::from_secs(60), "never reaped");
            std::thread::sleep(Duration::from_millis(20));
            reaped = gate.reap();
        }
        assert!(admitted.elapsed() >= deadline, "reaped after {:?}, before its {deadline:?} deadline", admitted.elapsed());
        assert_eq!(reaped, 1);
        assert_eq!(gate.pending(), 0);
        let (_c1, s1) = pair(&l);
        let seat = gate.admit(s1.try_clone().unwrap(), "10.0.0.1".parse().unwrap()).unwrap().authenticate();
        assert!(seat.is_some());
        let (_c2, s2) = pair(&l);
        assert!(gate.admit(s2.try_clone().unwrap(), "10.0.0.1".parse().unwrap()).unwrap().authenticate().is_none());
        drop(seat);
        let (_c3, s3) = pair(&l);
        assert!(gate.admit(s3.try_clone().unwrap(), "10.0.0.1".parse().unwrap()).unwrap().authenticate().is_some());
        assert_eq!(gate.authenticated(), 0, "dropped seats are freed");
    }
}
