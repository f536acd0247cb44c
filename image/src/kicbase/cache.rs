//! The layer cache (a layer's blob is reused when its tree is unchanged) and the pruning of the
//! blob store.

use std::collections::BTreeSet;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::{io_err, write_atomic, KicbaseError};
use crate::oci::{self, BlobStore, Compression, Layer};
use crate::rootfs::{Kind, Tree};

/// A key for a layer blob: sha256 over every entry (path, kind, target or content hash, mode,
/// owner, mtime) and the compression settings. Equal keys give equal blobs.
pub fn layer_key(tree: &Tree, compression: Compression) -> String {
    let mut h = Sha256::new();
    h.update(format!("{compression:?}\0").as_bytes());
    for (k, e) in tree.iter() {
        h.update(k.as_bytes());
        h.update(format!("\0{}\0{}\0{}\0{}\0", e.st_mode(), e.uid, e.gid, e.mtime).as_bytes());
        match &e.kind {
            Kind::File(c) => h.update(Sha256::digest(c.as_slice())),
            Kind::Symlink(t) => h.update(t.as_bytes()),
            other => h.update(format!("{other:?}").as_bytes()),
        }
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Write the layers into `store`, reusing a cached blob when a layer's [`layer_key`] was built
/// before (and its blob is still there); `names` are their names, bottom first (the history
/// says "kicbase layer N: NAME"). Returns the layers and whether each came from cache.
pub fn write_layers(store: &BlobStore, layers: &[Tree], names: &[String], compression: Compression) -> Result<(Vec<Layer>, Vec<bool>), KicbaseError> {
    let cache_dir = store.root().join("layer-cache");
    std::fs::create_dir_all(&cache_dir).map_err(io_err(&cache_dir))?;
    let mut out = Vec::new();
    let mut cached = Vec::new();
    for (i, t) in layers.iter().enumerate() {
        let name = names.get(i).map_or("layer", String::as_str);
        let created_by = format!("kicbase layer {i}: {name}");
        let key = layer_key(t, compression);
        let entry_path = cache_dir.join(format!("{key}.json"));
        if let Some(l) = read_cached(&entry_path, store, &created_by) {
            tracing::info!(layer = name, digest = %l.digest, "layer unchanged (cached)");
            out.push(l);
            cached.push(true);
            continue;
        }
        let l = oci::write_layer(store, t, compression, &created_by)?;
        let doc = serde_json::json!({
            "digest": l.digest, "diff_id": l.diff_id, "size": l.size, "tar_size": l.tar_size,
            "media_type": l.media_type, "entries": l.entries,
        });
        write_atomic(&entry_path, serde_json::to_vec_pretty(&doc).expect("json").as_slice())?;
        out.push(l);
        cached.push(false);
    }
    Ok((out, cached))
}

fn read_cached(path: &Path, store: &BlobStore, created_by: &str) -> Option<Layer> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let l = Layer {
        digest: v["digest"].as_str()?.to_string(),
        diff_id: v["diff_id"].as_str()?.to_string(),
        size: v["size"].as_u64()?,
        tar_size: v["tar_size"].as_u64()?,
        media_type: v["media_type"].as_str()?.to_string(),
        entries: v["entries"].as_u64()? as usize,
        created_by: created_by.to_string(),
    };
    let meta = std::fs::metadata(store.blob_path(&l.digest)).ok()?;
    (meta.len() == l.size).then_some(l)
}

/// Remove blobs and cache entries that the build does not use: `keep` are the digests of every
/// blob of every image it made, and of its index (the store would otherwise keep every top layer
/// ever built).
pub fn prune(store: &BlobStore, keep: &[String]) -> Result<usize, KicbaseError> {
    let keep: BTreeSet<String> = keep.iter().map(|d| d.trim_start_matches("sha256:").to_string()).collect();
    let mut removed = 0;
    let dir = store.sha256_dir();
    for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
        let e = e.map_err(io_err(&dir))?;
        let name = e.file_name().to_string_lossy().to_string();
        if !keep.contains(&name) && e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            std::fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
            removed += 1;
        }
    }
    let cache = store.root().join("layer-cache");
    if let Ok(rd) = std::fs::read_dir(&cache) {
        for e in rd.flatten() {
            let stale = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["digest"].as_str().map(|d| !keep.contains(d.trim_start_matches("sha256:"))))
                .unwrap_or(true);
            if stale {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(removed)
}
