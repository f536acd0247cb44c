//! `hostname`: the kernel hostname, /etc/hostname, and the `127.0.1.1 NAME` line of /etc/hosts.

use crate::api::{Changed, HostnameRequest};
use crate::ops::{ensure, Node, OpError};

/// A valid hostname: RFC 1123 labels, at most 63 characters each, 253 in all.
fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
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

pub fn apply(node: &Node, req: &HostnameRequest) -> Result<Changed, OpError> {
    if !valid(&req.name) {
        return Err(OpError::bad("name", format!("{:?} is not a valid hostname", req.name)));
    }
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
    changed |= ensure::file(&hosts, hosts_with_name(&current, &req.name).as_bytes(), 0o644, None).map_err(|e| OpError::io(&hosts, e))?;
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
    fn hostname_validation() {
        assert!(valid("minikube"));
        assert!(valid("minikube-m02.example"));
        assert!(!valid("-bad"));
        assert!(!valid("a b"));
        assert!(!valid(""));
        assert!(!valid(&"a".repeat(64)));
    }
}
