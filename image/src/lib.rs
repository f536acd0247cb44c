//! `image`: every step from a declarative spec to a bootable artifact.
//!
//! Data flow: spec (TOML) -> package source (apt index) -> resolved package set -> .deb cache ->
//! rootfs [`rootfs::Tree`] (a value) -> archives (cpio, tar layers) -> images (ISO, OCI).

pub mod apt;
pub use platform as arch;
pub mod assemble;
pub mod caps;
pub mod deb;
pub mod isobuild;
pub mod kernel;
pub mod lock;
pub mod repo;
pub mod resolve;
pub mod rootfs;
pub mod oci;
pub mod pam;
pub mod spec;
pub mod system;
pub mod cpio;
pub mod compress;
pub mod iso;
pub mod kicbase;
pub mod rootimage;
pub mod sbom;
pub mod squashfs;
pub mod tarstream;
pub mod test_hook;
