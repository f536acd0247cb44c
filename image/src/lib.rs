//! `image`: every step from a declarative spec to a bootable artifact.
//!
//! Data flow: spec (TOML) -> package source (apt index) -> resolved package set -> .deb cache ->
//! rootfs [`rootfs::Tree`] (a value) -> archives (cpio, tar layers) -> images (ISO, OCI).

pub mod apt;
pub use platform as arch;
pub mod assemble;
pub mod caps;
pub mod compress;
pub mod contents;
pub mod cpio;
pub mod deb;
pub mod gobin;
pub mod iso;
pub mod isobuild;
pub mod kernel;
pub mod kicbase;
pub mod lock;
pub mod oci;
pub mod pam;
pub mod provenance;
pub mod repo;
pub mod resolve;
pub mod rootfs;
pub mod rootimage;
pub mod sbom;
pub mod spec;
pub mod squashfs;
pub mod system;
pub mod tarstream;
pub mod test_hook;
