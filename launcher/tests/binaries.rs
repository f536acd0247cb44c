//! The Kubernetes binary downloader against a local HTTP server in the upstream layout: good
//! files, a wrong checksum, a truncated body, 404, a server too slow, the cache (no request the
//! second time), and crictl from its release tarball.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fetch::Http;
use launcher::resources::binaries::{BinaryError, Downloader};

#[derive(Clone)]
enum Reply {
    Ok(Vec<u8>),
    /// Announce this many bytes, send the body, close early.
    Truncated(Vec<u8>, usize),
    /// Wait this long before answering.
    Slow(Duration, Vec<u8>),
}

/// A release host on 127.0.0.1 serving `routes`; counts requests.
struct Server {
    base: String,
    requests: Arc<AtomicUsize>,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
}

impl Server {
    fn start() -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let (n, r) = (requests.clone(), routes.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (n, r) = (n.clone(), r.clone());
                std::thread::spawn(move || {
                    let mut line = String::new();
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                            break;
                        }
                    }
                    n.fetch_add(1, Ordering::SeqCst);
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let reply = r.lock().unwrap().get(&path).cloned();
                    let _ = match reply {
                        None => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"),
                        Some(Reply::Ok(b)) => {
                            conn.write_all(&[format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()).into_bytes(), b].concat())
                        }
                        Some(Reply::Truncated(b, announced)) => {
                            conn.write_all(&[format!("HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n").into_bytes(), b].concat())
                        }
                        Some(Reply::Slow(d, b)) => {
                            std::thread::sleep(d);
                            conn.write_all(&[format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()).into_bytes(), b].concat())
                        }
                    };
                });
            }
        });
        Server { base, requests, routes }
    }

    fn serve(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    /// A binary and its `.sha256` (`sha` overrides the right checksum).
    fn binary(&self, version: &str, name: &str, body: &[u8], sha: Option<&str>) {
        let path = format!("/{version}/bin/linux/amd64/{name}");
        let sum = sha.map(str::to_string).unwrap_or_else(|| pki::digest::sha256_hex(body));
        self.serve(&format!("{path}.sha256"), Reply::Ok(sum.into_bytes()));
        self.serve(&path, Reply::Ok(body.to_vec()));
    }
}

fn downloader(s: &Server, cache: &Path) -> Downloader {
    Downloader::with_http(Http::new(Duration::from_secs(2), Duration::from_secs(1)), Some(&s.base), cache, "amd64")
}

/// Files under `dir` (temporaries included).
fn files(dir: &Path) -> Vec<String> {
    let out = std::process::Command::new("find").arg(dir).args(["-type", "f"]).output().unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_start_matches(&dir.display().to_string()).to_string()).collect();
    v.sort();
    v
}

#[test]
fn good_files_are_cached_and_served_from_the_cache_with_no_request() {
    let s = Server::start();
    let cache = tempfile::tempdir().unwrap();
    s.binary("v1.34.1", "kubelet", b"kubelet bytes", None);
    s.binary("v1.34.1", "kubeadm", b"kubeadm bytes", None);
    let d = downloader(&s, cache.path());
    let k = d.ensure("v1.34.1", "kubelet").unwrap();
    assert_eq!(k, cache.path().join("linux/amd64/v1.34.1/kubelet"), "minikube's cache layout");
    assert_eq!(std::fs::read(&k).unwrap(), b"kubelet bytes");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&k).unwrap().permissions().mode() & 0o777, 0o755);
    d.ensure("v1.34.1", "kubeadm").unwrap();
    let before = s.requests.load(Ordering::SeqCst);
    assert_eq!(before, 4, "a checksum and a body each");
    d.ensure("v1.34.1", "kubelet").unwrap();
    d.ensure("v1.34.1", "kubeadm").unwrap();
    assert_eq!(s.requests.load(Ordering::SeqCst), before, "the second run made no request");
}

#[test]
fn a_wrong_checksum_a_truncated_body_and_404_leave_nothing_in_the_cache() {
    let s = Server::start();
    let cache = tempfile::tempdir().unwrap();
    let d = downloader(&s, cache.path());

    s.binary("v1.34.1", "kubelet", b"kubelet bytes", Some(&pki::digest::sha256_hex(b"other bytes")));
    let e = d.ensure("v1.34.1", "kubelet").unwrap_err();
    let t = e.to_string();
    assert!(matches!(&e, BinaryError::Download { source, .. } if matches!(**source, fetch::FetchError::Checksum { .. })), "{t}");
    assert!(t.contains(&format!("{}/v1.34.1/bin/linux/amd64/kubelet", s.base)), "{t}");
    assert_eq!(files(cache.path()), Vec::<String>::new(), "nothing kept under the name, no temporary left");

    let body = vec![7u8; 4096];
    s.serve("/v1.34.1/bin/linux/amd64/kubeadm.sha256", Reply::Ok(pki::digest::sha256_hex(&body).into_bytes()));
    s.serve("/v1.34.1/bin/linux/amd64/kubeadm", Reply::Truncated(body[..1000].to_vec(), body.len()));
    let e = d.ensure("v1.34.1", "kubeadm").unwrap_err();
    assert!(e.to_string().contains("kubeadm"), "{e}");
    assert_eq!(files(cache.path()), Vec::<String>::new(), "a partial download never takes the name");

    let e = d.ensure("v1.99.0", "kubectl").unwrap_err().to_string();
    assert!(e.contains("404") && e.contains("/v1.99.0/bin/linux/amd64/kubectl.sha256"), "{e}");
    assert!(e.contains("--kubelet PATH") && e.contains("--binary-mirror URL") && e.contains("--cache-dir"), "{e}");

    s.serve("/v1.34.1/bin/linux/amd64/kubectl.sha256", Reply::Ok(b"<html>not a checksum</html>".to_vec()));
    assert!(matches!(d.ensure("v1.34.1", "kubectl"), Err(BinaryError::BadChecksumFile { .. })));
}

#[test]
fn a_server_too_slow_hits_the_timeout() {
    let s = Server::start();
    let cache = tempfile::tempdir().unwrap();
    s.serve("/v1.34.1/bin/linux/amd64/kubelet.sha256", Reply::Slow(Duration::from_secs(5), b"x".to_vec()));
    let t = std::time::Instant::now();
    let e = downloader(&s, cache.path()).ensure("v1.34.1", "kubelet").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(4), "the 1 s read timeout ended it ({:?})", t.elapsed());
    assert!(e.to_string().contains("kubelet.sha256"), "{e}");
}

#[test]
fn crictl_comes_from_its_release_tarball() {
    let s = Server::start();
    let cache = tempfile::tempdir().unwrap();
    let mut tgz = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut tgz, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let body = b"#!/bin/sh\necho crictl\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, "crictl", &body[..]).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let file = "/cri-tools/v1.34.0/crictl-v1.34.0-linux-amd64.tar.gz";
    s.serve(&format!("{file}.sha256"), Reply::Ok(format!("{}  crictl-v1.34.0-linux-amd64.tar.gz\n", pki::digest::sha256_hex(&tgz)).into_bytes()));
    s.serve(file, Reply::Ok(tgz));
    let p = downloader(&s, cache.path()).ensure_crictl("v1.34.0").unwrap();
    let mut text = String::new();
    std::fs::File::open(&p).unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "#!/bin/sh\necho crictl\n");
    assert_eq!(files(cache.path()), vec!["/linux/amd64/cri-tools/v1.34.0/crictl".to_string()], "the tarball is not kept");
}
