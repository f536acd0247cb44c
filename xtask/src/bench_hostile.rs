//! `cargo xtask bench agent --hostile N`: the real agent binary under hostile load.
//!
//! The agent runs as its own process, the production binary (`minikube-agent serve --root DIR`,
//! so its RSS and threads are its own; with its trust in a directory, serving info and exec
//! runs no system tool) with trust in a `--trust-dir`. N hostile sockets, a quarter
//! of each kind, keep reconnecting for the whole run:
//! - idle: connect and send nothing;
//! - slow: a TLS ClientHello sent one byte per second;
//! - garbage: random bytes, 1 KiB every 100 ms;
//! - wrong CA: full TLS handshakes with a client certificate from another CA, in a loop.
//!
//! Meanwhile 20 authenticated clients loop: connect (a new mTLS handshake each time), `info`,
//! `exec true`. Reported: success rate, p50 and p99 latency of one loop, peak RSS and threads of
//! the agent, with N = 0 measured first in the same command as the baseline.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_api::api::ExecRequest;
use agent_api::client::Client;
use pki::{Ca, Identity, Validity};

const CLIENTS: usize = 20;

struct Trust {
    ca: Ca,
    client: Identity,
    /// A client certificate from another CA.
    rogue_client: Identity,
}

struct AgentProcess {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(bin: &Path, t: &Trust) -> Result<AgentProcess> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    for d in ["etc", "var/lib", "run"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::write(root.join("etc/os-release"), "PRETTY_NAME=\"bench\"\n")?;
    let trust = dir.path().join("trust");
    std::fs::create_dir_all(&trust)?;
    let ips: [IpAddr; 1] = ["127.0.0.1".parse()?];
    let server = t.ca.issue_server("minikube-agent", &["localhost"], &ips, Validity::days_from_now(1))?;
    std::fs::write(trust.join(agent_api::trust::CA_FILE), t.ca.cert_pem())?;
    std::fs::write(trust.join(agent_api::trust::CERT_FILE), &server.cert_pem)?;
    std::fs::write(trust.join(agent_api::trust::KEY_FILE), &server.key_pem)?;
    let port = launcher::driver::qemu::machine::free_port(&Default::default())?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let child = std::process::Command::new(bin)
        .arg("serve")
        .arg("--root")
        .arg(&root)
        .arg("--console")
        .arg(dir.path().join("console"))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--trust-dir")
        .arg(&trust)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the agent did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(AgentProcess { child, addr, _dir: dir })
}

/// (RSS in KiB, threads) of a process.
fn rss_threads(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| s.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0);
    (field("VmRSS:"), field("Threads:"))
}

/// A TLS 1.3 ClientHello's bytes, as a real client would send first.
fn client_hello(t: &Trust) -> Vec<u8> {
    let cfg = agent_api::tls::client_config(t.ca.cert_pem(), &t.client).expect("client config");
    let mut c = rustls::ClientConnection::new(cfg, rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    let mut out = Vec::new();
    c.write_tls(&mut out).unwrap();
    out
}

#[derive(Clone, Copy)]
enum Kind {
    Idle,
    Slow,
    Garbage,
    WrongCa,
}

fn hostile(kind: Kind, addr: SocketAddr, stop: Arc<AtomicBool>, t: Arc<Trust>, hello: Arc<Vec<u8>>) {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ (addr.port() as u64);
    while !stop.load(Ordering::Relaxed) {
        match kind {
            Kind::WrongCa => {
                // Fails at the handshake; the agent must drop it, and we go again at once.
                if let Ok(mut c) = Client::connect(addr, "127.0.0.1", t.ca.cert_pem(), &t.rogue_client) {
                    let _ = c.info();
                }
            }
            _ => {
                let Ok(mut s) = TcpStream::connect(addr) else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                let mut sent = 0usize;
                let mut buf = [0u8; 1024];
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let wrote = match kind {
                        Kind::Idle => Ok(()),
                        Kind::Slow => {
                            let r = s.write_all(&hello[sent % hello.len()..sent % hello.len() + 1]);
                            sent += 1;
                            std::thread::sleep(Duration::from_millis(900));
                            r
                        }
                        Kind::Garbage => {
                            for b in buf.iter_mut() {
                                seed ^= seed << 13;
                                seed ^= seed >> 7;
                                seed ^= seed << 17;
                                *b = seed as u8;
                            }
                            s.write_all(&buf)
                        }
                        Kind::WrongCa => unreachable!(),
                    };
                    if wrote.is_err() {
                        break;
                    }
                    // A closed connection reads 0 (or fails): reconnect.
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
            }
        }
    }
}

struct Figures {
    ok: u64,
    failed: u64,
    p50: Duration,
    p99: Duration,
    peak_rss_kib: u64,
    peak_threads: u64,
}

fn run_load(bin: &Path, t: &Arc<Trust>, n: usize, secs: u64) -> Result<Figures> {
    let agent = start_agent(bin, t)?;
    let addr = agent.addr;
    let pid = agent.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let hello = Arc::new(client_hello(t));
    let mut handles = Vec::new();
    for i in 0..n {
        let kind = [Kind::Idle, Kind::Slow, Kind::Garbage, Kind::WrongCa][i % 4];
        let (stop, t, hello) = (stop.clone(), t.clone(), hello.clone());
        handles.push(std::thread::Builder::new().stack_size(256 * 1024).spawn(move || hostile(kind, addr, stop, t, hello))?);
    }
    // Let the attack build up before measuring.
    std::thread::sleep(Duration::from_secs(if n > 0 { 3 } else { 0 }));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (t, lat, ok, failed) = (t.clone(), lat.clone(), ok.clone(), failed.clone());
        clients.push(std::thread::spawn(move || {
            while Instant::now() < end {
                let started = Instant::now();
                let r = (|| -> Result<()> {
                    let mut c = Client::connect(addr, "127.0.0.1", t.ca.cert_pem(), &t.client)?;
                    c.set_timeout(Duration::from_secs(30));
                    c.info()?;
                    let out = c.exec(&ExecRequest { argv: vec!["true".into()], ..Default::default() })?;
                    anyhow::ensure!(out.exit_code == Some(0), "exec: {out:?}");
                    Ok(())
                })();
                match r {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        lat.lock().unwrap().push(started.elapsed());
                    }
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("  authenticated request failed: {e:#}");
                        }
                    }
                }
            }
        }));
    }
    let (mut peak_rss, mut peak_threads) = (0, 0);
    while Instant::now() < end {
        let (r, th) = rss_threads(pid);
        peak_rss = peak_rss.max(r);
        peak_threads = peak_threads.max(th);
        std::thread::sleep(Duration::from_millis(100));
    }
    for c in clients {
        let _ = c.join();
    }
    stop.store(true, Ordering::Relaxed);
    drop(agent);
    for h in handles {
        let _ = h.join();
    }
    let mut v = lat.lock().unwrap().clone();
    v.sort();
    let pct = |p: f64| v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or_default();
    Ok(Figures { ok: ok.load(Ordering::Relaxed), failed: failed.load(Ordering::Relaxed), p50: pct(0.50), p99: pct(0.99), peak_rss_kib: peak_rss, peak_threads })
}

pub fn run(hostile: usize, secs: u64) -> Result<()> {
    let bin = crate::agent_build::build_static()?;
    let ca = Ca::generate("minikubeCA", Validity::days_from_now(1))?;
    let client = ca.issue_client("minikube-user", &["system:masters"], Validity::days_from_now(1))?;
    let rogue_ca = Ca::generate("minikubeCA", Validity::days_from_now(1))?;
    let rogue_client = rogue_ca.issue_client("minikube-user", &["system:masters"], Validity::days_from_now(1))?;
    let t = Arc::new(Trust { ca, client, rogue_client });
    println!("agent under hostile load: {CLIENTS} authenticated clients (connect + info + exec per loop) for {secs} s; agent process {}", bin.display());
    let base = run_load(&bin, &t, 0, secs)?;
    let attacked = run_load(&bin, &t, hostile, secs)?;
    for (label, f) in [("no attack (baseline)", &base), (&*format!("{hostile} hostile sockets"), &attacked)] {
        let total = f.ok + f.failed;
        println!(
            "  {label:<22} {:>6} loops  success {:>6.2}%  p50 {:>8.1} ms  p99 {:>8.1} ms  peak RSS {:>6.1} MB  peak threads {:>4}",
            total,
            100.0 * f.ok as f64 / total.max(1) as f64,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.peak_rss_kib as f64 / 1024.0,
            f.peak_threads
        );
    }
    println!(
        "  p99 attacked / baseline = {:.2} (goal <= 10), success {} (goal 100%)",
        attacked.p99.as_secs_f64() / base.p99.as_secs_f64().max(1e-9),
        if attacked.failed == 0 { "100%" } else { "below 100%" }
    );
    Ok(())
}
