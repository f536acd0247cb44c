//! End-to-end tests live in `tests/`: they boot the ISO that `cargo xtask iso` built (path in
//! `MINIKUBE_ISO`, default `out/minikube.iso`) under real qemu, and run real containers.

use std::path::PathBuf;

/// The ISO under test. Fails (never skips) when it has not been built.
pub fn iso_path() -> PathBuf {
    let p = std::env::var_os("MINIKUBE_ISO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../out/minikube.iso"));
    assert!(p.exists(), "{} does not exist: run `cargo xtask iso` first (or set MINIKUBE_ISO)", p.display());
    p
}

/// One guest at a time: this machine has two cores, and parallel TCG guests slow each other.
pub static GUEST_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
