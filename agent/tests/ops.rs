//! Every operation over real mTLS against a temporary --root: the first call changes the node,
//! the second changes nothing; bad input is refused with a 4xx naming the field.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use agent::api::*;
use common::{refusal, sha256_hex, start};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn info_reports_the_node() {
    let a = start();
    let info = a.client().info().unwrap();
    assert_eq!(info.hostname, "localhost");
    assert_eq!(info.os.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
    assert_eq!(info.arch, std::env::consts::ARCH);
    assert!(!info.kernel.is_empty());
}

#[test]
fn hostname_converges() {
    let a = start();
    let mut c = a.client();
    assert!(c.hostname("minikube").unwrap().changed);
    assert!(!c.hostname("minikube").unwrap().changed);
    assert_eq!(std::fs::read_to_string(a.path("/etc/hostname")).unwrap(), "minikube\n");
    assert_eq!(std::fs::read_to_string(a.path("/etc/hosts")).unwrap(), "127.0.0.1\tlocalhost\n127.0.1.1\tminikube\n");
    assert!(a.host.commands().contains(&"sethostname minikube".to_string()));
    assert_eq!(c.info().unwrap().hostname, "minikube");
    assert_eq!(refusal(c.hostname("bad name")), (400, Some("name".into())));
    // The audit log names the caller's certificate subject.
    let log = a.audit_log();
    assert!(log.contains("\"caller\":\"O=system:masters, CN=minikube-user\""), "{log}");
    assert!(log.contains("\"operation\":\"hostname\""), "{log}");
}

#[test]
fn certs_converge_with_trust_links() {
    let a = start();
    let mut c = a.client();
    let ca = &a.pki.ca;
    let apiserver = ca.issue_server("minikube", &["control-plane.minikube.internal"], &[], pki::Validity::days_from_now(1)).unwrap();
    let req = CertsRequest {
        files: vec![
            CertFile { path: "/var/lib/minikube/certs/ca.crt".into(), pem: ca.cert_pem().into(), private: false },
            CertFile { path: "/var/lib/minikube/certs/apiserver.crt".into(), pem: apiserver.cert_pem.clone(), private: false },
            CertFile { path: "/var/lib/minikube/certs/apiserver.key".into(), pem: apiserver.key_pem.clone(), private: true },
        ],
        trust: vec![TrustedCa { name: "minikubeCA.pem".into(), pem: ca.cert_pem().into() }],
    };
    assert!(c.certs(&req).unwrap().changed);
    assert!(!c.certs(&req).unwrap().changed);
    assert_eq!(mode(&a.path("/var/lib/minikube/certs/apiserver.key")), 0o600);
    assert_eq!(mode(&a.path("/var/lib/minikube/certs/apiserver.crt")), 0o644);
    let hash = pki::subject_hash_hex(&ca.identity().cert_der().unwrap()).unwrap();
    let link = a.path(&format!("/etc/ssl/certs/{hash}.0"));
    assert_eq!(std::fs::read_link(&link).unwrap(), std::path::Path::new("/etc/ssl/certs/minikubeCA.pem"));
    assert_eq!(std::fs::read_link(a.path("/etc/ssl/certs/minikubeCA.pem")).unwrap(), std::path::Path::new("/usr/share/ca-certificates/minikubeCA.pem"));
    assert_eq!(std::fs::read_to_string(a.path("/usr/share/ca-certificates/minikubeCA.pem")).unwrap(), ca.cert_pem());
    // The hash agrees with openssl's, so `openssl verify -CApath` finds the CA through the link.
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject_hash", "-in"])
        .arg(a.path("/usr/share/ca-certificates/minikubeCA.pem"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), hash);

    // Bad input names the field; nothing is written.
    let mut bad = req.clone();
    bad.files[2].pem = "not a key".into();
    assert_eq!(refusal(c.certs(&bad)), (400, Some("files[2].pem".into())));
    let mut bad = req.clone();
    bad.files[0].path = "/usr/bin/evil".into();
    assert_eq!(refusal(c.certs(&bad)), (403, Some("files[0].path".into())));
    let mut bad = req.clone();
    bad.files[0].path = "/var/lib/minikube/../../usr/bin/x".into();
    assert_eq!(refusal(c.certs(&bad)), (400, Some("files[0].path".into())));
    let mut bad = req;
    bad.trust[0].name = "../x.pem".into();
    assert_eq!(refusal(c.certs(&bad)), (400, Some("trust[0].name".into())));
}

fn runtime_request(runtime: Runtime) -> RuntimeRequest {
    RuntimeRequest {
        runtime,
        pause_image: "registry.k8s.io/pause:3.10".into(),
        cgroup_driver: CgroupDriver::Systemd,
        insecure_registries: vec!["10.0.0.0:5000".into()],
        docker_tls: None,
        socket_timeout_secs: Some(5),
    }
}

#[test]
fn docker_without_cri_dockerd_uses_dockers_own_units_and_socket() {
    let a = start();
    let mut c = a.client();
    a.host.creates("systemctl restart", &a.path("/run/docker.sock"));
    a.host.answer("docker version", "20.10.24\n", 0);
    let first = c.runtime(&runtime_request(Runtime::Docker)).unwrap();
    assert!(first.changed);
    assert_eq!(first.socket, "/run/docker.sock");
    let cmds = a.host.commands();
    assert!(cmds.contains(&"systemctl restart docker.service".to_string()), "{cmds:?}");
    assert!(!cmds.iter().any(|c| c.contains("cri-docker")), "no cri-dockerd units when it is not installed: {cmds:?}");
    a.host.clear();
    assert!(!c.runtime(&runtime_request(Runtime::Docker)).unwrap().changed);
}

#[test]
fn a_socket_whose_daemon_is_not_up_yet_is_waited_for() {
    // docker.socket listens before dockerd answers: `docker version` fails (or times out) until
    // it is up, and the step keeps asking within its socket timeout instead of failing.
    let a = start();
    let mut c = a.client();
    a.host.creates("systemctl restart", &a.path("/run/docker.sock"));
    a.host.answer("docker version", "20.10.24\n", 0);
    a.host.answer_first(2, "docker version", "", 1);
    let r = c.runtime(&runtime_request(Runtime::Docker)).unwrap();
    assert_eq!(r.version, "20.10.24");
    assert_eq!(a.host.commands().iter().filter(|c| c.starts_with("docker version")).count(), 3);
}

#[test]
fn modprobe_failure_is_fatal_only_when_the_kernel_lacks_the_module() {
    let a = start();
    let mut c = a.client();
    a.host.creates("systemctl restart", &a.path(Runtime::Containerd.cri_socket()));
    a.host.answer("containerd --version", "containerd 1.6.20\n", 0);
    a.host.answer("modprobe", "", 1);
    let err = c.runtime(&runtime_request(Runtime::Containerd)).unwrap_err().to_string();
    assert!(err.contains("modprobe overlay"), "{err}");
    // As in a container whose host kernel has both modules loaded.
    for m in agent::ops::runtime::NETWORK_MODULES {
        std::fs::create_dir_all(a.path(&format!("/sys/module/{m}"))).unwrap();
    }
    // The files were written by the failed call: the restart it owes is still done.
    assert!(a.path(agent::ops::runtime::RESTART_PENDING).exists());
    let ok = c.runtime(&runtime_request(Runtime::Containerd)).unwrap();
    assert!(ok.changed);
    assert!(a.host.commands().contains(&"systemctl restart containerd.service".to_string()));
    assert!(!a.path(agent::ops::runtime::RESTART_PENDING).exists());
    assert!(!c.runtime(&runtime_request(Runtime::Containerd)).unwrap().changed);
}

#[test]
fn runtimes_converge_and_restart_only_on_change() {
    for runtime in Runtime::ALL {
        let a = start();
        let mut c = a.client();
        a.host.creates("systemctl restart", &a.path(runtime.cri_socket()));
        a.host.creates("systemctl start", &a.path(runtime.cri_socket()));
        a.host.answer("docker version", "28.1.1\n", 0);
        a.host.answer("containerd --version", "containerd 2.1.4\n", 0);
        a.host.answer("crio --version", "crio version 1.35.0\n", 0);
        let mut req = runtime_request(runtime);
        if runtime == Runtime::Docker {
            // With Docker's CRI shim installed (the path without it has its own test).
            std::fs::create_dir_all(a.path("/usr/bin")).unwrap();
            std::fs::write(a.path("/usr/bin/cri-dockerd"), b"").unwrap();
            let id = a.pki.ca.issue_server("minikube", &["localhost"], &["127.0.0.1".parse().unwrap()], pki::Validity::days_from_now(1)).unwrap();
            req.docker_tls = Some(DockerTls { ca_pem: a.pki.ca.cert_pem().into(), cert_pem: id.cert_pem, key_pem: id.key_pem });
        }
        let first = c.runtime(&req).unwrap();
        assert!(first.changed, "{runtime:?}");
        assert_eq!(first.socket, runtime.cri_socket());
        assert!(!first.version.is_empty());
        let cmds = a.host.commands();
        for unit in runtime.units() {
            assert!(cmds.contains(&format!("systemctl restart {unit}")), "{runtime:?}: {cmds:?}");
        }
        assert!(cmds.contains(&"modprobe br_netfilter".to_string()));
        a.host.clear();
        let second = c.runtime(&req).unwrap();
        assert!(!second.changed, "{runtime:?}");
        assert!(!a.host.commands().iter().any(|c| c.starts_with("systemctl")), "no systemd calls on a repeat: {:?}", a.host.commands());
        let crictl = std::fs::read_to_string(a.path("/etc/crictl.yaml")).unwrap();
        assert_eq!(crictl, format!("runtime-endpoint: unix://{}\n", runtime.cri_socket()));
        match runtime {
            Runtime::Docker => {
                let daemon: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(a.path("/etc/docker/daemon.json")).unwrap()).unwrap();
                assert_eq!(daemon["exec-opts"][0], "native.cgroupdriver=systemd");
                assert_eq!(daemon["insecure-registries"][0], "10.0.0.0:5000");
                assert_eq!(mode(&a.path("/etc/docker/server-key.pem")), 0o600);
                let dropin = std::fs::read_to_string(a.path("/etc/systemd/system/docker.service.d/10-tls.conf")).unwrap();
                assert!(dropin.contains("-H tcp://0.0.0.0:2376") && dropin.contains("--tlsverify"), "{dropin}");
                assert!(std::fs::read_to_string(a.path("/etc/systemd/system/cri-docker.service.d/10-cni.conf"))
                    .unwrap()
                    .contains("--pod-infra-container-image=registry.k8s.io/pause:3.10"));
                assert!(cmds.contains(&"systemctl mask crio.service".to_string()));
            }
            Runtime::Containerd => {
                let toml = std::fs::read_to_string(a.path("/etc/containerd/config.toml")).unwrap();
                assert!(toml.contains("SystemdCgroup = true") && toml.contains("sandbox_image = \"registry.k8s.io/pause:3.10\""), "{toml}");
                assert!(std::fs::read_to_string(a.path("/etc/containerd/certs.d/10.0.0.0:5000/hosts.toml")).unwrap().contains("skip_verify = true"));
                assert!(cmds.contains(&"systemctl mask docker.service".to_string()));
            }
            Runtime::CriO => {
                let conf = std::fs::read_to_string(a.path("/etc/crio/crio.conf.d/02-crio.conf")).unwrap();
                assert!(conf.contains("cgroup_manager = \"systemd\"") && conf.contains("pause_image = \"registry.k8s.io/pause:3.10\""), "{conf}");
            }
        }
        // A runtime that stopped is started again, without rewriting anything.
        std::fs::remove_file(a.path(runtime.cri_socket())).unwrap();
        a.host.clear();
        assert!(c.runtime(&req).unwrap().changed);
        let cmds = a.host.commands();
        assert!(cmds.contains(&format!("systemctl start {}", runtime.units()[0])), "{cmds:?}");
        assert!(!cmds.iter().any(|c| c.contains("daemon-reload")), "{cmds:?}");
        // One that systemd is bringing up (no job queued: between two attempts) is waited for,
        // not started: nothing changed.
        std::fs::remove_file(a.path(runtime.cri_socket())).unwrap();
        a.host.clear();
        a.host.answer("systemctl is-active", "activating\n", 3);
        let socket = a.path(runtime.cri_socket());
        let appears = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            std::fs::write(socket, b"").unwrap();
        });
        assert!(!c.runtime(&req).unwrap().changed, "{runtime:?}");
        appears.join().unwrap();
        let cmds = a.host.commands();
        assert!(!cmds.iter().any(|c| c.starts_with("systemctl start")), "{cmds:?}");
        a.host.answer("systemctl is-active", "inactive\n", 3);
        // A changed setting restarts again.
        let mut other = req.clone();
        other.pause_image = "registry.k8s.io/pause:3.9".into();
        assert!(c.runtime(&other).unwrap().changed);
    }
}

#[test]
fn runtime_refuses_bad_input_by_field() {
    let a = start();
    let mut c = a.client();
    let mut r = runtime_request(Runtime::Containerd);
    r.pause_image = "bad image\"".into();
    assert_eq!(refusal(c.runtime(&r)), (400, Some("pause_image".into())));
    let mut r = runtime_request(Runtime::Containerd);
    r.insecure_registries = vec!["ok:5000".into(), "bad/registry".into()];
    assert_eq!(refusal(c.runtime(&r)), (400, Some("insecure_registries[1]".into())));
    let mut r = runtime_request(Runtime::Containerd);
    r.docker_tls = Some(DockerTls { ca_pem: String::new(), cert_pem: String::new(), key_pem: String::new() });
    assert_eq!(refusal(c.runtime(&r)), (400, Some("docker_tls".into())));
    let mut r = runtime_request(Runtime::Docker);
    r.docker_tls = Some(DockerTls { ca_pem: a.pki.ca.cert_pem().into(), cert_pem: a.pki.ca.cert_pem().into(), key_pem: "nope".into() });
    assert_eq!(refusal(c.runtime(&r)), (400, Some("docker_tls.key_pem".into())));
    assert!(a.host.commands().is_empty(), "nothing ran for refused requests");
}

#[test]
fn socket_that_never_appears_is_an_error() {
    let a = start();
    let mut c = a.client();
    let mut r = runtime_request(Runtime::CriO);
    r.socket_timeout_secs = Some(1);
    let (status, _) = refusal(c.runtime(&r));
    assert_eq!(status, 500);
}

#[test]
fn kubelet_binary_and_unit_converge() {
    let a = start();
    let mut c = a.client();
    let binary = vec![0x7fu8; 3 * 1024 * 1024 + 17];
    let sha = sha256_hex(&binary);
    // The unit needs the binary.
    let req = KubeletRequest {
        version: "v1.35.0".into(),
        node_name: "minikube".into(),
        node_ip: "192.168.49.2".into(),
        runtime: Runtime::Containerd,
        extra_args: vec!["--cgroup-driver=systemd".into()],
        binary_sha256: None,
    };
    assert_eq!(refusal(c.kubelet(&req)), (422, Some("version".into())));
    assert!(c.upload_binary("v1.35.0", "kubelet", &sha, &mut &binary[..], binary.len() as u64).unwrap().changed);
    assert!(!c.upload_binary("v1.35.0", "kubelet", &sha, &mut &binary[..], binary.len() as u64).unwrap().changed);
    let path = a.path("/var/lib/minikube/binaries/v1.35.0/kubelet");
    assert_eq!(std::fs::read(&path).unwrap(), binary);
    assert_eq!(mode(&path), 0o755);
    let wrong = "0".repeat(64);
    assert_eq!(refusal(c.upload_binary("v1.35.0", "kubeadm", &wrong, &mut &binary[..], binary.len() as u64)), (422, Some("sha256".into())));
    assert!(!a.path("/var/lib/minikube/binaries/v1.35.0/kubeadm").exists(), "a bad upload leaves nothing");
    assert_eq!(refusal(c.upload_binary("1.35", "kubelet", &sha, &mut &binary[..], binary.len() as u64)), (400, Some("version".into())));
    assert_eq!(refusal(c.upload_binary("v1.35.0", "bash", &sha, &mut &binary[..], binary.len() as u64)), (400, Some("name".into())));
    // The connection stays usable after refusals that skipped the body.
    assert!(c.info().is_ok());

    a.host.answer("systemctl is-active kubelet", "active\n", 0);
    let first = c.kubelet(&req).unwrap();
    assert!(first.changed);
    assert_eq!(first.state, "active");
    let cmds = a.host.commands();
    assert!(cmds.contains(&"systemctl enable kubelet.service".to_string()) && cmds.contains(&"systemctl restart kubelet.service".to_string()), "{cmds:?}");
    a.host.clear();
    assert!(!c.kubelet(&req).unwrap().changed);
    assert_eq!(a.host.commands(), vec!["systemctl is-active kubelet", "systemctl is-active kubelet"]);
    let dropin = std::fs::read_to_string(a.path("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf")).unwrap();
    assert!(dropin.contains("ExecStart=/var/lib/minikube/binaries/v1.35.0/kubelet --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf"), "{dropin}");
    assert!(dropin.contains("--node-ip=192.168.49.2") && dropin.contains("Wants=containerd.service"), "{dropin}");
    assert!(a.path("/etc/kubernetes/manifests").is_dir());
    // A stopped kubelet is started (and that is a change).
    a.host.answer("systemctl is-active kubelet", "inactive\n", 3);
    assert!(c.kubelet(&req).unwrap().changed);
    // A start already queued (the boot step's, waiting for network-online.target) is left to
    // systemd: not started again here, not a change.
    a.host.clear();
    a.host.answer("systemctl list-jobs --no-legend --plain", "41 kubelet.service start waiting\n", 0);
    assert!(!c.kubelet(&req).unwrap().changed);
    assert!(!a.host.commands().iter().any(|c| c.starts_with("systemctl start")), "{:?}", a.host.commands());
    let mut bad = req.clone();
    bad.node_ip = "not-an-ip".into();
    assert_eq!(refusal(c.kubelet(&bad)), (400, Some("node_ip".into())));
    let mut bad = req;
    bad.extra_args = vec!["--ok=1".into(), "--two words".into()];
    assert_eq!(refusal(c.kubelet(&bad)), (400, Some("extra_args[1]".into())));
}

#[test]
fn files_upload_stat_download() {
    let a = start();
    let mut c = a.client();
    let data = b"apiVersion: kubeadm.k8s.io/v1beta4\n".to_vec();
    assert!(c.upload_bytes("/var/tmp/minikube/kubeadm.yaml", &data, 0o640, Some("docker:docker")).unwrap().changed);
    assert!(!c.upload_bytes("/var/tmp/minikube/kubeadm.yaml", &data, 0o640, Some("docker:docker")).unwrap().changed);
    let p = a.path("/var/tmp/minikube/kubeadm.yaml");
    let meta = std::fs::metadata(&p).unwrap();
    assert_eq!((meta.uid(), meta.gid(), mode(&p)), (1000, 1000, 0o640));
    // Mode change alone is a change.
    assert!(c.upload_bytes("/var/tmp/minikube/kubeadm.yaml", &data, 0o644, Some("docker:docker")).unwrap().changed);
    let st = c.stat("/var/tmp/minikube/kubeadm.yaml").unwrap();
    assert_eq!((st.exists, st.size, st.sha256.as_str(), st.mode, st.uid), (true, data.len() as u64, sha256_hex(&data).as_str(), 0o644, 1000));
    assert!(!c.stat("/etc/nothing-here").unwrap().exists);
    let mut out = Vec::new();
    assert_eq!(c.download("/var/tmp/minikube/kubeadm.yaml", &mut out).unwrap(), data.len() as u64);
    assert_eq!(out, data);
    assert_eq!(refusal(c.download("/etc/missing", &mut Vec::new())), (404, Some("path".into())));
    assert_eq!(refusal(c.download("/var/lib/minikube-agent/trust/agent.key", &mut Vec::new())), (403, Some("path".into())));
    assert_eq!(refusal(c.upload_bytes("relative/path", &data, 0o644, None)), (400, Some("path".into())));
    assert_eq!(refusal(c.upload_bytes("/etc/x", &data, 0o644, Some("nobody"))), (400, Some("owner".into())));
    assert_eq!(refusal(c.upload_bytes("/etc/.minikube-tmp.x", &data, 0o644, None)), (403, Some("path".into())));
    let up = FileUpload { path: "/etc/x".into(), sha256: "abc".into(), mode: 0o644, owner: None };
    assert_eq!(refusal(c.upload_file(&up, &mut &data[..], data.len() as u64)), (400, Some("sha256".into())));
    let up = FileUpload { path: "/etc/x".into(), sha256: sha256_hex(&data), mode: 0o17777, owner: None };
    assert_eq!(refusal(c.upload_file(&up, &mut &data[..], data.len() as u64)), (400, Some("mode".into())));
}

#[test]
fn exec_runs_commands() {
    let a = start();
    let mut c = a.client();
    std::fs::create_dir_all(a.path("/var/tmp/minikube")).unwrap();
    let mut env = std::collections::BTreeMap::new();
    env.insert("NAME".to_string(), "world".to_string());
    let r = c
        .exec(&ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), "cat; echo \" hello $NAME from $(basename $(pwd))\"; echo oops >&2; exit 7".into()],
            env,
            cwd: Some("/var/tmp/minikube".into()),
            timeout_secs: Some(10),
            stdin: Some("input".into()),
        })
        .unwrap();
    assert_eq!((r.exit_code, r.stdout.as_str(), r.stderr.as_str()), (Some(7), "input hello world from minikube\n", "oops\n"));
    let r = c.exec(&ExecRequest { argv: vec!["sleep".into(), "20".into()], timeout_secs: Some(1), ..Default::default() }).unwrap();
    assert!(r.timed_out);
    assert_eq!(r.exit_code, None);
    assert_eq!(refusal(c.exec(&ExecRequest::default())), (400, Some("argv".into())));
    assert_eq!(refusal(c.exec(&ExecRequest { argv: vec!["/no/such/program".into()], ..Default::default() })), (400, Some("argv".into())));
    assert_eq!(refusal(c.exec(&ExecRequest { argv: vec!["true".into()], cwd: Some("/nonexistent".into()), ..Default::default() })), (400, Some("cwd".into())));
    assert_eq!(refusal(c.exec(&ExecRequest { argv: vec!["true".into()], timeout_secs: Some(0), ..Default::default() })), (400, Some("timeout_secs".into())));
}

#[test]
fn logs_read_the_journal() {
    let a = start();
    let mut c = a.client();
    a.host.answer("journalctl", "Nov 23 kubelet[1]: started\n", 0);
    let r = c.logs("kubelet", Some(50)).unwrap();
    assert_eq!(r.text, "Nov 23 kubelet[1]: started\n");
    assert_eq!(a.host.commands(), vec!["journalctl --no-pager --output=short-iso -n 50 -u kubelet"]);
    assert_eq!(refusal(c.logs("kubelet; rm -rf /", None)), (400, Some("unit".into())));
    assert_eq!(refusal(c.logs("-x", None)), (400, Some("unit".into())));
    assert_eq!(refusal(c.logs("kubelet", Some(0))), (400, Some("lines".into())));
}

#[test]
fn malformed_json_names_the_field() {
    use std::io::{Read, Write};
    let a = start();
    // A raw request through a TLS stream, to send JSON the typed client cannot produce.
    let config = agent::tls::client_config(a.pki.ca.cert_pem(), &a.pki.client).unwrap();
    let mut conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
    let mut sock = std::net::TcpStream::connect(a.addr).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    for (body, field) in [("{}", "name"), ("{\"name\":\"x\",\"extra\":1}", "extra"), ("[", "body")] {
        write!(tls, "POST /v1/hostname HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        tls.flush().unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tls.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(text.contains(&format!("\"field\":\"{field}\"")), "{text}");
    }
    write!(tls, "DELETE /v1/info HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 405"));
}

#[test]
fn network_converges_and_is_remembered() {
    use agent::ops::network::{NetworkRequest, NETWORK_FILE};
    let a = start();
    let mut c = a.client();
    let req = NetworkRequest { mac: "52:54:00:4d:27:03".into(), address: "192.168.49.3/24".into() };
    assert!(c.network(&req).unwrap().changed);
    assert!(!c.network(&req).unwrap().changed);
    let text = std::fs::read_to_string(a.path(NETWORK_FILE)).unwrap();
    assert!(text.contains("MACAddress=52:54:00:4d:27:03") && text.contains("Address=192.168.49.3/24"), "{text}");
    assert_eq!(a.host.commands().iter().filter(|c| *c == "networkctl reload").count(), 1, "reloaded once: {:?}", a.host.commands());
    assert_eq!(refusal(c.network(&NetworkRequest { mac: "nope".into(), address: "192.168.49.3/24".into() })), (400, Some("mac".into())));
    let stored = std::fs::read_to_string(a.path(agent::document::STORED)).unwrap();
    assert!(stored.contains("192.168.49.3/24"), "the next boot keeps it: {stored}");
}
