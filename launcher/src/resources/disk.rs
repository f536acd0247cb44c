//! The persistent data disk: a qcow2 image carrying the userdata tar (the agent's trust files,
//! `.ssh/authorized_keys`, the node document and the kubelet), made one of two ways
//! ([`DiskFormat`]):
//!
//! - ours (the default): the ext4 filesystem made here, ready to mount (`mke2fs -d`, label
//!   `boot2docker-data`, on the whole disk), with the tar at its top as
//!   [`userdata::FRESH_FILE`]; the guest never formats it;
//! - minikube's: the raw content starts with the tar (first entry named `boot2docker, please
//!   format-me`); at first boot `minikube-agent boot` sees the magic, keeps the tar, partitions
//!   and formats the disk in the guest.

use std::path::{Path, PathBuf};
use std::process::Command;

use agent_api::userdata::{self, Entry};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("running {tool}: {source} (is qemu-utils installed?)")]
    Spawn { tool: String, source: std::io::Error },
    #[error("{command} failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String },
    #[error("userdata tar is {len} bytes, more than the agent reads ({max})")]
    TooLarge { len: usize, max: usize },
}

/// Files carried by the tar.
#[derive(Debug, Clone, Default)]
pub struct Userdata {
    pub ca_pem: String,
    pub agent_cert_pem: String,
    pub agent_key_pem: String,
    /// `.ssh/authorized_keys` content (may be empty).
    pub authorized_keys: String,
    /// The node document (`minikube-agent/node.json`; none when empty).
    pub document: Vec<u8>,
    /// Binaries by SHA-256: (hex, host file), as `minikube-agent/blobs/HEX`.
    pub blobs: Vec<(String, PathBuf)>,
}

/// The userdata tar (the magic entry first).
pub fn userdata_tar(u: &Userdata) -> Result<Vec<u8>, DiskError> {
    let file = |path: &str, data: &[u8], mode: u32| Entry { path: path.to_string(), data: Some(data.to_vec()), mode };
    let dir = |path: &str, mode: u32| Entry { path: path.to_string(), data: None, mode };
    let mut entries = vec![
        dir(".ssh", 0o700),
        file(".ssh/authorized_keys", u.authorized_keys.as_bytes(), 0o600),
        dir("minikube-agent", 0o700),
        file(&format!("minikube-agent/{}", agent_api::trust::CA_FILE), u.ca_pem.as_bytes(), 0o644),
        file(&format!("minikube-agent/{}", agent_api::trust::CERT_FILE), u.agent_cert_pem.as_bytes(), 0o644),
        file(&format!("minikube-agent/{}", agent_api::trust::KEY_FILE), u.agent_key_pem.as_bytes(), 0o600),
    ];
    if !u.document.is_empty() {
        entries.push(file(&format!("minikube-agent/{}", agent_api::document::FILE_NAME), &u.document, 0o600));
    }
    for (sha, path) in &u.blobs {
        let data = std::fs::read(path).map_err(|source| DiskError::Io { path: path.clone(), source })?;
        entries.push(file(&format!("{}{sha}", userdata::BLOB_PREFIX), &data, 0o755));
    }
    let tar = userdata::build(&entries);
    if tar.len() > userdata::MAX_TAR {
        return Err(DiskError::TooLarge { len: tar.len(), max: userdata::MAX_TAR });
    }
    Ok(tar)
}

fn run(tool: &str, args: &[&std::ffi::OsStr]) -> Result<(), DiskError> {
    let out = Command::new(tool).args(args).output().map_err(|source| DiskError::Spawn { tool: tool.to_string(), source })?;
    if !out.status.success() {
        let command = std::iter::once(tool.to_string()).chain(args.iter().map(|a| a.to_string_lossy().into_owned())).collect::<Vec<_>>().join(" ");
        return Err(DiskError::Failed { command, status: out.status.to_string(), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(())
}

/// How the data disk is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// The filesystem made here, ready to mount.
    Ext4,
    /// minikube's: the tar after the magic, formatted by the guest at its first boot.
    Magic,
}

/// Chooses minikube's disk instead of ours (`magic`), to compare the two or to check a guest
/// against a disk minikube would make.
pub const FORMAT_ENV: &str = "MINIKUBE_NODE_DATA_DISK";

impl DiskFormat {
    /// From [`FORMAT_ENV`]: `magic` is minikube's, anything else ours.
    pub fn from_env() -> DiskFormat {
        match std::env::var(FORMAT_ENV).as_deref() {
            Ok("magic") => DiskFormat::Magic,
            _ => DiskFormat::Ext4,
        }
    }
}

/// Create `target` (qcow2, `size_mb` MiB virtual) carrying `tar`, made as `format` says. Atomic:
/// built beside the target and renamed over it.
pub fn create(target: &Path, tar: &[u8], size_mb: u64, format: DiskFormat) -> Result<(), DiskError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let raw = dir.join(format!("{}{name}.raw", pki::atomic::TEMP_PREFIX));
    let staging = dir.join(format!("{}{name}.d", pki::atomic::TEMP_PREFIX));
    let tmp = dir.join(format!("{}{name}", pki::atomic::TEMP_PREFIX));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DiskError::Io { path, source }
    };
    let made = match format {
        DiskFormat::Magic => {
            // Whole 1 MiB of raw content: the tar, then zeros.
            let mut content = tar.to_vec();
            content.resize(content.len().div_ceil(1 << 20) * (1 << 20), 0);
            std::fs::write(&raw, &content).map_err(io(&raw))
        }
        DiskFormat::Ext4 => (|| {
            std::fs::create_dir_all(&staging).map_err(io(&staging))?;
            let file = staging.join(userdata::FRESH_FILE);
            std::fs::write(&file, tar).map_err(io(&file))?;
            let _ = std::fs::remove_file(&raw);
            // The guest's own choices (-i 2048: many small files under /var/lib), the whole disk
            // one filesystem (the agent looks for the label on disks as on partitions); inode
            // tables and journal left to the guest kernel's lazy init, so the raw file stays
            // sparse and qemu-img copies only what mke2fs wrote.
            run(
                "mke2fs",
                &[
                    "-q".as_ref(),
                    "-F".as_ref(),
                    "-t".as_ref(),
                    "ext4".as_ref(),
                    "-L".as_ref(),
                    userdata::DATA_LABEL.as_ref(),
                    "-i".as_ref(),
                    "2048".as_ref(),
                    "-E".as_ref(),
                    "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1,nodiscard".as_ref(),
                    "-d".as_ref(),
                    staging.as_os_str(),
                    raw.as_os_str(),
                    format!("{size_mb}M").as_ref(),
                ],
            )
        })(),
    };
    let _ = std::fs::remove_dir_all(&staging);
    if let Err(e) = made {
        let _ = std::fs::remove_file(&raw);
        return Err(e);
    }
    let result = (|| {
        run(
            "qemu-img",
            &["convert".as_ref(), "-q".as_ref(), "-f".as_ref(), "raw".as_ref(), "-O".as_ref(), "qcow2".as_ref(), raw.as_os_str(), tmp.as_os_str()],
        )?;
        run("qemu-img", &["resize".as_ref(), "-q".as_ref(), "-f".as_ref(), "qcow2".as_ref(), tmp.as_os_str(), format!("{size_mb}M").as_ref()])?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, target).map_err(io(target))?;
        pki::atomic::sync_dir(dir).map_err(io(dir))
    })();
    let _ = std::fs::remove_file(&raw);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The first `len` bytes of a qcow2 image's content (through `qemu-img dd`), for checks.
pub fn read_head(image: &Path, len: usize) -> Result<Vec<u8>, DiskError> {
    let dir = tempdir_beside(image)?;
    let out = dir.join("head.raw");
    let result = run(
        "qemu-img",
        &[
            "dd".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-O".as_ref(),
            "raw".as_ref(),
            "bs=512".as_ref(),
            format!("count={}", len.div_ceil(512)).as_ref(),
            format!("if={}", image.display()).as_ref(),
            format!("of={}", out.display()).as_ref(),
        ],
    )
    .and_then(|()| std::fs::read(&out).map_err(|source| DiskError::Io { path: out.clone(), source }));
    let _ = std::fs::remove_dir_all(&dir);
    let mut bytes = result?;
    bytes.truncate(len);
    Ok(bytes)
}

fn tempdir_beside(image: &Path) -> Result<PathBuf, DiskError> {
    let dir = image.parent().unwrap_or(Path::new(".")).join(format!("{}head.{}", pki::atomic::TEMP_PREFIX, std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| DiskError::Io { path: dir.clone(), source })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcow2_starts_with_magic_and_tar() {
        let d = tempfile::tempdir().unwrap();
        let u = Userdata { ca_pem: "CA".into(), agent_cert_pem: "CERT".into(), agent_key_pem: "KEY".into(), ..Default::default() };
        let tar = userdata_tar(&u).unwrap();
        let disk = d.path().join("disk.qcow2");
        create(&disk, &tar, 64, DiskFormat::Magic).unwrap();
        let head = std::fs::read(&disk).unwrap();
        assert_eq!(&head[..4], b"QFI\xfb", "a qcow2 file");
        let content = read_head(&disk, tar.len()).unwrap();
        assert!(content.starts_with(userdata::MAGIC.as_bytes()));
        let entries = userdata::parse(&content).unwrap();
        let key = entries.iter().find(|e| e.path == "minikube-agent/agent.key").unwrap();
        assert_eq!(key.data.as_deref(), Some(&b"KEY"[..]));
        assert_eq!(userdata::archive_len(&content).unwrap(), tar.len());
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("disk.qcow2")], "no temporary left");
        let info = Command::new("qemu-img").args(["info", "--output=json"]).arg(&disk).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["virtual-size"], 64 << 20);
    }

    #[test]
    fn ext4_disk_is_made_here_ready_to_mount() {
        let d = tempfile::tempdir().unwrap();
        let u = Userdata { ca_pem: "CA".into(), agent_cert_pem: "CERT".into(), agent_key_pem: "KEY".into(), ..Default::default() };
        let tar = userdata_tar(&u).unwrap();
        let disk = d.path().join("disk.qcow2");
        create(&disk, &tar, 2048, DiskFormat::Ext4).unwrap();
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("disk.qcow2")], "no temporary left");
        let size = std::fs::metadata(&disk).unwrap().len();
        assert!(size < 64 << 20, "a 2 GiB filesystem takes {size} bytes: the qcow2 holds only what mke2fs wrote");
        // The superblock, where the agent looks: ext4's magic and minikube's label.
        let head = read_head(&disk, 2048).unwrap();
        assert_eq!(u16::from_le_bytes([head[1024 + 0x38], head[1024 + 0x39]]), 0xEF53);
        assert!(head[1024 + 0x78..].starts_with(userdata::DATA_LABEL.as_bytes()));
        // The tar is a file at the top of the filesystem, byte for byte.
        let raw = d.path().join("disk.raw");
        run("qemu-img", &["convert".as_ref(), "-O".as_ref(), "raw".as_ref(), disk.as_os_str(), raw.as_os_str()]).unwrap();
        let out = Command::new("debugfs").args(["-R", &format!("cat /{}", userdata::FRESH_FILE)]).arg(&raw).output().expect("debugfs (e2fsprogs) runs");
        assert_eq!(out.stdout, tar, "{}", String::from_utf8_lossy(&out.stderr));
        let stat = Command::new("debugfs").args(["-R", "stat /"]).arg(&raw).output().unwrap();
        assert!(
            String::from_utf8_lossy(&stat.stdout).contains("User:     0   Group:     0"),
            "the top belongs to root: {}",
            String::from_utf8_lossy(&stat.stdout)
        );
    }
}
