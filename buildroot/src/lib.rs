//! The buildroot flavor of the minikube ISO.
//!
//! `buildroot-external/` (at the workspace root) is a BR2_EXTERNAL tree: defconfigs, board files,
//! and our own packages (the agent). This crate holds:
//! - [`lint`]: checks of that tree that need no buildroot checkout (symbols, hashes, overlays,
//!   names), run by `cargo test -p buildroot` and callable from tools;
//! - [`driver`]: the out-of-tree build (`make -C <buildroot> O=out/buildroot/<arch>
//!   BR2_EXTERNAL=...`), optionally inside a Debian container, ending in `out/minikube.iso`.
//! - [`defconfig`]: the reader of buildroot defconfig / .config files both use.

pub mod defconfig;
pub mod driver;
pub mod lint;

/// The buildroot release this tree is written for: the 2025.02 LTS point release minikube pins.
pub const PINNED_RELEASE: &str = "2025.02.16";

/// The name in `buildroot-external/external.desc` (so `$(BR2_EXTERNAL_MINIKUBE_RS_PATH)`).
pub const EXTERNAL_NAME: &str = "MINIKUBE_RS";
