//! The content hash of the code that shapes a root image (this crate's, pki's and the boot plan's
//! (`init/src`: the plan and the dm-verity tree) sources, and the lock file), so cached build parts are keyed on the code that made them, not on timestamps.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut all = Vec::new();
    for d in [here.join("src"), here.join("../pki/src")] {
        println!("cargo:rerun-if-changed={}", d.display());
        files(&d, &mut all);
    }
    // The boot plan and the dm-verity tree (not /init itself, which lives in the top's initramfs).
    for f in ["../init/src/lib.rs", "../init/src/verity.rs"] {
        println!("cargo:rerun-if-changed={}", here.join(f).display());
        all.push(here.join(f));
    }
    let lock = here.join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    all.push(lock);
    all.sort();
    let mut h = Sha256::new();
    for f in &all {
        h.update(f.strip_prefix(&here).unwrap_or(f).to_string_lossy().as_bytes());
        h.update([0]);
        h.update(std::fs::read(f).unwrap_or_default());
        h.update([0]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=IMAGE_CODE_HASH={hex}");
}
