//! The node document a `start` hands to the node before it boots ([`agent_api::document`]): built
//! once from the profile, delivered beside the agent's trust (qemu: fw_cfg, and the userdata tar
//! of a new data disk with the kubelet in it; kic: the trust directory with the kubelet in
//! `blobs/`), and then used, section by section, as the requests of the API steps that check it.

use std::path::{Path, PathBuf};

use agent_api::api::{CertsRequest, CgroupDriver, HostEntry, HostnameRequest, KubeletRequest, NetworkRequest, RuntimeRequest, UplinkRequest};
use agent_api::document::{FileContent, NodeDocument};

use crate::model::{self, Driver, MachineState};
use crate::resources::certs::{self, ProfileCerts};
use crate::resources::state::MachineDir;

/// Pause image handed to the runtime (minikube's for recent Kubernetes).
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10.1";

/// The kubelet binary the document names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub path: PathBuf,
    pub sha256: String,
    pub len: u64,
}

impl Binary {
    pub fn of(path: &Path) -> std::io::Result<Binary> {
        let (sha256, len) = pki::digest::sha256_file(path)?;
        Ok(Binary { path: path.to_path_buf(), sha256, len })
    }
}

/// The document's serial: now, in milliseconds (later writes order after earlier ones).
pub fn serial() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What `start` wants of a node, section by section: the node document delivered before it
/// boots ([`Sections::document`]) and the requests of the API steps that check it afterwards.
/// Every section `start` checks is here by construction (the wire document has them optional,
/// for documents written by others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections {
    pub serial: u64,
    /// A VM's NIC to the host, static (qemu's user-mode network).
    pub uplink: Option<UplinkRequest>,
    /// A VM's cluster NIC (multi-node qemu clusters only).
    pub network: Option<NetworkRequest>,
    pub hostname: HostnameRequest,
    pub certs: CertsRequest,
    /// Small files: the service-account public key, the docker user's authorized key.
    pub files: Vec<FileContent>,
    pub runtime: RuntimeRequest,
    /// None with `--no-kubernetes`.
    pub kubelet: Option<KubeletRequest>,
}

impl Sections {
    /// The node document of these sections.
    pub fn document(&self) -> NodeDocument {
        NodeDocument {
            uplink: self.uplink.clone(),
            network: self.network.clone(),
            hostname: Some(self.hostname.clone()),
            certs: Some(self.certs.clone()),
            files: self.files.clone(),
            runtime: Some(self.runtime.clone()),
            kubelet: self.kubelet.clone(),
            ..NodeDocument::new(self.serial)
        }
    }
}

/// The sections for `state`; `hosts` are the cluster's /etc/hosts lines.
pub fn build(state: &MachineState, pc: &ProfileCerts, authorized_key: &str, kubelet: Option<&Binary>, hosts: Vec<HostEntry>) -> Sections {
    let files = vec![
        FileContent { path: certs::GUEST_SA_PUB.into(), content: pc.sa_pub_pem.clone(), mode: 0o644, owner: None },
        FileContent {
            path: crate::resources::ssh::AUTHORIZED_KEYS.into(),
            content: authorized_key.to_string(),
            mode: 0o600,
            owner: Some(agent_api::userdata::AUTHORIZED_KEYS_OWNER.into()),
        },
    ];
    let runtime = RuntimeRequest {
        runtime: state.runtime,
        pause_image: PAUSE_IMAGE.into(),
        cgroup_driver: CgroupDriver::Systemd,
        insecure_registries: vec![],
        docker_tls: None,
        socket_timeout_secs: Some(120),
    };
    let kubelet = kubelet.map(|k| KubeletRequest {
        version: state.kubernetes_version.clone(),
        node_name: state.name.clone(),
        node_ip: state.node_ip.clone(),
        runtime: state.runtime,
        extra_args: vec![],
        binary_sha256: Some(k.sha256.clone()),
    });
    Sections {
        serial: serial(),
        uplink: (state.driver == Driver::Qemu && state.static_uplink).then(|| UplinkRequest {
            mac: model::USER_NIC_MAC.into(),
            address: format!("{}/{}", model::GUEST_IP, model::USER_NET_PREFIX),
            gateway: model::USER_NET_GATEWAY.into(),
            dns: vec![model::USER_NET_DNS.into()],
            driver: Some(model::USER_NIC_DRIVER.into()),
        }),
        network: state.cluster_nic.as_ref().map(|n| NetworkRequest { mac: n.mac.clone(), address: n.address.clone() }),
        hostname: HostnameRequest { name: state.name.clone(), hosts },
        certs: certs::certs_request(pc),
        files,
        runtime,
        kubelet,
    }
}

/// The document's bytes.
pub fn to_bytes(doc: &NodeDocument) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(doc).expect("serialisable");
    b.push(b'\n');
    b
}

/// Where a qemu machine's document is kept for fw_cfg.
pub fn machine_file(m: &MachineDir) -> PathBuf {
    m.dir.join(agent_api::document::FILE_NAME)
}

/// Write the document for the next boot: beside the machine (fw_cfg) or into the trust directory
/// (kic, with the kubelet in `blobs/`; other blobs there are removed).
pub fn deliver(path: &Path, doc: &NodeDocument, blobs_dir: Option<(&Path, Option<&Binary>)>) -> std::io::Result<()> {
    if let Some((dir, bin)) = blobs_dir {
        std::fs::create_dir_all(dir)?;
        for e in std::fs::read_dir(dir)?.filter_map(Result::ok) {
            if bin.is_none_or(|b| e.file_name().to_string_lossy() != b.sha256) {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    if let Some((dir, Some(bin))) = blobs_dir {
        let target = dir.join(&bin.sha256);
        if !target.is_file() {
            let temp = dir.join(format!("{}{}", pki::atomic::TEMP_PREFIX, bin.sha256));
            let _ = std::fs::remove_file(&temp);
            if std::fs::hard_link(&bin.path, &temp).is_err() {
                std::fs::copy(&bin.path, &temp)?;
            }
            std::fs::rename(&temp, &target)?;
        }
    }
    pki::atomic::write_atomic(path, &to_bytes(doc), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_reads_what_the_launcher_writes() {
        let d = tempfile::tempdir().unwrap();
        let cas = certs::shared_cas(&d.path().join("shared")).unwrap();
        let pc = certs::ensure_profile(&cas, &d.path().join("certs"), &d.path().join("trust"), "10.0.2.15").unwrap();
        let k = d.path().join("kubelet");
        std::fs::write(&k, b"kubelet").unwrap();
        let bin = Binary::of(&k).unwrap();
        let state = MachineState { kubelet: k.clone(), ..crate::model::example_state("p1") };
        let sections = build(&state, &pc, "ssh-ed25519 AAAA k\n", Some(&bin), crate::topology::hosts(std::slice::from_ref(&state)));
        let doc = sections.document();
        let parsed = agent_api::document::parse(&to_bytes(&doc), "test").unwrap();
        assert_eq!(parsed, doc);
        assert_eq!(parsed.kubelet.as_ref().unwrap().binary_sha256.as_deref(), Some(bin.sha256.as_str()));
        assert!(parsed.network.is_none(), "a node without a cluster NIC has no network section");
        let nic = crate::model::ClusterNic { mcast_port: 23000, mac: "52:54:00:4d:00:02".into(), address: "192.168.49.3/24".into() };
        let vm = MachineState { cluster_nic: Some(nic), ..state.clone() };
        let with_nic = build(&vm, &pc, "k", None, vec![]).document();
        assert_eq!(with_nic.network.as_ref().map(|n| n.address.as_str()), Some("192.168.49.3/24"), "the network section travels in the document");
        let uplink = |driver| build(&MachineState { driver, ..state.clone() }, &pc, "k", None, vec![]).document().uplink;
        let up = uplink(Driver::Qemu).expect("a VM's NIC to the host is static");
        assert_eq!((up.address.as_str(), up.gateway.as_str(), up.mac.as_str()), ("10.0.2.15/24", "10.0.2.2", model::USER_NIC_MAC));
        assert_eq!(uplink(Driver::Podman), None, "a container's network is the engine's");
        let old_iso = build(&MachineState { static_uplink: false, ..state.clone() }, &pc, "k", None, vec![]).document();
        assert_eq!(old_iso.uplink, None, "an ISO whose agent predates the section: DHCP");
        let trust = d.path().join("trust");
        std::fs::create_dir_all(trust.join("blobs")).unwrap();
        std::fs::write(trust.join("blobs/stale"), b"old").unwrap();
        deliver(&trust.join("node.json"), &doc, Some((&trust.join("blobs"), Some(&bin)))).unwrap();
        let blobs: Vec<_> = std::fs::read_dir(trust.join("blobs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(blobs, vec![bin.sha256.clone()]);
        assert_eq!(std::fs::read(trust.join("blobs").join(&bin.sha256)).unwrap(), b"kubelet");
    }
}
