//! Where a machine lives on the host and what is recorded about it.
//!
//! Layout under the home directory (`MINIKUBE_NODE_HOME`, else `$XDG_DATA_HOME/minikube-node`,
//! else `~/.local/share/minikube-node`):
//!
//! ```text
//! certs/                      shared by every profile: minikubeCA, proxy-client CA, agent CA
//! machines/NAME/state.json    the recorded configuration and host ports ([`MachineState`])
//! machines/NAME/disk.qcow2    the persistent data disk (qemu)
//! machines/NAME/console.log   the serial console (qemu)
//! machines/NAME/qemu.pid      qemu's pidfile; machines/NAME/qmp.sock its QMP socket (qemu)
//! machines/NAME/trust/        the agent's ca.crt, agent.crt, agent.key (fw_cfg sources for
//!                             qemu, a read-only bind mount for kic)
//! machines/NAME/certs/        per-profile Kubernetes certificates and the launcher's client cert
//! machines/NAME/kubeconfig    written at the end of `start`
//! ```
//!
//! A kic node (podman/docker) keeps its disk state in a named volume `NAME` on the engine side
//! and its console in the container's logs.

use std::path::{Path, PathBuf};

use crate::model::MachineState;

/// Environment variable that overrides the home directory.
pub const HOME_ENV: &str = "MINIKUBE_NODE_HOME";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path} is not a machine state this launcher can read ({reason}); fix the file, or run `minikube-node delete -p {name}` to remove the machine and start afresh")]
    Corrupt { path: PathBuf, name: String, reason: String },
    #[error("{path} has state format {found}, newer than this launcher's {STATE_FORMAT}: use a newer minikube-node, or `minikube-node delete -p {name}`")]
    NewerFormat { path: PathBuf, name: String, found: u64 },
    #[error("neither {HOME_ENV}, XDG_DATA_HOME nor HOME is set: cannot choose a state directory")]
    NoHome,
    #[error("profile name {0:?}: use 1-63 characters among a-z, 0-9 and '-', starting with a letter or digit")]
    BadName(String),
    #[error("no machine named {0:?} (no {1})")]
    NoMachine(String, PathBuf),
    #[error("profile {name:?} is busy: another minikube-node (pid {pid}) is working on it; wait for it to finish (lock {path})")]
    Busy { name: String, pid: String, path: PathBuf },
}

/// An exclusive hold on a profile for one command (`start`), released when dropped or when the
/// process dies (an flock on `<home>/locks/<name>.lock`, which outlives `delete`).
pub struct ProfileLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// The version of `state.json`'s layout this launcher writes and reads (files without the key
/// are version 1).
pub const STATE_FORMAT: u64 = 1;
const FORMAT_KEY: &str = "format";

/// The launcher's home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    /// From the environment (see the module documentation).
    pub fn from_env() -> Result<Home, StateError> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let root = if let Some(h) = var(HOME_ENV) {
            h
        } else if let Some(x) = var("XDG_DATA_HOME") {
            x.join("minikube-node")
        } else if let Some(h) = var("HOME") {
            h.join(".local/share/minikube-node")
        } else {
            return Err(StateError::NoHome);
        };
        Ok(Home { root })
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// Certificates shared by every profile.
    pub fn shared_certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    /// Downloaded binaries, in minikube's layout (`cache/linux/ARCH/VERSION/NAME`).
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Kernels and initramfses unpacked from ISOs for qemu's direct boot, named by content.
    pub fn kernels(&self) -> PathBuf {
        self.cache().join("kernels")
    }

    pub fn machines(&self) -> PathBuf {
        self.root.join("machines")
    }

    pub fn machine(&self, name: &str) -> Result<MachineDir, StateError> {
        check_name(name)?;
        Ok(MachineDir { name: name.to_string(), dir: self.machines().join(name) })
    }

    /// The nodes of `profile` with their states, control plane first.
    pub fn nodes(&self, profile: &str) -> Result<Vec<MachineState>, StateError> {
        let mut out = Vec::new();
        for name in self.list()? {
            if crate::topology::node_index(profile, &name).is_none() {
                continue;
            }
            let s = self.machine(&name)?.load()?;
            if crate::topology::cluster_of(&s) == profile {
                out.push(s);
            }
        }
        out.sort_by_key(|s| crate::topology::node_index(profile, &s.name));
        Ok(out)
    }

    /// Hold the home's port lock while choosing host ports and until qemu has bound them, so
    /// two `start`s of different profiles cannot pick the same port (blocks until free; released
    /// when dropped or when the process dies).
    pub fn lock_ports(&self) -> Result<ProfileLock, StateError> {
        let (f, path) = self.lock_file("ports.lock")?;
        let lock =
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| StateError::Io { path, source: std::io::Error::from(e) })?;
        Ok(ProfileLock { _lock: lock })
    }

    /// `<home>/locks/NAME`, opened (created if missing) for locking.
    fn lock_file(&self, name: &str) -> Result<(std::fs::File, PathBuf), StateError> {
        let dir = self.root.join("locks");
        std::fs::create_dir_all(&dir).map_err(|source| StateError::Io { path: dir.clone(), source })?;
        let path = dir.join(name);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StateError::Io { path: path.clone(), source })?;
        Ok((f, path))
    }

    /// Host ports recorded by every profile but `except` (a stopped machine keeps its ports).
    pub fn recorded_ports(&self, except: &str) -> std::collections::BTreeSet<u16> {
        let mut taken = std::collections::BTreeSet::new();
        for name in self.list().unwrap_or_default() {
            if name == except {
                continue;
            }
            if let Ok(s) = self.machine(&name).and_then(|m| m.load()) {
                taken.extend([s.ports.agent, s.ports.apiserver, s.ports.ssh]);
            }
        }
        taken
    }

    /// Names of every machine with a state file, sorted.
    pub fn list(&self) -> Result<Vec<String>, StateError> {
        let dir = self.machines();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateError::Io { path: dir, source }),
        };
        let mut names: Vec<String> =
            entries.filter_map(Result::ok).filter(|e| e.path().join(STATE_FILE).is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        Ok(names)
    }
}

/// Profile names become host names and directory names.
pub fn check_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(StateError::BadName(name.to_string()))
    }
}

const STATE_FILE: &str = "state.json";

/// One machine's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineDir {
    pub name: String,
    pub dir: PathBuf,
}

impl MachineDir {
    /// Take the profile's lock, or say who holds it.
    pub fn lock(&self, home: &Home) -> Result<ProfileLock, StateError> {
        use std::io::{Read, Seek, Write};
        let (f, path) = home.lock_file(&format!("{}.lock", self.name))?;
        let io = |source| StateError::Io { path: path.clone(), source };
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(mut l) => {
                l.set_len(0).map_err(io)?;
                l.rewind().map_err(io)?;
                write!(l, "{}", std::process::id()).map_err(io)?;
                Ok(ProfileLock { _lock: l })
            }
            Err((mut f, _)) => {
                let mut pid = String::new();
                let _ = f.read_to_string(&mut pid);
                Err(StateError::Busy { name: self.name.clone(), pid: pid.trim().to_string(), path })
            }
        }
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn trust_dir(&self) -> PathBuf {
        self.dir.join("trust")
    }
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    pub fn kubelet_double(&self) -> PathBuf {
        self.dir.join(crate::resources::kubelet::TEST_DOUBLE_NAME)
    }

    pub fn exists(&self) -> bool {
        self.state_file().is_file()
    }

    pub fn load(&self) -> Result<MachineState, StateError> {
        let path = self.state_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StateError::NoMachine(self.name.clone(), path)),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let corrupt = |reason: String| StateError::Corrupt { path: path.clone(), name: self.name.clone(), reason };
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let found = match v.get(FORMAT_KEY) {
            None => 1,
            Some(f) => f.as_u64().ok_or_else(|| corrupt(format!("{FORMAT_KEY:?} is not a number")))?,
        };
        if found > STATE_FORMAT {
            return Err(StateError::NewerFormat { path, name: self.name.clone(), found });
        }
        serde_json::from_value(v).map_err(|e| corrupt(e.to_string()))
    }

    /// Write the state atomically (temp file beside it, fsync, rename).
    pub fn save(&self, state: &MachineState) -> Result<(), StateError> {
        let path = self.state_file();
        std::fs::create_dir_all(&self.dir).map_err(|source| StateError::Io { path: self.dir.clone(), source })?;
        let mut v = serde_json::to_value(state).map_err(|source| StateError::Json { path: path.clone(), source })?;
        if let Some(o) = v.as_object_mut() {
            o.insert(FORMAT_KEY.into(), STATE_FORMAT.into());
        }
        let mut bytes = serde_json::to_vec_pretty(&v).map_err(|source| StateError::Json { path: path.clone(), source })?;
        bytes.push(b'\n');
        pki::atomic::write_atomic(&path, &bytes, 0o644).map_err(|source| StateError::Io { path, source })
    }
}

/// Remove a machine's directory (after the VM is stopped).
pub fn remove_dir(dir: &Path) -> Result<(), StateError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Io { path: dir.to_path_buf(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::example_state;

    #[test]
    fn names() {
        for ok in ["minikube", "m-2", "a"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "A", "a/b", "a.b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_profile_is_locked_by_one_holder_at_a_time() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        let m = home.machine("p1").unwrap();
        let held = m.lock(&home).unwrap();
        let e = m.lock(&home).err().expect("a second holder is refused").to_string();
        assert!(e.contains("is busy") && e.contains(&std::process::id().to_string()), "{e}");
        // Another profile is independent.
        let _other = home.machine("p2").unwrap().lock(&home).unwrap();
        drop(held);
        m.lock(&home).expect("released on drop");
    }

    #[test]
    fn state_round_trip_and_list() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        assert!(home.list().unwrap().is_empty());
        let m = home.machine("p1").unwrap();
        assert!(matches!(m.load(), Err(StateError::NoMachine(..))));
        let s = example_state("p1");
        m.save(&s).unwrap();
        assert_eq!(m.load().unwrap(), s);
        assert_eq!(home.list().unwrap(), vec!["p1".to_string()]);

        // Damaged state files: an error naming the file and the way out, never a panic.
        let good = std::fs::read(m.state_file()).unwrap();
        let damaged: [(&[u8], &str); 4] = [
            (&good[..good.len() / 2], "is not a machine state"),
            (b"{not json", "is not a machine state"),
            (b"{\"format\": 99, \"name\": \"p1\"}", "newer than this launcher"),
            (b"{\"format\": 1, \"name\": \"p1\"}", "is not a machine state"),
        ];
        for (bytes, want) in damaged {
            std::fs::write(m.state_file(), bytes).unwrap();
            let e = m.load().unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(&m.state_file().display().to_string()) && e.contains("minikube-node delete -p p1"), "{e}");
        }
        std::fs::write(m.state_file(), &good).unwrap();
        assert_eq!(m.load().unwrap(), s);
        // A qemu state file has no kic fields; a kic one no ISO.
        let text = std::fs::read_to_string(m.state_file()).unwrap();
        assert!(text.contains("\"driver\": \"qemu\"") && !text.contains("\"image\"") && !text.contains("oci_runtime"), "{text}");
        let k = MachineState { driver: crate::model::Driver::Podman, iso: PathBuf::new(), image: "kicbase:v1".into(), oci_runtime: Some("runc".into()), ..s };
        m.save(&k).unwrap();
        let text = std::fs::read_to_string(m.state_file()).unwrap();
        assert!(text.contains("\"driver\": \"podman\"") && !text.contains("\"iso\""), "{text}");
        assert_eq!(m.load().unwrap(), k);
    }
}
