//! The built `minikube-agent` binary as a real child process: trust sources, the console
//! markers, and a kill in the middle of a large upload.

mod common;

use common::{command, spawn};

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use agent::api::FileUpload;
use agent::client::Client;

fn write_trust(dir: &Path, p: &common::Pki, raw_subdir: bool) {
    for (name, pem) in [("ca.crt", p.ca.cert_pem()), ("agent.crt", p.server.cert_pem.as_str()), ("agent.key", p.server.key_pem.as_str())] {
        let path = if raw_subdir { dir.join(name).join("raw") } else { dir.join(name) };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, pem).unwrap();
    }
}

#[test]
fn without_trust_it_refuses_to_serve_and_says_why() {
    let root = common::guest_root();
    let out = command(root.path(), &[]).stderr(Stdio::piped()).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("minikube-agent: not serving: no TLS trust material found"), "{text}");
    assert!(text.contains("--trust-dir: not given") && text.contains("fw_cfg") && text.contains("/var/lib/minikube-agent/trust"), "{text}");
}

#[test]
fn trust_dir_is_persisted_and_reused() {
    let p = common::pki();
    let root = common::guest_root();
    let trust = tempfile::tempdir().unwrap();
    write_trust(trust.path(), &p, false);
    {
        let agent = spawn(root.path(), &["--trust-dir", trust.path().to_str().unwrap()]);
        let mut c = Client::connect(agent.addr, "127.0.0.1", p.ca.cert_pem(), &p.client).unwrap();
        assert_eq!(c.info().unwrap().hostname, "minikube");
    }
    let saved = root.path().join("var/lib/minikube-agent/trust");
    assert_eq!(std::fs::metadata(saved.join("agent.key")).unwrap().permissions().mode() & 0o777, 0o600);
    // Later boot: no trust dir, no fw_cfg; the saved copy serves.
    let agent = spawn(root.path(), &[]);
    let mut c = Client::connect(agent.addr, "127.0.0.1", p.ca.cert_pem(), &p.client).unwrap();
    assert!(c.info().is_ok());
}

#[test]
fn fw_cfg_is_used_when_present() {
    let p = common::pki();
    let root = common::guest_root();
    write_trust(&root.path().join("sys/firmware/qemu_fw_cfg/by_name/opt/io.minikube/agent"), &p, true);
    let agent = spawn(root.path(), &[]);
    let mut c = Client::connect(agent.addr, "127.0.0.1", p.ca.cert_pem(), &p.client).unwrap();
    assert!(c.info().is_ok());
    assert_eq!(std::fs::read_to_string(root.path().join("var/lib/minikube-agent/trust/ca.crt")).unwrap(), p.ca.cert_pem());
}

/// A reader of `len` bytes of `byte` that reports on `tx` once `signal_at` bytes were read.
struct Feed {
    left: u64,
    read: u64,
    byte: u8,
    signal_at: u64,
    tx: Option<mpsc::Sender<()>>,
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        buf[..n].fill(self.byte);
        self.left -= n as u64;
        self.read += n as u64;
        if self.read >= self.signal_at {
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(());
                // Give the kill time to land before more is sent.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(n)
    }
}

#[test]
fn killed_during_a_large_upload_leaves_the_old_file() {
    let p = common::pki();
    let root = common::guest_root();
    let trust = tempfile::tempdir().unwrap();
    write_trust(trust.path(), &p, false);
    let trust_arg = trust.path().to_str().unwrap().to_string();
    let target = root.path().join("var/tmp/minikube/images/big.tar");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let old = vec![b'o'; 1024 * 1024];
    std::fs::write(&target, &old).unwrap();

    let mut agent = spawn(root.path(), &["--trust-dir", &trust_arg]);
    let len: u64 = 512 * 1024 * 1024;
    // The declared SHA-256 does not matter: the agent dies before it could check it.
    let up = FileUpload { path: "/var/tmp/minikube/images/big.tar".into(), sha256: "a".repeat(64), mode: 0o644, owner: None };
    let (tx, rx) = mpsc::channel();
    let addr = agent.addr;
    let (ca, client_id) = (p.ca.cert_pem().to_string(), p.client.clone());
    let uploader = std::thread::spawn(move || {
        let mut c = Client::connect(addr, "127.0.0.1", &ca, &client_id).unwrap();
        let mut feed = Feed { left: len, read: 0, byte: b'n', signal_at: 64 * 1024 * 1024, tx: Some(tx) };
        c.upload_file(&up, &mut feed, len)
    });
    rx.recv_timeout(Duration::from_secs(120)).expect("upload under way");
    // A temporary file is being written beside the target at this point.
    let dir = target.parent().unwrap();
    let temps: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".minikube-tmp.")).collect();
    assert_eq!(temps.len(), 1, "upload goes to a temporary file: {temps:?}");
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    assert!(uploader.join().unwrap().is_err(), "the upload cannot succeed");

    assert_eq!(std::fs::read(&target).unwrap(), old, "target is the old file, never torn");
    assert!(dir.join(&temps[0]).exists(), "the killed agent left its temporary file");
    // A new agent serves the old file, and never the leftover temporary file.
    let agent = spawn(root.path(), &["--trust-dir", &trust_arg]);
    let mut c = Client::connect(agent.addr, "127.0.0.1", p.ca.cert_pem(), &p.client).unwrap();
    let mut got = Vec::new();
    c.download("/var/tmp/minikube/images/big.tar", &mut got).unwrap();
    assert_eq!(got, old);
    for t in &temps {
        let path = format!("/var/tmp/minikube/images/{t}");
        assert_eq!(common::refusal(c.download(&path, &mut Vec::new())), (403, Some("path".into())));
        assert_eq!(common::refusal(c.stat(&path)), (403, Some("path".into())));
    }
    // The next upload into that directory clears what the dead agent left behind.
    assert!(c.upload_bytes("/var/tmp/minikube/images/small.tar", b"new", 0o644, None).unwrap().changed);
    for t in &temps {
        assert!(!dir.join(t).exists(), "{t} was not cleaned up");
    }
}
