//! The systemd-networkd files of a VM's static NICs: the cluster NIC and the NIC to the host.

use crate::api::{NetworkRequest, UplinkRequest};

/// The cluster NIC's file (guest path).
pub const NETWORK_FILE: &str = "/etc/systemd/network/10-minikube-cluster.network";
/// The NIC to the host's file (guest path): sorted before the cluster NIC's and the image's DHCP
/// file, so networkd keeps the address the boot step gave it.
pub const UPLINK_FILE: &str = "/etc/systemd/network/05-minikube-uplink.network";

/// The cluster NIC's file text.
pub fn file_text(req: &NetworkRequest) -> String {
    format!(
        "# The cluster's shared segment (written by minikube-agent).\n[Match]\nMACAddress={}\n\n[Network]\nAddress={}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
        req.mac.to_ascii_lowercase(),
        req.address
    )
}

/// The NIC to the host's file text.
pub fn uplink_text(req: &UplinkRequest) -> String {
    let dns: String = req.dns.iter().map(|d| format!("DNS={d}\n")).collect();
    format!(
        "# The NIC to the host, static (written by minikube-agent, which configured it at boot).\n[Match]\nMACAddress={}\n\n[Network]\nAddress={}\nGateway={}\n{dns}LinkLocalAddressing=no\nIPv6AcceptRA=no\n",
        req.mac.to_ascii_lowercase(),
        req.address,
        req.gateway
    )
}
