//! The cluster NIC's systemd-networkd file.

use crate::api::NetworkRequest;

/// The networkd file (guest path).
pub const NETWORK_FILE: &str = "/etc/systemd/network/10-minikube-cluster.network";

/// The file's text.
pub fn file_text(req: &NetworkRequest) -> String {
    format!(
        "# The cluster's shared segment (written by minikube-agent).\n[Match]\nMACAddress={}\n\n[Network]\nAddress={}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
        req.mac.to_ascii_lowercase(),
        req.address
    )
}
