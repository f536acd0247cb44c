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
//! | [`UploadFile`] | files.upload | `PUT /v1/files?path=P&sha256=H&mode=644&owner=U:G` ([`FileUpload`]) raw body | [`Changed`] | yes |
//! | [`StatFile`] | files.stat | `POST /v1/files/stat` [`PathRequest`] | [`FileStat`] | |
//! | [`DownloadFile`] | files.download | `GET /v1/files?path=P` ([`Download`]) | raw body | |
//! | [`Exec`] | exec | `POST /v1/exec` [`ExecRequest`] | [`ExecResponse`] | yes |
//! | [`Logs`] | logs | `POST /v1/logs` [`LogsRequest`] | [`LogsResponse`] | |
//!
//! Errors are 4xx/5xx with an [`ErrorResponse`](crate::api::ErrorResponse) naming the
//! offending field. A request that travels in the query string is a struct whose fields are the
//! parameters, form-encoded by `serde_urlencoded` ([`encode_query`]; the agent decodes with
//! the same crate).
//!
//! The list is written once, in [`endpoint_list!`](crate::endpoint_list): it defines the
//! endpoint types and [`ALL`] here, and the agent's routing table from the same tokens (an
//! endpoint the agent does not serve is a compile error there, not a 404 at run time).

use serde::de::DeserializeOwned;
use serde::Serialize;

#[cfg(doc)]
use crate::api::{
    BinaryUpload, CertsRequest, Changed, Download, ExecRequest, ExecResponse, FileStat, FileUpload, HostnameRequest, ImageUpload, InfoResponse, KubeletRequest,
    KubeletResponse, LogsRequest, LogsResponse, NetworkRequest, PathRequest, RuntimeRequest, RuntimeResponse,
};

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

/// An endpoint's definition with its types erased: a row of [`ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointInfo {
    pub method: &'static str,
    pub path: &'static str,
    pub name: &'static str,
    pub audited: bool,
    pub transport: Transport,
}

impl EndpointInfo {
    pub const fn of<E: Endpoint>() -> EndpointInfo {
        EndpointInfo { method: E::METHOD, path: E::PATH, name: E::NAME, audited: E::AUDITED, transport: E::TRANSPORT }
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

/// The one list of the agent's endpoints. `endpoint_list!(callback)` calls
/// `callback! { $(#[doc] NAME { method, path, name, audited, transport, request, response,
/// [detail], [changed] })* }`: this crate defines the endpoint types and [`ALL`] from it
/// (`define_endpoints!`), the agent its routing table.
#[macro_export]
macro_rules! endpoint_list {
    ($callback:ident) => {
        $callback! {
            /// `GET /v1/info`: versions of the agent, kernel and OS; what the boot step did.
            Info { method: "GET", path: "/v1/info", name: "info", audited: false, transport: Query,
                request: (), response: $crate::api::InfoResponse }
            /// `POST /v1/hostname`: the hostname and the managed /etc/hosts lines.
            Hostname { method: "POST", path: "/v1/hostname", name: "hostname", audited: true, transport: Json,
                request: $crate::api::HostnameRequest, response: $crate::api::Changed,
                detail: |req| req.name.clone(), changed: |resp| Some(resp.changed) }
            /// `POST /v1/network`: the static address of a VM's cluster NIC.
            Network { method: "POST", path: "/v1/network", name: "network", audited: true, transport: Json,
                request: $crate::api::NetworkRequest, response: $crate::api::Changed,
                detail: |req| req.address.clone(), changed: |resp| Some(resp.changed) }
            /// `POST /v1/certs`: certificates and keys placed, CAs trusted.
            Certs { method: "POST", path: "/v1/certs", name: "certs", audited: true, transport: Json,
                request: $crate::api::CertsRequest, response: $crate::api::Changed,
                changed: |resp| Some(resp.changed) }
            /// `POST /v1/runtime`: the container runtime configured and (re)started.
            Runtime { method: "POST", path: "/v1/runtime", name: "runtime", audited: true, transport: Json,
                request: $crate::api::RuntimeRequest, response: $crate::api::RuntimeResponse,
                changed: |resp| Some(resp.changed) }
            /// `POST /v1/kubelet`: the kubelet unit and drop-in installed, the service started.
            Kubelet { method: "POST", path: "/v1/kubelet", name: "kubelet", audited: true, transport: Json,
                request: $crate::api::KubeletRequest, response: $crate::api::KubeletResponse,
                changed: |resp| Some(resp.changed) }
            /// `POST /v1/files/stat`: size, digest, mode and owner of a file.
            StatFile { method: "POST", path: "/v1/files/stat", name: "files.stat", audited: false, transport: Json,
                request: $crate::api::PathRequest, response: $crate::api::FileStat }
            /// `POST /v1/exec`: a command run on the node.
            Exec { method: "POST", path: "/v1/exec", name: "exec", audited: true, transport: Json,
                request: $crate::api::ExecRequest, response: $crate::api::ExecResponse,
                detail: |req| req.argv.first().cloned().unwrap_or_default() }
            /// `POST /v1/logs`: the end of a unit's journal.
            Logs { method: "POST", path: "/v1/logs", name: "logs", audited: false, transport: Json,
                request: $crate::api::LogsRequest, response: $crate::api::LogsResponse }
            /// `PUT /v1/files?…`: a file written from the streamed body, checked against its SHA-256.
            UploadFile { method: "PUT", path: "/v1/files", name: "files.upload", audited: true, transport: Upload,
                request: $crate::api::FileUpload, response: $crate::api::Changed,
                detail: |req| req.path.clone(), changed: |resp| Some(resp.changed) }
            /// `PUT /v1/binaries?…`: a Kubernetes binary of a version, from the streamed body.
            UploadBinary { method: "PUT", path: "/v1/binaries", name: "binaries.upload", audited: true, transport: Upload,
                request: $crate::api::BinaryUpload, response: $crate::api::Changed,
                detail: |req| format!("{}/{}", req.version, req.name), changed: |resp| Some(resp.changed) }
            /// `PUT /v1/images?…`: a container image archive imported into the runtime (skipped,
            /// body unread, when the runtime has the reference at that digest).
            UploadImage { method: "PUT", path: "/v1/images", name: "images.upload", audited: true, transport: Upload,
                request: $crate::api::ImageUpload, response: $crate::api::Changed,
                detail: |req| format!("{}@{}", req.reference, req.digest), changed: |resp| Some(resp.changed) }
            /// `GET /v1/files?path=P`: a file's bytes as the answer body.
            DownloadFile { method: "GET", path: "/v1/files", name: "files.download", audited: false, transport: Download,
                request: $crate::api::Download, response: () }
        }
    };
}

/// Defines each endpoint of [`endpoint_list!`](crate::endpoint_list) as a type implementing
/// [`Endpoint`], and [`ALL`].
macro_rules! define_endpoints {
    ($(
        $(#[$doc:meta])*
        $ty:ident { method: $method:literal, path: $path:literal, name: $name:literal, audited: $audited:literal, transport: $transport:ident,
            request: $req:ty, response: $resp:ty
            $(, detail: |$dreq:ident| $detail:expr)?
            $(, changed: |$cresp:ident| $changed:expr)? }
    )*) => {
        $(
            $(#[$doc])*
            pub struct $ty;
            impl Endpoint for $ty {
                const METHOD: &'static str = $method;
                const PATH: &'static str = $path;
                const NAME: &'static str = $name;
                const AUDITED: bool = $audited;
                const TRANSPORT: Transport = Transport::$transport;
                type Request = $req;
                type Response = $resp;
                $(fn detail($dreq: &$req) -> String {
                    $detail
                })?
                $(fn changed($cresp: &$resp) -> Option<bool> {
                    $changed
                })?
            }
        )*
        /// Every endpoint, in the order of [`endpoint_list!`](crate::endpoint_list).
        pub const ALL: &[EndpointInfo] = &[$(EndpointInfo::of::<$ty>()),*];
    };
}

crate::endpoint_list!(define_endpoints);

/// The query string carrying `req`'s fields (form-encoded, absent options left out).
pub fn encode_query<T: Serialize>(req: &T) -> String {
    serde_urlencoded::to_string(req).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BinaryUpload, FileUpload, HostnameRequest};

    #[test]
    fn one_endpoint_per_method_and_path_and_name() {
        assert_eq!(ALL.len(), 13);
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[..i] {
                assert!((a.method, a.path) != (b.method, b.path), "{} {} twice", a.method, a.path);
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn targets() {
        let up = FileUpload { path: "/etc/a b&c+d".into(), sha256: "ab".into(), mode: 0o600, owner: Some("docker:docker".into()) };
        let sent = target::<UploadFile>(&up);
        assert_eq!(sent, "/v1/files?path=%2Fetc%2Fa+b%26c%2Bd&sha256=ab&mode=600&owner=docker%3Adocker");
        let no_owner = FileUpload { owner: None, ..up };
        assert!(!encode_query(&no_owner).contains("owner"));
        let bin = BinaryUpload { version: "v1.35.0".into(), name: "kubelet".into(), sha256: "cd".into() };
        assert_eq!(encode_query(&bin), "version=v1.35.0&name=kubelet&sha256=cd");
        assert_eq!(target::<Info>(&()), "/v1/info");
        assert_eq!(target::<Hostname>(&HostnameRequest { name: "m".into(), hosts: Vec::new() }), "/v1/hostname");
    }
}
