//! Routing and request decoding, apart from any I/O (so that they can be fuzzed): the table of
//! every operation, built from the [`crate::endpoints`] definitions, each endpoint's server half
//! ([`Serve`]), and the typed request a head and body decode into.

use std::any::Any;
use std::fs::File;
use std::io::{BufReader, Read};

use serde::de::DeserializeOwned;

use crate::endpoints::{self as ep, Endpoint, Transport};
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

/// What an endpoint's operation handled: its answer, or the failure.
type Handled<E> = Result<Served<<E as Endpoint>::Response>, OpError>;

/// The server half of an endpoint: the operation it runs. The configuring operations are also
/// recorded in the stored node document (so that the next boot applies what the API last set).
trait Serve: Endpoint {
    fn run(node: &Node, req: Self::Request, incoming: Incoming) -> Handled<Self>;
}

impl Serve for ep::Info {
    fn run(node: &Node, _: (), _: Incoming) -> Handled<Self> {
        ops::info::info(node).map(Served::Json)
    }
}

impl Serve for ep::Hostname {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Handled<Self> {
        let c = ops::hostname::apply(node, &req)?;
        remember(node, |d| d.hostname = Some(req))?;
        Ok(Served::Json(c))
    }
}

impl Serve for ep::Network {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Handled<Self> {
        let changed = ops::network::apply_in(node, &req, None)?;
        remember(node, |d| d.network = Some(req))?;
        Ok(Served::Json(crate::api::Changed { changed }))
    }
}

impl Serve for ep::Certs {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Handled<Self> {
        let c = ops::certs::apply(node, &req)?;
        remember(node, |d| d.certs = Some(req))?;
        Ok(Served::Json(c))
    }
}

impl Serve for ep::Runtime {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Handled<Self> {
        let c = ops::runtime::apply(node, &req)?;
        remember(node, |d| d.runtime = Some(req))?;
        Ok(Served::Json(c))
    }
}

impl Serve for ep::Kubelet {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Handled<Self> {
        let c = ops::kubelet::apply(node, &req)?;
        remember(node, |d| d.kubelet = Some(req))?;
        Ok(Served::Json(c))
    }
}

impl Serve for ep::StatFile {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Handled<Self> {
        ops::files::stat(node, &req.path).map(Served::Json)
    }
}

impl Serve for ep::Exec {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Handled<Self> {
        ops::exec::run(node, &req).map(Served::Json)
    }
}

impl Serve for ep::Logs {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Handled<Self> {
        ops::logs::read(node, &req).map(Served::Json)
    }
}

impl Serve for ep::UploadFile {
    fn run(node: &Node, req: Self::Request, incoming: Incoming) -> Handled<Self> {
        ops::files::upload(node, &req, incoming.body, incoming.len).map(Served::Json)
    }
}

impl Serve for ep::UploadBinary {
    fn run(node: &Node, req: Self::Request, incoming: Incoming) -> Handled<Self> {
        ops::kubelet::upload_binary(node, &req.version, &req.name, &req.sha256, incoming.body, incoming.len).map(Served::Json)
    }
}

impl Serve for ep::UploadImage {
    fn run(node: &Node, req: Self::Request, incoming: Incoming) -> Handled<Self> {
        ops::images::upload(node, &req, incoming.body, incoming.len).map(Served::Json)
    }
}

impl Serve for ep::DownloadFile {
    fn run(node: &Node, req: Self::Request, _: Incoming) -> Handled<Self> {
        let (file, len) = ops::files::open_download(node, &req.path)?;
        Ok(Served::File { file, len })
    }
}

/// The routing table from [`agent_api::endpoint_list!`]: every endpoint the client knows, each
/// with its [`Serve`] (an endpoint without one does not compile).
macro_rules! routes {
    ($($(#[$doc:meta])* $ty:ident { $($definition:tt)* })*) => {
        /// Every operation the agent serves, looked up by method and path.
        static ROUTES: &[Route] = &[$(Route::of::<ep::$ty>()),*];
    };
}
agent_api::endpoint_list!(routes);

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

/// The request field a decoding error is about: the path `serde_path_to_error` tracked to it
/// (`hosts[0].ip`), and for a missing field, the field itself. serde reports a missing field
/// through `de::Error::missing_field`, whose text (its default, kept by serde_json and
/// serde_urlencoded) is the only place its name is given: "missing field `NAME`".
fn field_at(path: &serde_path_to_error::Path, message: &str, whole: &str) -> String {
    // `.` is the top level, `?` a place serde_path_to_error could not tell (broken syntax).
    let at = match path.to_string() {
        p if p == "?" => ".".to_string(),
        p => p,
    };
    let missing = message.strip_prefix("missing field `").and_then(|m| m.split('`').next());
    match (at.as_str(), missing) {
        (".", Some(name)) => name.to_string(),
        (".", None) => whole.to_string(),
        (_, Some(name)) => format!("{at}.{name}"),
        (_, None) => at,
    }
}

/// Decode a JSON body; errors name the field at fault (`hosts[0].ip`, else `body`).
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, OpError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let message = e.inner().to_string();
        OpError::bad(&field_at(e.path(), &message, "body"), message)
    })?;
    // Trailing bytes after the JSON value are refused as serde_json::from_slice refuses them.
    de.end().map_err(|e| OpError::bad("body", e.to_string()))?;
    Ok(value)
}

/// Decode a request carried in the query string (form-encoded, as the client sends it with
/// `serde_urlencoded`). Unknown parameters are ignored; a repeated one is refused. Errors name
/// the parameter at fault (else `query`).
pub fn decode_query<T: DeserializeOwned + 'static>(raw_query: &str) -> Result<T, OpError> {
    // A request without fields takes no parameters, and ignores any it is given.
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<()>() {
        return serde_urlencoded::from_str::<T>("").map_err(|e| OpError::bad("query", e.to_string()));
    }
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw_query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let message = e.inner().to_string();
        let message = if message.starts_with("missing field") { "missing query parameter".to_string() } else { message };
        OpError::bad(&field_at(e.path(), &e.inner().to_string(), "query"), message)
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
            let req = decode_query(&head.raw_query)?;
            within(head, MAX_UPLOAD)?;
            req
        }
        Transport::Query | Transport::Download => {
            let req = decode_query(&head.raw_query)?;
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
    fn every_endpoint_the_client_knows_routes() {
        assert_eq!(ROUTES.len(), ep::ALL.len());
        for e in ep::ALL {
            // A request with no parameters or body: a route answers 400 for what is missing (or
            // decodes it), never 404 or 405.
            let raw = format!("{} {} HTTP/1.1\r\nContent-Length: 2\r\n\r\n{{}}", e.method, e.path);
            let decoded = decode_request(raw.as_bytes());
            match decoded {
                Ok(Some(d)) => assert_eq!((d.route().method, d.route().path, d.route().name), (e.method, e.path, e.name)),
                Ok(None) => panic!("{} {}: no request read", e.method, e.path),
                Err(err) => assert_eq!(err.status, 400, "{} {}: {err}", e.method, e.path),
            }
            let route = ROUTES.iter().find(|r| (r.method, r.path) == (e.method, e.path)).unwrap();
            assert_eq!((route.name, route.audited, route.transport), (e.name, e.audited, e.transport));
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

    fn query_of(target: &str) -> String {
        target.split_once('?').map_or(String::new(), |(_, q)| q.to_string())
    }

    #[test]
    fn queries_round_trip_and_errors_name_the_parameter() {
        use crate::api::{BinaryUpload, FileUpload};
        let up = FileUpload { path: "/etc/a b&c+d%".into(), sha256: "ab".into(), mode: 0o600, owner: Some("docker:docker".into()) };
        assert_eq!(decode_query::<FileUpload>(&query_of(&ep::target::<ep::UploadFile>(&up))).unwrap(), up);
        let bin = BinaryUpload { version: "v1.35.0".into(), name: "kubelet".into(), sha256: "cd".into() };
        assert_eq!(decode_query::<BinaryUpload>(&ep::encode_query(&bin)).unwrap(), bin);
        let err = decode_query::<FileUpload>("sha256=00").unwrap_err();
        assert_eq!((err.status, err.field.as_deref(), err.message.as_str()), (400, Some("path"), "path: missing query parameter"));
        let err = decode_query::<FileUpload>("path=/x&sha256=00&mode=9z").unwrap_err();
        assert_eq!((err.field.as_deref(), err.message.as_str()), (Some("mode"), "mode: \"9z\" is not octal"));
        let err = decode_query::<BinaryUpload>("version=v1&sha256=00").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("name"));
        // Unknown parameters are ignored, a repeated one is refused (which would count?).
        let up: FileUpload = decode_query("path=/a&sha256=00&colour=red").unwrap();
        assert_eq!((up.path.as_str(), up.mode, up.owner), ("/a", 0o644, None));
        let err = decode_query::<FileUpload>("path=/a&sha256=00&path=/b").unwrap_err();
        assert_eq!(err.status, 400, "{err}");
        assert!(err.message.contains("path"), "{err}");
        decode_query::<()>("anything=1").unwrap();
    }

    #[test]
    fn json_errors_name_the_field() {
        use crate::api::{ExecRequest, HostnameRequest};
        let e = decode_json::<HostnameRequest>(br#"{"name": "m", "hosts": [{"ip": "10.0.0.1", "names": [7]}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("hosts[0].names[0]"), "{e}");
        let e = decode_json::<HostnameRequest>(br#"{"name": "m", "hosts": [{"names": []}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("hosts[0].ip"), "{e}");
        let e = decode_json::<HostnameRequest>(br#"{"hosts": []}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"), "{e}");
        let e = decode_json::<HostnameRequest>(br#"{"name": "m", "nmae": 1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("nmae"), "{e}");
        let e = decode_json::<ExecRequest>(br#"{"argv": ["x"], "timeout_secs": "1"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("timeout_secs"), "{e}");
        let e = decode_json::<ExecRequest>(b"{").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"), "{e}");
        let e = decode_json::<ExecRequest>(br#"{"argv": []} x"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"), "{e}");
    }
}
