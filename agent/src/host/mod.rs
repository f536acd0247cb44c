//! The machine's own services: systemd, kernel modules, disk tools, the kernel hostname.
//!
//! Every call that acts on the running system outside the file tree goes through [`Host`], so
//! that `--root` tests can observe it. [`SystemHost`] runs the real tools; [`RecordingHost`] is
//! the test double that records command lines and answers from rules.

use std::time::Duration;

use crate::process::{self, ProcessOutput, Spec};

#[cfg(any(test, feature = "test-hooks"))]
mod recording;
#[cfg(any(test, feature = "test-hooks"))]
pub use recording::RecordingHost;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{program}: could not run: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String },
    #[error("hostname: {0}")]
    Hostname(std::io::Error),
    #[error("bind-mounting {from} on {to}: {source}")]
    Mount { from: String, to: String, source: std::io::Error },
    /// The test double was asked to run a command it has no rule for.
    #[error("`{command}`: the recording host has no rule for this command")]
    NoRule { command: String },
}

/// Access to the running system.
pub trait Host: Send + Sync {
    /// Run a tool (`systemctl`, `modprobe`, `sfdisk`...) to completion.
    fn run(&self, argv: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Result<ProcessOutput, HostError>;
    /// The kernel's hostname.
    fn hostname(&self) -> Result<String, HostError>;
    /// Set the kernel's hostname.
    fn set_hostname(&self, name: &str) -> Result<(), HostError>;
    /// Bind-mount `from` on `to` (mount(2) itself: `mount --bind` is a process per call, a
    /// quarter of a second each under emulation, and the boot step makes over a dozen).
    fn bind_mount(&self, from: &std::path::Path, to: &std::path::Path) -> Result<(), HostError>;
    /// Mount the filesystem `fstype` on `dev` at `to` (mount(2) itself, for the same reason: the
    /// data disk is mounted on the way to the agent answering).
    fn mount_fs(&self, dev: &std::path::Path, to: &std::path::Path, fstype: &str) -> Result<(), HostError>;
}

/// Run a tool and require exit status 0.
pub fn run_ok(host: &dyn Host, argv: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Result<ProcessOutput, HostError> {
    let out = host.run(argv, stdin, timeout)?;
    if !out.success() {
        let status = match (out.exit_code, out.timed_out) {
            (_, true) => "timed out".to_string(),
            (Some(c), _) => format!("exit status {c}"),
            (None, _) => format!("signal {}", out.signal.unwrap_or(0)),
        };
        return Err(HostError::Failed { command: argv.join(" "), status, stderr: String::from_utf8_lossy(&out.stderr).trim().chars().take(2000).collect() });
    }
    Ok(out)
}

/// `systemctl ARGS...` with a two-minute limit, status 0 required.
pub fn systemctl(host: &dyn Host, args: &[&str]) -> Result<ProcessOutput, HostError> {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    run_ok(host, &argv, None, Duration::from_secs(120))
}

/// The real system.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemHost;

impl Host for SystemHost {
    fn run(&self, argv: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Result<ProcessOutput, HostError> {
        tracing::debug!(command = %argv.join(" "), "run");
        let spec = Spec { argv: argv.iter().map(|s| s.to_string()).collect(), stdin: stdin.map(<[u8]>::to_vec), timeout: Some(timeout), ..Default::default() };
        process::run(&spec).map_err(|source| HostError::Spawn { program: argv.first().unwrap_or(&"").to_string(), source })
    }

    fn hostname(&self) -> Result<String, HostError> {
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).map_err(|e| HostError::Hostname(e.into()))
    }

    fn set_hostname(&self, name: &str) -> Result<(), HostError> {
        nix::unistd::sethostname(name).map_err(|e| HostError::Hostname(e.into()))
    }

    fn mount_fs(&self, dev: &std::path::Path, to: &std::path::Path, fstype: &str) -> Result<(), HostError> {
        tracing::debug!(dev = %dev.display(), to = %to.display(), fstype, "mount");
        nix::mount::mount(Some(dev), to, Some(fstype), nix::mount::MsFlags::empty(), None::<&str>).map_err(|e| HostError::Mount {
            from: dev.display().to_string(),
            to: to.display().to_string(),
            source: e.into(),
        })
    }

    fn bind_mount(&self, from: &std::path::Path, to: &std::path::Path) -> Result<(), HostError> {
        tracing::debug!(from = %from.display(), to = %to.display(), "bind mount");
        nix::mount::mount(Some(from), to, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).map_err(|e| HostError::Mount {
            from: from.display().to_string(),
            to: to.display().to_string(),
            source: e.into(),
        })
    }
}
