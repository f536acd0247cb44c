//! Layer blobs: a [`Tree`] written as a deterministic tar, compressed, hashed twice on the fly
//! (diff_id over the tar, digest over the compressed bytes) and streamed into a [`BlobStore`].

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use super::OciError;
use crate::rootfs::Tree;
use crate::tarstream::append_entry;

/// A directory holding content-addressed blobs in `<root>/blobs/sha256/<hex>` (the OCI layout's
/// blob directory, so the store root can itself serve as a layout with [`super::write_layout`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Open (creating if needed) a blob store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, OciError> {
        let root = root.into();
        let dir = root.join("blobs").join("sha256");
        fs::create_dir_all(&dir).map_err(OciError::io(&dir))?;
        Ok(BlobStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory holding the sha256 blobs.
    pub fn sha256_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Path of a blob given its digest (`sha256:<hex>` or bare hex).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.sha256_dir().join(digest.strip_prefix("sha256:").unwrap_or(digest))
    }

    /// Store `bytes` as a blob (atomically); returns its digest `sha256:<hex>`.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<String, OciError> {
        let hex = hex::encode(Sha256::digest(bytes));
        let dir = self.sha256_dir();
        let mut tmp = pki::atomic::AtomicFile::create_in(&dir, "blob", 0o644).map_err(OciError::io(&dir))?;
        tmp.write_all(bytes).map_err(OciError::io(tmp.temp_path()))?;
        let dst = dir.join(&hex);
        tmp.commit_as(&dst).map_err(OciError::io(&dst))?;
        Ok(format!("sha256:{hex}"))
    }
}

/// Layer compression. The media type follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar (`digest == diff_id`).
    None,
    /// gzip at `level` 0..=9: the format every Docker and podman accepts.
    ///
    /// `threads == 0`: one gzip member, single-threaded. `threads >= 1`: the tar is cut into
    /// [`GZIP_CHUNK`]-byte pieces compressed on `threads` workers and written as consecutive gzip
    /// members (RFC 1952 multi-member, as pigz/bgzip do; Go's gzip reader, hence Docker,
    /// containerd, podman, skopeo and umoci, reads them, as do GNU gzip and tar). The bytes depend
    /// on the chunk size, never on the worker count. Readers in Rust must use
    /// `flate2::read::MultiGzDecoder` (`GzDecoder` stops after the first member).
    Gzip { level: u32, threads: u32 },
    /// zstd at `level` 1..=22 with `threads` workers (0 = single-threaded). Needs Docker >= 23 /
    /// containerd >= 1.5 / podman >= 2 on the consumer side. Output is reproducible for a given
    /// `threads == 0` vs `threads >= 1` choice (zstd's multi-threaded framing is independent of
    /// the worker count but differs from single-threaded).
    Zstd { level: i32, threads: u32 },
}

impl Default for Compression {
    /// gzip level 6, parallel on every available core (reproducible on any core count).
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Compression::Gzip { level: 6, threads }
    }
}

/// Input bytes per gzip member in parallel gzip mode.
pub const GZIP_CHUNK: usize = 4 << 20;

impl Compression {
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip { .. } => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd { .. } => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// A layer blob written to a [`BlobStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:<hex>` of the blob (compressed bytes): the blob's file name and manifest digest.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar: the config's `rootfs.diff_ids` entry.
    pub diff_id: String,
    /// Blob size in bytes.
    pub size: u64,
    /// Uncompressed tar size in bytes.
    pub tar_size: u64,
    pub media_type: String,
    /// Tar entries written (the tree's root is not one of them).
    pub entries: usize,
    /// Text for the config's history entry (`created_by`).
    pub created_by: String,
}

/// Writes through to `inner` while hashing and counting what was written (layers and archives).
pub(super) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(super) fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), count: 0 }
    }
    /// (inner writer, "sha256:<hex>", bytes written)
    pub(super) fn into_parts(self) -> (W, String, u64) {
        (self.inner, format!("sha256:{}", hex::encode(self.hasher.finalize())), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Compressor<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    ParallelGzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    fn new(w: W, c: Compression) -> io::Result<Self> {
        Ok(match c {
            Compression::None => Compressor::None(w),
            // No file name, no mtime, OS byte "unknown": the header is constant.
            Compression::Gzip { level, threads: 0 } => {
                Compressor::Gzip(flate2::GzBuilder::new().operating_system(255).write(w, flate2::Compression::new(level.min(9))))
            }
            Compression::Gzip { level, threads } => Compressor::ParallelGzip(ParallelGzip::new(w, level.min(9), threads)?),
            Compression::Zstd { level, threads } => {
                let mut e = zstd::stream::write::Encoder::new(w, level)?;
                e.include_checksum(true)?;
                if threads > 0 {
                    e.multithread(threads)?;
                }
                Compressor::Zstd(e)
            }
        })
    }
    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(e) => e.finish(),
            Compressor::ParallelGzip(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(e) => e.write(buf),
            Compressor::ParallelGzip(e) => e.write(buf),
            Compressor::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(e) => e.flush(),
            Compressor::ParallelGzip(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
        }
    }
}

/// One gzip member per [`GZIP_CHUNK`] of input, compressed by a pool of worker threads and
/// written in input order. At most `2 * threads` chunks are in flight, so memory stays bounded.
struct ParallelGzip<W: Write> {
    /// `None` only after `finish` took it.
    out: Option<W>,
    buf: Vec<u8>,
    jobs: Option<mpsc::SyncSender<(u64, Vec<u8>)>>,
    results: mpsc::Receiver<(u64, io::Result<Vec<u8>>)>,
    workers: Vec<std::thread::JoinHandle<()>>,
    pending: BTreeMap<u64, Vec<u8>>,
    submitted: u64,
    written: u64,
    max_in_flight: u64,
}

impl<W: Write> ParallelGzip<W> {
    fn new(out: W, level: u32, threads: u32) -> io::Result<Self> {
        let threads = threads.max(1) as usize;
        let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (res_tx, results) = mpsc::channel();
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let res_tx = res_tx.clone();
            let worker = std::thread::Builder::new().name(format!("gzip-{i}")).spawn(move || loop {
                let job = job_rx.lock().map(|rx| rx.recv());
                let Ok(Ok((seq, chunk))) = job else { return };
                if res_tx.send((seq, gzip_member(&chunk, level))).is_err() {
                    return;
                }
            })?;
            workers.push(worker);
        }
        Ok(ParallelGzip {
            out: Some(out),
            buf: Vec::with_capacity(GZIP_CHUNK),
            jobs: Some(job_tx),
            results,
            workers,
            pending: BTreeMap::new(),
            submitted: 0,
            written: 0,
            max_in_flight: 2 * threads as u64,
        })
    }

    fn submit(&mut self) -> io::Result<()> {
        while self.submitted - self.written >= self.max_in_flight {
            self.collect_one()?;
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(GZIP_CHUNK));
        let jobs = self.jobs.as_ref().ok_or_else(|| io::Error::other("gzip workers are gone"))?;
        jobs.send((self.submitted, chunk)).map_err(|_| io::Error::other("gzip workers are gone"))?;
        self.submitted += 1;
        Ok(())
    }

    /// Wait for one result, then write every member that is next in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, member) = self.results.recv().map_err(|_| io::Error::other("gzip worker died"))?;
        self.pending.insert(seq, member?);
        let out = self.out.as_mut().ok_or_else(|| io::Error::other("gzip stream already finished"))?;
        while let Some(member) = self.pending.remove(&self.written) {
            out.write_all(&member)?;
            self.written += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.submitted == 0 {
            self.submit()?;
        }
        self.jobs = None;
        while self.written < self.submitted {
            self.collect_one()?;
        }
        for w in std::mem::take(&mut self.workers) {
            w.join().map_err(|_| io::Error::other("gzip worker panicked"))?;
        }
        self.out.take().ok_or_else(|| io::Error::other("gzip stream already finished"))
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        // Closing the job channel lets idle workers exit; busy ones exit after their chunk.
        self.jobs = None;
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(GZIP_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == GZIP_CHUNK {
            self.submit()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

fn gzip_member(chunk: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut e = flate2::GzBuilder::new().operating_system(255).write(Vec::with_capacity(chunk.len() / 2 + 64), flate2::Compression::new(level));
    e.write_all(chunk)?;
    e.finish()
}

/// Write `tree` as one layer blob into `store`.
///
/// The tar holds every entry but the root, in tree order (parents first), with paths relative to
/// the root (`usr/bin/`, `usr/bin/env`), GNU headers (GNU long-name/long-link records for names
/// over 100 bytes), each entry's exact uid/gid/mode/mtime, device numbers for device nodes, and no
/// user/group names. The tar and the compressed stream are hashed while the blob is streamed to a
/// temporary file in the store, which is then renamed to its digest: memory use is the tree plus
/// buffers, never a copy of the layer.
pub fn write_layer(store: &BlobStore, tree: &Tree, compression: Compression, created_by: &str) -> Result<Layer, OciError> {
    let started = Instant::now();
    let dir = store.sha256_dir();
    let tmp = pki::atomic::AtomicFile::create_in(&dir, "layer", 0o644).map_err(OciError::io(&dir))?;
    let tmp_path = tmp.temp_path().to_path_buf();
    let blob = HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp.file()));
    let compressor = Compressor::new(blob, compression).map_err(OciError::io(&tmp_path))?;
    let mut builder = tar::Builder::new(HashingWriter::new(compressor));
    let mut entries = 0usize;
    for (path, entry) in tree.iter() {
        if path == "/" {
            continue;
        }
        crate::tarstream::append_xattrs(&mut builder, tree, path)
            .and_then(|()| append_entry(&mut builder, path, entry))
            .map_err(|source| OciError::Tar { path: path.clone(), source })?;
        entries += 1;
    }
    let tar_stream = builder.into_inner().map_err(OciError::io(&tmp_path))?;
    let (compressor, diff_id, tar_size) = tar_stream.into_parts();
    let blob = compressor.finish().map_err(OciError::io(&tmp_path))?;
    let (buffered, digest, size) = blob.into_parts();
    buffered.into_inner().map_err(|e| OciError::Io { path: tmp_path.clone(), source: e.into_error() })?;
    let dst = store.blob_path(&digest);
    tmp.commit_as(&dst).map_err(OciError::io(&dst))?;
    tracing::info!(
        %digest, %diff_id, size, tar_size, entries, created_by,
        secs = started.elapsed().as_secs_f64(),
        "wrote layer"
    );
    Ok(Layer { digest, diff_id, size, tar_size, media_type: compression.media_type().to_string(), entries, created_by: created_by.to_string() })
}

/// sha256 of a file as `sha256:<hex>`, streamed.
pub fn sha256_file(path: &Path) -> Result<String, OciError> {
    let (hex, _) = pki::digest::sha256_file(path).map_err(OciError::io(path))?;
    Ok(format!("sha256:{hex}"))
}
