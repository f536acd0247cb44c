//! Initramfs archives: a rootfs [`Tree`] written as cpio "newc" (SVR4, no checksum), the format
//! the Linux kernel unpacks into its initial rootfs.
//!
//! Every header field comes from the [`Entry`] value (owner, mode, device numbers, mtime), never
//! from the host filesystem, so no root is needed. Names are relative (`usr/bin/x`); the root
//! directory is stored as `.` so its mode and owner reach the unpacked `/`.
//!
//! [`split`] cuts a tree into several archives, each with its own trailer, that unpack in
//! sequence to the same set of files: the kernel accepts such archives concatenated, each
//! compressed on its own, which lets every core compress one part.

use std::io::{self, Write};

use ::cpio::newc;

use crate::rootfs::{Entry, Kind, Tree};

/// Size of a newc header before the name.
const HEADER_LEN: u64 = 110;
/// Name of the end-of-archive entry.
const TRAILER_NAME: &str = "TRAILER!!!";

/// Why a tree could not be written as cpio.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// newc stores sizes in 32 bits.
    #[error("{path}: {size} bytes does not fit a cpio newc archive (files must be under 4 GiB)")]
    TooLarge { path: String, size: u64 },
    /// newc stores mtimes in 32 bits.
    #[error("{path}: mtime {mtime} does not fit cpio newc's 32-bit field")]
    Mtime { path: String, mtime: u64 },
    /// Inode numbers are 32-bit.
    #[error("tree has {entries} entries, more than cpio newc's 32-bit inode numbers can number")]
    TooManyEntries { entries: usize },
    /// The writer stored fewer bytes than the entry needs (the `cpio` crate's `finish` does not
    /// notice a short write, so every entry is counted here).
    #[error("{path}: wrote {written} bytes of cpio entry, expected {expected}")]
    ShortWrite { path: String, written: u64, expected: u64 },
    #[error("writing cpio entry {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// One archive of a (possibly split) tree: a contiguous run of the tree's entries in archive
/// order, with inode numbers unique across all parts of the same split.
#[derive(Clone, Debug)]
pub struct Part<'t> {
    entries: Vec<(&'t str, &'t Entry)>,
    /// Inode number of the first entry; entry `i` gets `first_ino + i`.
    first_ino: u32,
    /// Exact archive size in bytes, trailer included.
    len: u64,
}

impl<'t> Part<'t> {
    /// Exact size in bytes of this part's archive (headers, names, data, padding, trailer).
    pub fn archive_len(&self) -> u64 {
        self.len
    }
    /// Number of entries (the trailer not counted).
    pub fn entries(&self) -> usize {
        self.entries.len()
    }
    /// Paths of the entries, in archive order (tree keys, absolute).
    pub fn paths(&self) -> impl Iterator<Item = &'t str> + '_ {
        self.entries.iter().map(|(p, _)| *p)
    }
    /// Write this part as a complete archive (trailer included) to `out`. Returns the bytes
    /// written, which always equal [`Part::archive_len`]. Small writes go straight to `out`:
    /// give it a buffered writer (or a compressor with its own buffer).
    pub fn write<W: Write>(&self, out: W) -> Result<u64, CpioError> {
        let mut out = Counted { inner: out, bytes: 0 };
        for (i, (path, entry)) in self.entries.iter().enumerate() {
            write_entry(&mut out, path, entry, self.first_ino + i as u32)?;
        }
        write_trailer(&mut out)?;
        debug_assert_eq!(out.bytes, self.len);
        Ok(out.bytes)
    }
}

/// Write the whole tree as one archive to `out`. Returns the bytes written.
pub fn write<W: Write>(tree: &Tree, out: W) -> Result<u64, CpioError> {
    let mut parts = split(tree, 1)?;
    match parts.pop() {
        Some(part) => part.write(out),
        None => unreachable!("split always returns at least one part"),
    }
}

/// Exact size of the archive [`write`] produces for `tree`.
pub fn archive_len(tree: &Tree) -> Result<u64, CpioError> {
    let mut total = trailer_len();
    for (path, entry) in tree.iter() {
        total += entry_len(path, entry)?;
    }
    Ok(total)
}

/// Split `tree` into at most `parts` archives (at least one) of roughly equal size in bytes.
///
/// Parts are contiguous runs of the tree's archive order, so unpacking them in sequence always
/// creates a parent before its children; inode numbers run on across parts, so they are unique
/// in the whole sequence and equal to those of the unsplit archive. Fewer parts come back when
/// the tree has fewer entries, or when one large file covers several cut points. The result
/// depends only on the tree and `parts`.
///
/// Checks every entry first: a file of 4 GiB or more, or an mtime past 2106, is an error naming
/// the path.
pub fn split(tree: &Tree, parts: usize) -> Result<Vec<Part<'_>>, CpioError> {
    let parts = parts.max(1);
    if tree.len() >= u32::MAX as usize {
        return Err(CpioError::TooManyEntries { entries: tree.len() });
    }
    let mut sized = Vec::with_capacity(tree.len());
    let mut total = 0u64;
    for (path, entry) in tree.iter() {
        let len = entry_len(path, entry)?;
        total += len;
        sized.push((path.as_str(), entry, len));
    }

    let mut out: Vec<Part<'_>> = Vec::with_capacity(parts);
    let mut current = Part { entries: Vec::new(), first_ino: 1, len: trailer_len() };
    let mut done = 0u64; // bytes of entries placed in finished or current parts
    for (index, (path, entry, len)) in sized.into_iter().enumerate() {
        current.entries.push((path, entry));
        current.len += len;
        done += len;
        // Close the part once the running total passes this part's share of the whole.
        let boundary = total.saturating_mul(out.len() as u64 + 1) / parts as u64;
        if out.len() + 1 < parts && done >= boundary {
            let next_ino = index as u32 + 2;
            out.push(std::mem::replace(&mut current, Part { entries: Vec::new(), first_ino: next_ino, len: trailer_len() }));
        }
    }
    if !current.entries.is_empty() || out.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// Name of a tree key inside the archive.
fn archive_name(path: &str) -> &str {
    if path == "/" {
        "."
    } else {
        path.strip_prefix('/').unwrap_or(path)
    }
}

fn pad4(n: u64) -> u64 {
    (n + 3) & !3
}

fn trailer_len() -> u64 {
    pad4(HEADER_LEN + TRAILER_NAME.len() as u64 + 1)
}

/// What an entry stores after its header, with its link count and device number.
fn payload(entry: &Entry) -> (&[u8], u32, u32, u32) {
    match &entry.kind {
        Kind::Dir => (&[], 2, 0, 0),
        Kind::File(content) => (content.as_slice(), 1, 0, 0),
        Kind::Symlink(target) => (target.as_bytes(), 1, 0, 0),
        Kind::CharDev { major, minor } | Kind::BlockDev { major, minor } => (&[], 1, *major, *minor),
        Kind::Fifo => (&[], 1, 0, 0),
    }
}

/// Size of one entry in the archive, after checking that its fields fit newc.
fn entry_len(path: &str, entry: &Entry) -> Result<u64, CpioError> {
    let (data, ..) = payload(entry);
    let size = data.len() as u64;
    if size > u32::MAX as u64 {
        return Err(CpioError::TooLarge { path: path.to_string(), size });
    }
    if entry.mtime > u32::MAX as u64 {
        return Err(CpioError::Mtime { path: path.to_string(), mtime: entry.mtime });
    }
    Ok(pad4(HEADER_LEN + archive_name(path).len() as u64 + 1) + pad4(size))
}

fn write_entry<W: Write>(out: &mut Counted<W>, path: &str, entry: &Entry, ino: u32) -> Result<(), CpioError> {
    let expected = entry_len(path, entry)?;
    let (data, nlink, rdev_major, rdev_minor) = payload(entry);
    let io_err = |source| CpioError::Io { path: path.to_string(), source };
    let before = out.bytes;
    let mut writer = newc::Builder::new(archive_name(path))
        .ino(ino)
        .mode(entry.st_mode())
        .uid(entry.uid)
        .gid(entry.gid)
        .nlink(nlink)
        .mtime(entry.mtime as u32)
        .rdev_major(rdev_major)
        .rdev_minor(rdev_minor)
        .write(&mut *out, data.len() as u32);
    if data.is_empty() {
        // The crate writes the header lazily: with no data, `finish` writes it.
    } else {
        writer.write_all(data).map_err(io_err)?;
    }
    writer.finish().map_err(io_err)?;
    let written = out.bytes - before;
    if written != expected {
        return Err(CpioError::ShortWrite { path: path.to_string(), written, expected });
    }
    Ok(())
}

fn write_trailer<W: Write>(out: &mut Counted<W>) -> Result<(), CpioError> {
    let before = out.bytes;
    let io_err = |source| CpioError::Io { path: TRAILER_NAME.to_string(), source };
    newc::trailer(&mut *out).map_err(io_err)?;
    out.flush().map_err(io_err)?;
    let written = out.bytes - before;
    if written != trailer_len() {
        return Err(CpioError::ShortWrite { path: TRAILER_NAME.into(), written, expected: trailer_len() });
    }
    Ok(())
}

/// A writer that counts what its inner writer accepted (also used by `compress`).
pub(crate) struct Counted<W> {
    pub(crate) inner: W,
    pub(crate) bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tree {
        let mut t = Tree::new();
        for i in 0..50 {
            t.insert(&format!("/d{}/f{i}", i % 5), Entry::file(vec![b'x'; 1000 * (i + 1)], 0o644));
        }
        t.insert("/link", Entry::symlink("d0/f0"));
        t
    }

    #[test]
    fn length_is_exact() {
        let t = sample();
        let mut buf = Vec::new();
        let n = write(&t, &mut buf).unwrap();
        assert_eq!(n, buf.len() as u64);
        assert_eq!(n, archive_len(&t).unwrap());
        assert_eq!(buf.len() % 4, 0);
    }

    #[test]
    fn split_is_balanced_ordered_and_complete() {
        let t = sample();
        let parts = split(&t, 4).unwrap();
        assert_eq!(parts.len(), 4);
        let all: Vec<&str> = parts.iter().flat_map(|p| p.paths()).collect();
        let keys: Vec<&str> = t.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(all, keys);
        let total: u64 = parts.iter().map(|p| p.archive_len()).sum();
        for p in &parts {
            assert!(p.archive_len() < total / 2, "part of {} bytes out of {total}", p.archive_len());
        }
        // Inode numbers continue across parts.
        let mut next = 1;
        for p in &parts {
            assert_eq!(p.first_ino, next);
            next += p.entries() as u32;
        }
    }

    #[test]
    fn split_more_parts_than_entries() {
        let mut t = Tree::new();
        t.insert("/a", Entry::file(b"a".to_vec(), 0o644));
        let parts = split(&t, 8).unwrap();
        assert!(parts.len() <= 2);
        assert!(parts.iter().all(|p| p.entries() > 0));
        assert_eq!(parts.iter().map(|p| p.entries()).sum::<usize>(), 2);
    }

    #[test]
    fn short_write_is_an_error() {
        struct Full(usize);
        impl Write for Full {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let t = sample();
        let err = write(&t, Full(2000)).unwrap_err();
        assert!(matches!(err, CpioError::Io { .. } | CpioError::ShortWrite { .. }), "{err}");
    }

    #[test]
    fn mtime_past_2106_names_the_path() {
        let mut t = Tree::new();
        t.insert("/etc/late", Entry::file(b"x".to_vec(), 0o644));
        t.get_mut("/etc/late").unwrap().mtime = 1 << 33;
        let err = write(&t, Vec::new()).unwrap_err();
        assert!(err.to_string().contains("/etc/late"), "{err}");
    }
}
