//! The agent killed (SIGKILL) in the middle of each mutating operation, once at each file it
//! puts in place: every file it manages is then its old or its new version, never torn, the
//! node is not yet in its final state (the kill landed mid-operation), and a retry by a new
//! agent converges to exactly what an uninterrupted run writes.
//!
//! The agent stops itself at a known point (the test hook `PAUSE_AT_WRITE`: just before it
//! puts its N-th file in place) and says where; the test kills it only then.

mod common;

use common::AgentProcess;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agent::hooks;

use agent::api::*;
use agent::client::Client;

fn spawn(root: &Path, trust: &Path) -> AgentProcess {
    common::spawn(root, &["--trust-dir", trust.to_str().unwrap()])
}

/// Every file and symlink under `root` (what the agent manages), without its own bookkeeping
/// (audit log, restart marker) and without temporary files.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_path_buf();
            let name = e.file_name().to_string_lossy().to_string();
            if pki::atomic::is_temp_name(&name) || rel.starts_with("run/minikube-agent") || rel == Path::new(agent::AUDIT_LOG.trim_start_matches('/')) {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(base, &p, out);
            } else if ft.is_symlink() {
                out.insert(rel, std::fs::read_link(&p).unwrap().to_string_lossy().as_bytes().to_vec());
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(root, root, &mut m);
    m
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to).status().unwrap();
    assert!(st.success());
}

type Op = Box<dyn Fn(&mut Client) -> Result<(), agent::client::ClientError> + Send + Sync>;

#[test]
fn killed_during_each_operation_leaves_old_or_new_and_a_retry_converges() {
    let p = common::pki();
    let trust = tempfile::tempdir().unwrap();
    for (name, pem) in [("ca.crt", p.ca.cert_pem()), ("agent.crt", p.server.cert_pem.as_str()), ("agent.key", p.server.key_pem.as_str())] {
        std::fs::write(trust.path().join(name), pem).unwrap();
    }
    // The state each operation starts from: the previous operations done.
    let base = common::guest_root();
    std::fs::create_dir_all(base.path().join("run/containerd")).unwrap();
    std::fs::write(base.path().join("run/containerd/containerd.sock"), b"").unwrap();
    let binary: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let binary_sha = common::sha256_hex(&binary);
    let file: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    let (ca, server) = (p.ca.cert_pem().to_string(), p.server.clone());
    let ops: Vec<(&str, Op)> = vec![
        ("hostname", Box::new(|c: &mut Client| c.hostname("killed-node").map(drop))),
        (
            "certs",
            Box::new(move |c: &mut Client| {
                let req = CertsRequest {
                    files: vec![
                        CertFile { path: "/var/lib/minikube/certs/ca.crt".into(), pem: ca.clone(), private: false },
                        CertFile { path: "/var/lib/minikube/certs/apiserver.crt".into(), pem: server.cert_pem.clone(), private: false },
                        CertFile { path: "/var/lib/minikube/certs/apiserver.key".into(), pem: server.key_pem.clone(), private: true },
                    ],
                    trust: vec![TrustedCa { name: "minikubeCA.pem".into(), pem: ca.clone() }],
                };
                c.certs(&req).map(drop)
            }),
        ),
        (
            "runtime",
            Box::new(|c: &mut Client| {
                let req = RuntimeRequest {
                    runtime: Runtime::Containerd,
                    pause_image: "registry.k8s.io/pause:3.10".into(),
                    cgroup_driver: CgroupDriver::Systemd,
                    insecure_registries: vec!["10.0.0.1:5000".into()],
                    docker_tls: None,
                    socket_timeout_secs: Some(5),
                };
                c.runtime(&req).map(drop)
            }),
        ),
        ("kubelet upload", Box::new(move |c: &mut Client| c.upload_binary("v1.35.0", "kubelet", &binary_sha, &mut &binary[..], binary.len() as u64).map(drop))),
        (
            "kubelet",
            Box::new(|c: &mut Client| {
                let req = KubeletRequest {
                    version: "v1.35.0".into(),
                    node_name: "killed-node".into(),
                    node_ip: "10.0.2.15".into(),
                    runtime: Runtime::Containerd,
                    extra_args: vec![],
                    binary_sha256: None,
                };
                c.kubelet(&req).map(drop)
            }),
        ),
        ("file upload", Box::new(move |c: &mut Client| c.upload_bytes("/var/lib/minikube/images/x.tar", &file, 0o644, None).map(drop))),
    ];
    let ops: Vec<(&str, std::sync::Arc<Op>)> = ops.into_iter().map(|(n, o)| (n, std::sync::Arc::new(o))).collect();
    let client = |a: &AgentProcess| Client::connect(a.addr, "127.0.0.1", p.ca.cert_pem(), &p.client).unwrap();

    for (name, op) in &ops {
        let old = snapshot(base.path());
        // The uninterrupted run, on a copy: what "new" means.
        let done = tempfile::tempdir().unwrap();
        copy_tree(base.path(), done.path());
        {
            let a = spawn(done.path(), trust.path());
            op(&mut client(&a)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let new = snapshot(done.path());
        assert_ne!(old, new, "{name} changes something");
        // Stop before the 1st, 2nd... file write until the operation has fewer writes.
        let mut stops = 0;
        for at in 1.. {
            let trial = tempfile::tempdir().unwrap();
            copy_tree(base.path(), trial.path());
            let signals = tempfile::tempdir().unwrap();
            let marker = signals.path().join("paused");
            let mut cmd = common::command(trial.path(), &["--trust-dir", trust.path().to_str().unwrap()]);
            cmd.env(hooks::PAUSE_AT_WRITE, at.to_string()).env(hooks::PAUSED, &marker);
            let mut a = common::spawn_command(cmd);
            let (addr, ca, id, op2) = (a.addr, p.ca.cert_pem().to_string(), p.client.clone(), op.clone());
            let t = std::thread::spawn(move || {
                let mut c = Client::connect(addr, "127.0.0.1", &ca, &id).map_err(|e| e.to_string())?;
                op2(&mut c).map_err(|e| e.to_string())
            });
            let deadline = Instant::now() + Duration::from_secs(120);
            while !marker.exists() && !t.is_finished() {
                assert!(Instant::now() < deadline, "{name}: neither stopped at write {at} nor finished");
                std::thread::sleep(Duration::from_millis(5));
            }
            if !marker.exists() {
                // Fewer than `at` writes: the operation ran to its end.
                t.join().unwrap().unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(snapshot(trial.path()), new, "{name}: the run with {} writes", at - 1);
                break;
            }
            let at_file = PathBuf::from(std::fs::read_to_string(&marker).unwrap());
            a.child.kill().unwrap();
            a.child.wait().unwrap();
            let answered = t.join().unwrap();
            assert!(answered.is_err(), "{name}: the client got an answer from an agent killed mid-operation: {answered:?}");
            let got = snapshot(trial.path());
            for path in old.keys().chain(new.keys()).chain(got.keys()) {
                let g = got.get(path);
                assert!(
                    g == old.get(path) || g == new.get(path),
                    "{name}, killed at write {at}: {} is neither its old nor its new version ({} bytes)",
                    path.display(),
                    g.map_or(0, Vec::len)
                );
            }
            // The kill landed mid-operation: the file the agent stopped at is not new yet.
            let rel = at_file.strip_prefix(trial.path()).unwrap_or_else(|_| panic!("{name}: {} is outside the root", at_file.display())).to_path_buf();
            assert_ne!(got.get(&rel), new.get(&rel), "{name}, killed at write {at}: {} is already new", rel.display());
            assert_ne!(got, new, "{name}, killed at write {at}: the node is already in its final state");
            // A new agent finishes the job: exactly the uninterrupted result.
            let a = spawn(trial.path(), trust.path());
            op(&mut client(&a)).unwrap_or_else(|e| panic!("{name}: retry after a kill at write {at}: {e}"));
            assert_eq!(snapshot(trial.path()), new, "{name}: the retry after a kill at write {at} did not converge");
            stops += 1;
        }
        eprintln!("{name}: killed at each of its {stops} file writes");
        assert!(stops > 0, "{name}: the operation put no file in place");
        // The next operation starts from this one done.
        copy_tree(done.path(), base.path());
    }
}
