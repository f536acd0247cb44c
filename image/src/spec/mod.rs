//! Declarative image specs (TOML files beside their overlay), e.g. `iso/spec.toml`.
//!
//! A spec says *what* goes into an image: which Debian packages, which overlay directories,
//! which users, alternatives and systemd units, and then either how the image boots (`[kernel]`,
//! `[boot]`: the ISO) or how it runs as a container and which layers it has (`[container]`:
//! kicbase). Every field is typed and checked here, when the spec is read: an error names the
//! spec file and the field.
//!
//! Paths in a spec are relative to the spec file's directory, also those written in its base.
//!
//! # Bases
//!
//! A spec can start from a shared base: `base = "base.toml"` (a top-level key, relative to the
//! file that writes it; `iso/base.toml` is the one the ISO and kicbase specs share). The base is
//! a partial spec; it may have a base of its own. The merge is deterministic and works on the
//! TOML before it is typed:
//!
//! - tables merge key by key, recursively (`[alternatives]` of the base plus the spec's);
//! - anywhere else the spec wins: its string, number, boolean or array replaces the base's
//!   (an array is replaced whole, `[[users]]` too: a package list stays in one piece);
//! - `NAME_extra = [...]` appends to the base's array `NAME` instead (the base's items first),
//!   e.g. `files.drop_extra`; a spec gives `NAME` or `NAME_extra`, not both, and the suffix
//!   `_extra` is kept for this.
//!
//! Only the merged result is typed and checked (a base alone may lack `[image]`). A base file
//! that cannot be read, or one that comes back in its own chain of bases, is an error naming it.
//! [`Spec::text`] is the merged result, so an edit to a base changes the cache keys built on it.

mod base;
use base::{identity, parse_table, with_bases};
mod container;
mod files;

pub use container::{ContainerSection, Placement, Port, Protocol, Select};
pub use files::{FilesSection, PathGlob, Unused};

use crate::resolve::PackageRef;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read spec {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("spec {spec}: cannot read its base {base}: {source}")]
    Base { spec: PathBuf, base: PathBuf, source: std::io::Error },
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
    /// `[kernel]`: the kernel of a bootable image (the ISO). A container image has none.
    pub kernel: Option<KernelSection>,
    /// `[boot]`: how a bootable image boots (needs `[kernel]`).
    pub boot: Option<BootSection>,
    /// `[container]`: how a container image (kicbase) runs and how its files are split into
    /// layers. A spec with `[kernel]` or `[boot]` has none.
    pub container: Option<ContainerSection>,
    /// Directory the spec was loaded from (overlay and file paths are relative to it).
    #[serde(skip)]
    pub dir: PathBuf,
    #[serde(skip)]
    pub path: PathBuf,
    /// The base files merged into this spec, nearest first (see the module docs).
    #[serde(skip)]
    pub bases: Vec<PathBuf>,
    /// The merged spec (this file with its bases, `base` and `_extra` keys resolved) as
    /// canonical TOML: part of the key of cached build parts, so that an edit to the spec or to
    /// any of its bases counts, and one that changes nothing merged (a comment) does not.
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
    /// Debian's name (amd64, arm64); the kernel's (x86_64, aarch64) is read too.
    #[serde(default = "default_arch")]
    pub arch: platform::Arch,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// Mirror URI; when absent, read from the machine's apt sources.
    pub mirror: Option<String>,
    /// More suites whose newer versions win, e.g. `["bookworm-updates", "bookworm-security"]`.
    /// Each one's mirror comes from the machine's apt sources; a suite they do not list is
    /// skipped with a warning (the build says which suites it read).
    #[serde(default)]
    pub updates: Vec<String>,
    /// Extra signed apt repositories (`[[source.repos]]`), e.g. Kubernetes': each one is checked
    /// with its own key and its packages join the index (see [`crate::repo`]).
    #[serde(default)]
    pub repos: Vec<Repo>,
}
impl Default for SourceSection {
    fn default() -> Self {
        SourceSection { suite: default_suite(), arch: default_arch(), components: default_components(), mirror: None, updates: Vec::new(), repos: Vec::new() }
    }
}

/// An extra apt repository and the key that signs its InRelease.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawRepo")]
pub struct Repo {
    /// The archive root, `http://` or `https://`, without a trailing slash.
    pub uri: String,
    pub layout: RepoLayout,
    /// ASCII-armored OpenPGP public key, relative to the spec file (checked when it is read).
    pub key: PathBuf,
}

/// Where a repository keeps its release index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLayout {
    /// Debian's layout: `dists/SUITE/InRelease`, `dists/SUITE/COMP/binary-ARCH/Packages`.
    Suite { suite: String, components: Vec<String> },
    /// A flat repository: `PATH/InRelease` and `PATH/Packages` under the URI (`dir` has no
    /// leading or trailing slash; empty for `path = "/"`).
    Flat { dir: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    uri: String,
    suite: Option<String>,
    components: Option<Vec<String>>,
    path: Option<String>,
    key: PathBuf,
}

impl TryFrom<RawRepo> for Repo {
    type Error = String;
    fn try_from(r: RawRepo) -> Result<Repo, String> {
        let bad = |m: String| format!("source.repos: {:?}: {m}", r.uri);
        let word = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
        if !(r.uri.starts_with("http://") || r.uri.starts_with("https://")) || !word(&r.uri) {
            return Err(bad("uri must be an http:// or https:// URL".into()));
        }
        let layout = match (r.suite, r.components, r.path) {
            (Some(suite), Some(components), None) => {
                if !word(&suite) || components.is_empty() || !components.iter().all(|c| word(c)) {
                    return Err(bad("suite and components must be non-empty words".into()));
                }
                RepoLayout::Suite { suite, components }
            }
            (None, None, Some(path)) => {
                if path.contains(char::is_whitespace) || path.split('/').any(|c| c == "..") {
                    return Err(bad(format!("path {path:?} must be a directory below the uri, like \"/\"")));
                }
                RepoLayout::Flat { dir: path.trim_matches('/').to_string() }
            }
            _ => return Err(bad("give either suite with components (a Debian-style repository) or path (a flat one, like \"/\")".into())),
        };
        if r.key.as_os_str().is_empty() {
            return Err(bad("key: the key file is missing".into()));
        }
        Ok(Repo { uri: r.uri.trim_end_matches('/').to_string(), layout, key: r.key })
    }
}
fn default_suite() -> String {
    "bookworm".into()
}
fn default_arch() -> platform::Arch {
    platform::Arch::X86_64
}
fn default_components() -> Vec<String> {
    vec!["main".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesSection {
    /// `name`, or `name=version` to pin an exact version.
    pub include: Vec<PackageRef>,
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
    /// Units to enable, as `systemctl enable` would (their `[Install]` section).
    #[serde(default)]
    pub enable: Vec<String>,
    /// Units to mask (symlink to /dev/null).
    #[serde(default)]
    pub mask: Vec<String>,
    /// The unit `default.target` links to (`/etc/systemd/system/default.target`), e.g.
    /// `multi-user.target`; when absent none is written and systemd's own `default.target`
    /// applies.
    #[serde(default)]
    pub default_target: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSection {
    /// The package that brings the kernel, e.g. `linux-image-amd64` (a metapackage is followed
    /// to the image package it depends on). The package is not installed: its `vmlinuz` becomes
    /// the medium's `boot/bzImage` and only the modules kept by `modules` go into the root.
    pub package: String,
    /// Modules to keep, from the package's `/usr/lib/modules/VERSION`: names or globs with `*`
    /// inside the name (`nft_*`), `-` and `_` alike. The modules their `depends` and `softdep`
    /// name are kept too, and `depmod` indexes the result. A pattern that matches no module
    /// file of the package and no module built into the kernel is a build error naming it.
    pub modules: Vec<String>,
    /// Modules loaded at boot, by name (no globs; `-` and `_` alike), written in this order to
    /// `/etc/modules-load.d/minikube.conf` (no file when empty). Each must be kept by `modules` or
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
    /// The script installed as `/init` when the whole root is in the initramfs (`root =
    /// "initramfs"`, or `cargo xtask iso --root initramfs`), relative to the spec. Required
    /// either way; with a squashfs root `/init` is the `minikube-init` binary instead.
    pub init: PathBuf,
    /// `root = "squashfs"`: modules the small initramfs loads to find and mount the root image
    /// (CD-ROM and disk drivers, iso9660, squashfs, overlay, loop); globs as in `[kernel]`.
    #[serde(default)]
    pub initrd_modules: Vec<String>,
    /// `root = "squashfs"`: those of `initrd_modules` (names, after the globs) that `/init`
    /// loads only when no device holds the medium once the others are loaded: the CD, SATA and
    /// SCSI drivers, which a VM whose medium is a virtio disk (qemu starting the kernel itself)
    /// never needs. Each must be among the initramfs's modules (checked when the image is built).
    #[serde(default)]
    pub initrd_fallback: Vec<String>,
    /// `root = "squashfs"`: packages whose `/usr/bin/busybox` is the initramfs's emergency shell.
    #[serde(default)]
    pub initrd_packages: Vec<String>,
    /// `root = "squashfs"`: how the root images are compressed.
    #[serde(default)]
    pub squashfs: SquashfsSection,
    /// The kernel command line (isolinux and GRUB boot with the same one).
    pub cmdline: String,
    /// The ISO's volume label, which the GRUB config searches for.
    #[serde(default = "default_volume_id")]
    pub volume_id: String,
    /// The initramfs's compression (the whole root with `root = "initramfs"`).
    #[serde(default = "default_compression")]
    pub compression: crate::compress::Compression,
    /// `compression`'s level (its default when absent); checked against it when read.
    pub level: Option<i32>,
    /// Packages that provide the bootloader files (not installed into the rootfs): isolinux
    /// for BIOS, and UEFI with GRUB when one of them ships the x86_64-efi modules
    /// (`grub-efi-amd64-bin`).
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
    /// The compressor's level (`-Xcompression-level` for gzip, zstd and lzo; for lz4 a level
    /// above 1 means `-Xhc`); mksquashfs's default when absent.
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
    /// Read the spec at `path`, with its bases (see the module docs).
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// `text` as the spec at `path`: its base, if it names one, is read relative to `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Spec, SpecError> {
        let mut bases = Vec::new();
        let mut chain = vec![identity(path)];
        let table = with_bases(parse_table(text, path)?, path, &mut chain, &mut bases)?;
        let err = |m: String| {
            let from = if bases.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = bases.iter().map(|b| b.display().to_string()).collect();
                format!(" (merged with its base {})", names.join(", "))
            };
            SpecError::Parse { path: path.to_path_buf(), message: format!("{}{from}", m.trim_end().replace('\n', " ")) }
        };
        let merged = toml::to_string(&table).map_err(|e| err(e.to_string()))?;
        let mut spec = Spec::deserialize(table).map_err(|e| err(e.to_string()))?;
        spec.path = path.to_path_buf();
        spec.text = merged;
        spec.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        spec.validate().map_err(|e| match e {
            SpecError::Parse { message, .. } => err(message),
            e => e,
        })?;
        spec.bases = bases;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), SpecError> {
        let err = |m: String| SpecError::Parse { path: self.path.clone(), message: m };
        if self.packages.include.is_empty() {
            return Err(err("packages.include: the package list is empty".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = self.packages.include.iter().find(|p| !seen.insert(p.name.as_str())) {
            return Err(err(format!("packages.include: {} is listed twice", dup.name)));
        }
        for (i, r) in self.source.repos.iter().enumerate() {
            let key = self.resolve_path(&r.key);
            crate::apt::signed::read_key(&key).map_err(|m| err(format!("source.repos[{i}].key: {}: {m}", key.display())))?;
        }
        self.files.validate().map_err(err)?;
        for (link, target) in &self.alternatives {
            if !link.starts_with('/') || !target.starts_with('/') {
                return Err(err(format!("alternatives.\"{link}\": link and target must be absolute paths")));
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
                    return Err(err(
                        "boot.initrd_modules: a squashfs root needs the modules that find and mount it (sr_mod, isofs, squashfs, overlay, loop, ...)".into(),
                    ));
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
        if let Some(c) = &self.container {
            if self.kernel.is_some() || self.boot.is_some() {
                return Err(err("[container] is for a container image, which has no [kernel] or [boot] section".into()));
            }
            for (i, p) in c.place.iter().enumerate() {
                if let Select::BroughtBy(roots) = &p.select {
                    if let Some(r) = roots.iter().find(|r| !self.packages.include.iter().any(|p| p.name == **r)) {
                        return Err(err(format!("container.place[{i}].brought_by: {r} is not in packages.include")));
                    }
                }
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
        let e = Spec::parse("[image]\nname='x'\nbogus=1\n[packages]\ninclude=['a']\n", Path::new("s.toml")).unwrap_err().to_string();
        assert!(e.contains("s.toml") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn empty_package_list_is_refused() {
        let e = Spec::parse("[image]\nname='x'\n[packages]\ninclude=[]\n", Path::new("s.toml")).unwrap_err();
        assert!(e.to_string().contains("packages.include"));
    }

    #[test]
    fn pins_and_repos_are_typed_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        let armored = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\naGVsbG8=\n-----END PGP PUBLIC KEY BLOCK-----\n";
        std::fs::write(dir.path().join("k.asc"), armored).unwrap();
        let repo = |body: &str| {
            format!("[image]\nname='x'\n[[source.repos]]\nuri='https://r.example/deb/'\n{body}\n[packages]\ninclude=['kubelet=1.34.1-1.1', 'jq']\n")
        };
        let s = Spec::parse(&repo("path='/'\nkey='k.asc'"), &path).unwrap();
        let r = &s.source.repos[0];
        assert_eq!((r.uri.as_str(), &r.layout), ("https://r.example/deb", &RepoLayout::Flat { dir: String::new() }));
        assert_eq!(s.packages.include[0].version.as_ref().unwrap().to_string(), "1.34.1-1.1");
        assert!(s.packages.include[1].version.is_none());
        let s = Spec::parse(&repo("suite='stable'\ncomponents=['main']\nkey='k.asc'"), &path).unwrap();
        assert!(matches!(&s.source.repos[0].layout, RepoLayout::Suite { suite, .. } if suite == "stable"));
        for (body, want) in [
            ("suite='stable'\ncomponents=['main']\npath='/'\nkey='k.asc'", "either suite with components"),
            ("path='/'", "missing field `key`"),
            ("path='/'\nkey='nosuch.asc'", "source.repos[0].key"),
            ("path='/'\nkey='s.toml'", "not an ASCII-armored"),
            ("path='../x'\nkey='k.asc'", "below the uri"),
            ("path='/'\nkey='k.asc'\nsigned_by='x'", "signed_by"),
        ] {
            std::fs::write(&path, "").unwrap();
            let e = Spec::parse(&repo(body), &path).unwrap_err().to_string();
            assert!(e.contains("s.toml") && e.contains(want), "{body}: {e}");
        }
        let e = Spec::parse("[image]\nname='x'\n[packages]\ninclude=['kubelet=']\n", &path).unwrap_err().to_string();
        assert!(e.contains("s.toml") && e.contains("packages.include") && e.contains("kubelet="), "{e}");
        let e = Spec::parse("[image]\nname='x'\n[packages]\ninclude=['a', 'a=1']\n", &path).unwrap_err().to_string();
        assert!(e.contains("a is listed twice"), "{e}");
    }
}
