//! Shared test fixtures: a CA, an agent serving in-process over real mTLS on loopback against
//! a temporary --root, with the recording host double.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use agent::client::Client;
use agent::host::RecordingHost;
use agent::ops::Node;
use agent::paths::GuestRoot;
use agent::server::{Agent, Server};
use pki::{Ca, Identity, Validity};

pub struct Pki {
    pub ca: Ca,
    pub server: Identity,
    pub client: Identity,
}

pub fn pki() -> Pki {
    let ca = Ca::generate("minikubeCA", Validity::days_from_now(10)).unwrap();
    let ips: [IpAddr; 1] = ["127.0.0.1".parse().unwrap()];
    let server = ca.issue_server("minikube-agent", &["localhost"], &ips, Validity::days_from_now(10)).unwrap();
    let client = ca.issue_client("minikube-user", &["system:masters"], Validity::days_from_now(10)).unwrap();
    Pki { ca, server, client }
}

/// A guest root with the files a Debian guest has where the operations look.
pub fn guest_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let etc = d.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/bash\ndocker:x:1000:1000::/home/docker:/bin/bash\n").unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\ndocker:x:1000:\n").unwrap();
    std::fs::write(etc.join("hosts"), "127.0.0.1\tlocalhost\n").unwrap();
    std::fs::write(etc.join("os-release"), "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n").unwrap();
    d
}

pub struct Running {
    pub pki: Pki,
    pub root: tempfile::TempDir,
    pub host: Arc<RecordingHost>,
    pub addr: SocketAddr,
}

impl Running {
    pub fn client(&self) -> Client {
        Client::connect(self.addr, "127.0.0.1", self.pki.ca.cert_pem(), &self.pki.client).unwrap()
    }

    pub fn path(&self, guest: &str) -> PathBuf {
        self.root.path().join(guest.trim_start_matches('/'))
    }

    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.path(agent::AUDIT_LOG)).unwrap_or_default()
    }
}

/// Start an agent on 127.0.0.1 (random port) for a fresh guest root.
pub fn start() -> Running {
    let pki = pki();
    let root = guest_root();
    let host = Arc::new(RecordingHost::node("localhost"));
    let addr = serve(&pki, root.path(), host.clone());
    Running { pki, root, host, addr }
}

pub fn serve(pki: &Pki, root: &Path, host: Arc<RecordingHost>) -> SocketAddr {
    let tls = agent::tls::server_config(pki.ca.cert_pem(), &pki.server).unwrap();
    let guest = GuestRoot::new(root);
    let audit = agent::audit::AuditLog::open(&guest.host(agent::AUDIT_LOG)).unwrap();
    let node = Node::new(guest, host);
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), tls, Arc::new(Agent::new(node, Some(audit)))).unwrap();
    let addr = server.local_addr().unwrap();
    server.spawn();
    addr
}

/// An agent (no audit log) whose connection gate has `limits`; its address and gate.
pub fn serve_limited(pki: &Pki, root: &Path, limits: agent::gate::Limits) -> (SocketAddr, Arc<agent::gate::Gate>) {
    let tls = agent::tls::server_config(pki.ca.cert_pem(), &pki.server).unwrap();
    let node = Node::new(GuestRoot::new(root), Arc::new(RecordingHost::node("localhost")));
    let server = Server::bind_with("127.0.0.1:0".parse().unwrap(), tls, Arc::new(Agent::new(node, None)), limits).unwrap();
    let (addr, gate) = (server.local_addr().unwrap(), server.gate());
    server.spawn();
    (addr, gate)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    pki::digest::sha256_hex(bytes)
}

/// The status and field of a refused request.
pub fn refusal<T: std::fmt::Debug>(r: Result<T, agent::client::ClientError>) -> (u16, Option<String>) {
    match r {
        Err(agent::client::ClientError::Status { status, error }) => (status, error.field),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The built `minikube-agent` binary running as a child process (killed when dropped).
pub struct AgentProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `minikube-agent serve` against `root` on a random loopback port, host commands recorded.
pub fn command(root: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minikube-agent"));
    cmd.arg("serve")
        .arg("--root")
        .arg(root)
        .args(["--listen", "127.0.0.1:0", "--console", "/dev/null", "--no-host-commands"])
        .args(extra)
        .env_remove("container")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// Start the agent and wait for its `ready` line.
pub fn spawn(root: &Path, extra: &[&str]) -> AgentProcess {
    spawn_command(command(root, extra))
}

/// Start the agent as `cmd` says (see [`command`]) and wait for its `ready` line.
pub fn spawn_command(mut cmd: Command) -> AgentProcess {
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("minikube-agent: ready ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).parse().unwrap();
    AgentProcess { child, addr }
}
