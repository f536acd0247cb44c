//! The kubelet's files: where the Kubernetes binaries go, the unit and its drop-in.

use crate::api::{KubeletRequest, Runtime};

/// Where the Kubernetes binaries of each version go: `BINARIES_DIR/VERSION/NAME`.
pub const BINARIES_DIR: &str = "/var/lib/minikube/binaries";
pub const BINARY_NAMES: &[&str] = &["kubelet", "kubeadm", "kubectl", "crictl"];
pub const UNIT_PATH: &str = "/lib/systemd/system/kubelet.service";
pub const DROP_IN_PATH: &str = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf";

/// The directories minikube's provisioner creates before Kubernetes starts.
pub const NODE_DIRS: &[&str] = &[
    "/etc/kubernetes/addons",
    "/etc/kubernetes/manifests",
    "/var/tmp/minikube",
    "/var/lib/minikube/certs",
    "/var/lib/minikube/images",
    "/var/lib/minikube/binaries",
    "/usr/share/ca-certificates",
    "/etc/ssl/certs",
];

fn runtime_unit(r: Runtime) -> &'static str {
    match r {
        Runtime::Docker => "docker.socket",
        Runtime::Containerd => "containerd.service",
        Runtime::CriO => "crio.service",
    }
}

/// The kubelet unit.
pub fn unit_text() -> String {
    "[Unit]\nDescription=kubelet: The Kubernetes Node Agent\nDocumentation=https://kubernetes.io/docs/home/\n\
     Wants=network-online.target\nAfter=network-online.target\n\n\
     [Service]\nExecStart=/usr/bin/kubelet\nRestart=always\nStartLimitInterval=0\nRestartSec=600ms\n\n\
     [Install]\nWantedBy=multi-user.target\n"
        .to_string()
}

/// The kubelet's drop-in: its flags for `req`, after the runtime's unit.
pub fn drop_in_text(req: &KubeletRequest) -> String {
    let mut args = vec![
        format!("{BINARIES_DIR}/{}/kubelet", req.version),
        "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf".to_string(),
        "--config=/var/lib/kubelet/config.yaml".to_string(),
        format!("--hostname-override={}", req.node_name),
        "--kubeconfig=/etc/kubernetes/kubelet.conf".to_string(),
        format!("--node-ip={}", req.node_ip),
    ];
    args.extend(req.extra_args.iter().cloned());
    format!("[Unit]\nWants={}\n\n[Service]\nExecStart=\nExecStart={}\n\n[Install]\n", runtime_unit(req.runtime), args.join(" "))
}
