//! `network`: a static address on the NIC a cluster's VMs share, and `uplink`: the NIC to the
//! host, static too when the launcher knows its addresses (qemu's user-mode network). Each is a
//! systemd-networkd file matched by MAC address, sorted before the image's DHCP file. The uplink
//! is also brought up at once (address, link, default route), so the agent is reachable as soon
//! as it listens rather than once udev and networkd have reached the NIC.

use std::path::Path;
use std::time::{Duration, Instant};

pub use agent_api::api::{NetworkRequest, UplinkRequest};
pub use agent_api::render::network::{file_text, uplink_text, NETWORK_FILE, UPLINK_FILE};

use crate::ops::{ensure, Deferred, Node, OpError};
use crate::paths::GuestRoot;

/// How long a NIC's driver may take to make its interface appear.
const NIC_WAIT: Duration = Duration::from_secs(10);

fn check_mac(mac: &str) -> Result<(), OpError> {
    let octets: Vec<&str> = mac.split(':').collect();
    if octets.len() != 6 || !octets.iter().all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(OpError::bad("mac", format!("{mac:?} is not a MAC address like 52:54:00:4d:00:02")));
    }
    Ok(())
}

fn check_address(address: &str) -> Result<(), OpError> {
    let (ip, prefix) = address.split_once('/').ok_or_else(|| OpError::bad("address", format!("{address:?} has no /prefix")))?;
    ip.parse::<std::net::Ipv4Addr>().map_err(|_| OpError::bad("address", format!("{ip:?} is not an IPv4 address")))?;
    if !prefix.parse::<u8>().is_ok_and(|p| (8..=30).contains(&p)) {
        return Err(OpError::bad("address", format!("/{prefix}: the prefix must be 8..=30")));
    }
    Ok(())
}

/// Check a request: every error names its field.
pub fn validate(req: &NetworkRequest) -> Result<(), OpError> {
    check_mac(&req.mac)?;
    check_address(&req.address)
}

/// Check an uplink request: every error names its field.
pub fn validate_uplink(req: &UplinkRequest) -> Result<(), OpError> {
    check_mac(&req.mac)?;
    check_address(&req.address)?;
    req.gateway.parse::<std::net::Ipv4Addr>().map_err(|_| OpError::bad("gateway", format!("{:?} is not an IPv4 address", req.gateway)))?;
    for d in &req.dns {
        d.parse::<std::net::IpAddr>().map_err(|_| OpError::bad("dns", format!("{d:?} is not an IP address")))?;
    }
    if req.driver.as_deref().is_some_and(|d| d.is_empty() || !d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')) {
        return Err(OpError::bad("driver", format!("{:?} is not a kernel module name", req.driver)));
    }
    Ok(())
}

/// Write the file; reload networkd now (`deferred`: at the end of the boot step).
pub fn apply_in(node: &Node, req: &NetworkRequest, deferred: Option<&mut Deferred>) -> Result<bool, OpError> {
    validate(req)?;
    write_networkd(node, NETWORK_FILE, &file_text(req), deferred)
}

fn write_networkd(node: &Node, guest: &str, text: &str, deferred: Option<&mut Deferred>) -> Result<bool, OpError> {
    let _w = node.lock_writes();
    let host = node.root.host(guest);
    let changed = ensure::file(&host, text.as_bytes(), 0o644, None).map_err(|e| OpError::io(&host, e))?;
    match deferred {
        Some(d) => d.networkd |= changed,
        None if changed => {
            crate::host::run_ok(node.host.as_ref(), &["networkctl", "reload"], None, Duration::from_secs(30))?;
        }
        None => {}
    }
    Ok(changed)
}

/// Write the uplink's file and bring the NIC up now: its driver loaded when no interface has the
/// MAC yet, then the address, the link and the default route, each `replace`d (idempotent:
/// the same commands at every boot). Whether the file changed.
pub fn apply_uplink_in(node: &Node, req: &UplinkRequest, deferred: Option<&mut Deferred>) -> Result<bool, OpError> {
    validate_uplink(req)?;
    let changed = write_networkd(node, UPLINK_FILE, &uplink_text(req), deferred)?;
    let host = node.host.as_ref();
    let nic = match nic_with_mac(&node.root, &req.mac) {
        Some(n) => n,
        None => {
            if let Some(driver) = &req.driver {
                crate::host::run_ok(host, &["modprobe", driver], None, Duration::from_secs(30))?;
            }
            let start = Instant::now();
            loop {
                if let Some(n) = nic_with_mac(&node.root, &req.mac) {
                    break n;
                }
                if start.elapsed() > NIC_WAIT {
                    return Err(OpError::bad("mac", format!("no network interface has MAC {} after {} s", req.mac, NIC_WAIT.as_secs())));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    // One `ip` for the three (a process costs tenths of a second under emulation).
    let batch = uplink_commands(req, &nic).join("\n") + "\n";
    crate::host::run_ok(host, &["ip", "-batch", "-"], Some(batch.as_bytes()), Duration::from_secs(30))?;
    Ok(changed)
}

/// The `ip` commands that bring the uplink up on `nic`, each idempotent.
pub fn uplink_commands(req: &UplinkRequest, nic: &str) -> Vec<String> {
    vec![
        format!("address replace {} dev {nic}", req.address),
        format!("link set dev {nic} up"),
        format!("route replace default via {} dev {nic} proto static", req.gateway),
    ]
}

/// The interface whose MAC address is `mac` (case-insensitive), from `/sys/class/net`.
pub fn nic_with_mac(root: &GuestRoot, mac: &str) -> Option<String> {
    let dir = root.host("/sys/class/net");
    std::fs::read_dir(&dir).ok()?.filter_map(Result::ok).find_map(|e| {
        let address = std::fs::read_to_string(Path::new(&e.path()).join("address")).ok()?;
        address.trim().eq_ignore_ascii_case(mac).then(|| e.file_name().to_string_lossy().into_owned())
    })
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
