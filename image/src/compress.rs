//! Compressed initramfs: a rootfs [`Tree`] as cpio, compressed with every core the format lets
//! us use, byte-for-byte reproducible.
//!
//! * zstd: one cpio stream into zstd's multithreaded encoder (its output does not depend on the
//!   number of workers).
//! * xz: one cpio stream into liblzma's multithreaded encoder (independent blocks of a fixed
//!   size, so the output does not depend on the number of threads), with a CRC32 check: the
//!   kernel's xz decoder refuses CRC64.
//! * gzip, bzip2: the tree is split into cpio archives of about [`PART_BYTES`] each (each with its
//!   own trailer), compressed on separate threads and concatenated in order. The kernel unpacks
//!   concatenated compressed archives; `gzip -dc`/`bzip2 -dc` read them as one stream. The number
//!   of parts depends only on the tree, never on the thread count or timing.
//! * none: the plain archive.

use std::fmt;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::str::FromStr;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::cpio::{self, CpioError, Part};
use crate::rootfs::Tree;

/// Uncompressed size of one part for formats that are parallelised by splitting (gzip, bzip2).
pub const PART_BYTES: u64 = 32 << 20;

/// Buffer between the cpio writer and the compressor (coalesces headers and padding).
const BUFFER: usize = 256 << 10;

/// An initramfs compression format. Names are lowercase in specs and on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    None,
}

impl Compression {
    /// Every format, in a stable order.
    pub const ALL: [Compression; 5] = [Compression::Gzip, Compression::Bzip2, Compression::Xz, Compression::Zstd, Compression::None];

    /// The lowercase name (`gzip`, `bzip2`, `xz`, `zstd`, `none`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }

    /// The level used when none is given: gzip 6, bzip2 9, xz 6, zstd 3 (zstd 19 is ~25% smaller
    /// but ~90x slower to compress).
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Gzip => 6,
            Compression::Bzip2 => 9,
            Compression::Xz => 6,
            Compression::Zstd => 3,
            Compression::None => 0,
        }
    }

    /// Levels the format accepts.
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Compression::Gzip => 0..=9,
            Compression::Bzip2 => 1..=9,
            Compression::Xz => 0..=9,
            Compression::Zstd => -7..=22,
            Compression::None => 0..=0,
        }
    }

    /// Usual file-name suffix (without the dot); empty for `none`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "gz",
            Compression::Bzip2 => "bz2",
            Compression::Xz => "xz",
            Compression::Zstd => "zst",
            Compression::None => "",
        }
    }

    /// Check `level` against [`Compression::levels`] (`None` gives the default level).
    pub fn level(self, level: Option<i32>) -> Result<i32, CompressError> {
        let Some(level) = level else { return Ok(self.default_level()) };
        if self == Compression::None || self.levels().contains(&level) {
            Ok(level)
        } else {
            let range = self.levels();
            Err(CompressError::Level { format: self, level, min: *range.start(), max: *range.end() })
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = CompressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| CompressError::UnknownFormat(s.to_string()))
    }
}

/// Why an initramfs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("unknown compression {0:?} (gzip, bzip2, xz, zstd, none)")]
    UnknownFormat(String),
    #[error("{format} level {level} is out of range {min}..={max}")]
    Level { format: Compression, level: i32, min: i32, max: i32 },
    #[error(transparent)]
    Cpio(#[from] CpioError),
    #[error("{format} compressor: {source}")]
    Io {
        format: Compression,
        #[source]
        source: io::Error,
    },
}

/// The compressed initramfs of `tree` in memory. See [`write_initrd`].
pub fn initrd(tree: &Tree, compression: Compression, level: Option<i32>, threads: usize) -> Result<Vec<u8>, CompressError> {
    let mut out = Vec::new();
    write_initrd(tree, compression, level, threads, &mut out)?;
    Ok(out)
}

/// Write the compressed initramfs of `tree` to `out`; returns the compressed size.
///
/// `threads` is how many cores to use (0 = all available). The bytes depend only on the tree,
/// the format and the level: never on `threads` or on thread timing. Shows a progress bar on a
/// terminal (not when stderr is redirected or `CI` is set).
pub fn write_initrd<W: Write>(tree: &Tree, compression: Compression, level: Option<i32>, threads: usize, out: W) -> Result<u64, CompressError> {
    let level = compression.level(level)?;
    let threads = if threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { threads };
    let total = cpio::archive_len(tree)?;
    let bar = progress_bar(total, compression);
    let io_err = |source| CompressError::Io { format: compression, source };
    let mut out = crate::cpio::Counted { inner: out, bytes: 0 };
    let started = std::time::Instant::now();

    match compression {
        Compression::None => {
            let mut w = BufWriter::with_capacity(BUFFER, ProgressWriter { inner: &mut out, bar: &bar });
            cpio::write(tree, &mut w)?;
            w.flush().map_err(io_err)?;
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::Encoder::new(&mut out, level).map_err(io_err)?;
            enc.multithread(threads as u32).map_err(io_err)?;
            enc.include_checksum(true).map_err(io_err)?;
            enc.set_pledged_src_size(Some(total)).map_err(io_err)?;
            let mut w = BufWriter::with_capacity(BUFFER, ProgressWriter { inner: enc, bar: &bar });
            cpio::write(tree, &mut w)?;
            let enc = w.into_inner().map_err(|e| io_err(e.into_error()))?.inner;
            enc.finish().map_err(io_err)?;
        }
        Compression::Xz => {
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(threads as u32)
                .preset(level as u32)
                .check(liblzma::stream::Check::Crc32)
                .encoder()
                .map_err(|e| io_err(e.into()))?;
            let enc = liblzma::write::XzEncoder::new_stream(&mut out, stream);
            let mut w = BufWriter::with_capacity(BUFFER, ProgressWriter { inner: enc, bar: &bar });
            cpio::write(tree, &mut w)?;
            let enc = w.into_inner().map_err(|e| io_err(e.into_error()))?.inner;
            enc.finish().map_err(io_err)?;
        }
        Compression::Gzip | Compression::Bzip2 => {
            let n = total.div_ceil(PART_BYTES).max(1) as usize;
            let parts = cpio::split(tree, n)?;
            // The workspace's one parallel map; results in part order.
            let compressed = fetch::parallel::try_map(&parts, threads, |_, part| compress_part(part, compression, level, &bar))?;
            for c in compressed {
                out.write_all(&c).map_err(io_err)?;
            }
        }
    }
    out.flush().map_err(io_err)?;
    bar.finish_and_clear();
    tracing::info!(
        format = %compression,
        level,
        threads,
        cpio_bytes = total,
        compressed_bytes = out.bytes,
        seconds = started.elapsed().as_secs_f64(),
        "initramfs compressed"
    );
    Ok(out.bytes)
}

/// Compress one part of a split tree as a complete gzip member or bzip2 stream.
fn compress_part(part: &Part<'_>, format: Compression, level: i32, bar: &ProgressBar) -> Result<Vec<u8>, CompressError> {
    let io_err = |source| CompressError::Io { format, source };
    let buf = Vec::with_capacity((part.archive_len() / 3) as usize);
    match format {
        Compression::Gzip => {
            // GzEncoder's header carries mtime 0 and no name: reproducible.
            let enc = flate2::write::GzEncoder::new(buf, flate2::Compression::new(level as u32));
            let mut w = BufWriter::with_capacity(BUFFER, ProgressWriter { inner: enc, bar });
            part.write(&mut w)?;
            let enc = w.into_inner().map_err(|e| io_err(e.into_error()))?.inner;
            enc.finish().map_err(io_err)
        }
        Compression::Bzip2 => {
            let enc = bzip2::write::BzEncoder::new(buf, bzip2::Compression::new(level as u32));
            let mut w = BufWriter::with_capacity(BUFFER, ProgressWriter { inner: enc, bar });
            part.write(&mut w)?;
            let enc = w.into_inner().map_err(|e| io_err(e.into_error()))?.inner;
            enc.finish().map_err(io_err)
        }
        other => unreachable!("{other} is not compressed by parts"),
    }
}

/// A progress bar on a terminal; hidden when stderr is not a TTY or `CI` is set.
fn progress_bar(total: u64, format: Compression) -> ProgressBar {
    let interactive = io::stderr().is_terminal() && std::env::var_os("CI").is_none();
    if !interactive {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("initramfs ({format})"));
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// Counts uncompressed bytes into the progress bar.
struct ProgressWriter<'b, W> {
    inner: W,
    bar: &'b ProgressBar,
}

impl<W: Write> Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for c in Compression::ALL {
            assert_eq!(c.name().parse::<Compression>().unwrap(), c);
            assert_eq!(c.to_string(), c.name());
        }
        assert!("lz4".parse::<Compression>().unwrap_err().to_string().contains("lz4"));
    }

    #[test]
    fn serde_lowercase() {
        #[derive(Deserialize)]
        struct S {
            c: Compression,
        }
        let s: S = toml::from_str("c = \"bzip2\"").unwrap();
        assert_eq!(s.c, Compression::Bzip2);
        assert!(toml::from_str::<S>("c = \"Gzip\"").is_err());
    }

    #[test]
    fn levels_are_checked() {
        assert_eq!(Compression::Zstd.level(None).unwrap(), 3);
        assert_eq!(Compression::Zstd.level(Some(19)).unwrap(), 19);
        let err = Compression::Gzip.level(Some(12)).unwrap_err().to_string();
        assert!(err.contains("gzip") && err.contains("12"), "{err}");
    }
}
