//! `network`: a static address on the NIC a cluster's VMs share (the VM's other NIC keeps its
//! user-mode address by DHCP). Written as a systemd-networkd file matched by MAC address, sorted
//! before the image's DHCP file, and reloaded.

pub use agent_api::api::NetworkRequest;
pub use agent_api::render::network::{file_text, NETWORK_FILE};

use crate::ops::{ensure, Deferred, Node, OpError};

/// Check a request: every error names its field.
pub fn validate(req: &NetworkRequest) -> Result<(), OpError> {
    let octets: Vec<&str> = req.mac.split(':').collect();
    if octets.len() != 6 || !octets.iter().all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(OpError::bad("mac", format!("{:?} is not a MAC address like 52:54:00:4d:00:02", req.mac)));
    }
    let (ip, prefix) = req.address.split_once('/').ok_or_else(|| OpError::bad("address", format!("{:?} has no /prefix", req.address)))?;
    ip.parse::<std::net::Ipv4Addr>().map_err(|_| OpError::bad("address", format!("{ip:?} is not an IPv4 address")))?;
    if !prefix.parse::<u8>().is_ok_and(|p| (8..=30).contains(&p)) {
        return Err(OpError::bad("address", format!("/{prefix}: the prefix must be 8..=30")));
    }
    Ok(())
}

/// Write the file; reload networkd now (`deferred`: at the end of the boot step).
pub fn apply_in(node: &Node, req: &NetworkRequest, deferred: Option<&mut Deferred>) -> Result<bool, OpError> {
    validate(req)?;
    let _w = node.lock_writes();
    let host = node.root.host(NETWORK_FILE);
    let changed = ensure::file(&host, file_text(req).as_bytes(), 0o644, None).map_err(|e| OpError::io(&host, e))?;
    match deferred {
        Some(d) => d.networkd |= changed,
        None if changed => {
            crate::host::run_ok(node.host.as_ref(), &["networkctl", "reload"], None, std::time::Duration::from_secs(30))?;
        }
        None => {}
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_and_text() {
        let ok = NetworkRequest { mac: "52:54:00:4D:00:02".into(), address: "192.168.49.2/24".into() };
        validate(&ok).unwrap();
        assert!(file_text(&ok).contains("MACAddress=52:54:00:4d:00:02\n") && file_text(&ok).contains("Address=192.168.49.2/24\n"));
        for (mac, addr, field) in [
            ("52:54:00:4d:00", "192.168.49.2/24", "mac"),
            ("52:54:00:4d:00:02", "192.168.49.2", "address"),
            ("52:54:00:4d:00:02", "192.168.49.300/24", "address"),
        ] {
            let e = validate(&NetworkRequest { mac: mac.into(), address: addr.into() }).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
        }
    }
}
