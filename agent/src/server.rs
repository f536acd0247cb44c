//! The HTTPS server: std `TcpListener`, a thread per connection admitted through the
//! [`crate::gate`] (unauthenticated peers cannot starve authenticated ones), rustls
//! `StreamOwned`, keep-alive HTTP/1.1 with JSON bodies. Routing and request decoding are separate from I/O so that they
//! can be fuzzed.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::*;
use crate::audit::AuditLog;
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

/// What a request asks for, decoded from its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Info,
    Hostname,
    Certs,
    Runtime,
    Kubelet,
    FileStat,
    Exec,
    Logs,
    UploadFile(Upload),
    UploadBinary { version: String, name: String, sha256: String },
    Download { path: String },
}

/// A decoded JSON request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonRequest {
    Hostname(HostnameRequest),
    Certs(CertsRequest),
    Runtime(RuntimeRequest),
    Kubelet(KubeletRequest),
    FileStat(PathRequest),
    Exec(ExecRequest),
    Logs(LogsRequest),
}

fn required<'a>(head: &'a RequestHead, name: &str) -> Result<&'a str, OpError> {
    head.query_param(name).ok_or_else(|| OpError::bad(name, "missing query parameter"))
}

impl Route {
    pub fn from_head(head: &RequestHead) -> Result<Route, OpError> {
        let m = head.method.as_str();
        let route = match (m, head.path.as_str()) {
            ("GET", "/v1/info") => Route::Info,
            ("POST", "/v1/hostname") => Route::Hostname,
            ("POST", "/v1/certs") => Route::Certs,
            ("POST", "/v1/runtime") => Route::Runtime,
            ("POST", "/v1/kubelet") => Route::Kubelet,
            ("POST", "/v1/files/stat") => Route::FileStat,
            ("POST", "/v1/exec") => Route::Exec,
            ("POST", "/v1/logs") => Route::Logs,
            ("PUT", "/v1/files") => {
                let mode_text = head.query_param("mode").unwrap_or("0644");
                let mode = u32::from_str_radix(mode_text, 8).map_err(|_| OpError::bad("mode", format!("{mode_text:?} is not octal")))?;
                Route::UploadFile(Upload {
                    path: required(head, "path")?.to_string(),
                    sha256: required(head, "sha256")?.to_string(),
                    mode,
                    owner: head.query_param("owner").map(str::to_string),
                })
            }
            ("PUT", "/v1/binaries") => Route::UploadBinary {
                version: required(head, "version")?.to_string(),
                name: required(head, "name")?.to_string(),
                sha256: required(head, "sha256")?.to_string(),
            },
            ("GET", "/v1/files") => Route::Download { path: required(head, "path")?.to_string() },
            (_, "/v1/info" | "/v1/hostname" | "/v1/certs" | "/v1/runtime" | "/v1/kubelet" | "/v1/files/stat" | "/v1/exec" | "/v1/logs" | "/v1/files" | "/v1/binaries") => {
                return Err(OpError { status: 405, field: None, message: format!("{m} not allowed on {}", head.path) })
            }
            _ => return Err(OpError { status: 404, field: None, message: format!("no operation at {}", head.path) }),
        };
        let limit = if route.streams_body() { MAX_UPLOAD } else { MAX_JSON_BODY };
        if head.content_length > limit {
            return Err(OpError { status: 413, field: Some("body".into()), message: format!("body: larger than {limit} bytes") });
        }
        Ok(route)
    }

    /// The body is a raw upload, not JSON.
    pub fn streams_body(&self) -> bool {
        matches!(self, Route::UploadFile(_) | Route::UploadBinary { .. })
    }

    /// The body is JSON to decode.
    pub fn has_json_body(&self) -> bool {
        !self.streams_body() && !matches!(self, Route::Info | Route::Download { .. })
    }

    /// Operations recorded in the audit log (everything that may change the node).
    pub fn audited(&self) -> bool {
        !matches!(self, Route::Info | Route::FileStat | Route::Download { .. } | Route::Logs)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Route::Info => "info",
            Route::Hostname => "hostname",
            Route::Certs => "certs",
            Route::Runtime => "runtime",
            Route::Kubelet => "kubelet",
            Route::FileStat => "files.stat",
            Route::Exec => "exec",
            Route::Logs => "logs",
            Route::UploadFile(_) => "files.upload",
            Route::UploadBinary { .. } => "binaries.upload",
            Route::Download { .. } => "files.download",
        }
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

impl JsonRequest {
    pub fn decode(route: &Route, body: &[u8]) -> Result<Option<JsonRequest>, OpError> {
        Ok(Some(match route {
            Route::Hostname => JsonRequest::Hostname(decode_json(body)?),
            Route::Certs => JsonRequest::Certs(decode_json(body)?),
            Route::Runtime => JsonRequest::Runtime(decode_json(body)?),
            Route::Kubelet => JsonRequest::Kubelet(decode_json(body)?),
            Route::FileStat => JsonRequest::FileStat(decode_json(body)?),
            Route::Exec => JsonRequest::Exec(decode_json(body)?),
            Route::Logs => JsonRequest::Logs(decode_json(body)?),
            _ => return Ok(None),
        }))
    }
}

/// Decode a whole request held in memory (head and, for JSON operations, body): the fuzz
/// target's entry point. Nothing is executed.
pub fn decode_request(bytes: &[u8]) -> Result<Option<(Route, Option<JsonRequest>)>, OpError> {
    let mut reader = BufReader::new(bytes);
    let head = match http::read_request_head(&mut reader) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(e) => return Err(OpError { status: e.status(), field: None, message: e.to_string() }),
    };
    let route = Route::from_head(&head)?;
    let mut body = Vec::new();
    if route.has_json_body() {
        reader.take(head.content_length).read_to_end(&mut body).map_err(|e| OpError::bad("body", e.to_string()))?;
    }
    let json = JsonRequest::decode(&route, &body)?;
    Ok(Some((route, json)))
}

/// The agent: the node plus its audit log. Shared by every connection.
pub struct Agent {
    pub node: Node,
    audit: Option<AuditLog>,
}

/// What a handler answered.
enum Reply {
    /// A JSON body; `changed` is what a mutating operation reports (for the audit log).
    Json { status: u16, body: Vec<u8>, changed: Option<bool> },
    /// A file streamed as the body.
    File { file: std::fs::File, len: u64 },
}

fn json<T: Serialize>(v: &T) -> Reply {
    Reply::Json { status: 200, body: serde_json::to_vec(v).expect("serialisable"), changed: None }
}

fn changed<T: Serialize>(v: &T, changed: bool) -> Reply {
    Reply::Json { status: 200, body: serde_json::to_vec(v).expect("serialisable"), changed: Some(changed) }
}

impl Agent {
    pub fn new(node: Node, audit: Option<AuditLog>) -> Agent {
        Agent { node, audit }
    }

    /// Run the operation; the configuring ones are also recorded in the stored node document
    /// (so that the next boot applies what the API last set).
    fn dispatch(&self, route: &Route, json_req: Option<JsonRequest>, body: &mut dyn Read, len: u64) -> Result<Reply, OpError> {
        let node = &self.node;
        Ok(match (route, json_req) {
            (Route::Info, _) => json(&ops::info::info(node)?),
            (Route::Hostname, Some(JsonRequest::Hostname(r))) => {
                let c = ops::hostname::apply(node, &r)?;
                remember(node, |d| d.hostname = Some(r));
                changed(&c, c.changed)
            }
            (Route::Certs, Some(JsonRequest::Certs(r))) => {
                let c = ops::certs::apply(node, &r)?;
                remember(node, |d| d.certs = Some(r));
                changed(&c, c.changed)
            }
            (Route::Runtime, Some(JsonRequest::Runtime(r))) => {
                let c = ops::runtime::apply(node, &r)?;
                remember(node, |d| d.runtime = Some(r));
                changed(&c, c.changed)
            }
            (Route::Kubelet, Some(JsonRequest::Kubelet(r))) => {
                let c = ops::kubelet::apply(node, &r)?;
                remember(node, |d| d.kubelet = Some(r));
                changed(&c, c.changed)
            }
            (Route::FileStat, Some(JsonRequest::FileStat(r))) => json(&ops::files::stat(node, &r.path)?),
            (Route::Exec, Some(JsonRequest::Exec(r))) => json(&ops::exec::run(node, &r)?),
            (Route::Logs, Some(JsonRequest::Logs(r))) => json(&ops::logs::read(node, &r)?),
            (Route::UploadFile(up), _) => {
                let c = ops::files::upload(node, up, body, len)?;
                changed(&c, c.changed)
            }
            (Route::UploadBinary { version, name, sha256 }, _) => {
                let c = ops::kubelet::upload_binary(node, version, name, sha256, body, len)?;
                changed(&c, c.changed)
            }
            (Route::Download { path }, _) => {
                let (f, len) = ops::files::open_download(node, path)?;
                Reply::File { file: f, len }
            }
            _ => return Err(OpError::internal("request body does not match the route")),
        })
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
        let result = Route::from_head(head).and_then(|route| {
            let json_req = if route.has_json_body() {
                let mut buf = Vec::with_capacity(head.content_length as usize);
                body.read_to_end(&mut buf).map_err(|e| OpError::bad("body", e.to_string()))?;
                JsonRequest::decode(&route, &buf)?
            } else {
                None
            };
            let detail = match (&route, &json_req) {
                (Route::UploadFile(u), _) => u.path.clone(),
                (Route::UploadBinary { version, name, .. }, _) => format!("{version}/{name}"),
                (_, Some(JsonRequest::Exec(e))) => e.argv.first().cloned().unwrap_or_default(),
                (_, Some(JsonRequest::Hostname(h))) => h.name.clone(),
                _ => String::new(),
            };
            let reply = self.dispatch(&route, json_req, &mut body, head.content_length);
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
            Ok(Reply::Json { status, changed, .. }) => (*status, *changed),
            Ok(Reply::File { .. }) => (200, None),
            Err(e) => (e.status, None),
        };
        if let (Some(audit), Some(route)) = (&self.audit, &route) {
            if route.audited() {
                audit.record(caller, route.name(), &detail, status, changed);
            }
        }
        let out = reader.get_mut();
        match reply {
            Ok(Reply::Json { status, body, .. }) => write_json(out, status, &body, keep_alive)?,
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
                    tracing::warn!(operation = route.as_ref().map_or("?", Route::name), "{}", e.message);
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

/// TLS handshake (client certificate required) within the gate's deadline, then HTTP.
fn serve_tls(mut sock: TcpStream, tls: Arc<ServerConfig>, agent: &Agent, ticket: Ticket, limits: Limits) -> io::Result<()> {
    sock.set_nodelay(true)?;
    // The reaper enforces the absolute deadline; the per-read timeout only bounds one read.
    sock.set_read_timeout(Some(limits.handshake_deadline))?;
    sock.set_write_timeout(Some(limits.handshake_deadline))?;
    let mut conn = ServerConnection::new(tls).map_err(io::Error::other)?;
    {
        let mut counted = Counted { sock: &mut sock, ticket: &ticket };
        while conn.is_handshaking() {
            conn.complete_io(&mut counted)?;
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
