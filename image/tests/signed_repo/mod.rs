//! Shared by the tests that build, sign and serve their own apt repositories (extra_repo.rs,
//! lock.rs): throwaway gpg keys, .debs built by dpkg-deb, clearsigned InRelease files and a
//! small HTTP server on 127.0.0.1. Needs gpg, gpgv and dpkg-deb (scripts/setup.sh installs
//! them): a missing tool fails the test, it is never skipped.
#![allow(dead_code)]

use pki::digest::sha256_hex;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const GOOD: &str = "good@repo.test";
pub const EVIL: &str = "evil@repo.test";

/// A GNUPGHOME with two throwaway signing keys (no passphrase); its agent is stopped on drop.
pub struct Gpg {
    pub home: tempfile::TempDir,
}

impl Gpg {
    pub fn new() -> Gpg {
        let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        let g = Gpg { home };
        for uid in [GOOD, EVIL] {
            g.run(&["--passphrase", "", "--quick-gen-key", &format!("Test <{uid}>"), "ed25519", "sign", "never"], None);
        }
        g
    }

    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--quiet", "--yes"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpg runs (scripts/setup.sh installs gnupg)");
        child.stdin.take().unwrap().write_all(stdin.unwrap_or_default()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    pub fn export(&self, uid: &str) -> Vec<u8> {
        self.run(&["--armor", "--export", uid], None)
    }

    pub fn clearsign(&self, uid: &str, text: &str) -> Vec<u8> {
        self.run(&["--local-user", uid, "--clearsign"], Some(text.as_bytes()))
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").env("GNUPGHOME", self.home.path()).args(["--kill", "gpg-agent"]).status();
    }
}

/// A .deb built by dpkg-deb holding `/usr/bin/<name>` that reads "<name> <version>", and its
/// control fields.
pub fn deb(work: &Path, name: &str, version: &str, arch: &str, depends: &str) -> (Vec<u8>, String) {
    let src = work.join(format!("src-{name}-{version}-{arch}"));
    std::fs::create_dir_all(src.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(src.join("usr/bin")).unwrap();
    let deps = if depends.is_empty() { String::new() } else { format!("Depends: {depends}\n") };
    let control = format!("Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Test <t@repo.test>\n{deps}Description: test package\n");
    std::fs::write(src.join("DEBIAN/control"), &control).unwrap();
    std::fs::write(src.join("usr/bin").join(name), format!("{name} {version}\n")).unwrap();
    let out = work.join(format!("{name}_{version}_{arch}.deb"));
    let st = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&src)
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("dpkg-deb runs (scripts/setup.sh installs dpkg)");
    assert!(st.success());
    (std::fs::read(&out).unwrap(), control)
}

/// The Packages stanza of a .deb at `filename` (`sha256` overrides its real hash).
pub fn stanza(bytes: &[u8], control: &str, filename: &str, sha256: Option<&str>) -> String {
    let sha = sha256_hex(bytes);
    format!("{control}Filename: {filename}\nSize: {}\nSHA256: {}\n", bytes.len(), sha256.unwrap_or(&sha))
}

/// A clearsigned InRelease listing `files` (relative path, bytes) by SHA256.
pub fn inrelease(gpg: &Gpg, signer: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut r = String::from("Origin: test\nLabel: test\nDate: Thu, 01 Jan 2026 00:00:00 UTC\nArchitectures: amd64 arm64\nSHA256:\n");
    for (name, data) in files {
        r.push_str(&format!(" {} {} {name}\n", sha256_hex(data), data.len()));
    }
    gpg.clearsign(signer, &r)
}

pub fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Serve files under `root` over HTTP/1.1 GET (one response per connection) until the test ends.
pub fn serve(root: PathBuf) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let root = root.clone();
            std::thread::spawn(move || {
                let mut rd = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                let _ = rd.read_line(&mut line);
                let mut h = String::new();
                while rd.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
                let file = (!path.split('/').any(|c| c == "..")).then(|| std::fs::read(root.join(&path)).ok()).flatten();
                let (status, body) = match file {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", b"not found\n".to_vec()),
                };
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = c.write_all(head.as_bytes()).and_then(|_| c.write_all(&body));
            });
        }
    });
    format!("http://{addr}")
}
