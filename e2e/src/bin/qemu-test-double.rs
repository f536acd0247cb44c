//! qemu-test-double: stands in for `qemu-system-x86_64 ... -daemonize` where a test needs only
//! what the launcher relies on at start: the host forwards (`-netdev user,...,hostfwd=tcp:
//! 127.0.0.1:PORT-:GUEST`) bound, and the pidfile written before the command returns. It
//! boots nothing. The process it leaves behind holds the ports for two minutes (or until killed).

use std::net::TcpListener;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let Some(pidfile) = value("-pidfile") else {
        eprintln!("qemu-test-double: no -pidfile");
        return ExitCode::FAILURE;
    };
    if args.first().map(String::as_str) == Some("--hold") {
        // The daemon: bind every forwarded port (a port taken is qemu's "Could not set up host
        // forwarding rule"), then say so through the pidfile.
        let net = value("-netdev").unwrap_or_default();
        let mut held = Vec::new();
        for rule in net.split(',').filter_map(|p| p.strip_prefix("hostfwd=tcp:")) {
            let host = rule.split('-').next().unwrap_or_default();
            match TcpListener::bind(host) {
                Ok(l) => held.push(l),
                Err(e) => {
                    eprintln!("qemu-test-double: Could not set up host forwarding rule '{rule}': {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if std::fs::write(&pidfile, format!("{}\n", std::process::id())).is_err() {
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_secs(120));
        drop(held);
        return ExitCode::SUCCESS;
    }
    // `-daemonize`: start the daemon (its stdio closed, as qemu's is: the launcher reads this
    // process's stderr to its end) and return once it wrote the pidfile (or failed).
    let mut child = match Command::new(std::env::current_exe().unwrap()).arg("--hold").args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qemu-test-double: {e}");
            return ExitCode::FAILURE;
        }
    };
    for _ in 0..200 {
        if std::fs::read_to_string(&pidfile).is_ok_and(|p| !p.trim().is_empty()) {
            return ExitCode::SUCCESS;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    ExitCode::FAILURE
}
