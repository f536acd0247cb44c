//! `cargo xtask bench-compress [DIR]`: time and size of the initramfs per compression format.
//!
//! Loads a directory into a rootfs tree (DIR, else the host's /usr/bin and
//! /usr/lib/x86_64-linux-gnu capped at 600 MB, about the size of the real image) and, for each
//! format at its default level (plus zstd 19), compresses it `BENCH_RUNS` times (default 3) with
//! all cores, printing the median time, the size and the ratio. The cpio writing alone is
//! measured too (format `none`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use image::compress::{self, Compression};
use image::rootfs::{Entry, Kind, Tree};
use platform::stats::median;

/// Cap for the default (host) tree.
const DEFAULT_CAP: u64 = 600 << 20;

pub fn run(tree_dir: Option<&Path>) -> anyhow::Result<()> {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let mut tree = Tree::new();
    match tree_dir {
        Some(dir) => load(&mut tree, dir, "/", u64::MAX)?,
        None => {
            let mut left = DEFAULT_CAP;
            for dir in ["/usr/bin", "/usr/lib/x86_64-linux-gnu"] {
                let before = tree.content_bytes();
                load(&mut tree, Path::new(dir), dir, left)?;
                left = left.saturating_sub(tree.content_bytes() - before);
            }
        }
    }
    let cpio_len = image::cpio::archive_len(&tree)?;
    println!(
        "tree: {} entries, {:.1} MiB of files, cpio {:.1} MiB; {} runs, {} threads",
        tree.len(),
        tree.content_bytes() as f64 / 1048576.0,
        cpio_len as f64 / 1048576.0,
        runs,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("{:<8} {:>5} {:>10} {:>12} {:>7} {:>10}", "format", "level", "median s", "size MiB", "ratio", "MiB/s in");
    let mut cases: Vec<(Compression, i32)> = Compression::ALL.iter().map(|c| (*c, c.default_level())).collect();
    cases.push((Compression::Zstd, 19));
    for (format, level) in cases {
        let mut times = Vec::with_capacity(runs);
        let mut size = 0;
        for _ in 0..runs {
            let start = Instant::now();
            let out = compress::initrd(&tree, format, Some(level), 0).with_context(|| format!("{format} level {level}"))?;
            times.push(start.elapsed());
            size = out.len();
        }
        let median = median(times.clone()).as_secs_f64();
        println!(
            "{:<8} {:>5} {:>10.2} {:>12.1} {:>7.3} {:>10.1}",
            format.name(),
            level,
            median,
            size as f64 / 1048576.0,
            size as f64 / cpio_len as f64,
            cpio_len as f64 / 1048576.0 / median
        );
    }
    Ok(())
}

/// Add the host directory `dir` to `tree` under `at`, up to `cap` bytes of file content.
fn load(tree: &mut Tree, dir: &Path, at: &str, cap: u64) -> anyhow::Result<()> {
    let mut stack = vec![(dir.to_path_buf(), at.trim_end_matches('/').to_string())];
    let mut budget = cap;
    while let Some((host, key)) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(&host).with_context(|| format!("reading {}", host.display()))?.filter_map(|e| e.ok()).collect();
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let path = child.path();
            let name = child.file_name().to_string_lossy().into_owned();
            let key = format!("{key}/{name}");
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            let kind = if meta.is_dir() {
                stack.push((path.clone(), key.clone()));
                Kind::Dir
            } else if meta.file_type().is_symlink() {
                Kind::Symlink(std::fs::read_link(&path)?.to_string_lossy().into_owned())
            } else if meta.is_file() {
                if meta.len() > budget {
                    continue;
                }
                let Ok(data) = std::fs::read(&path) else { continue };
                budget -= data.len() as u64;
                Kind::File(data.into())
            } else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o7777;
            tree.insert(&key, Entry { kind, mode, uid: meta.uid(), gid: meta.gid(), mtime: meta.mtime().max(0) as u64 });
        }
    }
    Ok(())
}
