//! The HTTPS server: std `TcpListener`, a thread per connection admitted through the
//! [`crate::gate`] (unauthenticated peers cannot starve authenticated ones), rustls
//! `StreamOwned`, keep-alive HTTP/1.1 with JSON bodies. Requests are routed by one table built
//! from the [`crate::endpoints`] definitions; routing and request decoding are separate from
//! I/O so that they can be fuzzed.

use std::any::Any;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde::de::DeserializeOwned;

use crate::audit::AuditLog;
use crate::endpoints::{self as ep, decode_query, Endpoint, Transport};
use crate::gate::{Gate, Limits, Ticket};
use crate::http::{self, HttpError, RequestHead};
use crate::ops::apply::remember;
use crate::ops::{self, Node, OpError};

/// Largest JSON request body.
pub const MAX_JSON_BODY: u64 = 8 * 1024 * 1024;
/// Stack of a connection thread (TLS, HTTP, JSON; no deep recursion): keeps 1000+ pending
/// connections cheap.
const CONNECTION_STACK: usize = 512 * 1024;
/// The most of an unread request body skipped to keep the connection; beyond it, close.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
/// Largest upload.
pub const MAX_UPLOAD: u64 = 16 * 1024 * 1024 * 1024;

/// What an operation answered.
enum Served<R> {
    /// The endpoint's JSON response.
    Json(R),
    /// A file streamed as the body ([`Transport::Download`]).
    File { file: File, len: u64 },
}

/// The request body an operation may stream from ([`Transport::Upload`]).
struct Incoming<'a> {
    body: &'a mut dyn Read,
    len: u64,
}

type Outcome<E> = Result<Served<<E as Endpoint>::Response>, OpError>;

/// The server half of an endpoint: the operation it runs. The configuring operations are also
/// recorded in the stored node document (so that the next boot applies what the API last set).
trait Serve: Endpoint {
    fn run(node: &Node, req: Self::Request, incoming: Incoming) -> Outcome<Self>;
}

impl Serve for ep::Info {
    fn run(node: &Node, _: (), _: Incoming) -> Outcome<Self> {
        ops::info::info(node).map(Served::Json)
    }
}

impl Serve for ep::Hostname {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Outcome<Self> {
        let c = ops::hostname::apply(node, &req)?;
        remember(node, |d| d.hostname = Some(req));
        Ok(Served::Json(c))
    }
}

impl Serve for ep::Network {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Outcome<Self> {
        let changed = ops::network::apply_in(node, &req, None)?;
        remember(node, |d| d.network = Some(req));
        Ok(Served::Json(crate::api::Changed { changed }))
    }
}

impl Serve for ep::Certs {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Outcome<Self> {
        let c = ops::certs::apply(node, &req)?;
        remember(node, |d| d.certs = Some(req));
        Ok(Served::Json(c))
    }
}

impl Serve for ep::Runtime {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Outcome<Self> {
        let c = ops::runtime::apply(node, &req)?;
        remember(node, |d| d.runtime = Some(req));
        Ok(Served::Json(c))
    }
}

impl Serve for ep::Kubelet {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Outcome<Self> {
        let c = ops::kubelet::apply(node, &req)?;
        remember(node, |d| d.kubelet = Some(req));
        Ok(Served::Json(c))
    }
}

impl Serve for ep::StatFile {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Outcome<Self> {
        ops::files::stat(node, &req.path).map(Served::Json)
    }
}

impl Serve for ep::Exec {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Outcome<Self> {
        ops::exec::run(node, &req).map(Served::Json)
    }
}

impl Serve for ep::Logs {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Outcome<Self> {
        ops::logs::read(node, &req).map(Served::Json)
    }
}

impl Serve for ep::UploadFile {
    fn run(node: &Node, req: Self::Request, incoming: Incoming) -> Outcome<Self> {
        ops::files::upload(node, &req, incoming.body, incoming.len).map(Served::Json)
    }
}

impl Serve for ep::UploadBinary {
    fn run(node: &Node, req: Self::Request, incoming: Incoming) -> Outcome<Self> {
        ops::kubelet::upload_binary(node, &req.version, &req.name, &req.sha256, incoming.body, incoming.len).map(Served::Json)
    }
}

impl Serve for ep::DownloadFile {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Outcome<Self> {
        let (file, len) = ops::files::open_download(node, &req.path)?;
        Ok(Served::File { file, len })
    }
}

/// Every operation the agent serves, looked up by method and path.
static ROUTES: [Route; 12] = [
    Route::of::<ep::Info>(),
    Route::of::<ep::Hostname>(),
    Route::of::<ep::Network>(),
    Route::of::<ep::Certs>(),
    Route::of::<ep::Runtime>(),
    Route::of::<ep::Kubelet>(),
    Route::of::<ep::StatFile>(),
    Route::of::<ep::Exec>(),
    Route::of::<ep::Logs>(),
    Route::of::<ep::UploadFile>(),
    Route::of::<ep::UploadBinary>(),
    Route::of::<ep::DownloadFile>(),
];

/// One row of the routing table: an endpoint's definition with its types erased.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub name: &'static str,
    pub audited: bool,
    pub transport: Transport,
    decode: Decoder,
}

/// Reads an endpoint's request from the head and, for JSON, the body.
type Decoder = fn(&RequestHead, &mut dyn Read) -> Result<Box<dyn Call>, OpError>;

impl Route {
    const fn of<E: Serve>() -> Route {
        Route { method: E::METHOD, path: E::PATH, name: E::NAME, audited: E::AUDITED, transport: E::TRANSPORT, decode: decode::<E> }
    }

    /// The endpoint at the request's method and path: 404 for an unknown path, 405 for a
    /// known path with another method.
    fn find(head: &RequestHead) -> Result<&'static Route, OpError> {
        let at_path = || ROUTES.iter().filter(|r| r.path == head.path);
        if let Some(route) = at_path().find(|r| r.method == head.method) {
            return Ok(route);
        }
        let (status, message) = if at_path().next().is_some() {
            (405, format!("{} not allowed on {}", head.method, head.path))
        } else {
            (404, format!("no operation at {}", head.path))
        };
        Err(OpError { status, field: None, message })
    }
}

/// Decode a JSON body; errors name the field serde complained about.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, OpError> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let field = if msg.starts_with("missing field") || msg.starts_with("unknown field") || msg.starts_with("unknown variant") {
            msg.split('`').nth(1).unwrap_or("body").to_string()
        } else {
            "body".to_string()
        };
        OpError::bad(&field, msg)
    })
}

fn within(head: &RequestHead, limit: u64) -> Result<(), OpError> {
    if head.content_length > limit {
        return Err(OpError { status: 413, field: Some("body".into()), message: format!("body: larger than {limit} bytes") });
    }
    Ok(())
}

/// Decode `E`'s request from the head (query) or the body (JSON), refusing a body larger than
/// the endpoint takes. An upload's body is left unread.
fn decode<E: Serve>(head: &RequestHead, body: &mut dyn Read) -> Result<Box<dyn Call>, OpError> {
    let req = match E::TRANSPORT {
        Transport::Json => {
            within(head, MAX_JSON_BODY)?;
            let mut buf = Vec::with_capacity(head.content_length.min(1 << 20) as usize);
            body.take(head.content_length).read_to_end(&mut buf).map_err(|e| OpError::bad("body", e.to_string()))?;
            decode_json(&buf)?
        }
        Transport::Upload => {
            let req = decode_query(&head.query)?;
            within(head, MAX_UPLOAD)?;
            req
        }
        Transport::Query | Transport::Download => {
            let req = decode_query(&head.query)?;
            within(head, MAX_JSON_BODY)?;
            req
        }
    };
    Ok(Box::new(Typed::<E>(req)))
}

/// A decoded request, ready to run.
trait Call: Send {
    /// The audit log's detail.
    fn detail(&self) -> String;
    fn run(self: Box<Self>, node: &Node, incoming: Incoming) -> Result<Reply, OpError>;
    fn as_any(&self) -> &dyn Any;
}

/// The request of endpoint `E`.
struct Typed<E: Endpoint>(E::Request);

impl<E: Serve> Call for Typed<E> {
    fn detail(&self) -> String {
        E::detail(&self.0)
    }

    fn run(self: Box<Self>, node: &Node, incoming: Incoming) -> Result<Reply, OpError> {
        Ok(match E::run(node, self.0, incoming)? {
            Served::Json(resp) => Reply::Json { body: serde_json::to_vec(&resp).expect("serialisable"), changed: E::changed(&resp) },
            Served::File { file, len } => Reply::File { file, len },
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A request decoded by [`decode_request`]: the endpoint it is for and its typed request.
pub struct Decoded {
    route: &'static Route,
    call: Box<dyn Call>,
}

impl Decoded {
    pub fn route(&self) -> &'static Route {
        self.route
    }

    /// The request, if it is for endpoint `E`.
    pub fn request<E: Endpoint>(&self) -> Option<&E::Request> {
        self.call.as_any().downcast_ref::<Typed<E>>().map(|t| &t.0)
    }
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Decoded({} {})", self.route.method, self.route.path)
    }
}

/// Decode a whole request held in memory (head and, for JSON operations, body): the fuzz
/// target's entry point. Nothing is executed.
pub fn decode_request(bytes: &[u8]) -> Result<Option<Decoded>, OpError> {
    let mut reader = BufReader::new(bytes);
    let head = match http::read_request_head(&mut reader) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(e) => return Err(OpError { status: e.status(), field: None, message: e.to_string() }),
    };
    let route = Route::find(&head)?;
    let call = (route.decode)(&head, &mut reader)?;
    Ok(Some(Decoded { route, call }))
}

/// The agent: the node plus its audit log. Shared by every connection.
pub struct Agent {
    pub node: Node,
    audit: Option<AuditLog>,
}

/// What a handler answered, ready to write.
enum Reply {
    /// A JSON body; `changed` is what a mutating operation reports (for the audit log).
    Json { body: Vec<u8>, changed: Option<bool> },
    /// A file streamed as the body.
    File { file: File, len: u64 },
}

impl Agent {
    pub fn new(node: Node, audit: Option<AuditLog>) -> Agent {
        Agent { node, audit }
    }

    /// Serve HTTP requests on an authenticated stream until the peer closes it. `caller` is the
    /// authenticated client's certificate subject (for the audit log). The caller of this
    /// function is responsible for authentication.
    pub fn serve_connection<S: Read + Write>(&self, stream: S, caller: &str) -> io::Result<()> {
        let mut reader = BufReader::with_capacity(64 * 1024, stream);
        loop {
            let head = match http::read_request_head(&mut reader) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(()),
                Err(HttpError::Io(e)) => return Err(e),
                Err(e) => {
                    let err = OpError { status: e.status(), field: None, message: e.to_string() };
                    write_json(reader.get_mut(), err.status, &serde_json::to_vec(&err.body()).unwrap_or_default(), false)?;
                    return Ok(());
                }
            };
            let keep_alive = self.serve_request(&head, &mut reader, caller)?;
            if !keep_alive {
                return Ok(());
            }
        }
    }

    /// Serve one request; returns whether the connection may carry another.
    fn serve_request<S: Read + Write>(&self, head: &RequestHead, reader: &mut BufReader<S>, caller: &str) -> io::Result<bool> {
        let expect_continue = head.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        let mut body = Body { inner: reader, left: head.content_length, continue_pending: expect_continue && head.content_length > 0 };
        let result = Route::find(head).and_then(|route| {
            let call = (route.decode)(head, &mut body)?;
            let detail = call.detail();
            let reply = call.run(&self.node, Incoming { body: &mut body, len: head.content_length });
            Ok((route, detail, reply))
        });
        let (route, detail, reply) = match result {
            Ok((route, detail, reply)) => (Some(route), detail, reply),
            Err(e) => (None, String::new(), Err(e)),
        };
        // Skip what the handler left of the body to find the next request (and so that a client
        // still sending, e.g. after a full disk stopped the write, reads the answer instead of a
        // reset). A client that asked for 100-continue and got none sends no body at all.
        let mut keep_alive = head.keep_alive;
        if !body.continue_pending && body.left > 0 {
            if body.left <= DRAIN_LIMIT {
                io::copy(&mut body, &mut io::sink())?;
            } else {
                keep_alive = false;
            }
        }
        let (status, changed) = match &reply {
            Ok(Reply::Json { changed, .. }) => (200, *changed),
            Ok(Reply::File { .. }) => (200, None),
            Err(e) => (e.status, None),
        };
        if let (Some(audit), Some(route)) = (&self.audit, route) {
            if route.audited {
                audit.record(caller, route.name, &detail, status, changed);
            }
        }
        let out = reader.get_mut();
        match reply {
            Ok(Reply::Json { body, .. }) => write_json(out, 200, &body, keep_alive)?,
            Ok(Reply::File { file: mut f, len }) => {
                http::write_response_head(out, 200, "application/octet-stream", len, keep_alive)?;
                let copied = io::copy(&mut (&mut f).take(len), out)?;
                if copied != len {
                    // The file shrank under us: the framing is broken, close.
                    keep_alive = false;
                }
                out.flush()?;
            }
            Err(e) => {
                if e.status >= 500 {
                    tracing::warn!(operation = route.map_or("?", |r| r.name), "{}", e.message);
                }
                write_json(out, e.status, &serde_json::to_vec(&e.body()).unwrap_or_default(), keep_alive)?;
            }
        }
        Ok(keep_alive)
    }
}

/// A request body: `left` bytes of the connection. With `Expect: 100-continue`, the interim
/// response is sent at the first read, so that a handler that refuses the request without
/// reading spares the client from sending the body.
struct Body<'a, S: Read + Write> {
    inner: &'a mut BufReader<S>,
    left: u64,
    continue_pending: bool,
}

impl<S: Read + Write> Read for Body<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.continue_pending {
            self.continue_pending = false;
            let out = self.inner.get_mut();
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            out.flush()?;
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("request body ended {} bytes early", self.left)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn write_json(out: &mut impl Write, status: u16, body: &[u8], keep_alive: bool) -> io::Result<()> {
    let mut msg = Vec::with_capacity(body.len() + 128);
    http::write_response_head(&mut msg, status, "application/json", body.len() as u64, keep_alive)?;
    msg.extend_from_slice(body);
    out.write_all(&msg)?;
    out.flush()
}

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
    agent.serve_connection(stream, &caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(raw: &str) -> (u16, Option<String>) {
        let e = decode_request(raw.as_bytes()).unwrap_err();
        (e.status, e.field)
    }

    #[test]
    fn one_route_per_method_and_path_and_name() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[..i] {
                assert!((a.method, a.path) != (b.method, b.path), "{} {} twice", a.method, a.path);
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert_eq!(refusal("GET /v2/info HTTP/1.1\r\n\r\n"), (404, None));
        assert_eq!(refusal("DELETE /v1/files HTTP/1.1\r\n\r\n"), (405, None));
        assert_eq!(refusal("GET /v1/hostname HTTP/1.1\r\n\r\n"), (405, None));
    }

    #[test]
    fn query_is_checked_before_the_body_size() {
        let huge = MAX_UPLOAD + 1;
        assert_eq!(refusal(&format!("PUT /v1/files?sha256=00 HTTP/1.1\r\nContent-Length: {huge}\r\n\r\n")), (400, Some("path".into())));
        assert_eq!(refusal(&format!("PUT /v1/files?path=/x&sha256=00 HTTP/1.1\r\nContent-Length: {huge}\r\n\r\n")), (413, Some("body".into())));
        let big = MAX_JSON_BODY + 1;
        assert_eq!(refusal(&format!("POST /v1/exec HTTP/1.1\r\nContent-Length: {big}\r\n\r\n")), (413, Some("body".into())));
        assert_eq!(refusal(&format!("GET /v1/files?path=/x HTTP/1.1\r\nContent-Length: {big}\r\n\r\n")), (413, Some("body".into())));
        let bin = decode_request(b"PUT /v1/binaries?version=v1.35.0&name=kubelet&sha256=00 HTTP/1.1\r\nContent-Length: 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(bin.request::<ep::UploadBinary>().map(ep::UploadBinary::detail).as_deref(), Some("v1.35.0/kubelet"));
    }

    /// Requests read from `input`, answers appended to `output`.
    struct Duplex {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn audit_lines_and_continue_on_one_connection() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/hosts"), "127.0.0.1\tlocalhost\n").unwrap();
        let node = Node::new(crate::paths::GuestRoot::new(root.path()), Arc::new(crate::host::RecordingHost::new("localhost")));
        let log = root.path().join("audit.log");
        let agent = Agent::new(node, Some(AuditLog::open(&log).unwrap()));
        let sha = pki::digest::sha256_hex(b"abc");
        let hostname = r#"{"name":"minikube"}"#;
        let requests = [
            format!("POST /v1/hostname HTTP/1.1\r\nContent-Length: {}\r\n\r\n{hostname}", hostname.len()),
            "GET /v1/info HTTP/1.1\r\n\r\n".to_string(),
            // Refused before the body: no 100 Continue, and the client sends no body.
            "PUT /v1/files?path=/etc/x&sha256=00 HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n".to_string(),
            format!("PUT /v1/files?path=/etc/x&sha256={sha}&mode=600 HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc"),
            "PUT /v1/binaries?version=v1.35.0&name=bash&sha256=00 HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_string(),
            "POST /v1/files/stat HTTP/1.1\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{\"path\":\"/etc/x\"}".to_string(),
        ];
        let mut conn = Duplex { input: io::Cursor::new(requests.concat().into_bytes()), output: Vec::new() };
        agent.serve_connection(&mut conn, "CN=test").unwrap();
        let answers = String::from_utf8(conn.output).unwrap();
        let statuses: Vec<&str> = answers.match_indices("HTTP/1.1 ").map(|(i, _)| &answers[i + 9..i + 12]).collect();
        assert_eq!(statuses, ["200", "200", "400", "100", "200", "400", "200"], "{answers}");
        assert_eq!(std::fs::read(root.path().join("etc/x")).unwrap(), b"abc");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let seen: Vec<(&str, &str, u64, Option<bool>)> = lines
            .iter()
            .map(|l| (l["operation"].as_str().unwrap(), l["detail"].as_str().unwrap(), l["status"].as_u64().unwrap(), l["changed"].as_bool()))
            .collect();
        assert_eq!(
            seen,
            [
                ("hostname", "minikube", 200, Some(true)),
                ("files.upload", "/etc/x", 400, None),
                ("files.upload", "/etc/x", 200, Some(true)),
                ("binaries.upload", "v1.35.0/bash", 400, None),
            ]
        );
        assert!(lines.iter().all(|l| l["caller"] == "CN=test"));
    }
}
