//! The ISO's kernel started by qemu itself (`-kernel`, `-initrd`, `-append`) rather than by the
//! medium's bootloader: the same kernel, initramfs and command line, as the ISO's `/version.json`
//! records them ([`platform::KernelBoot`]). Nothing reads them through BIOS calls, and on x86 the
//! guest does not decompress its kernel either: a bzImage whose payload is an ELF with a PVH
//! entry point (Debian's kernels are) is unpacked here once, and qemu loads that ELF as it is.
//! Under TCG, isolinux's reads and the kernel's own xz decompression cost seconds per boot.
//!
//! What is unpacked is cached by content under the launcher's cache (`kernels/`), written
//! atomically: the kernel by the SHA-256 of the bzImage it came from, the initramfs by its own.

use std::io::Read;
use std::path::{Path, PathBuf};

use platform::KernelBoot;

/// What qemu boots directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectKernel {
    /// An ELF with a PVH entry (unpacked) or the bzImage as the medium has it.
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("ISO {iso}: not an ISO 9660 image: {reason}")]
    NotIso { iso: PathBuf, reason: String },
    #[error("ISO {iso}: {path}: {reason}")]
    Iso { iso: PathBuf, path: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The bytes of `path` on the ISO 9660 medium `iso`.
pub fn read_iso_file(iso: &Path, path: &str) -> Result<Vec<u8>, KernelError> {
    let bad = |reason: String| KernelError::Iso { iso: iso.to_path_buf(), path: path.to_string(), reason };
    let file = std::fs::File::open(iso).map_err(|source| KernelError::Io { path: iso.to_path_buf(), source })?;
    let fs = iso9660::ISO9660::new(file).map_err(|e| KernelError::NotIso { iso: iso.to_path_buf(), reason: e.to_string() })?;
    let f = match fs.open(path.trim_start_matches('/')).map_err(|e| bad(e.to_string()))? {
        Some(iso9660::DirectoryEntry::File(f)) => f,
        Some(_) => return Err(bad("a directory, not a file".into())),
        None => return Err(bad("no such file".into())),
    };
    let mut bytes = Vec::new();
    f.read().read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
    Ok(bytes)
}

/// The kernel and initramfs of `iso` as `boot` names them, ready in `cache` (kept there by content).
pub fn prepare(iso: &Path, boot: &KernelBoot, cache: &Path) -> Result<DirectKernel, KernelError> {
    std::fs::create_dir_all(cache).map_err(|source| KernelError::Io { path: cache.to_path_buf(), source })?;
    let bzimage = read_iso_file(iso, &boot.kernel)?;
    let key = pki::digest::sha256_hex(&bzimage);
    let elf = cache.join(format!("{key}.pvh.elf"));
    let kernel = if elf.is_file() {
        elf
    } else {
        match pvh_elf(&bzimage) {
            Some(bytes) => store(&elf, &bytes)?,
            None => {
                tracing::debug!(kernel = %boot.kernel, "no xz-packed ELF with a PVH entry inside: qemu boots the bzImage");
                store(&cache.join(format!("{key}.bzImage")), &bzimage)?
            }
        }
    };
    let initrd_bytes = read_iso_file(iso, &boot.initrd)?;
    let initrd = store(&cache.join(format!("{}.initrd", pki::digest::sha256_hex(&initrd_bytes))), &initrd_bytes)?;
    Ok(DirectKernel { kernel, initrd, cmdline: boot.cmdline.clone() })
}

/// `bytes` at `path` unless a file is there already (the name is its content's digest).
fn store(path: &Path, bytes: &[u8]) -> Result<PathBuf, KernelError> {
    if !path.is_file() {
        pki::atomic::write_atomic(path, bytes, 0o644).map_err(|source| KernelError::Io { path: path.to_path_buf(), source })?;
    }
    Ok(path.to_path_buf())
}

/// The ELF inside an x86 bzImage, when its payload is xz (Debian's) and the ELF has a PVH entry
/// point (Xen's `PHYS32_ENTRY` note, which qemu's `-kernel` looks for). None otherwise.
pub fn pvh_elf(bzimage: &[u8]) -> Option<Vec<u8>> {
    let payload = payload(bzimage)?;
    if !payload.starts_with(b"\xfd7zXZ\0") {
        return None;
    }
    let mut elf = Vec::with_capacity(payload.len() * 8);
    liblzma::read::XzDecoder::new(payload).read_to_end(&mut elf).ok()?;
    has_pvh_entry(&elf).then_some(elf)
}

/// The compressed kernel of a bzImage (boot protocol 2.08+: `payload_offset`, `payload_length`
/// in the setup header, the offset counted from the end of the real-mode setup).
fn payload(b: &[u8]) -> Option<&[u8]> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?) as usize);
    if b.get(0x202..0x206)? != b"HdrS" || u16_at(0x206)? < 0x208 {
        return None;
    }
    let setup_sects = match *b.get(0x1f1)? {
        0 => 4,
        n => n as usize,
    };
    let start = (setup_sects + 1) * 512 + u32_at(0x248)?;
    b.get(start..start.checked_add(u32_at(0x24c)?)?)
}

/// Xen's ELF note type for the 32-bit PVH entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

fn has_pvh_entry(elf: &[u8]) -> bool {
    use object::read::elf::{FileHeader, ProgramHeader};
    let Ok(hdr) = object::elf::FileHeader64::<object::Endianness>::parse(elf) else { return false };
    let Ok(endian) = hdr.endian() else { return false };
    let Ok(phdrs) = hdr.program_headers(endian, elf) else { return false };
    for ph in phdrs {
        let Ok(Some(mut notes)) = ph.notes(endian, elf) else { continue };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == b"Xen" && note.n_type(endian) == XEN_ELFNOTE_PHYS32_ENTRY {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bzImage's setup header around `payload`, as the boot protocol lays it out.
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sects = 3u8;
        let mut b = vec![0u8; (setup_sects as usize + 1) * 512];
        b[0x1f1] = setup_sects;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0u8; 16]);
        b.extend_from_slice(payload);
        b.extend_from_slice(b"trailer");
        b
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        liblzma::read::XzEncoder::new(data, 1).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn the_payload_is_found_by_the_setup_header() {
        let b = bzimage(b"PAYLOAD");
        assert_eq!(payload(&b), Some(&b"PAYLOAD"[..]));
        assert_eq!(payload(&b[..100]), None, "too short: no header");
        let mut old = b.clone();
        old[0x206..0x208].copy_from_slice(&0x207u16.to_le_bytes());
        assert_eq!(payload(&old), None, "protocol before 2.08 has no payload fields");
    }

    #[test]
    fn an_elf_without_a_pvh_note_or_another_compression_is_not_unpacked() {
        assert_eq!(pvh_elf(&bzimage(&xz(b"\x7fELF not really"))), None);
        assert_eq!(pvh_elf(&bzimage(b"\x1f\x8b\x08 gzip")), None);
        assert!(!has_pvh_entry(b"not an elf"));
    }

    /// A minimal ELF64 whose one program header is a note segment holding `(name, type)`.
    fn elf_with_note(name: &[u8; 4], n_type: u32) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(b"\x7fELF\x02\x01\x01");
        e.resize(16, 0);
        for v in [2u16, 62] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        e.extend_from_slice(&1u32.to_le_bytes());
        for v in [0x100_0000u64, 64, 0] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        e.extend_from_slice(&0u32.to_le_bytes());
        for v in [64u16, 56, 1, 64, 0, 0] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        let note_len = 12 + 4 + 8;
        for v in [4u32, 4] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        for v in [120u64, 0, 0, note_len, note_len, 4] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        for v in [4u32, 8, n_type] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        e.extend_from_slice(name);
        e.extend_from_slice(&0x100_0850u64.to_le_bytes());
        e
    }

    #[test]
    fn an_xz_packed_elf_with_a_pvh_entry_is_unpacked() {
        let elf = elf_with_note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY);
        assert!(has_pvh_entry(&elf));
        assert_eq!(pvh_elf(&bzimage(&xz(&elf))), Some(elf));
        assert!(!has_pvh_entry(&elf_with_note(b"Xen\0", 17)), "another Xen note");
        assert!(!has_pvh_entry(&elf_with_note(b"GNU\0", XEN_ELFNOTE_PHYS32_ENTRY)), "another owner");
    }
}
