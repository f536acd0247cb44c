//! `cargo xtask bench agent`: round trips to the agent over mutual TLS on loopback.
//!
//! - `info` on a keep-alive mTLS connection, and the same handler over plain TCP (baseline),
//!   with the ratio between them;
//! - every provisioning operation in sequence (hostname, certs, runtime, a kubelet binary
//!   upload, kubelet, a file upload, exec, stat) on a fresh guest root, the handshake included;
//!   and the same sequence repeated on the converged node (every answer `changed: false`).
//!
//! The server runs in-process against a temporary `--root` with the recording host double, so
//! service starts are instant and nothing on this machine is touched.

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::host::RecordingHost;
use agent::ops::Node;
use agent::paths::GuestRoot;
use agent::server::{Agent, Server};
use agent_api::api::*;
use agent_api::client::Client;
use agent_api::endpoints::{self, Endpoint, Info};
use anyhow::{ensure, Context, Result};
use pki::{Ca, Identity, Validity};
use platform::stats::median;

/// Size of the stand-in kubelet binary uploaded in each provisioning run.
const BINARY_BYTES: usize = 16 * 1024 * 1024;

struct Fixture {
    ca: Ca,
    server: Identity,
    client: Identity,
}

fn fixture() -> Result<Fixture> {
    let ca = Ca::generate("minikubeCA", Validity::days_from_now(1))?;
    let ips: [IpAddr; 1] = ["127.0.0.1".parse()?];
    let server = ca.issue_server("minikube-agent", &["localhost"], &ips, Validity::days_from_now(1))?;
    let client = ca.issue_client("minikube-user", &["system:masters"], Validity::days_from_now(1))?;
    Ok(Fixture { ca, server, client })
}

fn guest_root() -> Result<tempfile::TempDir> {
    let d = tempfile::tempdir()?;
    std::fs::create_dir_all(d.path().join("etc"))?;
    std::fs::write(d.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\ndocker:x:1000:1000::/home/docker:/bin/sh\n")?;
    std::fs::write(d.path().join("etc/group"), "root:x:0:\ndocker:x:1000:\n")?;
    std::fs::write(d.path().join("etc/os-release"), "PRETTY_NAME=\"bench\"\n")?;
    Ok(d)
}

fn agent_for(root: &std::path::Path) -> Arc<Agent> {
    let host = Arc::new(RecordingHost::node("localhost"));
    host.creates("systemctl restart", &root.join("run/containerd/containerd.sock"));
    host.answer("containerd --version", "containerd bench\n", 0);
    host.answer("systemctl is-active kubelet", "active\n", 0);
    Arc::new(Agent::new(Node::new(GuestRoot::new(root), host), None))
}

fn serve_tls(f: &Fixture, agent: Arc<Agent>) -> Result<SocketAddr> {
    let tls = agent_api::tls::server_config(f.ca.cert_pem(), &f.server)?;
    let server = Server::bind("127.0.0.1:0".parse()?, tls, agent)?;
    let addr = server.local_addr()?;
    server.spawn();
    Ok(addr)
}

/// The same request handler behind plain TCP: the baseline without TLS.
fn serve_plain(agent: Arc<Agent>) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let agent = agent.clone();
            std::thread::spawn(move || {
                let _ = sock.set_nodelay(true);
                let _ = agent.serve_connection(sock, "bench-plain");
            });
        }
    });
    Ok(addr)
}

fn plain_info(conn: &mut BufReader<TcpStream>) -> Result<InfoResponse> {
    let mut head = Vec::new();
    agent_api::http::write_request_head(&mut head, Info::METHOD, &endpoints::target::<Info>(&()), "bench", "application/json", 0, false)?;
    conn.get_mut().write_all(&head)?;
    let resp = agent_api::http::read_response_head(conn)?;
    ensure!(resp.status == 200, "plain info answered {}", resp.status);
    let mut body = vec![0u8; resp.content_length as usize];
    conn.read_exact(&mut body)?;
    Ok(agent::server::decode_json(&body)?)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// All provisioning operations in order; returns how many reported a change.
fn provision(c: &mut Client, f: &Fixture, binary: &[u8], binary_sha: &str) -> Result<usize> {
    let mut changed = 0;
    changed += usize::from(c.hostname("minikube")?.changed);
    let certs = CertsRequest {
        files: vec![
            CertFile { path: "/var/lib/minikube/certs/ca.crt".into(), pem: f.ca.cert_pem().into(), private: false },
            CertFile { path: "/var/lib/minikube/certs/apiserver.crt".into(), pem: f.server.cert_pem.clone(), private: false },
            CertFile { path: "/var/lib/minikube/certs/apiserver.key".into(), pem: f.server.key_pem.clone(), private: true },
        ],
        trust: vec![TrustedCa { name: "minikubeCA.pem".into(), pem: f.ca.cert_pem().into() }],
    };
    changed += usize::from(c.certs(&certs)?.changed);
    let runtime = RuntimeRequest {
        runtime: Runtime::Containerd,
        pause_image: "registry.k8s.io/pause:3.10".into(),
        cgroup_driver: CgroupDriver::Systemd,
        insecure_registries: vec![],
        docker_tls: None,
        socket_timeout_secs: Some(10),
    };
    changed += usize::from(c.runtime(&runtime)?.changed);
    changed += usize::from(c.upload_binary("v1.35.0", "kubelet", binary_sha, &mut &binary[..], binary.len() as u64)?.changed);
    let kubelet = KubeletRequest {
        version: "v1.35.0".into(),
        node_name: "minikube".into(),
        node_ip: "192.168.49.2".into(),
        runtime: Runtime::Containerd,
        extra_args: vec![],
        binary_sha256: None,
    };
    changed += usize::from(c.kubelet(&kubelet)?.changed);
    changed +=
        usize::from(c.upload_bytes("/var/tmp/minikube/kubeadm.yaml", b"apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n", 0o644, None)?.changed);
    let out = c.exec(&ExecRequest { argv: vec!["true".into()], ..Default::default() })?;
    ensure!(out.exit_code == Some(0), "exec true failed: {out:?}");
    ensure!(c.stat("/var/tmp/minikube/kubeadm.yaml")?.exists, "uploaded file missing");
    Ok(changed)
}

pub fn run(iterations: usize) -> Result<()> {
    let iterations = iterations.max(3);
    let f = fixture()?;

    // info: mTLS keep-alive vs. plain TCP, same handler, same process.
    let root = guest_root()?;
    let agent = agent_for(root.path());
    let tls_addr = serve_tls(&f, agent.clone())?;
    let plain_addr = serve_plain(agent)?;
    let mut client = Client::connect(tls_addr, "127.0.0.1", f.ca.cert_pem(), &f.client).context("mTLS connect")?;
    let mut plain = BufReader::new(TcpStream::connect(plain_addr)?);
    plain.get_mut().set_nodelay(true)?;
    for _ in 0..20 {
        client.info()?;
        plain_info(&mut plain)?;
    }
    let mut tls_times = Vec::with_capacity(iterations);
    let mut plain_times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        client.info()?;
        tls_times.push(t.elapsed());
        let t = Instant::now();
        plain_info(&mut plain)?;
        plain_times.push(t.elapsed());
    }
    let (tls_info, plain_info_median) = (median(tls_times), median(plain_times));

    // Handshake alone (new connection + first info).
    let mut connect_times = Vec::new();
    for _ in 0..iterations.min(200) {
        let t = Instant::now();
        let mut c = Client::connect(tls_addr, "127.0.0.1", f.ca.cert_pem(), &f.client)?;
        c.info()?;
        connect_times.push(t.elapsed());
    }

    // Provisioning: fresh node each run (untimed setup), then the converged repeat.
    let binary: Vec<u8> = (0..BINARY_BYTES).map(|i| (i % 251) as u8).collect();
    let binary_sha = pki::digest::sha256_hex(&binary);
    let runs = iterations.clamp(3, 30);
    let mut first = Vec::new();
    let mut repeat = Vec::new();
    for _ in 0..runs {
        let root = guest_root()?;
        let addr = serve_tls(&f, agent_for(root.path()))?;
        let t = Instant::now();
        let mut c = Client::connect(addr, "127.0.0.1", f.ca.cert_pem(), &f.client)?;
        let changed = provision(&mut c, &f, &binary, &binary_sha)?;
        first.push(t.elapsed());
        ensure!(changed == 6, "a fresh node should change in 6 operations, changed {changed}");
        let t = Instant::now();
        let changed = provision(&mut c, &f, &binary, &binary_sha)?;
        repeat.push(t.elapsed());
        ensure!(changed == 0, "a converged node changed in {changed} operations");
    }

    let ratio = micros(tls_info) / micros(plain_info_median);
    println!("agent bench ({iterations} iterations, loopback, in-process server, recording host)");
    println!("  info over mTLS, keep-alive        median {:>10.1} µs", micros(tls_info));
    println!("  info over plain TCP (baseline)    median {:>10.1} µs", micros(plain_info_median));
    println!("  ratio mTLS / plain                       {ratio:>10.2}");
    println!("  connect + handshake + info        median {:>10.1} µs", micros(median(connect_times)));
    println!("  provision fresh node ({runs} runs, {} MiB kubelet) median {:>8.1} ms", BINARY_BYTES >> 20, micros(median(first)) / 1000.0);
    println!("  provision converged node (no change)  median {:>8.1} ms", micros(median(repeat)) / 1000.0);
    Ok(())
}
