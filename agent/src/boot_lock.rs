//! How the boot step and the server share the node while both run.
//!
//! The server starts beside the boot step, not after it: once the data disk is mounted (trust
//! material, audit log) and the NIC to the host is up, it can answer, and the seconds the boot
//! step still spends on the node document and the service starts are no longer on the way to the
//! first answer. What must not overlap is writing: the boot step holds [`LOCK`] exclusively from
//! its start to its end, and every mutation the server makes ([`crate::ops::Node::lock_writes`])
//! takes it shared first, so an API call that changes the node waits for the boot step and then
//! finds its work done. The server only begins to listen when the boot step has written
//! [`REACHABLE`], which it does while holding the lock: a mutation can never run before the boot
//! step has taken it. Both files are on /run, so each boot starts without them; a boot step that
//! dies releases the lock with its process (systemd starts it again, and it waits for any
//! mutation in flight).

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::paths::GuestRoot;

/// Held exclusively by the boot step, shared by each mutation of the server.
pub const LOCK: &str = "/run/minikube-agent/boot.lock";
/// Written by the boot step when the server can answer (disk mounted, uplink up).
pub const REACHABLE: &str = "/run/minikube-agent/boot-reachable";
/// How long `serve --after-boot` waits for [`REACHABLE`] before serving anyway (a boot step that
/// hangs should not keep the node silent: the launcher's calls then say what is wrong).
pub const REACHABLE_TIMEOUT: Duration = Duration::from_secs(180);

fn open(root: &GuestRoot) -> io::Result<File> {
    let path = root.host(LOCK);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)
}

fn locked(file: File, arg: FlockArg, path: &Path) -> io::Result<Flock<File>> {
    Flock::lock(file, arg).map_err(|(_, e)| io::Error::new(io::Error::from(e).kind(), format!("{}: flock: {e}", path.display())))
}

/// The boot step's hold on the node, from its start to its end.
pub struct BootLock {
    _lock: Flock<File>,
    reachable: std::path::PathBuf,
    marked: std::sync::Once,
}

impl BootLock {
    /// Take the lock (waits for a mutation of the server in flight, after a restarted boot step).
    pub fn acquire(root: &GuestRoot) -> io::Result<BootLock> {
        let lock = locked(open(root)?, FlockArg::LockExclusive, &root.host(LOCK))?;
        Ok(BootLock { _lock: lock, reachable: root.host(REACHABLE), marked: std::sync::Once::new() })
    }

    /// Let the server listen (the file is written once; later calls do nothing).
    pub fn mark_reachable(&self) {
        self.marked.call_once(|| {
            if let Err(e) = std::fs::write(&self.reachable, b"") {
                tracing::warn!("{}: {e}", self.reachable.display());
            }
        });
    }
}

/// Wait until the boot step says the server can answer; false when `timeout` passed first.
pub fn wait_reachable(root: &GuestRoot, timeout: Duration) -> bool {
    let path = root.host(REACHABLE);
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A mutation's share of the lock: waits while the boot step runs.
pub fn shared(root: &GuestRoot) -> io::Result<Flock<File>> {
    locked(open(root)?, FlockArg::LockShared, &root.host(LOCK))
}

/// Whether a boot step holds the lock now (without waiting; no lock file, no boot step).
pub fn running(root: &GuestRoot) -> bool {
    let Ok(file) = std::fs::File::open(root.host(LOCK)) else { return false };
    matches!(Flock::lock(file, FlockArg::LockSharedNonblock), Err((_, nix::errno::Errno::EWOULDBLOCK)))
}
