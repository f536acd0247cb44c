//! Two builds of the arm64 ISO give the same bytes: the second one with an empty package layer
//! cache, so that the root squashfs, the kernel and the initramfs are made again from the
//! packages (which both builds share, to spare the download).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn build(out: &Path, cache: Option<&Path>) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(["iso", "--arch", "arm64", "--out"]).arg(out).current_dir(workspace());
    // SOURCE_DATE_EPOCH is left to the last commit, as for `cargo xtask test`'s own arm64 build:
    // the first build then reuses that build's package layer.
    c.env("CI", "true").env_remove(image::test_hook::ENV);
    if let Some(cache) = cache {
        c.arg("--cache").arg(cache);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "cargo xtask iso --arch arm64 failed (bash scripts/setup.sh installs the cross toolchain):\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn two_arm64_builds_give_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.iso"), tmp.path().join("b.iso"));
    build(&a, None);
    // A cache with the same downloaded packages but no built layer.
    let shared = fetch::Cache::default_location();
    let fresh = tmp.path().join("cache");
    std::fs::create_dir_all(shared.root().join("sha256")).unwrap();
    std::fs::create_dir_all(&fresh).unwrap();
    std::os::unix::fs::symlink(shared.root().join("sha256"), fresh.join("sha256")).unwrap();
    build(&b, Some(&fresh));
    assert!(fresh.join("rootfs").is_dir(), "the second build did not build its own package layer");
    let (da, db) = (pki::digest::sha256_file(&a).unwrap().0, pki::digest::sha256_file(&b).unwrap().0);
    assert_eq!(da, db, "two arm64 builds differ: {} vs {}", a.display(), b.display());
}
