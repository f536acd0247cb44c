//! Compressed initramfs checked with the real decompressors and GNU cpio.
//!
//! Needs: gzip, bzip2, xz-utils, zstd, cpio.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use image::compress::{self, Compression, PART_BYTES};
use image::cpio;
use image::rootfs::{Entry, Kind, Tree};

/// Deterministic, compressible pseudo-text.
fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &["kube", "let", "node ", "pod", "\n", "container", "etcd ", "0x1f", "runc", " "];
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        out.extend_from_slice(WORDS[(x >> 60) as usize % WORDS.len()].as_bytes());
        if x & 0xff00 == 0 {
            out.push((x >> 24) as u8);
        }
    }
    out.truncate(len);
    out
}

/// A tree just over two split parts big, so gzip and bzip2 compress three parts in parallel.
fn big_tree() -> Tree {
    let mut t = Tree::new();
    let per_file = 1 << 20;
    let files = (2 * PART_BYTES as usize) / per_file + 6;
    for i in 0..files {
        t.insert(&format!("/usr/lib/m{}/f{i}.so", i % 9), Entry::file(text(i as u64, per_file - i * 7), 0o755));
    }
    t.insert("/usr/bin/su", Entry { kind: Kind::File(text(99, 999).into()), mode: 0o4755, uid: 0, gid: 0, mtime: 7 });
    t.insert("/dev/console", Entry { kind: Kind::CharDev { major: 5, minor: 1 }, mode: 0o600, uid: 0, gid: 0, mtime: 7 });
    t.insert("/init", Entry::symlink("usr/lib/systemd/systemd"));
    t
}

fn tool(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd} must be installed: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Split concatenated cpio archives at their trailers.
fn archives(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = data;
    let mut consumed = 0;
    while !data.is_empty() {
        let before = data.len();
        let mut r = ::cpio::NewcReader::new(data).unwrap();
        let trailer = r.entry().is_trailer();
        std::io::copy(&mut r.by_ref(), &mut std::io::sink()).unwrap();
        data = r.finish().unwrap();
        consumed += before - data.len();
        if trailer {
            out.push(&start[..consumed]);
            start = data;
            consumed = 0;
        }
    }
    out
}

fn expected_names(tree: &Tree) -> Vec<String> {
    tree.iter().map(|(k, _)| if k == "/" { ".".to_string() } else { k[1..].to_string() }).collect()
}

#[test]
fn every_format_round_trips_through_the_real_tools() {
    let tree = big_tree();
    let mut plain = Vec::new();
    cpio::write(&tree, &mut plain).unwrap();
    for (format, level, decompressor) in [
        (Compression::Gzip, 1, Some("gzip")),
        (Compression::Bzip2, 1, Some("bzip2")),
        (Compression::Xz, 0, Some("xz")),
        (Compression::Zstd, 3, Some("zstd")),
        (Compression::None, 0, None),
    ] {
        let packed = compress::initrd(&tree, format, Some(level), 2).unwrap();
        let unpacked = match decompressor {
            Some(cmd) => tool(cmd, &["-dc"], &packed),
            None => packed.clone(),
        };
        if decompressor.is_some() {
            assert!(packed.len() < unpacked.len() / 2, "{format}: {} -> {}", unpacked.len(), packed.len());
        }
        let pieces = archives(&unpacked);
        match format {
            // Split into parts of PART_BYTES: several archives, the same entries in order.
            Compression::Gzip | Compression::Bzip2 => assert_eq!(pieces.len(), 3, "{format}"),
            _ => {
                assert_eq!(pieces.len(), 1, "{format}");
                assert_eq!(unpacked, plain, "{format}: one plain archive inside");
            }
        }
        let mut listed = Vec::new();
        for piece in pieces {
            let out = tool("cpio", &["-t", "--quiet"], piece);
            listed.extend(String::from_utf8(out).unwrap().lines().map(str::to_string));
        }
        assert_eq!(listed, expected_names(&tree), "{format}");
    }
}

#[test]
fn xz_uses_crc32_as_the_kernel_requires() {
    let mut tree = Tree::new();
    tree.insert("/etc/hostname", Entry::file(b"minikube\n".to_vec(), 0o644));
    let packed = compress::initrd(&tree, Compression::Xz, None, 2).unwrap();
    // Stream header: magic, flags 0x00 0x01 (check type 1 = CRC32).
    assert_eq!(&packed[..6], b"\xfd7zXZ\0");
    assert_eq!(&packed[6..8], &[0x00, 0x01]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("initrd.xz");
    std::fs::write(&file, &packed).unwrap();
    let out = Command::new("xz").arg("--robot").arg("--list").arg(&file).output().unwrap();
    assert!(out.status.success());
    let info = String::from_utf8(out.stdout).unwrap();
    assert!(info.contains("CRC32"), "{info}");
}

#[test]
fn output_is_deterministic_whatever_the_thread_count() {
    let tree = big_tree();
    for (format, level) in [(Compression::Gzip, 1), (Compression::Bzip2, 1), (Compression::Xz, 0), (Compression::Zstd, 1)] {
        let one = compress::initrd(&tree, format, Some(level), 1).unwrap();
        let three = compress::initrd(&tree, format, Some(level), 3).unwrap();
        assert!(one == three, "{format}: {} / {} bytes", one.len(), three.len());
    }
}

#[test]
fn streaming_writer_counts_what_it_wrote() {
    let tree = big_tree();
    let mut out = Vec::new();
    let n = compress::write_initrd(&tree, Compression::Zstd, Some(1), 0, &mut out).unwrap();
    assert_eq!(n as usize, out.len());
    assert!(compress::initrd(&tree, Compression::Zstd, Some(40), 1).unwrap_err().to_string().contains("zstd"));
}
