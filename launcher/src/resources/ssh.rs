//! SSH to a node, for people and for comparison: the per-profile key and a client.
//!
//! The key is Ed25519 in OpenSSH format, `id_ed25519` (0600) and `id_ed25519.pub` in the machine
//! directory, made once per profile; its public half goes into the data disk's userdata tar, from
//! which the agent's boot step installs it as the `docker` user's `authorized_keys` on every boot.
//! The node's host keys are regenerated at each boot (the root is a tmpfs), so, as minikube does,
//! the client does not pin them: SSH here is a convenience (`minikube-node ssh`), while the trust
//! path that provisions the node is the agent's mutual TLS.
//!
//! [`Ssh`] runs the system's OpenSSH client over one multiplexed connection (ControlMaster), one
//! session per command — the shape of minikube's SSH runner, which keeps one connection and opens
//! a session for each command. [`baseline`] does the agent's provisioning steps that way, for the
//! agent-versus-SSH benchmark.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::resources::state::MachineDir;

/// The account the key logs in as (uid 1000, passwordless sudo).
pub const USER: &str = "docker";
pub const KEY_FILE: &str = "id_ed25519";
/// Where the public key goes on the node.
pub const AUTHORIZED_KEYS: &str = "/home/docker/.ssh/authorized_keys";

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("SSH key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("cannot run ssh (apt-get install openssh-client): {0}")]
    Spawn(std::io::Error),
    #[error("ssh {user}@127.0.0.1:{port} `{command}` exited with {status}: {stderr}")]
    Failed { user: &'static str, port: u16, command: String, status: String, stderr: String },
    #[error("ssh on 127.0.0.1:{port} did not accept the key within {secs}s: {last}")]
    Timeout { port: u16, secs: u64, last: String },
}

/// Where the private key of a machine lives (the public key is beside it with `.pub`).
pub fn key_path(m: &MachineDir) -> PathBuf {
    m.dir.join(KEY_FILE)
}

fn public_line(key: &PrivateKey, path: &Path) -> Result<String, SshError> {
    let text = key.public_key().to_openssh().map_err(|e| SshError::Key { path: path.to_path_buf(), message: e.to_string() })?;
    Ok(format!("{text}\n"))
}

/// The machine's key pair, made on first use. Returns the `authorized_keys` line and whether the
/// key was created now.
pub fn ensure_key(m: &MachineDir, comment: &str) -> Result<(String, bool), SshError> {
    let path = key_path(m);
    if path.is_file() {
        let key = PrivateKey::read_openssh_file(&path).map_err(|e| SshError::Key { path: path.clone(), message: e.to_string() })?;
        return Ok((public_line(&key, &path)?, false));
    }
    let mut key =
        PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519).map_err(|e| SshError::Key { path: path.clone(), message: e.to_string() })?;
    key.set_comment(comment);
    let private = key.to_openssh(LineEnding::LF).map_err(|e| SshError::Key { path: path.clone(), message: e.to_string() })?;
    let public = public_line(&key, &path)?;
    std::fs::create_dir_all(&m.dir).map_err(|source| SshError::Io { path: m.dir.clone(), source })?;
    let pub_path = path.with_extension("pub");
    pki::atomic::write_atomic(&pub_path, public.as_bytes(), 0o644).map_err(|source| SshError::Io { path: pub_path, source })?;
    pki::atomic::write_atomic(&path, private.as_bytes(), 0o600).map_err(|source| SshError::Io { path: path.clone(), source })?;
    Ok((public, true))
}

/// `/tmp/minikube-node-ssh-UID`, made 0700 if missing.
pub fn control_dir() -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/minikube-node-ssh-{}", nix::unistd::getuid()));
    if std::fs::create_dir(&dir).is_ok() {
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    }
    dir
}

/// Quote one word for the remote shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-:=+,@".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// An OpenSSH client for one node: `docker@127.0.0.1:PORT` with the machine's key, one master
/// connection shared by every command.
#[derive(Debug, Clone)]
pub struct Ssh {
    pub port: u16,
    pub key: PathBuf,
    /// The control socket's directory (a short path: unix sockets are limited to 108 bytes).
    pub control_dir: PathBuf,
    /// Commands run so far (sessions opened).
    pub sessions: std::rc::Rc<std::cell::Cell<u32>>,
}

impl Ssh {
    pub fn new(port: u16, key: PathBuf, control_dir: PathBuf) -> Ssh {
        Ssh { port, key, control_dir, sessions: Default::default() }
    }

    /// The client for a machine. The control socket lives in a short per-user directory under
    /// /tmp (a machine directory can be too deep for a socket path); its name is a hash of
    /// user, host and port, so machines do not share it.
    pub fn for_machine(m: &MachineDir, port: u16) -> Ssh {
        Ssh::new(port, key_path(m), control_dir())
    }

    /// Options before the destination (also usable for an interactive `ssh`).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
            "PasswordAuthentication=no",
            "BatchMode=yes",
            "LogLevel=ERROR",
            "ConnectTimeout=10",
            "ServerAliveInterval=10",
            "ControlMaster=auto",
            "ControlPersist=120",
        ]
        .iter()
        .flat_map(|o| ["-o".to_string(), o.to_string()])
        .collect();
        a.push("-o".into());
        a.push(format!("ControlPath={}/ssh-%C", self.control_dir.display()));
        a.extend(["-i".into(), self.key.display().to_string(), "-p".into(), self.port.to_string(), format!("{USER}@127.0.0.1")]);
        a
    }

    /// `ssh ... docker@127.0.0.1 REMOTE` (the remote string goes to the login shell).
    pub fn command(&self, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.args()).arg("--").arg(remote);
        c
    }

    /// Run a remote shell command, feeding `stdin`; a non-zero exit is an error naming it.
    pub fn run(&self, remote: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let out = self.output(remote, stdin)?;
        if !out.status.success() {
            return Err(self.failed(remote, &out));
        }
        Ok(out)
    }

    /// Run a remote command and return its output whatever the exit status.
    pub fn output(&self, remote: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        self.sessions.set(self.sessions.get() + 1);
        let mut cmd = self.command(remote);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(SshError::Spawn)?;
        if let Some(data) = stdin {
            let mut w = child.stdin.take().expect("piped stdin");
            // A remote command that exits early closes the pipe: its status tells what happened.
            let _ = w.write_all(data);
        }
        child.wait_with_output().map_err(SshError::Spawn)
    }

    fn failed(&self, remote: &str, out: &Output) -> SshError {
        SshError::Failed {
            user: USER,
            port: self.port,
            command: remote.chars().take(200).collect(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().chars().take(2000).collect(),
        }
    }

    /// Retry `true` until the node accepts the key (exit 255 is ssh's own failure).
    pub fn wait(&self, timeout: Duration) -> Result<Duration, SshError> {
        let t = Instant::now();
        loop {
            let out = self.output("true", None)?;
            if out.status.success() {
                return Ok(t.elapsed());
            }
            let last = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if t.elapsed() >= timeout {
                return Err(SshError::Timeout { port: self.port, secs: timeout.as_secs(), last });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Close the master connection (the next command opens a new one).
    pub fn close(&self) {
        let _ = Command::new("ssh").args(self.args()).args(["-O", "exit"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

pub mod baseline;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_made_once_and_parses_as_openssh() {
        let d = tempfile::tempdir().unwrap();
        let m = crate::resources::state::Home::at(d.path()).machine("k").unwrap();
        let (line, made) = ensure_key(&m, "minikube-node@k").unwrap();
        assert!(made);
        assert!(line.starts_with("ssh-ed25519 AAAA") && line.trim_end().ends_with("minikube-node@k"), "{line}");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(key_path(&m)).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(key_path(&m).with_extension("pub")).unwrap(), line);
        // OpenSSH itself reads the private key and derives the same public key.
        let out = Command::new("ssh-keygen").arg("-y").arg("-f").arg(key_path(&m)).output().expect("ssh-keygen runs (openssh-client)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let derived = String::from_utf8_lossy(&out.stdout);
        assert_eq!(derived.split_whitespace().take(2).collect::<Vec<_>>(), line.split_whitespace().take(2).collect::<Vec<_>>());
        let (again, made) = ensure_key(&m, "other").unwrap();
        assert!(!made);
        assert_eq!(again, line, "the existing key is reused");
    }

    #[test]
    fn a_corrupt_key_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let m = crate::resources::state::Home::at(d.path()).machine("k").unwrap();
        std::fs::create_dir_all(&m.dir).unwrap();
        std::fs::write(key_path(&m), "not a key").unwrap();
        let e = ensure_key(&m, "c").unwrap_err().to_string();
        assert!(e.contains("id_ed25519"), "{e}");
    }

    #[test]
    fn quoting_survives_the_remote_shell() {
        assert_eq!(quote("/etc/hosts"), "/etc/hosts");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        let out = Command::new("sh").arg("-c").arg(format!("printf %s {}", quote("x 'y' $z"))).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x 'y' $z");
    }

    #[test]
    fn options_name_the_key_port_and_user() {
        let s = Ssh::new(2222, "/k/id".into(), "/c".into());
        let a = s.args().join(" ");
        assert!(a.contains("-i /k/id -p 2222 docker@127.0.0.1"), "{a}");
        assert!(a.contains("ControlPath=/c/ssh-%C"), "{a}");
    }
}
