//! The container runtime's configuration files (docker, containerd, cri-o), laid out the way
//! minikube's provisioner lays them out.

use crate::api::{CgroupDriver, Runtime, RuntimeRequest};

/// Docker's TLS listener.
pub const DOCKER_TLS_PORT: u16 = 2376;
/// Kernel modules the runtimes need for pod networking.
pub const NETWORK_MODULES: &[&str] = &["overlay", "br_netfilter"];

/// One file the runtime configuration consists of (guest path, content, mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: String,
    pub content: String,
    pub mode: u32,
}

fn file(path: &str, content: String, mode: u32) -> ConfigFile {
    ConfigFile { path: path.to_string(), content, mode }
}

/// The sysctls pod networking needs, each set to 1.
pub const NETWORK_SYSCTLS: &[&str] = &["net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"];

/// docker's own API socket (used when cri-dockerd is not installed).
pub const DOCKER_SOCKET: &str = "/run/docker.sock";

/// The files that make up the configuration for `req` (and the paths of the other runtimes'
/// files to remove). `restrict_oom_score_adj`: containerd must keep each pod's OOM score at or
/// above its own (a node without CAP_SYS_RESOURCE in its bounding set, see
/// `agent::ops::runtime::may_lower_oom_score`).
pub fn config_files(req: &RuntimeRequest, restrict_oom_score_adj: bool) -> (Vec<ConfigFile>, Vec<&'static str>) {
    let mut files = vec![file("/etc/crictl.yaml", format!("runtime-endpoint: unix://{}\n", req.runtime.cri_socket()), 0o644)];
    let mut absent = Vec::new();
    let driver = req.cgroup_driver.name();
    match req.runtime {
        Runtime::Docker => {
            let mut daemon = serde_json::json!({
                "exec-opts": [format!("native.cgroupdriver={driver}")],
                "log-driver": "json-file",
                "log-opts": {"max-size": "100m"},
                "storage-driver": "overlay2",
            });
            if !req.insecure_registries.is_empty() {
                daemon["insecure-registries"] = serde_json::json!(req.insecure_registries);
            }
            let mut json = serde_json::to_string_pretty(&daemon).expect("JSON value");
            json.push('\n');
            files.push(file("/etc/docker/daemon.json", json, 0o644));
            files.push(file(
                "/etc/systemd/system/cri-docker.service.d/10-cni.conf",
                format!(
                    "[Service]\nExecStart=\nExecStart=/usr/bin/cri-dockerd --container-runtime-endpoint fd:// \
                     --pod-infra-container-image={} --network-plugin=cni --hairpin-mode=hairpin-veth\n",
                    req.pause_image
                ),
                0o644,
            ));
            match &req.docker_tls {
                Some(tls) => {
                    files.push(file("/etc/docker/ca.pem", tls.ca_pem.clone(), 0o644));
                    files.push(file("/etc/docker/server.pem", tls.cert_pem.clone(), 0o644));
                    files.push(file("/etc/docker/server-key.pem", tls.key_pem.clone(), 0o600));
                    files.push(file(
                        "/etc/systemd/system/docker.service.d/10-tls.conf",
                        format!(
                            "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H tcp://0.0.0.0:{DOCKER_TLS_PORT} \
                             -H unix:///var/run/docker.sock --tlsverify --tlscacert /etc/docker/ca.pem \
                             --tlscert /etc/docker/server.pem --tlskey /etc/docker/server-key.pem \
                             --default-ulimit=nofile=1048576:1048576\n"
                        ),
                        0o644,
                    ));
                }
                None => absent.push("/etc/systemd/system/docker.service.d/10-tls.conf"),
            }
        }
        Runtime::Containerd => {
            let systemd = req.cgroup_driver == CgroupDriver::Systemd;
            files.push(file(
                "/etc/containerd/config.toml",
                format!(
                    // Config version 2: read by containerd 1.6 (Debian bookworm), 1.7 and 2.x
                    // (which migrates it); version 3 is refused by 1.6 and 1.7.
                    "version = 2\nroot = \"/var/lib/containerd\"\nstate = \"/run/containerd\"\n\n\
                     [grpc]\n  address = \"/run/containerd/containerd.sock\"\n\n\
                     [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = {:?}\n  enable_unprivileged_ports = true\n  enable_unprivileged_icmp = true\n  restrict_oom_score_adj = {restrict_oom_score_adj}\n\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"runc\"\n\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = {systemd}\n\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/opt/cni/bin\"\n  conf_dir = \"/etc/cni/net.d\"\n",
                    req.pause_image
                ),
                0o644,
            ));
            for r in &req.insecure_registries {
                files.push(ConfigFile {
                    path: format!("/etc/containerd/certs.d/{r}/hosts.toml"),
                    content: format!(
                        "server = \"http://{r}\"\n\n[host.\"http://{r}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  skip_verify = true\n"
                    ),
                    mode: 0o644,
                });
            }
        }
        Runtime::CriO => {
            files.push(file(
                "/etc/crio/crio.conf.d/02-crio.conf",
                format!(
                    "[crio.image]\npause_image = {:?}\n\n[crio.runtime]\ncgroup_manager = \"{driver}\"\nconmon_cgroup = \"pod\"\n\
                     default_sysctls = [\n  \"net.ipv4.ip_unprivileged_port_start=0\",\n]\n",
                    req.pause_image
                ),
                0o644,
            ));
            if !req.insecure_registries.is_empty() {
                let regs: String = req.insecure_registries.iter().map(|r| format!("[[registry]]\nlocation = {r:?}\ninsecure = true\n\n")).collect();
                files.push(file("/etc/containers/registries.conf.d/99-minikube-insecure.conf", regs, 0o644));
            } else {
                absent.push("/etc/containers/registries.conf.d/99-minikube-insecure.conf");
            }
        }
    }
    // Pod networking: forwarding and bridge netfilter, now and at every boot.
    files.push(file("/etc/modules-load.d/minikube-runtime.conf", format!("{}\n", NETWORK_MODULES.join("\n")), 0o644));
    files.push(file("/etc/sysctl.d/99-minikube-runtime.conf", NETWORK_SYSCTLS.iter().map(|k| format!("{k} = 1\n")).collect::<String>(), 0o644));
    (files, absent)
}
