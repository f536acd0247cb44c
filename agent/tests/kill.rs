//! The agent killed (SIGKILL) at many points during each mutating operation: every file it
//! manages is then its old or its new version, never torn, and a retry by a new agent converges
//! to exactly what an uninterrupted run writes.

mod common;

use common::AgentProcess;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
                let req = KubeletRequest { version: "v1.35.0".into(), node_name: "killed-node".into(), node_ip: "10.0.2.15".into(), runtime: Runtime::Containerd, extra_args: vec![], binary_sha256: None };
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
        let mut torn_checks = 0;
        for delay_us in [0u64, 300, 1000, 2000, 5000, 10_000, 20_000] {
            let trial = tempfile::tempdir().unwrap();
            copy_tree(base.path(), trial.path());
            let mut a = spawn(trial.path(), trust.path());
            let (addr, ca, id, op2) = (a.addr, p.ca.cert_pem().to_string(), p.client.clone(), op.clone());
            let t = std::thread::spawn(move || {
                if let Ok(mut c) = Client::connect(addr, "127.0.0.1", &ca, &id) {
                    let _ = op2(&mut c);
                }
            });
            std::thread::sleep(Duration::from_micros(delay_us));
            a.child.kill().unwrap();
            a.child.wait().unwrap();
            t.join().unwrap();
            let got = snapshot(trial.path());
            for path in old.keys().chain(new.keys()).chain(got.keys()) {
                let g = got.get(path);
                assert!(
                    g == old.get(path) || g == new.get(path),
                    "{name}, killed after {delay_us} µs: {} is neither its old nor its new version ({} bytes)",
                    path.display(),
                    g.map_or(0, Vec::len)
                );
                torn_checks += 1;
            }
            // A new agent finishes the job: exactly the uninterrupted result.
            let a = spawn(trial.path(), trust.path());
            op(&mut client(&a)).unwrap_or_else(|e| panic!("{name}: retry after a kill at {delay_us} µs: {e}"));
            assert_eq!(snapshot(trial.path()), new, "{name}: the retry after a kill at {delay_us} µs did not converge");
        }
        assert!(torn_checks > 0);
        // The next operation starts from this one done.
        copy_tree(done.path(), base.path());
    }
}
