//! The userdata tar at the start of a new minikube data disk.
//!
//! Its first entry is named [`MAGIC`], so the raw disk starts with the magic string; then come
//! `.ssh/authorized_keys`, the agent's trust files `minikube-agent/{ca.crt,agent.crt,agent.key}`,
//! the node document `minikube-agent/node.json` and binaries it names,
//! `minikube-agent/blobs/SHA256` (so that the kubelet does not cross the slow user-mode network).
//! [`build`] writes such a tar (for the host side and tests); [`parse`] reads one, both with the
//! `tar` crate (about 47 KiB of the static agent); [`archive_len`] and [`archive_len_in`] find
//! where the tar ends on a disk by walking its headers' size fields.

use std::io::{Read, Seek, SeekFrom};

/// The first bytes of a data disk that asks to be formatted.
pub const MAGIC: &str = "boot2docker, please format-me";
/// Largest userdata tar read from a disk (a kubelet is about 80 MB).
pub const MAX_TAR: usize = 512 * 1024 * 1024;
/// How much of a disk is read to look for the magic.
pub const HEAD: usize = 64 * 1024;
/// Where binaries are in the tar: `BLOB_PREFIX` + lowercase hex SHA-256.
pub const BLOB_PREFIX: &str = "minikube-agent/blobs/";
/// Where a data filesystem made on the host carries its userdata tar, still to be applied: a
/// file at the filesystem's top (the launcher writes it with `mke2fs -d`; the agent's first boot
/// applies it and removes it).
pub const FRESH_FILE: &str = "minikube-userdata.tar";
/// The owner of the docker user's `authorized_keys`, as the node document's file section and the
/// userdata tar both place it (one spelling: two owners would make each boot rewrite the file).
pub const AUTHORIZED_KEYS_OWNER: &str = "docker:docker";
/// The data filesystem's label (minikube's), whoever made it; `/init` looks for it too.
pub const DATA_LABEL: &str = minikube_init::data::DATA_LABEL;
/// The ext2/3/4 volume label of a block device (or image file), if it has one.
pub use minikube_init::data::ext4_label;

const BLOCK: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path inside the tar (no leading `./`).
    pub path: String,
    /// Regular file content; `None` for a directory.
    pub data: Option<Vec<u8>>,
    pub mode: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TarError {
    #[error("userdata tar: {0}")]
    Malformed(String),
}

fn octal(field: &[u8]) -> Result<u64, TarError> {
    let text: String = field.iter().take_while(|b| **b != 0).map(|b| *b as char).collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| TarError::Malformed(format!("bad octal field {text:?}")))
}

/// Length of the tar archive at the start of `bytes` (through its end-of-archive blocks), if
/// `bytes` starts with a tar header.
pub fn archive_len(bytes: &[u8]) -> Result<usize, TarError> {
    let mut off = 0;
    loop {
        let Some(header) = bytes.get(off..off + BLOCK) else {
            return Err(TarError::Malformed("archive ends without end-of-archive blocks".into()));
        };
        if header.iter().all(|b| *b == 0) {
            return Ok((off + 2 * BLOCK).min(bytes.len()));
        }
        let size = octal(&header[124..136])? as usize;
        off = off.checked_add(BLOCK).and_then(|o| o.checked_add(size.div_ceil(BLOCK) * BLOCK)).ok_or_else(|| TarError::Malformed("size overflow".into()))?;
    }
}

/// Length of the tar archive at the start of `r`, found by seeking from header to header (the
/// archive may be larger than what is worth reading to find out).
pub fn archive_len_in(r: &mut (impl Read + Seek)) -> Result<usize, TarError> {
    let mut off: u64 = 0;
    let mut header = [0u8; BLOCK];
    loop {
        r.seek(SeekFrom::Start(off))
            .and_then(|_| r.read_exact(&mut header))
            .map_err(|e| TarError::Malformed(format!("reading the header at offset {off}: {e}")))?;
        if header.iter().all(|b| *b == 0) {
            return usize::try_from(off + 2 * BLOCK as u64).map_err(|_| TarError::Malformed("size overflow".into()));
        }
        let size = octal(&header[124..136])?;
        off = off
            .checked_add(BLOCK as u64)
            .and_then(|o| o.checked_add(size.div_ceil(BLOCK as u64) * BLOCK as u64))
            .filter(|o| *o <= MAX_TAR as u64)
            .ok_or_else(|| TarError::Malformed(format!("archive larger than {MAX_TAR} bytes")))?;
    }
}

fn malformed(e: std::io::Error) -> TarError {
    TarError::Malformed(e.to_string())
}

/// Read every file and directory of a ustar/GNU tar (links and devices are skipped), with the
/// `tar` crate.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, TarError> {
    let mut entries = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        let kind = entry.header().entry_type();
        let mut name = entry.path().map_err(malformed)?.to_string_lossy().into_owned();
        while let Some(rest) = name.strip_prefix("./") {
            name = rest.to_string();
        }
        let name = name.trim_end_matches('/').to_string();
        let mode = entry.header().mode().map_err(malformed)? & 0o7777;
        if kind.is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(malformed)?;
            entries.push(Entry { path: name, data: Some(data), mode });
        } else if kind.is_dir() {
            entries.push(Entry { path: name, data: None, mode });
        }
    }
    Ok(entries)
}

/// A userdata tar: the magic entry first, then `entries`, with the `tar` crate.
pub fn build(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let magic = Entry { path: MAGIC.to_string(), data: Some(MAGIC.as_bytes().to_vec()), mode: 0o644 };
    for e in std::iter::once(&magic).chain(entries) {
        let mut h = tar::Header::new_ustar();
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let data: &[u8] = match &e.data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                d
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                &[]
            }
        };
        b.append_data(&mut h, &e.path, data).expect("writing to memory");
    }
    b.into_inner().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_parse() {
        let entries = vec![
            Entry { path: ".ssh".into(), data: None, mode: 0o700 },
            Entry { path: ".ssh/authorized_keys".into(), data: Some(b"ssh-ed25519 AAAA test\n".to_vec()), mode: 0o644 },
            Entry { path: "minikube-agent/ca.crt".into(), data: Some(vec![b'x'; 1500]), mode: 0o644 },
        ];
        let tar = build(&entries);
        assert!(tar.starts_with(MAGIC.as_bytes()), "the disk starts with the magic");
        let parsed = parse(&tar).unwrap();
        assert_eq!(parsed[0].path, MAGIC);
        assert_eq!(&parsed[1..], &entries[..]);
        assert_eq!(archive_len(&[tar.clone(), vec![7u8; 4096]].concat()).unwrap(), tar.len());
        assert_eq!(archive_len_in(&mut std::io::Cursor::new([tar.clone(), vec![7u8; 4096]].concat())).unwrap(), tar.len());
    }

    #[test]
    fn gnu_tar_output_is_read() {
        // A tar made by GNU tar, as the host tools would.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/.ssh")).unwrap();
        std::fs::write(d.path().join("src").join(MAGIC), MAGIC).unwrap();
        std::fs::write(d.path().join("src/.ssh/authorized_keys"), "key\n").unwrap();
        let out = d.path().join("u.tar");
        let st = std::process::Command::new("tar").arg("-C").arg(d.path().join("src")).arg("-cf").arg(&out).args([MAGIC, ".ssh"]).status().unwrap();
        assert!(st.success());
        let bytes = std::fs::read(&out).unwrap();
        let parsed = parse(&bytes).unwrap();
        assert!(parsed.iter().any(|e| e.path == ".ssh/authorized_keys" && e.data.as_deref() == Some(&b"key\n"[..])));
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let tar = build(&[Entry { path: "a".into(), data: Some(vec![1; 700]), mode: 0o644 }]);
        for cut in [1usize, 100, 511, 600, 1100] {
            let _ = parse(&tar[..cut]);
            let _ = archive_len(&tar[..cut]);
        }
        let mut bad = tar.clone();
        bad[0] ^= 1;
        assert!(parse(&bad).is_err(), "checksum catches a flipped bit");
    }
}
