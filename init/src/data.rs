//! The data disk as `/init` sees it: found by its ext4 label, it carries the root's writable
//! layer so that what one boot writes (the node's configuration under `/etc`, SSH host keys,
//! systemd's choices) is there at the next, under the same ISO.
//!
//! The label and the superblock reader are shared with the agent, which mounts the same disk for
//! the runtimes' state, and the launcher, which makes it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The ext4 label of the data filesystem (minikube's: its ISO mounts the partition so labelled).
pub const DATA_LABEL: &str = "boot2docker-data";

/// The directory at the data filesystem's top that holds the root's writable layers, one per
/// root image set ([`crate::Plan::root_key`]): `KEY/upper` and `KEY/work` for overlayfs.
pub const ROOT_LAYERS_DIR: &str = ".minikube-root";

/// The ext2/3/4 volume label of a block device (or image file), if it has one.
pub fn ext4_label(device: &Path) -> Option<String> {
    let mut f = File::open(device).ok()?;
    let mut sb = [0u8; 1024];
    f.seek(SeekFrom::Start(1024)).ok()?;
    f.read_exact(&mut sb).ok()?;
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
        return None;
    }
    let name = &sb[0x78..0x88];
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_read_from_the_superblock_and_anything_else_has_none() {
        let dir = std::env::temp_dir().join(format!("minikube-init-label-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("disk.img");
        let mut bytes = vec![0u8; 4096];
        bytes[1024 + 0x38..1024 + 0x3a].copy_from_slice(&0xEF53u16.to_le_bytes());
        bytes[1024 + 0x78..1024 + 0x78 + DATA_LABEL.len()].copy_from_slice(DATA_LABEL.as_bytes());
        std::fs::write(&img, &bytes).unwrap();
        assert_eq!(ext4_label(&img).as_deref(), Some(DATA_LABEL));
        bytes[1024 + 0x38] = 0;
        std::fs::write(&img, &bytes).unwrap();
        assert_eq!(ext4_label(&img), None, "no ext4 magic");
        std::fs::write(&img, b"short").unwrap();
        assert_eq!(ext4_label(&img), None, "too short to hold a superblock");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
