//! Routing and request decoding, apart from any I/O (so that they can be fuzzed): the table of
//! every operation, built from the [`crate::endpoints`] definitions, each endpoint's server half
//! ([`Serve`]), and the typed request a head and body decode into.

use std::any::Any;
use std::fs::File;
use std::io::{BufReader, Read};

use serde::de::DeserializeOwned;

use crate::endpoints::{self as ep, decode_query, Endpoint, Transport};
use crate::http::{self, RequestHead};
use crate::ops::apply::remember;
use crate::ops::{self, Node, OpError};

/// Largest JSON request body.
pub const MAX_JSON_BODY: u64 = 8 * 1024 * 1024;
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
pub(super) struct Incoming<'a> {
    pub(super) body: &'a mut dyn Read,
    pub(super) len: u64,
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

impl Serve for ep::UploadImage {
    fn run(node: &Node, req: Self::Request, incoming: Incoming) -> Outcome<Self> {
        ops::images::upload(node, &req, incoming.body, incoming.len).map(Served::Json)
    }
}

impl Serve for ep::DownloadFile {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Outcome<Self> {
        let (file, len) = ops::files::open_download(node, &req.path)?;
        Ok(Served::File { file, len })
    }
}

/// Every operation the agent serves, looked up by method and path.
static ROUTES: [Route; 13] = [
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
    Route::of::<ep::UploadImage>(),
    Route::of::<ep::DownloadFile>(),
];

/// One row of the routing table: an endpoint's definition with its types erased.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub name: &'static str,
    pub audited: bool,
    pub transport: Transport,
    pub(super) decode: Decoder,
}

/// Reads an endpoint's request from the head and, for JSON, the body.
pub(super) type Decoder = fn(&RequestHead, &mut dyn Read) -> Result<Box<dyn Call>, OpError>;

impl Route {
    const fn of<E: Serve>() -> Route {
        Route { method: E::METHOD, path: E::PATH, name: E::NAME, audited: E::AUDITED, transport: E::TRANSPORT, decode: decode::<E> }
    }

    /// The endpoint at the request's method and path: 404 for an unknown path, 405 for a
    /// known path with another method.
    pub(super) fn find(head: &RequestHead) -> Result<&'static Route, OpError> {
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
pub(super) trait Call: Send {
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

/// What a handler answered, ready to write.
pub(super) enum Reply {
    /// A JSON body; `changed` is what a mutating operation reports (for the audit log).
    Json { body: Vec<u8>, changed: Option<bool> },
    /// A file streamed as the body.
    File { file: File, len: u64 },
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
}
