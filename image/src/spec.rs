//! Declarative image specs (TOML files beside their overlay), e.g. `iso/spec.toml`.
//!
//! A spec says *what* goes into an image: which Debian packages, which overlay directories,
//! which users, alternatives and systemd units, which kernel modules and how to boot. Paths in a
//! spec are relative to the spec file's directory.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read spec {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid spec {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub image: ImageSection,
    #[serde(default)]
    pub source: SourceSection,
    pub packages: PackagesSection,
    #[serde(default)]
    pub files: FilesSection,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Alternatives symlinks that maintainer scripts would have made: link -> target.
    #[serde(default)]
    pub alternatives: BTreeMap<String, String>,
    /// Files that maintainer scripts copy from a template shipped in the package:
    /// destination -> source (both inside the image), e.g. sshd_config from /usr/share/openssh.
    #[serde(default)]
    pub copies: BTreeMap<String, String>,
    /// File capabilities that maintainer scripts would set with setcap: path -> `cap_x+ep`.
    #[serde(default)]
    pub capabilities: BTreeMap<String, crate::caps::FileCaps>,
    #[serde(default)]
    pub systemd: SystemdSection,
    pub kernel: Option<KernelSection>,
    pub boot: Option<BootSection>,
    /// Directory the spec was loaded from (overlay and file paths are relative to it).
    #[serde(skip)]
    pub dir: PathBuf,
    #[serde(skip)]
    pub path: PathBuf,
    /// The spec's text as read: part of the key of cached build parts.
    #[serde(skip)]
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    pub name: String,
    #[serde(default = "default_hostname")]
    pub hostname: String,
}
fn default_hostname() -> String {
    "minikube".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    #[serde(default = "default_suite")]
    pub suite: String,
    #[serde(default = "default_arch")]
    pub arch: String,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// Mirror URI; when absent, read from the machine's apt sources.
    pub mirror: Option<String>,
    /// More suites whose newer versions win, e.g. `["bookworm-updates", "bookworm-security"]`.
    /// Each one's mirror comes from the machine's apt sources; a suite they do not list is
    /// skipped with a warning (the build says which suites it read).
    #[serde(default)]
    pub updates: Vec<String>,
}
impl Default for SourceSection {
    fn default() -> Self {
        SourceSection {
            suite: default_suite(),
            arch: default_arch(),
            components: default_components(),
            mirror: None,
            updates: Vec::new(),
        }
    }
}
fn default_suite() -> String {
    "bookworm".into()
}
fn default_arch() -> String {
    "amd64".into()
}
fn default_components() -> Vec<String> {
    vec!["main".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesSection {
    pub include: Vec<String>,
    /// Also install every `Priority: required` package (what debootstrap's minbase does).
    #[serde(default)]
    pub required: bool,
    /// Never install these, even when something depends on them (an alternative must exist).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Preferred providers for virtual packages: virtual name -> package.
    #[serde(default)]
    pub prefer: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSection {
    /// Overlay directories copied on top of the unpacked packages, in order.
    #[serde(default)]
    pub overlays: Vec<PathBuf>,
    /// Paths (with `*` globs per component) removed from the tree: docs, man pages, locales...
    #[serde(default)]
    pub drop: Vec<String>,
    /// Exceptions to `drop` (globs), e.g. copyright files.
    #[serde(default)]
    pub keep: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub uid: u32,
    #[serde(default)]
    pub gid: Option<u32>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub home: Option<String>,
    #[serde(default = "default_shell")]
    pub shell: String,
    #[serde(default)]
    pub gecos: String,
    /// Create the home directory (owned by the user).
    #[serde(default)]
    pub create_home: bool,
}
fn default_shell() -> String {
    "/bin/bash".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdSection {
    /// Units to enable, as `systemctl enable` would (their [Install] section).
    #[serde(default)]
    pub enable: Vec<String>,
    /// Units to mask (symlink to /dev/null).
    #[serde(default)]
    pub mask: Vec<String>,
    /// Wants-symlinks to remove after enabling (e.g. trimmed for containers): "target.wants/unit".
    #[serde(default)]
    pub default_target: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSection {
    /// The package that brings the kernel (a metapackage is followed to its image package).
    pub package: String,
    /// Modules to keep (names or `*` globs, `-` and `_` alike); their `depends` and `softdep`
    /// modules are kept too. A pattern that matches nothing kept or built in is a build error.
    pub modules: Vec<String>,
    /// Modules loaded at boot (written to modules-load.d); each must be kept by `modules` or
    /// built into the kernel, else the build fails naming it.
    #[serde(default)]
    pub load: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSection {
    /// Where the root filesystem lives at run time.
    #[serde(default)]
    pub root: RootMode,
    /// `root = "initramfs"`: the script installed as /init (relative to the spec). The squashfs
    /// root's /init is the `minikube-init` binary.
    pub init: PathBuf,
    /// `root = "squashfs"`: modules the small initramfs loads to find and mount the root image
    /// (CD-ROM and disk drivers, iso9660, squashfs, overlay, loop); globs as in `[kernel]`.
    #[serde(default)]
    pub initrd_modules: Vec<String>,
    /// `root = "squashfs"`: packages whose `/usr/bin/busybox` is the initramfs's emergency shell.
    #[serde(default)]
    pub initrd_packages: Vec<String>,
    /// `root = "squashfs"`: how the root images are compressed.
    #[serde(default)]
    pub squashfs: SquashfsSection,
    pub cmdline: String,
    #[serde(default = "default_volume_id")]
    pub volume_id: String,
    /// The initramfs's compression (the whole root with `root = "initramfs"`).
    #[serde(default = "default_compression")]
    pub compression: crate::compress::Compression,
    pub level: Option<i32>,
    /// Packages that provide the bootloader files (not installed into the rootfs).
    #[serde(default = "default_bootloader")]
    pub bootloader_packages: Vec<String>,
}
/// Where the booted system's root filesystem lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RootMode {
    /// Compressed read-only squashfs images on the medium, stacked under a tmpfs with overlayfs;
    /// a small initramfs finds, checks and mounts them (the ISO spec's choice).
    Squashfs,
    /// Everything in the initramfs, unpacked into RAM at boot (needs no medium after boot). The
    /// default when a spec does not say, as it needs nothing but `init`.
    #[default]
    Initramfs,
}

impl RootMode {
    pub fn name(self) -> &'static str {
        match self {
            RootMode::Squashfs => "squashfs",
            RootMode::Initramfs => "initramfs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SquashfsSection {
    #[serde(default = "default_sq_compressor")]
    pub compressor: crate::squashfs::Compressor,
    pub level: Option<i32>,
    /// Data block size in KiB.
    #[serde(default = "default_sq_block")]
    pub block_kib: u32,
}
impl Default for SquashfsSection {
    fn default() -> Self {
        SquashfsSection { compressor: default_sq_compressor(), level: None, block_kib: default_sq_block() }
    }
}
fn default_sq_compressor() -> crate::squashfs::Compressor {
    crate::squashfs::Compressor::Zstd
}
fn default_sq_block() -> u32 {
    128
}

fn default_volume_id() -> String {
    "MINIKUBE".into()
}
fn default_compression() -> crate::compress::Compression {
    crate::compress::Compression::Zstd
}
fn default_bootloader() -> Vec<String> {
    vec!["isolinux".into(), "syslinux-common".into()]
}

impl Spec {
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Spec, SpecError> {
        let mut spec: Spec = toml::from_str(text)
            .map_err(|e| SpecError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        spec.path = path.to_path_buf();
        spec.text = text.to_string();
        spec.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        spec.validate()?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), SpecError> {
        let err = |m: String| SpecError::Parse { path: self.path.clone(), message: m };
        if self.packages.include.is_empty() {
            return Err(err("packages.include: the package list is empty".into()));
        }
        for (link, target) in &self.alternatives {
            if !link.starts_with('/') || !target.starts_with('/') {
                return Err(err(format!(
                    "alternatives.\"{link}\": link and target must be absolute paths"
                )));
            }
        }
        for u in &self.users {
            if u.name.is_empty() || u.name.contains(':') {
                return Err(err(format!("users: invalid user name {:?}", u.name)));
            }
        }
        if let Some(b) = &self.boot {
            if let Err(e) = b.compression.level(b.level) {
                return Err(err(format!("boot.level: {e}")));
            }
            if b.root == RootMode::Squashfs {
                if b.initrd_modules.is_empty() {
                    return Err(err("boot.initrd_modules: a squashfs root needs the modules that find and mount it (sr_mod, isofs, squashfs, overlay, loop, ...)".into()));
                }
                if self.kernel.is_none() {
                    return Err(err("boot.root = \"squashfs\" needs a [kernel] section".into()));
                }
            }
            let bk = b.squashfs.block_kib;
            if !(4..=1024).contains(&bk) || !bk.is_power_of_two() {
                return Err(err(format!("boot.squashfs.block_kib: {bk} is not a power of two from 4 to 1024")));
            }
        }
        Ok(())
    }

    /// Resolve a spec-relative path.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_named() {
        let e = Spec::parse("[image]\nname='x'\nbogus=1\n[packages]\ninclude=['a']\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.toml") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn empty_package_list_is_refused() {
        let e = Spec::parse("[image]\nname='x'\n[packages]\ninclude=[]\n", Path::new("s.toml")).unwrap_err();
        assert!(e.to_string().contains("packages.include"));
    }
}
