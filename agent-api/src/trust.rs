//! The agent's TLS material: the three files' names, the same in every channel the launcher
//! delivers them through (a trust directory, qemu's fw_cfg, the userdata tar), and where the
//! node looks for them. Reading and persisting them is the agent's (`agent::trust`).

/// The cluster CA that issues the launcher's client certificate.
pub const CA_FILE: &str = "ca.crt";
/// The agent's server certificate.
pub const CERT_FILE: &str = "agent.crt";
/// The agent's private key.
pub const KEY_FILE: &str = "agent.key";
/// Where qemu's `-fw_cfg name=opt/io.minikube/agent/ca.crt,file=...` entries appear.
pub const FW_CFG_DIR: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/io.minikube/agent";
/// The persisted copy (guest path).
pub const STATE_TRUST_DIR: &str = "/var/lib/minikube-agent/trust";
