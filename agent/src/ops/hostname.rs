//! `hostname`: the kernel hostname, /etc/hostname, the `127.0.1.1 NAME` line of /etc/hosts and
//! the lines the agent manages there (between [`BEGIN`] and [`END`]).

use crate::api::{Changed, HostEntry, HostnameRequest};
use crate::ops::{ensure, Node, OpError};

/// A valid hostname: RFC 1123 labels, at most 63 characters each, 253 in all.
fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// /etc/hosts with exactly one `127.0.1.1 NAME` line (replacing any previous 127.0.1.1 line).
pub fn hosts_with_name(current: &str, name: &str) -> String {
    let wanted = format!("127.0.1.1\t{name}");
    let mut out = String::new();
    let mut placed = false;
    for line in current.lines() {
        if line.split_whitespace().next() == Some("127.0.1.1") {
            if !placed {
                out.push_str(&wanted);
                out.push('\n');
                placed = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !placed {
        if current.is_empty() {
            out.push_str("127.0.0.1\tlocalhost\n");
        }
        out.push_str(&wanted);
        out.push('\n');
    }
    out
}

/// The first and last line of the block of /etc/hosts the agent owns.
pub const BEGIN: &str = "# BEGIN minikube-agent";
pub const END: &str = "# END minikube-agent";

/// `current` with its managed block replaced by `entries` (no block when there are none).
pub fn hosts_with_entries(current: &str, entries: &[HostEntry]) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in current.lines() {
        if line == BEGIN {
            inside = true;
        } else if line == END {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !entries.is_empty() {
        out.push_str(BEGIN);
        out.push('\n');
        for e in entries {
            out.push_str(&format!("{}\t{}\n", e.ip, e.names.join(" ")));
        }
        out.push_str(END);
        out.push('\n');
    }
    out
}

/// Check a request: every error names its field.
pub fn validate(req: &HostnameRequest) -> Result<(), OpError> {
    if !valid(&req.name) {
        return Err(OpError::bad("name", format!("{:?} is not a valid hostname", req.name)));
    }
    for (i, e) in req.hosts.iter().enumerate() {
        e.ip.parse::<std::net::IpAddr>().map_err(|_| OpError::bad(&format!("hosts[{i}].ip"), format!("{:?} is not an IP address", e.ip)))?;
        if e.names.is_empty() {
            return Err(OpError::bad(&format!("hosts[{i}].names"), "must name at least one host"));
        }
        for (j, n) in e.names.iter().enumerate() {
            if !valid(n) {
                return Err(OpError::bad(&format!("hosts[{i}].names[{j}]"), format!("{n:?} is not a valid hostname")));
            }
        }
    }
    Ok(())
}

pub fn apply(node: &Node, req: &HostnameRequest) -> Result<Changed, OpError> {
    validate(req)?;
    let _w = node.lock_writes();
    let mut changed = false;
    if node.host.hostname()? != req.name {
        node.host.set_hostname(&req.name)?;
        changed = true;
    }
    let etc_hostname = node.root.host("/etc/hostname");
    changed |= ensure::file(&etc_hostname, format!("{}\n", req.name).as_bytes(), 0o644, None).map_err(|e| OpError::io(&etc_hostname, e))?;
    let hosts = node.root.host("/etc/hosts");
    let current = std::fs::read_to_string(&hosts).unwrap_or_default();
    let wanted = hosts_with_entries(&hosts_with_name(&current, &req.name), &req.hosts);
    changed |= ensure::file(&hosts, wanted.as_bytes(), 0o644, None).map_err(|e| OpError::io(&hosts, e))?;
    Ok(Changed { changed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_line_is_replaced_once() {
        let h = "127.0.0.1 localhost\n127.0.1.1 old\n::1 ip6\n";
        assert_eq!(hosts_with_name(h, "new"), "127.0.0.1 localhost\n127.0.1.1\tnew\n::1 ip6\n");
        let again = hosts_with_name(&hosts_with_name(h, "new"), "new");
        assert_eq!(again, hosts_with_name(h, "new"));
        assert_eq!(hosts_with_name("", "m"), "127.0.0.1\tlocalhost\n127.0.1.1\tm\n");
    }

    #[test]
    fn managed_block_is_replaced_and_removed() {
        let e = |ip: &str, n: &str| HostEntry { ip: ip.into(), names: vec![n.into()] };
        let base = "127.0.0.1\tlocalhost\n";
        let one = hosts_with_entries(base, &[e("10.0.2.15", "control-plane.minikube.internal")]);
        assert_eq!(one, format!("{base}{BEGIN}\n10.0.2.15\tcontrol-plane.minikube.internal\n{END}\n"));
        let two = hosts_with_entries(&one, &[e("192.168.49.2", "a"), e("192.168.49.3", "b")]);
        assert_eq!(two.matches(BEGIN).count(), 1);
        assert!(two.contains("192.168.49.3\tb\n") && !two.contains("control-plane"));
        assert_eq!(hosts_with_entries(&two, &[]), base);
        let bad = HostnameRequest { name: "m".into(), hosts: vec![e("300.1.1.1", "x")] };
        assert_eq!(validate(&bad).unwrap_err().field.as_deref(), Some("hosts[0].ip"));
    }

    #[test]
    fn hostname_validation() {
        assert!(valid("minikube"));
        assert!(valid("minikube-m02.example"));
        assert!(!valid("-bad"));
        assert!(!valid("a b"));
        assert!(!valid(""));
        assert!(!valid(&"a".repeat(64)));
    }
}
