//! The machine's own services: systemd, kernel modules, disk tools, the kernel hostname.
//!
//! Every call that acts on the running system outside the file tree goes through [`Host`], so
//! that `--root` tests can observe it. [`SystemHost`] runs the real tools; [`RecordingHost`] is
//! the test double that records command lines and answers from rules.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::process::{self, ProcessOutput, Spec};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{program}: could not run: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String },
    #[error("hostname: {0}")]
    Hostname(std::io::Error),
}

/// Access to the running system.
pub trait Host: Send + Sync {
    /// Run a tool (`systemctl`, `modprobe`, `sfdisk`...) to completion.
    fn run(&self, argv: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Result<ProcessOutput, HostError>;
    /// The kernel's hostname.
    fn hostname(&self) -> Result<String, HostError>;
    /// Set the kernel's hostname.
    fn set_hostname(&self, name: &str) -> Result<(), HostError>;
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
        return Err(HostError::Failed {
            command: argv.join(" "),
            status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().chars().take(2000).collect(),
        });
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
        let spec = Spec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdin: stdin.map(<[u8]>::to_vec),
            timeout: Some(timeout),
            ..Default::default()
        };
        process::run(&spec).map_err(|source| HostError::Spawn { program: argv.first().unwrap_or(&"").to_string(), source })
    }

    fn hostname(&self) -> Result<String, HostError> {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .map_err(|e| HostError::Hostname(e.into()))
    }

    fn set_hostname(&self, name: &str) -> Result<(), HostError> {
        nix::unistd::sethostname(name).map_err(|e| HostError::Hostname(e.into()))
    }
}

/// One scripted answer of the [`RecordingHost`].
#[derive(Debug, Clone)]
struct Rule {
    prefix: Vec<String>,
    stdout: String,
    exit_code: i32,
    creates: Option<PathBuf>,
}

/// Test double for [`Host`]: records every command line, answers status 0 with empty output
/// unless a rule matches, keeps the hostname in memory. Services "start" instantly; a rule can
/// create a file (a runtime's socket) when a command runs.
#[derive(Debug, Default)]
pub struct RecordingHost {
    commands: Mutex<Vec<String>>,
    rules: Mutex<Vec<Rule>>,
    hostname: Mutex<String>,
}

impl RecordingHost {
    pub fn new(hostname: &str) -> RecordingHost {
        RecordingHost { hostname: Mutex::new(hostname.to_string()), ..Default::default() }
    }

    /// Commands starting with `prefix` (space-separated words) print `stdout` and exit `exit_code`.
    pub fn answer(&self, prefix: &str, stdout: &str, exit_code: i32) {
        self.rules.lock().unwrap().push(Rule {
            prefix: prefix.split_whitespace().map(str::to_string).collect(),
            stdout: stdout.to_string(),
            exit_code,
            creates: None,
        });
    }

    /// Commands starting with `prefix` create the (host) file `path`, e.g. a runtime socket.
    pub fn creates(&self, prefix: &str, path: &Path) {
        self.rules.lock().unwrap().push(Rule {
            prefix: prefix.split_whitespace().map(str::to_string).collect(),
            stdout: String::new(),
            exit_code: 0,
            creates: Some(path.to_path_buf()),
        });
    }

    /// Every command line run so far, words joined by spaces.
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }

    /// Forget the recorded commands.
    pub fn clear(&self) {
        self.commands.lock().unwrap().clear();
    }
}

impl Host for RecordingHost {
    fn run(&self, argv: &[&str], _stdin: Option<&[u8]>, _timeout: Duration) -> Result<ProcessOutput, HostError> {
        self.commands.lock().unwrap().push(argv.join(" "));
        let rules = self.rules.lock().unwrap();
        let mut out = ProcessOutput { exit_code: Some(0), ..Default::default() };
        // The last matching rule wins, so tests can override earlier answers.
        for rule in rules.iter().rev() {
            if rule.prefix.len() <= argv.len() && rule.prefix.iter().zip(argv).all(|(a, b)| a == b) {
                if let Some(p) = &rule.creates {
                    if let Some(d) = p.parent() {
                        let _ = std::fs::create_dir_all(d);
                    }
                    let _ = std::fs::write(p, b"");
                    continue;
                }
                out.stdout = rule.stdout.clone().into_bytes();
                out.exit_code = Some(rule.exit_code);
                break;
            }
        }
        Ok(out)
    }

    fn hostname(&self) -> Result<String, HostError> {
        Ok(self.hostname.lock().unwrap().clone())
    }

    fn set_hostname(&self, name: &str) -> Result<(), HostError> {
        self.commands.lock().unwrap().push(format!("sethostname {name}"));
        *self.hostname.lock().unwrap() = name.to_string();
        Ok(())
    }
}
