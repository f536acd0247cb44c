//! A small synchronous HTTP/1.1 layer: request and response heads with bounded sizes, bodies
//! delimited by `Content-Length` only (no chunked encoding), keep-alive by default.

use std::io::{self, BufRead, Read, Write};

/// Largest request or response head accepted (request line + headers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 64;
/// How long the agent keeps an authenticated connection open with no request on it; the client
/// reuses a connection only while it is well inside this (a server closing an idle connection
/// as the client sends on it is the keep-alive race).
pub const IDLE_CLOSE: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection (cleanly) before a response began.
    #[error("connection closed before a response")]
    Closed,
    #[error("malformed HTTP: {0}")]
    Malformed(String),
    #[error("HTTP head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("unsupported HTTP: {0}")]
    Unsupported(String),
}

impl HttpError {
    /// The status to answer with, if the connection is still usable for an answer.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Io(_) | HttpError::Closed | HttpError::Malformed(_) => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::Unsupported(_) => 501,
        }
    }
}

/// A parsed request line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// Path without the query string, percent-decoded.
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// The query string as sent (after `?`, still form-encoded): what a request's fields are
    /// decoded from.
    pub raw_query: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub content_length: u64,
    pub keep_alive: bool,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A parsed status line and headers.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub content_length: u64,
    pub keep_alive: bool,
}

/// Read the head lines (up to the blank line). `Ok(None)` on a clean end of stream before the
/// first byte (the peer closed a keep-alive connection).
fn read_head_lines(r: &mut impl BufRead) -> Result<Option<Vec<String>>, HttpError> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    loop {
        let mut line = Vec::new();
        let n = r.by_ref().take((MAX_HEAD_BYTES - total + 1) as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            if lines.is_empty() && total == 0 {
                return Ok(None);
            }
            return Err(HttpError::Malformed("connection closed inside the head".into()));
        }
        total += n;
        if total > MAX_HEAD_BYTES {
            return Err(HttpError::HeadTooLarge);
        }
        if line.last() != Some(&b'\n') {
            return Err(HttpError::Malformed("line without end".into()));
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            if lines.is_empty() {
                // Tolerate a stray CRLF between requests (RFC 9112 section 2.2).
                continue;
            }
            return Ok(Some(lines));
        }
        if lines.len() > MAX_HEADERS {
            return Err(HttpError::HeadTooLarge);
        }
        let text = String::from_utf8(line).map_err(|_| HttpError::Malformed("head is not UTF-8".into()))?;
        lines.push(text);
    }
}

fn parse_headers(lines: &[String]) -> Result<Vec<(String, String)>, HttpError> {
    lines
        .iter()
        .map(|l| {
            let (k, v) = l.split_once(':').ok_or_else(|| HttpError::Malformed(format!("header line without colon: {l:?}")))?;
            if k.is_empty() || k.bytes().any(|b| !(b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))) {
                return Err(HttpError::Malformed(format!("bad header name {k:?}")));
            }
            Ok((k.to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

/// Content-Length, keep-alive, and refusal of transfer codings, shared by requests and responses.
fn body_framing(headers: &[(String, String)], http11: bool) -> Result<(u64, bool), HttpError> {
    if headers.iter().any(|(k, _)| k == "transfer-encoding") {
        return Err(HttpError::Unsupported("Transfer-Encoding (send Content-Length)".into()));
    }
    let mut lengths = headers.iter().filter(|(k, _)| k == "content-length");
    let content_length = match lengths.next() {
        None => 0,
        Some((_, v)) => {
            if lengths.next().is_some() {
                return Err(HttpError::Malformed("several Content-Length headers".into()));
            }
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::Malformed(format!("Content-Length {v:?}")));
            }
            v.parse().map_err(|_| HttpError::Malformed(format!("Content-Length {v:?}")))?
        }
    };
    let connection = headers.iter().find(|(k, _)| k == "connection").map(|(_, v)| v.to_ascii_lowercase());
    let keep_alive = match connection.as_deref() {
        Some(v) if v.contains("close") => false,
        Some(v) if v.contains("keep-alive") => true,
        _ => http11,
    };
    Ok((content_length, keep_alive))
}

/// Read and parse a request head.
pub fn read_request_head(r: &mut impl BufRead) -> Result<Option<RequestHead>, HttpError> {
    let Some(lines) = read_head_lines(r)? else { return Ok(None) };
    parse_request_lines(&lines).map(Some)
}

/// Parse a request head from bytes (the fuzz entry point; the server reads from a stream).
pub fn parse_request_head(bytes: &[u8]) -> Result<Option<RequestHead>, HttpError> {
    read_request_head(&mut io::BufReader::new(bytes))
}

fn parse_request_lines(lines: &[String]) -> Result<RequestHead, HttpError> {
    let mut parts = lines[0].split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(HttpError::Malformed(format!("request line {:?}", lines[0]))),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed(format!("method {method:?}")));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HttpError::Unsupported(format!("version {version:?}"))),
    };
    if !target.starts_with('/') {
        return Err(HttpError::Malformed(format!("request target {target:?}")));
    }
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(raw_path).ok_or_else(|| HttpError::Malformed("bad percent-encoding in path".into()))?;
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k).ok_or_else(|| HttpError::Malformed("bad percent-encoding in query".into()))?;
        let v = percent_decode(v).ok_or_else(|| HttpError::Malformed(format!("bad percent-encoding in query parameter {k}")))?;
        query.push((k, v));
    }
    let headers = parse_headers(&lines[1..])?;
    let (content_length, keep_alive) = body_framing(&headers, http11)?;
    Ok(RequestHead { method: method.to_string(), path, query, raw_query: raw_query.to_string(), headers, content_length, keep_alive })
}

/// Read and parse a response head.
pub fn read_response_head(r: &mut impl BufRead) -> Result<ResponseHead, HttpError> {
    let lines = read_head_lines(r)?.ok_or(HttpError::Closed)?;
    let mut parts = lines[0].splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HttpError::Malformed(format!("status line {:?}", lines[0]))),
    };
    let status: u16 = code.parse().map_err(|_| HttpError::Malformed(format!("status line {:?}", lines[0])))?;
    let headers = parse_headers(&lines[1..])?;
    let (content_length, keep_alive) = body_framing(&headers, http11)?;
    Ok(ResponseHead { status, headers, content_length, keep_alive })
}

/// Decode `%XX` escapes (and `+` as space is NOT applied: paths may contain `+`).
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encode everything but unreserved characters and `/`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}

/// Write a response head announcing `content_length` body bytes.
pub fn write_response_head(w: &mut impl Write, status: u16, content_type: &str, content_length: u64, keep_alive: bool) -> io::Result<()> {
    let conn = if keep_alive { "keep-alive" } else { "close" };
    write!(w, "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\nConnection: {conn}\r\n\r\n", reason(status))
}

/// Write a request head (client side); `expect_continue` asks the server to confirm before the
/// body is sent.
pub fn write_request_head(
    w: &mut impl Write,
    method: &str,
    target: &str,
    host: &str,
    content_type: &str,
    content_length: u64,
    expect_continue: bool,
) -> io::Result<()> {
    let expect = if expect_continue { "Expect: 100-continue\r\n" } else { "" };
    write!(w, "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n{expect}\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_with_query_and_body_length() {
        let raw = b"PUT /v1/files?path=%2Fetc%2Fa%20b&mode=644 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nbody";
        let h = parse_request_head(raw).unwrap().unwrap();
        assert_eq!(h.method, "PUT");
        assert_eq!(h.path, "/v1/files");
        assert_eq!(h.query_param("path"), Some("/etc/a b"));
        assert_eq!(h.query_param("mode"), Some("644"));
        assert_eq!(h.content_length, 12);
        assert!(h.keep_alive);
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/2\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (b"GET nope HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x", 400),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
        ];
        for (raw, status) in cases {
            let err = parse_request_head(raw).unwrap_err();
            assert_eq!(err.status(), *status, "{:?}: {err}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn bounds_the_head() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 10));
        assert!(matches!(parse_request_head(&raw), Err(HttpError::HeadTooLarge)));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 2) {
            many.extend(format!("h{i}: v\r\n").bytes());
        }
        many.extend(b"\r\n");
        assert!(matches!(parse_request_head(&many), Err(HttpError::HeadTooLarge)));
    }

    #[test]
    fn clean_eof_is_no_request() {
        assert!(parse_request_head(b"").unwrap().is_none());
    }

    #[test]
    fn percent_round_trip() {
        for s in ["/etc/a b", "/x/ü+%", "/var/lib/minikube/certs/apiserver.crt"] {
            assert_eq!(percent_decode(&percent_encode(s)).unwrap(), s);
        }
        assert!(percent_decode("%zz").is_none());
        assert!(percent_decode("%4").is_none());
    }
}
