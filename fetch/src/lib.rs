//! Downloads for every crate: one HTTP client with bounded timeouts, a content-addressed cache (files named by
//! their SHA256), and parallel fetching with progress on a terminal.

pub mod parallel;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pki::digest::{sha256_file, sha256_hex};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: expected sha256 {expected} ({size} bytes), got {actual} ({got} bytes)")]
    Checksum { url: String, expected: String, actual: String, size: u64, got: u64 },
    #[error("cache {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// A blocking HTTP client with timeouts, so an unreachable mirror fails instead of hanging.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl Default for Http {
    fn default() -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(30))
    }
}

impl Http {
    /// `connect`: TCP/TLS connect timeout; `read`: longest pause between two reads.
    pub fn new(connect: Duration, read: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(connect))
            .timeout_per_read(Some(read))
            .timeout_recv_response(Some(read))
            .http_status_as_error(false)
            .build()
            .into();
        Http { agent }
    }

    /// A client for one HTTPS server: it trusts only `ca_pem` and presents the client
    /// certificate `cert_pem` with `key_pem` (a Kubernetes API server of ours).
    pub fn with_client_tls(connect: Duration, read: Duration, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Http, FetchError> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let bad = |what: &str, e: ureq::Error| FetchError::Tls(format!("{what}: {e}"));
        let ca = Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| bad("CA certificate", e))?;
        let cert = Certificate::from_pem(cert_pem.as_bytes()).map_err(|e| bad("client certificate", e))?;
        let key = PrivateKey::from_pem(key_pem.as_bytes()).map_err(|e| bad("client key", e))?;
        let tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[ca])).client_cert(Some(ClientCert::new_with_certs(&[cert], key))).build();
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(connect))
            .timeout_per_read(Some(read))
            .timeout_recv_response(Some(read))
            .http_status_as_error(false)
            .tls_config(tls)
            .build()
            .into();
        Ok(Http { agent })
    }

    /// GET a small resource: its status and body, whatever the status.
    pub fn get_any(&self, url: &str) -> Result<(u16, Vec<u8>), FetchError> {
        let mut resp = self.agent.get(url).call().map_err(|e| FetchError::Unreachable { url: url.into(), message: e.to_string() })?;
        let status = resp.status().as_u16();
        let mut buf = Vec::new();
        resp.body_mut().as_reader().take(16 << 20).read_to_end(&mut buf).map_err(|e| FetchError::Unreachable { url: url.into(), message: e.to_string() })?;
        Ok((status, buf))
    }

    /// Download `url` to `target` (permission bits `mode`) if its SHA-256 is `sha256`: written
    /// beside the target and renamed only once checked, so a partial or wrong download never
    /// takes the name. A connection that fails or breaks is tried `attempts` times in all, with
    /// a doubling pause; an HTTP status is final. Progress shows on a terminal.
    pub fn download_verified(&self, url: &str, target: &Path, sha256: &str, mode: u32, attempts: u32) -> Result<u64, FetchError> {
        let dir = target.parent().unwrap_or(Path::new("."));
        let ctx = |source| FetchError::Cache { path: target.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(ctx)?;
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut pause = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            let bar = progress_bar(0, &name);
            let mut tmp = pki::atomic::AtomicFile::create(target, mode).map_err(ctx)?;
            let got = {
                let mut w = std::io::BufWriter::new(&mut tmp);
                let r = self.download(url, &mut w, &|n| bar.inc(n));
                w.flush().map_err(ctx)?;
                r
            };
            bar.finish_and_clear();
            let err = match got {
                Ok((h, n)) if h == sha256 => {
                    tmp.commit().map_err(ctx)?;
                    return Ok(n);
                }
                Ok((h, n)) => FetchError::Checksum { url: url.into(), expected: sha256.into(), actual: h, size: n, got: n },
                Err(e @ FetchError::Status { .. }) => return Err(e),
                Err(e) => e,
            };
            if attempt >= attempts {
                return Err(err);
            }
            tracing::warn!("{err}; retrying in {pause:?} (attempt {attempt} of {attempts})");
            std::thread::sleep(pause);
            pause *= 2;
            attempt += 1;
        }
    }

    fn open(&self, url: &str) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let resp = self.agent.get(url).call().map_err(|e| FetchError::Unreachable { url: url.into(), message: e.to_string() })?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status { url: url.into(), status });
        }
        Ok(resp)
    }

    /// Fetch a whole (small) resource into memory.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let mut resp = self.open(url)?;
        let mut buf = Vec::new();
        resp.body_mut().as_reader().read_to_end(&mut buf).map_err(|e| FetchError::Unreachable { url: url.into(), message: e.to_string() })?;
        Ok(buf)
    }

    /// Stream a resource into `out`, returning (sha256 hex, bytes). `tick` gets byte counts.
    pub fn download(&self, url: &str, out: &mut impl Write, tick: &dyn Fn(u64)) -> Result<(String, u64), FetchError> {
        let mut resp = self.open(url)?;
        let mut reader = resp.body_mut().as_reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| FetchError::Unreachable { url: url.into(), message: e.to_string() })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| FetchError::Unreachable { url: url.into(), message: e.to_string() })?;
            total += n as u64;
            tick(n as u64);
        }
        Ok((hex::encode(hasher.finalize()), total))
    }
}

/// A content-addressed store: `<root>/sha256/<hex>`. Entries are written beside their final
/// name and renamed after their hash was checked, so a partial download never has a valid name.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

/// One thing to download and check.
#[derive(Clone, Debug)]
pub struct Item {
    pub name: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    /// `$MINIKUBE_IMAGE_CACHE`, else the XDG cache dir (`~/.cache/minikube-image`).
    pub fn default_location() -> Self {
        if let Some(p) = std::env::var_os("MINIKUBE_IMAGE_CACHE") {
            return Cache::new(PathBuf::from(p));
        }
        let base = dirs::cache_dir().unwrap_or_else(std::env::temp_dir);
        Cache::new(base.join("minikube-image"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// The cached file for `item` if present and intact. A corrupt or partial file is removed
    /// (with a warning) so that it is fetched again.
    pub fn lookup(&self, item: &Item) -> Option<PathBuf> {
        let p = self.path_of(&item.sha256);
        let meta = std::fs::metadata(&p).ok()?;
        if meta.len() == item.size {
            if let Ok((h, _)) = sha256_file(&p) {
                if h == item.sha256 {
                    return Some(p);
                }
            }
        }
        tracing::warn!(package = %item.name, path = %p.display(), "cached file is corrupt or partial; fetching it again");
        let _ = std::fs::remove_file(&p);
        None
    }

    /// Store bytes under their hash (used for indexes).
    pub fn put(&self, data: &[u8]) -> Result<PathBuf, FetchError> {
        let h = sha256_hex(data);
        let p = self.path_of(&h);
        if p.exists() {
            return Ok(p);
        }
        let dir = p.parent().unwrap();
        let ctx = |source| FetchError::Cache { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(ctx)?;
        pki::atomic::write_atomic(&p, data, 0o644).map_err(ctx)?;
        Ok(p)
    }

    /// Download one item into the cache (or find it there), checking size and SHA256.
    pub fn fetch(&self, http: &Http, item: &Item, tick: &dyn Fn(u64)) -> Result<PathBuf, FetchError> {
        if let Some(p) = self.lookup(item) {
            tick(item.size);
            return Ok(p);
        }
        let p = self.path_of(&item.sha256);
        let dir = p.parent().unwrap();
        let ctx = |source| FetchError::Cache { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(ctx)?;
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(500 << attempt));
            }
            let mut tmp = pki::atomic::AtomicFile::create(&p, 0o644).map_err(ctx)?;
            let got = {
                let mut w = std::io::BufWriter::new(&mut tmp);
                let r = http.download(&item.url, &mut w, tick);
                w.flush().map_err(ctx)?;
                r
            };
            match got {
                Ok((h, n)) if h == item.sha256 && n == item.size => {
                    tmp.commit().map_err(ctx)?;
                    return Ok(p);
                }
                Ok((h, n)) => last = Some(FetchError::Checksum { url: item.url.clone(), expected: item.sha256.clone(), actual: h, size: item.size, got: n }),
                // A definite answer from the server is not retried.
                Err(e @ FetchError::Status { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
            tracing::warn!(package = %item.name, attempt, "download failed; retrying");
        }
        Err(last.unwrap())
    }

    /// Fetch many items with `jobs` parallel workers. Results keep the input order.
    pub fn fetch_all(&self, http: &Http, items: &[Item], jobs: usize) -> Result<Vec<PathBuf>, FetchError> {
        let total: u64 = items.iter().map(|i| i.size).sum();
        let bar = progress_bar(total, "download");
        let out = crate::parallel::try_map(items, jobs, |_, item| self.fetch(http, item, &|n| bar.inc(n)));
        bar.finish_and_clear();
        out
    }
}

/// A byte progress bar drawn only on an interactive terminal (quiet in CI logs).
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("CI").is_none();
    if !interactive {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}").unwrap().progress_chars("=> "));
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_host_fails_with_clear_error() {
        // Port 9 on loopback: nothing listens, the connect is refused at once.
        let http = Http::new(Duration::from_secs(2), Duration::from_secs(2));
        let e = http.get("http://127.0.0.1:9/debian/dists/bookworm/InRelease").unwrap_err();
        assert!(matches!(&e, FetchError::Unreachable { url, .. } if url == "http://127.0.0.1:9/debian/dists/bookworm/InRelease"), "{e}");
        let s = e.to_string();
        assert!(s.contains("cannot reach http://127.0.0.1:9/debian"), "{s}");
    }

    #[test]
    fn silent_server_times_out() {
        // A listener that accepts but never answers, and keeps the connection open until the
        // request has ended: only the read timeout can end it, and the error must say so.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            let _c = l.accept();
            let _ = wait.recv_timeout(Duration::from_secs(300));
        });
        let http = Http::new(Duration::from_secs(1), Duration::from_secs(1));
        let e = http.get(&format!("http://{addr}/x")).unwrap_err();
        done.send(()).unwrap();
        h.join().unwrap();
        assert!(matches!(e, FetchError::Unreachable { .. }), "{e}");
        assert!(e.to_string().to_lowercase().contains("timeout") || e.to_string().to_lowercase().contains("timed out"), "{e}");
    }

    #[test]
    fn corrupt_cache_entry_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let data = b"package bytes";
        let item = Item { name: "p".into(), url: "http://127.0.0.1:9/p.deb".into(), sha256: sha256_hex(data), size: data.len() as u64 };
        let p = cache.put(data).unwrap();
        assert_eq!(cache.lookup(&item), Some(p.clone()));
        std::fs::write(&p, b"package bytez").unwrap();
        assert_eq!(cache.lookup(&item), None);
        assert!(!p.exists(), "corrupt entry must be removed");
    }
}
