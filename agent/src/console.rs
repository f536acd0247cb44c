//! Messages for the machine's console: the serial console is what the launcher watches.

use std::io::Write;
use std::path::Path;

/// Print `line` on stdout and on `console` (usually /dev/console); a missing console is fine.
pub fn announce(console: Option<&Path>, line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
    if let Some(path) = console {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Tell systemd the service is ready (`Type=notify`: `READY=1` on `$NOTIFY_SOCKET`), so that its
/// unit turns active when the server listens, not when the process starts. Without the variable
/// (not under systemd, or another service type) nothing is sent.
pub fn notify_ready() {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let target = target.to_string_lossy().into_owned();
    let addr = match target.strip_prefix('@') {
        Some(name) => <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&target),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(b"READY=1", &a));
    if let Err(e) = sent {
        tracing::warn!("NOTIFY_SOCKET {target}: {e}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ready_goes_to_the_notify_socket() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        super::notify_ready();
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        sock.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
