//! The host side: a keep-alive mTLS client with one typed method per operation, each a call
//! of an endpoint defined in [`crate::endpoints`].
//!
//! ```no_run
//! # fn main() -> Result<(), agent_api::client::ClientError> {
//! # let (ca_pem, identity): (String, pki::Identity) = unimplemented!();
//! let addr = "127.0.0.1:7443".parse().unwrap();
//! let mut c = agent_api::client::Client::connect(addr, "127.0.0.1", &ca_pem, &identity)?;
//! println!("{}", c.info()?.kernel);
//! c.hostname("minikube")?;
//! # Ok(()) }
//! ```

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;

use crate::api::*;
use crate::endpoints::{self as ep, Endpoint, Transport};
use crate::http::{self, HttpError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("agent at {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    #[error("TLS configuration: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("server name {0:?} is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("agent response: {0}")]
    Http(#[from] HttpError),
    /// The agent refused or failed the operation.
    #[error("agent answered {status}: {}", error.error)]
    Status { status: u16, error: ErrorResponse },
    #[error("agent response body: {0}")]
    Json(#[from] serde_json::Error),
}

type Conn = BufReader<StreamOwned<ClientConnection, TcpStream>>;

/// A connection to one agent, re-established when the agent closes it.
pub struct Client {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
    conn: Option<Conn>,
    timeout: Duration,
    /// When the connection last carried a request or an answer.
    used_at: Instant,
}

/// A connection idle for longer than this is not reused: the agent closes idle connections after
/// [`http::IDLE_CLOSE`], and one it is closing as a request goes out fails that request.
const REUSE_WITHIN: Duration = Duration::from_secs(http::IDLE_CLOSE.as_secs() / 2);

/// Whether `e` says the connection went away under the request (closed, reset, or cut without
/// TLS's close_notify) rather than an answer or a timeout.
fn connection_gone(e: &ClientError) -> bool {
    let kind_gone = |e: &io::Error| {
        matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe)
    };
    match e {
        ClientError::Http(HttpError::Closed) => true,
        ClientError::Http(HttpError::Io(io)) | ClientError::Io { source: io, .. } => kind_gone(io),
        _ => false,
    }
}

/// One request's line and framing.
#[derive(Clone, Copy)]
struct Outgoing<'a> {
    method: &'a str,
    target: &'a str,
    content_type: &'a str,
    len: u64,
    expect_continue: bool,
}

/// A request body reader that counts what it gave (a body not read at all can be sent again).
struct Counted<'a> {
    inner: &'a mut dyn Read,
    read: u64,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Read/write limit of a request on an established connection.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

impl Client {
    /// Connect to the agent at `addr`, whose certificate must be valid for `server_name` (an IP
    /// address or DNS name) and issued by `ca_pem`; authenticate with `identity`.
    pub fn connect(addr: SocketAddr, server_name: &str, ca_pem: &str, identity: &pki::Identity) -> Result<Client, ClientError> {
        Client::with_config(addr, server_name, crate::tls::client_config(ca_pem, identity)?)
    }

    /// Connect with a prepared rustls configuration.
    pub fn with_config(addr: SocketAddr, server_name: &str, config: Arc<ClientConfig>) -> Result<Client, ClientError> {
        Client::with_config_timeout(addr, server_name, config, DEFAULT_TIMEOUT)
    }

    /// Connect, giving the connection and the handshake at most `timeout` per read or write (a
    /// probe of an agent that may not listen yet should not wait on a stalled connection), then
    /// use the default timeout for requests.
    pub fn connect_within(addr: SocketAddr, server_name: &str, ca_pem: &str, identity: &pki::Identity, timeout: Duration) -> Result<Client, ClientError> {
        let mut c = Client::with_config_timeout(addr, server_name, crate::tls::client_config(ca_pem, identity)?, timeout)?;
        c.set_timeout(DEFAULT_TIMEOUT);
        Ok(c)
    }

    fn with_config_timeout(addr: SocketAddr, server_name: &str, config: Arc<ClientConfig>, timeout: Duration) -> Result<Client, ClientError> {
        let server_name = ServerName::try_from(server_name.to_string()).map_err(|_| ClientError::ServerName(server_name.to_string()))?;
        let mut c = Client { addr, server_name, config, conn: None, timeout, used_at: Instant::now() };
        c.connection()?;
        Ok(c)
    }

    /// Limit for each read and write on the socket (default 600 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        let applied = self.conn.as_ref().is_some_and(|c| {
            let sock = &c.get_ref().sock;
            sock.set_read_timeout(Some(timeout)).is_ok() && sock.set_write_timeout(Some(timeout)).is_ok()
        });
        if !applied {
            self.conn = None;
        }
    }

    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io { addr: self.addr, source }
    }

    fn connection(&mut self) -> Result<&mut Conn, ClientError> {
        if self.conn.is_some() && self.used_at.elapsed() > REUSE_WITHIN {
            self.conn = None;
        }
        if self.conn.is_none() {
            let mut sock = TcpStream::connect_timeout(&self.addr, self.timeout.min(Duration::from_secs(30))).map_err(|e| self.io(e))?;
            sock.set_nodelay(true).map_err(|e| self.io(e))?;
            sock.set_read_timeout(Some(self.timeout)).map_err(|e| self.io(e))?;
            sock.set_write_timeout(Some(self.timeout)).map_err(|e| self.io(e))?;
            let mut tls = ClientConnection::new(self.config.clone(), self.server_name.clone()).map_err(|e| self.io(io::Error::other(e)))?;
            while tls.is_handshaking() {
                tls.complete_io(&mut sock).map_err(|e| self.io(e))?;
            }
            self.conn = Some(BufReader::with_capacity(64 * 1024, StreamOwned::new(tls, sock)));
            self.used_at = Instant::now();
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Send one request with a body of `len` bytes from `body` (after the server's go-ahead if
    /// `expect_continue`); read the response head. A kept-alive connection that turns out to be
    /// gone before the answer began is replaced and the request sent once more, when its body can
    /// be given again (`replay`, or none of `body` read yet): every operation is idempotent.
    fn send(&mut self, out: &Outgoing, body: &mut dyn Read, replay: Option<&[u8]>) -> Result<http::ResponseHead, ClientError> {
        let reused = self.conn.is_some() && self.used_at.elapsed() <= REUSE_WITHIN;
        let mut counted = Counted { inner: body, read: 0 };
        let first = match replay {
            Some(bytes) => self.send_once(out, &mut &bytes[..]),
            None => self.send_once(out, &mut counted),
        };
        match first {
            Err(ref e) if reused && connection_gone(e) && (replay.is_some() || counted.read == 0) => match replay {
                Some(bytes) => self.send_once(out, &mut &bytes[..]),
                None => self.send_once(out, counted.inner),
            },
            other => other,
        }
    }

    fn send_once(&mut self, out: &Outgoing, body: &mut dyn Read) -> Result<http::ResponseHead, ClientError> {
        let Outgoing { method, target, content_type, len, expect_continue } = *out;
        let host = self.addr.to_string();
        let addr = self.addr;
        let conn = self.connection()?;
        let result = (|| -> Result<http::ResponseHead, ClientError> {
            let io = |source| ClientError::Io { addr, source };
            let out = conn.get_mut();
            let mut head = Vec::new();
            http::write_request_head(&mut head, method, target, &host, content_type, len, expect_continue).map_err(io)?;
            out.write_all(&head).map_err(io)?;
            if expect_continue {
                out.flush().map_err(io)?;
                let interim = http::read_response_head(conn)?;
                if interim.status != 100 {
                    return Ok(interim);
                }
            }
            let out = conn.get_mut();
            let sent = io::copy(&mut body.take(len), out).map_err(io)?;
            if sent != len {
                return Err(io(io::Error::new(io::ErrorKind::UnexpectedEof, format!("request body ended after {sent} of {len} bytes"))));
            }
            out.flush().map_err(io)?;
            Ok(http::read_response_head(conn)?)
        })();
        match result {
            Ok(_) => self.used_at = Instant::now(),
            Err(_) => self.conn = None,
        }
        result
    }

    /// Send `req` to endpoint `E` as its transport says: a JSON body, or the query string with
    /// `upload` (`len` bytes) streamed as the body; read the response head.
    fn request<E: Endpoint>(&mut self, req: &E::Request, upload: &mut dyn Read, len: u64) -> Result<http::ResponseHead, ClientError> {
        let target = ep::target::<E>(req);
        match E::TRANSPORT {
            Transport::Json => {
                let body = serde_json::to_vec(req)?;
                let out = Outgoing { method: E::METHOD, target: &target, content_type: "application/json", len: body.len() as u64, expect_continue: false };
                self.send(&out, &mut io::empty(), Some(&body))
            }
            // Streamed uploads wait for the server's go-ahead: a refusal then costs no upload.
            Transport::Upload => {
                let out = Outgoing { method: E::METHOD, target: &target, content_type: "application/octet-stream", len, expect_continue: len > 0 };
                self.send(&out, upload, None)
            }
            Transport::Query | Transport::Download => {
                let out = Outgoing { method: E::METHOD, target: &target, content_type: "application/json", len: 0, expect_continue: false };
                self.send(&out, &mut io::empty(), Some(&[]))
            }
        }
    }

    fn read_body(&mut self, head: &http::ResponseHead) -> Result<Vec<u8>, ClientError> {
        let addr = self.addr;
        let conn = self.conn.as_mut().expect("connected");
        let mut buf = Vec::with_capacity(head.content_length.min(16 << 20) as usize);
        let r = conn.by_ref().take(head.content_length).read_to_end(&mut buf);
        if r.is_err() || !head.keep_alive {
            self.conn = None;
        }
        self.used_at = Instant::now();
        r.map_err(|source| ClientError::Io { addr, source })?;
        Ok(buf)
    }

    fn finish<T: DeserializeOwned>(&mut self, head: http::ResponseHead) -> Result<T, ClientError> {
        let body = self.read_body(&head)?;
        if head.status != 200 {
            let error = serde_json::from_slice(&body).unwrap_or_else(|_| ErrorResponse { error: String::from_utf8_lossy(&body).into_owned(), field: None });
            return Err(ClientError::Status { status: head.status, error });
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// Call endpoint `E`, whose request travels as JSON or in the query string, and read its
    /// JSON answer.
    pub fn call<E: Endpoint>(&mut self, req: &E::Request) -> Result<E::Response, ClientError> {
        const { assert!(matches!(E::TRANSPORT, Transport::Json | Transport::Query), "call takes no body and reads a JSON answer") };
        let head = self.request::<E>(req, &mut io::empty(), 0)?;
        self.finish(head)
    }

    /// Call endpoint `E`, streaming `len` bytes of `body` after its query string.
    fn upload<E: Endpoint>(&mut self, req: &E::Request, body: &mut dyn Read, len: u64) -> Result<E::Response, ClientError> {
        const { assert!(matches!(E::TRANSPORT, Transport::Upload), "upload is for streamed-body endpoints") };
        let head = self.request::<E>(req, body, len)?;
        self.finish(head)
    }

    /// Versions of the agent, kernel and OS; what the boot step did.
    pub fn info(&mut self) -> Result<InfoResponse, ClientError> {
        self.call::<ep::Info>(&())
    }

    /// Set the hostname (kernel, /etc/hostname, /etc/hosts).
    pub fn hostname(&mut self, name: &str) -> Result<Changed, ClientError> {
        self.set_hostname(&HostnameRequest { name: name.to_string(), hosts: Vec::new() })
    }

    /// Set the hostname and the managed /etc/hosts lines.
    pub fn set_hostname(&mut self, req: &HostnameRequest) -> Result<Changed, ClientError> {
        self.call::<ep::Hostname>(req)
    }

    /// Give the cluster NIC its static address.
    pub fn network(&mut self, req: &NetworkRequest) -> Result<Changed, ClientError> {
        self.call::<ep::Network>(req)
    }

    /// Place certificates/keys and trust CAs.
    pub fn certs(&mut self, req: &CertsRequest) -> Result<Changed, ClientError> {
        self.call::<ep::Certs>(req)
    }

    /// Configure and (re)start the container runtime.
    pub fn runtime(&mut self, req: &RuntimeRequest) -> Result<RuntimeResponse, ClientError> {
        self.call::<ep::Runtime>(req)
    }

    /// Upload a Kubernetes binary (`kubelet`, `kubeadm`, `kubectl`) of `version`.
    pub fn upload_binary(&mut self, version: &str, name: &str, sha256: &str, body: &mut dyn Read, len: u64) -> Result<Changed, ClientError> {
        let req = BinaryUpload { version: version.to_string(), name: name.to_string(), sha256: sha256.to_string() };
        self.upload::<ep::UploadBinary>(&req, body, len)
    }

    /// Import a container image archive into the runtime (nothing is sent when the runtime has
    /// the reference at `req.digest`).
    pub fn upload_image(&mut self, req: &ImageUpload, body: &mut dyn Read, len: u64) -> Result<Changed, ClientError> {
        self.upload::<ep::UploadImage>(req, body, len)
    }

    /// Install the kubelet unit and drop-in, enable and start it.
    pub fn kubelet(&mut self, req: &KubeletRequest) -> Result<KubeletResponse, ClientError> {
        self.call::<ep::Kubelet>(req)
    }

    /// Upload a file of `len` bytes read from `body`, whose SHA-256 is `up.sha256`.
    pub fn upload_file(&mut self, up: &FileUpload, body: &mut dyn Read, len: u64) -> Result<Changed, ClientError> {
        self.upload::<ep::UploadFile>(up, body, len)
    }

    /// Upload a file held in memory.
    pub fn upload_bytes(&mut self, path: &str, bytes: &[u8], mode: u32, owner: Option<&str>) -> Result<Changed, ClientError> {
        let sha256 = pki::digest::sha256_hex(bytes);
        let up = FileUpload { path: path.to_string(), sha256, mode, owner: owner.map(str::to_string) };
        self.upload_file(&up, &mut &bytes[..], bytes.len() as u64)
    }

    /// Size, SHA-256, mode and owner of a file (or `exists: false`).
    pub fn stat(&mut self, path: &str) -> Result<FileStat, ClientError> {
        self.call::<ep::StatFile>(&PathRequest { path: path.to_string() })
    }

    /// Download a file into `out`; returns its length.
    pub fn download(&mut self, path: &str, out: &mut dyn Write) -> Result<u64, ClientError> {
        let head = self.request::<ep::DownloadFile>(&Download { path: path.to_string() }, &mut io::empty(), 0)?;
        if head.status != 200 {
            return self.finish::<serde_json::Value>(head).map(|_| 0);
        }
        let addr = self.addr;
        let conn = self.conn.as_mut().expect("connected");
        let r = io::copy(&mut conn.by_ref().take(head.content_length), out);
        if !head.keep_alive || !matches!(r, Ok(n) if n == head.content_length) {
            self.conn = None;
        }
        let n = r.map_err(|source| ClientError::Io { addr, source })?;
        if n != head.content_length {
            return Err(ClientError::Io { addr, source: io::Error::new(io::ErrorKind::UnexpectedEof, "download cut short") });
        }
        Ok(n)
    }

    /// Run a command on the node.
    pub fn exec(&mut self, req: &ExecRequest) -> Result<ExecResponse, ClientError> {
        self.call::<ep::Exec>(req)
    }

    /// The last `lines` lines of a unit's journal.
    pub fn logs(&mut self, unit: &str, lines: Option<u32>) -> Result<LogsResponse, ClientError> {
        self.call::<ep::Logs>(&LogsRequest { unit: unit.to_string(), lines })
    }
}
