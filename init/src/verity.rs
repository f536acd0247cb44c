//! The dm-verity hash tree of a root image, as the kernel's `verity` target (format version 1,
//! SHA-256, 4 KiB data and hash blocks, no superblock) reads it.
//!
//! The builder appends the tree to the image right after its data; `/init` checks the tree's
//! top block against the root hash in the plan, then hands both to device-mapper, which checks
//! every other block lazily, on first read: a block that does not match is an I/O error.
//!
//! Layout, as `veritysetup format --no-superblock` writes it: the levels follow each other from
//! the top (one block, whose hash is the root hash) down to level 0 (the hashes of the data
//! blocks). Each hash is SHA-256(salt || block); a hash block holds 128 of them, zero-padded.

use sha2::{Digest, Sha256};

/// Data and hash block size (bytes).
pub const BLOCK: u64 = 4096;
/// SHA-256 digests per hash block.
const PER_BLOCK: u64 = BLOCK / 32;

/// Where the tree of an image with `data_blocks` data blocks puts each level: `(first block
/// relative to the tree's start, blocks)`, index 0 = the lowest level.
pub fn levels(data_blocks: u64) -> Vec<(u64, u64)> {
    let mut counts = Vec::new();
    let mut n = data_blocks;
    // The kernel's rule: as many levels as it takes for one block to cover every data block
    // (more than one data block: see [`build`]).
    while n > 1 {
        n = n.div_ceil(PER_BLOCK);
        counts.push(n);
    }
    let mut out = vec![(0, 0); counts.len()];
    let mut at = 0;
    for (i, c) in counts.iter().enumerate().rev() {
        out[i] = (at, *c);
        at += c;
    }
    out
}

/// Bytes of the tree of an image of `data_bytes` (a multiple of [`BLOCK`]).
pub fn tree_bytes(data_bytes: u64) -> u64 {
    levels(data_bytes / BLOCK).iter().map(|(_, n)| n).sum::<u64>() * BLOCK
}

/// SHA-256(salt || block).
pub fn block_hash(salt: &[u8], block: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// The hash tree of `data` (read to its end; its length must be a multiple of [`BLOCK`]) and its
/// root hash.
pub fn build(mut data: impl std::io::Read, salt: &[u8]) -> std::io::Result<(Vec<u8>, [u8; 32])> {
    let mut hashes: Vec<[u8; 32]> = Vec::new();
    let mut buf = vec![0u8; BLOCK as usize];
    loop {
        let mut got = 0;
        while got < buf.len() {
            let n = data.read(&mut buf[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got == 0 {
            break;
        }
        if got < buf.len() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("the image is not a multiple of {BLOCK} bytes")));
        }
        hashes.push(block_hash(salt, &buf));
    }
    if hashes.len() < 2 {
        // The kernel gives a one-block image no tree at all; root images are never that small.
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the image has fewer than 2 blocks"));
    }
    // Each level: the hashes below packed into zero-padded blocks; the next level hashes those.
    let mut level_blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut packed = Vec::with_capacity(hashes.len().div_ceil(PER_BLOCK as usize) * BLOCK as usize);
        for chunk in hashes.chunks(PER_BLOCK as usize) {
            let start = packed.len();
            for h in chunk {
                packed.extend_from_slice(h);
            }
            packed.resize(start + BLOCK as usize, 0);
        }
        hashes = packed.chunks(BLOCK as usize).map(|b| block_hash(salt, b)).collect();
        level_blocks.push(packed);
        if hashes.len() == 1 {
            break;
        }
    }
    let root = hashes[0];
    let tree: Vec<u8> = level_blocks.into_iter().rev().flatten().collect();
    Ok((tree, root))
}

/// The `verity` target's parameters for an image whose data and tree are both on `dev`.
pub fn table_params(dev: &str, data_bytes: u64, root_hash: &str, salt: &str) -> String {
    let blocks = data_bytes / BLOCK;
    format!("1 {dev} {dev} {BLOCK} {BLOCK} {blocks} {blocks} sha256 {root_hash} {salt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_the_kernels_rule() {
        assert_eq!(levels(2), vec![(0, 1)]);
        assert_eq!(levels(128), vec![(0, 1)]);
        // 129 blocks: two level-0 blocks under one top block, the top written first.
        assert_eq!(levels(129), vec![(1, 2), (0, 1)]);
        assert_eq!(levels(128 * 128 + 1), vec![(3, 129), (1, 2), (0, 1)]);
        assert_eq!(tree_bytes(129 * BLOCK), 3 * BLOCK);
    }

    #[test]
    fn the_root_hash_is_the_top_blocks_hash() {
        let data: Vec<u8> = (0..300 * BLOCK as usize).map(|i| (i * 7 % 251) as u8).collect();
        let (tree, root) = build(&data[..], b"salt").unwrap();
        assert_eq!(tree.len() as u64, tree_bytes(data.len() as u64));
        assert_eq!(block_hash(b"salt", &tree[..BLOCK as usize]), root);
        // Level 0 starts with the first data block's hash.
        let (first, _) = levels(300)[0];
        let at = (first * BLOCK) as usize;
        assert_eq!(&tree[at..at + 32], &block_hash(b"salt", &data[..BLOCK as usize]));
        // One flipped data byte changes the root.
        let mut bad = data.clone();
        bad[5 * BLOCK as usize + 3] ^= 1;
        assert_ne!(build(&bad[..], b"salt").unwrap().1, root);
    }

    #[test]
    fn a_partial_block_is_refused() {
        assert!(build(&[0u8; 100][..], b"").is_err());
    }
}
