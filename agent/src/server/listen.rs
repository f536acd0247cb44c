//! The listener: std `TcpListener`, a thread per connection admitted through the
//! [`crate::gate`] (unauthenticated peers cannot starve authenticated ones), the TLS handshake
//! (client certificate required, a failed one answered late), then the HTTP connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::{write_json, Agent};
use crate::gate::{Gate, Limits, Ticket};

/// Stack of a connection thread (TLS, HTTP, JSON; no deep recursion): keeps 1000+ pending
/// connections cheap.
const CONNECTION_STACK: usize = 512 * 1024;

/// A listening agent.
pub struct Server {
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    agent: Arc<Agent>,
    gate: Arc<Gate>,
}

impl Server {
    pub fn bind(addr: SocketAddr, tls: Arc<ServerConfig>, agent: Arc<Agent>) -> io::Result<Server> {
        Self::bind_with(addr, tls, agent, Limits::default())
    }

    /// Bind with explicit connection limits (tests use short deadlines).
    pub fn bind_with(addr: SocketAddr, tls: Arc<ServerConfig>, agent: Arc<Agent>, limits: Limits) -> io::Result<Server> {
        Ok(Server { listener: TcpListener::bind(addr)?, tls, agent, gate: Gate::new(limits) })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admission state (for tests and the benchmark).
    pub fn gate(&self) -> Arc<Gate> {
        self.gate.clone()
    }

    /// Accept connections forever, a thread each, admitted through the [`Gate`].
    pub fn run(self) -> io::Result<()> {
        self.gate.spawn_reaper();
        for conn in self.listener.incoming() {
            let sock = match conn {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    continue;
                }
            };
            let peer = match sock.peer_addr() {
                Ok(a) => a,
                Err(_) => continue,
            };
            let Ok(handle) = sock.try_clone() else { continue };
            let Some(ticket) = self.gate.admit(handle, peer.ip()) else {
                tracing::debug!(%peer, "turned away: the pending budget is full of fresh handshakes");
                continue;
            };
            let (tls, agent, limits) = (self.tls.clone(), self.agent.clone(), self.gate.limits());
            let spawned = std::thread::Builder::new().name("agent-conn".into()).stack_size(CONNECTION_STACK).spawn(move || {
                if let Err(e) = serve_tls(sock, tls, &agent, ticket, limits) {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            });
            if let Err(e) = spawned {
                tracing::warn!("cannot start a connection thread: {e}");
            }
        }
        Ok(())
    }

    /// Run in a background thread (tests, benchmarks).
    pub fn spawn(self) -> std::thread::JoinHandle<io::Result<()>> {
        std::thread::spawn(move || self.run())
    }
}

/// The socket during the handshake, telling the gate how much the peer has sent.
struct Counted<'a> {
    sock: &'a mut TcpStream,
    ticket: &'a Ticket,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.ticket.received(n);
        Ok(n)
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// Read and drop what a failed peer still sends until `until`, or until it closes or the gate
/// sheds the connection (a shutdown socket reads 0 at once).
fn wait_out_failure(sock: &mut TcpStream, until: Instant) {
    let mut sink = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match sock.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// TLS handshake (client certificate required) within the gate's deadline, then HTTP.
fn serve_tls(mut sock: TcpStream, tls: Arc<ServerConfig>, agent: &Agent, ticket: Ticket, limits: Limits) -> io::Result<()> {
    sock.set_nodelay(true)?;
    // The reaper enforces the absolute deadline; the per-read timeout only bounds one read.
    sock.set_read_timeout(Some(limits.handshake_deadline))?;
    sock.set_write_timeout(Some(limits.handshake_deadline))?;
    let mut conn = ServerConnection::new(tls).map_err(io::Error::other)?;
    let started = Instant::now();
    {
        let mut counted = Counted { sock: &mut sock, ticket: &ticket };
        // rustls's `complete_io` would send the alert of a failed handshake at once; this loop
        // holds it for the failure delay first.
        while conn.is_handshaking() {
            while conn.wants_write() {
                conn.write_tls(&mut counted)?;
            }
            if !conn.is_handshaking() {
                break;
            }
            if conn.read_tls(&mut counted)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed during the handshake"));
            }
            if let Err(e) = conn.process_new_packets() {
                ticket.failed();
                wait_out_failure(counted.sock, started + limits.failure_delay.min(limits.handshake_deadline));
                let _ = conn.write_tls(counted.sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        while conn.wants_write() {
            conn.write_tls(&mut counted)?;
        }
    }
    let caller = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| pki::subject_string(c).unwrap_or_else(|e| format!("<unreadable subject: {e}>")))
        .ok_or_else(|| io::Error::other("no client certificate"))?;
    sock.set_read_timeout(Some(limits.idle))?;
    sock.set_write_timeout(Some(limits.idle))?;
    let mut stream = StreamOwned::new(conn, sock);
    let Some(_seat) = ticket.authenticate() else {
        let body = format!("{{\"error\":\"busy: {} authenticated connections are open; retry\"}}", limits.max_authenticated);
        write_json(&mut stream, 503, body.as_bytes(), false)?;
        return Ok(());
    };
    let served = agent.serve_connection(&mut stream, &caller);
    // Closing (the client is done, idle past the limit, or broke the protocol): say so in TLS, so
    // a client about to reuse the connection reads a clean close, not a cut.
    stream.conn.send_close_notify();
    let _ = stream.conn.write_tls(&mut stream.sock);
    served
}
