//! The agent's operations, each defined once: method, path, request and response types, how
//! the request and the answer travel, and what the audit log records. The client builds its
//! requests from these definitions and the server routes by them; no path is written anywhere
//! else.
//!
//! | endpoint | operation | request | response | audited |
//! | --- | --- | --- | --- | --- |
//! | [`Info`] | info | `GET /v1/info` | [`InfoResponse`] | |
//! | [`Hostname`] | hostname | `POST /v1/hostname` [`HostnameRequest`] | [`Changed`] | yes |
//! | [`Network`] | network | `POST /v1/network` [`NetworkRequest`] | [`Changed`] | yes |
//! | [`Certs`] | certs | `POST /v1/certs` [`CertsRequest`] | [`Changed`] | yes |
//! | [`Runtime`] | runtime | `POST /v1/runtime` [`RuntimeRequest`] | [`RuntimeResponse`] | yes |
//! | [`UploadBinary`] | binaries.upload | `PUT /v1/binaries?version=V&name=N&sha256=H` ([`BinaryUpload`]) raw body | [`Changed`] | yes |
//! | [`UploadImage`] | images.upload | `PUT /v1/images?reference=R&sha256=H&digest=D` ([`ImageUpload`]) raw body | [`Changed`] | yes |
//! | [`Kubelet`] | kubelet | `POST /v1/kubelet` [`KubeletRequest`] | [`KubeletResponse`] | yes |
//! | [`UploadFile`] | files.upload | `PUT /v1/files?path=P&sha256=H&mode=644&owner=U:G` ([`Upload`]) raw body | [`Changed`] | yes |
//! | [`StatFile`] | files.stat | `POST /v1/files/stat` [`PathRequest`] | [`FileStat`] | |
//! | [`DownloadFile`] | files.download | `GET /v1/files?path=P` ([`Download`]) | raw body | |
//! | [`Exec`] | exec | `POST /v1/exec` [`ExecRequest`] | [`ExecResponse`] | yes |
//! | [`Logs`] | logs | `POST /v1/logs` [`LogsRequest`] | [`LogsResponse`] | |
//!
//! Errors are 4xx/5xx with an [`ErrorResponse`](crate::api::ErrorResponse) naming the
//! offending field. A request that travels in the query string is a struct whose fields are the
//! parameters: [`encode_query`] and [`decode_query`] are the only code that writes or reads one.

use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::ops::network::NetworkRequest;

use crate::api::{
    BinaryUpload, CertsRequest, Changed, Download, ExecRequest, ExecResponse, FileStat, HostnameRequest, ImageUpload, InfoResponse, KubeletRequest, KubeletResponse,
    LogsRequest, LogsResponse, PathRequest, RuntimeRequest, RuntimeResponse, Upload,
};
use crate::http::percent_encode;
use crate::ops::OpError;

/// How an endpoint's request and answer travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The request (if it has fields) is the query string; no body; a JSON answer.
    Query,
    /// The request is a JSON body; a JSON answer.
    Json,
    /// The request is the query string and the body is streamed raw (after `100 Continue`); a
    /// JSON answer.
    Upload,
    /// The request is the query string; no body; the answer body is streamed raw.
    Download,
}

/// One operation of the agent's API.
pub trait Endpoint: 'static {
    const METHOD: &'static str;
    const PATH: &'static str;
    /// The operation's name in the audit log and the server's warnings.
    const NAME: &'static str;
    /// Recorded in the audit log: everything that may change the node.
    const AUDITED: bool;
    const TRANSPORT: Transport;
    /// What the caller sends: the JSON body, or the query string's fields.
    type Request: Serialize + DeserializeOwned + Send + 'static;
    /// The JSON answer (`()` for [`Transport::Download`], whose answer is raw bytes).
    type Response: Serialize + DeserializeOwned;

    /// The audit log's detail for a request (what it names: a path, a program).
    fn detail(_req: &Self::Request) -> String {
        String::new()
    }

    /// What a mutating operation's answer says about the node (`changed`), for the audit log.
    fn changed(_resp: &Self::Response) -> Option<bool> {
        None
    }
}

/// The request target (path and query string) of `req` sent to `E`.
pub fn target<E: Endpoint>(req: &E::Request) -> String {
    if E::TRANSPORT == Transport::Json {
        return E::PATH.to_string();
    }
    let query = encode_query(req);
    if query.is_empty() {
        E::PATH.to_string()
    } else {
        format!("{}?{query}", E::PATH)
    }
}

/// `GET /v1/info`: versions of the agent, kernel and OS; what the boot step did.
pub struct Info;
impl Endpoint for Info {
    const METHOD: &'static str = "GET";
    const PATH: &'static str = "/v1/info";
    const NAME: &'static str = "info";
    const AUDITED: bool = false;
    const TRANSPORT: Transport = Transport::Query;
    type Request = ();
    type Response = InfoResponse;
}

/// `POST /v1/hostname`: the hostname and the managed /etc/hosts lines.
pub struct Hostname;
impl Endpoint for Hostname {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/v1/hostname";
    const NAME: &'static str = "hostname";
    const AUDITED: bool = true;
    const TRANSPORT: Transport = Transport::Json;
    type Request = HostnameRequest;
    type Response = Changed;
    fn detail(req: &HostnameRequest) -> String {
        req.name.clone()
    }
    fn changed(resp: &Changed) -> Option<bool> {
        Some(resp.changed)
    }
}

/// `POST /v1/network`: the static address of a VM's cluster NIC.
pub struct Network;
impl Endpoint for Network {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/v1/network";
    const NAME: &'static str = "network";
    const AUDITED: bool = true;
    const TRANSPORT: Transport = Transport::Json;
    type Request = NetworkRequest;
    type Response = Changed;
    fn detail(req: &NetworkRequest) -> String {
        req.address.clone()
    }
    fn changed(resp: &Changed) -> Option<bool> {
        Some(resp.changed)
    }
}

/// `POST /v1/certs`: certificates and keys placed, CAs trusted.
pub struct Certs;
impl Endpoint for Certs {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/v1/certs";
    const NAME: &'static str = "certs";
    const AUDITED: bool = true;
    const TRANSPORT: Transport = Transport::Json;
    type Request = CertsRequest;
    type Response = Changed;
    fn changed(resp: &Changed) -> Option<bool> {
        Some(resp.changed)
    }
}

/// `POST /v1/runtime`: the container runtime configured and (re)started.
pub struct Runtime;
impl Endpoint for Runtime {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/v1/runtime";
    const NAME: &'static str = "runtime";
    const AUDITED: bool = true;
    const TRANSPORT: Transport = Transport::Json;
    type Request = RuntimeRequest;
    type Response = RuntimeResponse;
    fn changed(resp: &RuntimeResponse) -> Option<bool> {
        Some(resp.changed)
    }
}

/// `POST /v1/kubelet`: the kubelet unit and drop-in installed, the service started.
pub struct Kubelet;
impl Endpoint for Kubelet {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/v1/kubelet";
    const NAME: &'static str = "kubelet";
    const AUDITED: bool = true;
    const TRANSPORT: Transport = Transport::Json;
    type Request = KubeletRequest;
    type Response = KubeletResponse;
    fn changed(resp: &KubeletResponse) -> Option<bool> {
        Some(resp.changed)
    }
}

/// `POST /v1/files/stat`: size, digest, mode and owner of a file.
pub struct StatFile;
impl Endpoint for StatFile {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/v1/files/stat";
    const NAME: &'static str = "files.stat";
    const AUDITED: bool = false;
    const TRANSPORT: Transport = Transport::Json;
    type Request = PathRequest;
    type Response = FileStat;
}

/// `POST /v1/exec`: a command run on the node.
pub struct Exec;
impl Endpoint for Exec {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/v1/exec";
    const NAME: &'static str = "exec";
    const AUDITED: bool = true;
    const TRANSPORT: Transport = Transport::Json;
    type Request = ExecRequest;
    type Response = ExecResponse;
    fn detail(req: &ExecRequest) -> String {
        req.argv.first().cloned().unwrap_or_default()
    }
}

/// `POST /v1/logs`: the end of a unit's journal.
pub struct Logs;
impl Endpoint for Logs {
    const METHOD: &'static str = "POST";
    const PATH: &'static str = "/v1/logs";
    const NAME: &'static str = "logs";
    const AUDITED: bool = false;
    const TRANSPORT: Transport = Transport::Json;
    type Request = LogsRequest;
    type Response = LogsResponse;
}

/// `PUT /v1/files?…`: a file written from the streamed body, checked against its SHA-256.
pub struct UploadFile;
impl Endpoint for UploadFile {
    const METHOD: &'static str = "PUT";
    const PATH: &'static str = "/v1/files";
    const NAME: &'static str = "files.upload";
    const AUDITED: bool = true;
    const TRANSPORT: Transport = Transport::Upload;
    type Request = Upload;
    type Response = Changed;
    fn detail(req: &Upload) -> String {
        req.path.clone()
    }
    fn changed(resp: &Changed) -> Option<bool> {
        Some(resp.changed)
    }
}

/// `PUT /v1/binaries?…`: a Kubernetes binary of a version, from the streamed body.
pub struct UploadBinary;
impl Endpoint for UploadBinary {
    const METHOD: &'static str = "PUT";
    const PATH: &'static str = "/v1/binaries";
    const NAME: &'static str = "binaries.upload";
    const AUDITED: bool = true;
    const TRANSPORT: Transport = Transport::Upload;
    type Request = BinaryUpload;
    type Response = Changed;
    fn detail(req: &BinaryUpload) -> String {
        format!("{}/{}", req.version, req.name)
    }
    fn changed(resp: &Changed) -> Option<bool> {
        Some(resp.changed)
    }
}

/// `PUT /v1/images?…`: a container image archive imported into the runtime (skipped, body
/// unread, when the runtime has the reference at that digest).
pub struct UploadImage;
impl Endpoint for UploadImage {
    const METHOD: &'static str = "PUT";
    const PATH: &'static str = "/v1/images";
    const NAME: &'static str = "images.upload";
    const AUDITED: bool = true;
    const TRANSPORT: Transport = Transport::Upload;
    type Request = ImageUpload;
    type Response = Changed;
    fn detail(req: &ImageUpload) -> String {
        format!("{}@{}", req.reference, req.digest)
    }
    fn changed(resp: &Changed) -> Option<bool> {
        Some(resp.changed)
    }
}

/// `GET /v1/files?path=P`: a file's bytes as the answer body.
pub struct DownloadFile;
impl Endpoint for DownloadFile {
    const METHOD: &'static str = "GET";
    const PATH: &'static str = "/v1/files";
    const NAME: &'static str = "files.download";
    const AUDITED: bool = false;
    const TRANSPORT: Transport = Transport::Download;
    type Request = Download;
    type Response = ();
}

/// The query string carrying `req`'s fields (percent-encoded, absent options left out).
pub fn encode_query<T: Serialize>(req: &T) -> String {
    let serde_json::Value::Object(fields) = serde_json::to_value(req).unwrap_or_default() else {
        return String::new();
    };
    let mut out = String::new();
    for (name, value) in fields {
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&percent_encode(&name));
        out.push('=');
        out.push_str(&percent_encode(&text));
    }
    out
}

/// The request whose fields are the (percent-decoded) query parameters. The first of repeated
/// parameters counts and unknown ones are ignored; errors name the parameter at fault.
pub fn decode_query<T: DeserializeOwned>(query: &[(String, String)]) -> Result<T, OpError> {
    T::deserialize(Params(query)).map_err(|e| OpError::bad(e.field.as_deref().unwrap_or("query"), e.message))
}

/// A query parameter that does not fit its field.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct QueryError {
    field: Option<String>,
    message: String,
}

impl de::Error for QueryError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        QueryError { field: None, message: msg.to_string() }
    }

    fn missing_field(field: &'static str) -> Self {
        QueryError { field: Some(field.to_string()), message: "missing query parameter".into() }
    }
}

/// The query string as a map of strings.
struct Params<'a>(&'a [(String, String)]);

impl<'de> de::Deserializer<'de> for Params<'_> {
    type Error = QueryError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        let pairs = self.0;
        let firsts = pairs.iter().enumerate().filter(|(i, (k, _))| !pairs[..*i].iter().any(|(earlier, _)| earlier == k)).map(|(_, p)| p);
        visitor.visit_map(ParamsAccess { rest: firsts, current: None })
    }

    /// A request without fields (`()`) ignores the query.
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct ParamsAccess<'a, I> {
    rest: I,
    current: Option<&'a (String, String)>,
}

impl<'de, 'a, I: Iterator<Item = &'a (String, String)>> MapAccess<'de> for ParamsAccess<'a, I> {
    type Error = QueryError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, QueryError> {
        let Some(pair) = self.rest.next() else { return Ok(None) };
        self.current = Some(pair);
        seed.deserialize(pair.0.as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, QueryError> {
        let Some((name, value)) = self.current.take() else {
            return Err(QueryError { field: None, message: "query value without a name".into() });
        };
        seed.deserialize(Text(value)).map_err(|e| QueryError { field: e.field.or_else(|| Some(name.clone())), message: e.message })
    }
}

/// One parameter's value: a string, or a present option.
struct Text<'a>(&'a str);

impl<'de> de::Deserializer<'de> for Text<'_> {
    type Error = QueryError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        visitor.visit_str(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        visitor.visit_some(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// Permission bits as octal text in a query (`mode=644`), 0644 when absent.
pub(crate) mod octal_mode {
    use super::*;

    pub fn default() -> u32 {
        0o644
    }

    pub fn serialize<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:o}"))
    }

    pub fn deserialize<'de, D: de::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        u32::from_str_radix(&text, 8).map_err(|_| de::Error::custom(format!("{text:?} is not octal")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        crate::http::parse_request_head(format!("PUT /x?{query} HTTP/1.1\r\n\r\n").as_bytes()).unwrap().unwrap().query
    }

    #[test]
    fn uploads_round_trip_through_the_query() {
        let up = Upload { path: "/etc/a b&c".into(), sha256: "ab".into(), mode: 0o600, owner: Some("docker:docker".into()) };
        let sent = target::<UploadFile>(&up);
        assert!(sent.starts_with("/v1/files?"), "{sent}");
        assert_eq!(decode_query::<Upload>(&pairs(sent.split_once('?').unwrap().1)).unwrap(), up);
        let bin = BinaryUpload { version: "v1.35.0".into(), name: "kubelet".into(), sha256: "cd".into() };
        assert_eq!(decode_query::<BinaryUpload>(&pairs(&encode_query(&bin))).unwrap(), bin);
        let no_owner = Upload { owner: None, ..up };
        assert!(!encode_query(&no_owner).contains("owner"));
        assert_eq!(target::<Info>(&()), "/v1/info");
        assert_eq!(target::<Hostname>(&HostnameRequest { name: "m".into(), hosts: Vec::new() }), "/v1/hostname");
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let err = decode_query::<Upload>(&pairs("sha256=00")).unwrap_err();
        assert_eq!((err.status, err.field.as_deref(), err.message.as_str()), (400, Some("path"), "path: missing query parameter"));
        let err = decode_query::<Upload>(&pairs("path=/x&sha256=00&mode=9z")).unwrap_err();
        assert_eq!((err.field.as_deref(), err.message.as_str()), (Some("mode"), "mode: \"9z\" is not octal"));
        let err = decode_query::<BinaryUpload>(&pairs("version=v1&sha256=00")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("name"));
    }

    #[test]
    fn first_parameter_counts_and_unknown_ones_are_ignored() {
        let up: Upload = decode_query(&pairs("path=/a&sha256=00&path=/b&colour=red")).unwrap();
        assert_eq!((up.path.as_str(), up.mode, up.owner), ("/a", 0o644, None));
        decode_query::<()>(&pairs("anything=1")).unwrap();
    }
}
