//! Test hooks: points where a test stops the agent in the middle of an operation. They act only
//! in a build with the `test-hooks` feature (the tests', the benchmarks'), never in the
//! production `minikube-agent`, where each is an empty function.
//!
//! - [`CRASH_BEFORE`]`=SECTION`: `minikube-agent boot` kills itself with SIGKILL just before it
//!   applies that section of the node document (a power cut in the middle of the boot step).
//! - [`PAUSE_AT_WRITE`]`=N` with [`PAUSED`]`=FILE`: once [`arm`]ed (the server, when it
//!   serves), the agent stops just before it puts its N-th file in place (the new content is
//!   written beside the target, the target is still the old file), writes the target's path to
//!   FILE, and sleeps until it is killed. A test waits for FILE, then kills the agent: the kill
//!   is known to have landed in the middle of the operation, at that file.

/// The section before which `minikube-agent boot` kills itself.
pub const CRASH_BEFORE: &str = "MINIKUBE_AGENT_TEST_CRASH_BEFORE";
/// The number (from 1) of the file write the agent stops before.
pub const PAUSE_AT_WRITE: &str = "MINIKUBE_AGENT_TEST_PAUSE_AT_WRITE";
/// Where the stopped agent writes the path of the file it stopped at.
pub const PAUSED: &str = "MINIKUBE_AGENT_TEST_PAUSED";

#[cfg(feature = "test-hooks")]
mod active {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    static ARMED: AtomicBool = AtomicBool::new(false);
    static WRITES: AtomicUsize = AtomicUsize::new(0);

    pub fn arm() {
        ARMED.store(true, Ordering::SeqCst);
    }

    pub fn before_commit(target: &Path) {
        if !ARMED.load(Ordering::SeqCst) {
            return;
        }
        let Some(at) = std::env::var(super::PAUSE_AT_WRITE).ok().and_then(|v| v.parse::<usize>().ok()) else { return };
        if WRITES.fetch_add(1, Ordering::SeqCst) + 1 != at {
            return;
        }
        tracing::warn!("{}={at}: stopping before {} is put in place", super::PAUSE_AT_WRITE, target.display());
        if let Some(marker) = std::env::var_os(super::PAUSED) {
            // Written whole, then named: the test never reads it half written.
            let marker = std::path::PathBuf::from(marker);
            let partial = marker.with_extension("partial");
            if std::fs::write(&partial, target.to_string_lossy().as_bytes()).is_ok() {
                let _ = std::fs::rename(&partial, &marker);
            }
        }
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }

    pub fn crash_before(section: &str) {
        if std::env::var(super::CRASH_BEFORE).is_ok_and(|v| v == section) {
            tracing::warn!("{}={section}: killing this process", super::CRASH_BEFORE);
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Start counting file writes for [`PAUSE_AT_WRITE`] (writes before it, such as the trust files
/// persisted at start, do not count).
pub fn arm() {
    #[cfg(feature = "test-hooks")]
    active::arm();
}

/// Called just before a file is put in place at `target`.
pub fn before_commit(target: &std::path::Path) {
    #[cfg(feature = "test-hooks")]
    active::before_commit(target);
    #[cfg(not(feature = "test-hooks"))]
    let _ = target;
}

/// Called by the boot step before it applies `section` of the node document.
pub fn crash_before(section: &str) {
    #[cfg(feature = "test-hooks")]
    active::crash_before(section);
    #[cfg(not(feature = "test-hooks"))]
    let _ = section;
}
