//! The HTTPS server: keep-alive HTTP/1.1 with JSON bodies over rustls, a thread per
//! connection. `routes` holds the routing table and request decoding (no I/O), `listen` the
//! listener, the admission gate and the TLS handshake; this module serves the requests of one
//! authenticated connection.

mod listen;
mod routes;

use std::io::{self, BufReader, Read, Write};

use crate::audit::AuditLog;
use crate::http::{self, HttpError, RequestHead};
use crate::ops::{Node, OpError};

pub use listen::Server;
pub use routes::{decode_json, decode_request, Decoded, Route, MAX_JSON_BODY, MAX_UPLOAD};
use routes::{Incoming, Reply};

/// The most of an unread request body skipped to keep the connection; beyond it, close.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// The agent: the node plus its audit log. Shared by every connection.
pub struct Agent {
    pub node: Node,
    audit: Option<AuditLog>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let node = Node::new(crate::paths::GuestRoot::new(root.path()), std::sync::Arc::new(crate::host::RecordingHost::node("localhost")));
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
