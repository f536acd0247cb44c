//! The test double of [`Host`] (feature `test-hooks`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{Host, HostError};
use crate::process::ProcessOutput;

/// The commands [`RecordingHost::node`] answers: every command line the agent runs, by the words
/// that say what it does.
pub const NODE_COMMANDS: &[&str] = &[
    "systemctl daemon-reload",
    "systemctl enable",
    "systemctl start",
    "systemctl stop",
    "systemctl restart",
    "systemctl mask",
    "systemctl unmask",
    "systemctl is-active",
    "systemctl show --property=NeedDaemonReload --value",
    "systemctl list-jobs --no-legend --plain",
    "networkctl reload",
    "ip -batch -",
    "modprobe",
    "sysctl --load",
    "docker version",
    "containerd --version",
    "crio --version",
    "ctr -n k8s.io images ls",
    "ctr -n k8s.io images import",
    "ctr -n k8s.io images label",
    "journalctl --no-pager",
    "sfdisk --wipe always",
    "udevadm settle",
    "mkfs.ext4",
    "mount",
    "ssh-keygen",
    "update-alternatives --set",
    "iptables-legacy-save",
    "ip6tables-legacy-save",
    "iptables-nft-save",
    "ip6tables-nft-save",
    "iptables-save",
    "iptables-restore",
];

/// One scripted answer of the [`RecordingHost`].
#[derive(Debug, Clone)]
struct Rule {
    prefix: Vec<String>,
    stdout: String,
    exit_code: i32,
    creates: Option<PathBuf>,
    /// How many more commands the rule answers (`None`: all of them).
    uses: Option<usize>,
}

/// Test double for [`Host`]: records every command line and answers it from the rules, keeps the
/// hostname in memory. It is strict: a command no rule matches fails with
/// [`HostError::NoRule`] (so a mistyped `systemctl` call fails the test that makes it).
/// [`RecordingHost::node`] starts with rules for the commands the agent's operations run;
/// services then "start" instantly, and a rule can create a file (a runtime's socket).
#[derive(Debug, Default)]
pub struct RecordingHost {
    commands: Mutex<Vec<String>>,
    rules: Mutex<Vec<Rule>>,
    hostname: Mutex<String>,
}

impl RecordingHost {
    /// A host with no rules: every command fails until a rule answers it.
    pub fn new(hostname: &str) -> RecordingHost {
        RecordingHost { hostname: Mutex::new(hostname.to_string()), ..Default::default() }
    }

    /// A host whose rules answer, with status 0 and no output, the commands the agent's
    /// operations, boot step and entrypoint run (each by its subcommand: `systemctl restart`,
    /// not any `systemctl`). Tests add their own rules on top; the last matching rule wins.
    pub fn node(hostname: &str) -> RecordingHost {
        let host = RecordingHost::new(hostname);
        for prefix in NODE_COMMANDS {
            host.answer(prefix, "", 0);
        }
        host
    }

    /// Commands starting with `prefix` (space-separated words) print `stdout` and exit `exit_code`.
    pub fn answer(&self, prefix: &str, stdout: &str, exit_code: i32) {
        self.rules.lock().unwrap().push(Rule {
            prefix: prefix.split_whitespace().map(str::to_string).collect(),
            stdout: stdout.to_string(),
            exit_code,
            creates: None,
            uses: None,
        });
    }

    /// Like [`RecordingHost::answer`], for the next `times` matching commands only; later ones
    /// fall through to the earlier rules (a daemon that is not up yet, then is).
    pub fn answer_first(&self, times: usize, prefix: &str, stdout: &str, exit_code: i32) {
        self.rules.lock().unwrap().push(Rule {
            prefix: prefix.split_whitespace().map(str::to_string).collect(),
            stdout: stdout.to_string(),
            exit_code,
            creates: None,
            uses: Some(times),
        });
    }

    /// Commands starting with `prefix` create the (host) file `path`, e.g. a runtime socket.
    pub fn creates(&self, prefix: &str, path: &Path) {
        self.rules.lock().unwrap().push(Rule {
            prefix: prefix.split_whitespace().map(str::to_string).collect(),
            stdout: String::new(),
            exit_code: 0,
            creates: Some(path.to_path_buf()),
            uses: None,
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
        let mut rules = self.rules.lock().unwrap();
        let mut out = None;
        // The last matching rule wins, so tests can override earlier answers.
        for rule in rules.iter_mut().rev() {
            if rule.uses != Some(0) && rule.prefix.len() <= argv.len() && rule.prefix.iter().zip(argv).all(|(a, b)| a == b) {
                if let Some(n) = &mut rule.uses {
                    *n -= 1;
                }
                if let Some(p) = &rule.creates {
                    if let Some(d) = p.parent() {
                        let _ = std::fs::create_dir_all(d);
                    }
                    let _ = std::fs::write(p, b"");
                    continue;
                }
                out = Some(ProcessOutput { exit_code: Some(rule.exit_code), stdout: rule.stdout.clone().into_bytes(), ..Default::default() });
                break;
            }
        }
        out.ok_or_else(|| HostError::NoRule { command: argv.join(" ") })
    }

    fn hostname(&self) -> Result<String, HostError> {
        Ok(self.hostname.lock().unwrap().clone())
    }

    fn set_hostname(&self, name: &str) -> Result<(), HostError> {
        self.commands.lock().unwrap().push(format!("sethostname {name}"));
        *self.hostname.lock().unwrap() = name.to_string();
        Ok(())
    }

    /// Recorded (and answered by the rules) as the command line `mount -t FSTYPE DEV TO`.
    fn mount_fs(&self, dev: &std::path::Path, to: &std::path::Path, fstype: &str) -> Result<(), HostError> {
        crate::host::run_ok(self, &["mount", "-t", fstype, &dev.to_string_lossy(), &to.to_string_lossy()], None, Duration::from_secs(60)).map(drop)
    }

    /// Recorded (and answered by the rules) as the command line `mount --bind FROM TO`.
    fn bind_mount(&self, from: &std::path::Path, to: &std::path::Path) -> Result<(), HostError> {
        crate::host::run_ok(self, &["mount", "--bind", &from.to_string_lossy(), &to.to_string_lossy()], None, Duration::from_secs(60)).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_without_a_rule_fails() {
        let host = RecordingHost::node("m");
        host.run(&["systemctl", "restart", "kubelet.service"], None, Duration::from_secs(1)).unwrap();
        let e = host.run(&["systemctl", "restrat", "kubelet.service"], None, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(&e, HostError::NoRule { command } if command == "systemctl restrat kubelet.service"), "{e}");
        let e = crate::host::systemctl(&RecordingHost::new("m"), &["daemon-reload"]).unwrap_err();
        assert!(e.to_string().contains("no rule"), "{e}");
        host.answer("systemctl is-active kubelet", "inactive\n", 3);
        let out = host.run(&["systemctl", "is-active", "kubelet"], None, Duration::from_secs(1)).unwrap();
        assert_eq!((out.exit_code, out.stdout.as_slice()), (Some(3), &b"inactive\n"[..]));
        assert_eq!(host.commands().len(), 3);
    }
}
