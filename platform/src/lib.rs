//! The machine an image (and its guest binaries) is built for, under each of its names: the
//! kernel's (`uname -m`), Debian's, Rust's target triple, GNU's triplet and the ELF header's.
//! One type for the whole workspace: xtask, the buildroot driver, the image builder and the
//! launcher share it. [`ImageVersion`] is the `/version.json` every image carries (the ISO has it
//! at its root too): the image builder writes it, the launcher reads an ISO's architecture from it.

use std::fmt;

pub mod bundle;
pub mod stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// amd64.
    X86_64,
    /// arm64.
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The kernel's name (`uname -m`): x86_64, aarch64.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
    /// Debian's (and OCI's) name: amd64, arm64.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }
    /// Rust's target triple for the glibc guest binaries.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }
    /// GNU's triplet: the prefix of Debian's cross tools (`aarch64-linux-gnu-gcc`).
    pub fn gnu_triplet(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu",
            Arch::Aarch64 => "aarch64-linux-gnu",
        }
    }
    /// `e_machine` of the ELF header: EM_X86_64 (62), EM_AARCH64 (183).
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        }
    }
    /// The qemu that boots it.
    pub fn qemu_system(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }
    /// The buildroot defconfig of buildroot-external/ for the architecture.
    pub fn defconfig(self) -> String {
        format!("minikube_rs_{}_defconfig", self.name())
    }
    /// The machine this runs on, if it is one we build for.
    pub fn host() -> Option<Arch> {
        std::env::consts::ARCH.parse().ok()
    }
}

/// Either name: x86_64 or amd64, aarch64 or arm64.
impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(format!("unknown architecture {other:?} (x86_64 or aarch64)")),
        }
    }
}

/// In files (`/version.json`, the launcher's `state.json`): Debian's name; either name is read.
impl serde::Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.debian())
    }
}

impl<'de> serde::Deserialize<'de> for Arch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `/version.json` of an image: what it is, which commit and base it was built from, for which
/// architecture, and the SOURCE_DATE_EPOCH of its files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageVersion {
    pub image: String,
    pub version: String,
    pub commit: String,
    pub base: String,
    pub arch: Arch,
    pub source_date_epoch: u64,
    /// A bootable image's kernel: what its bootloaders start, so a launcher can start the same
    /// kernel, initramfs and command line itself (qemu's `-kernel`). None in a container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<KernelBoot>,
}

impl ImageVersion {
    /// Where every image carries it (and the ISO at its root).
    pub const PATH: &'static str = "/version.json";
}

/// The kernel a bootable image's bootloaders start: files on its medium and the command line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelBoot {
    /// The kernel's path on the medium ([`KernelBoot::KERNEL`]).
    pub kernel: String,
    /// The initramfs's path on the medium ([`KernelBoot::INITRD`]).
    pub initrd: String,
    /// The kernel command line every bootloader of the medium passes.
    pub cmdline: String,
}

impl KernelBoot {
    /// Where an ISO carries its kernel (both architectures, every bootloader).
    pub const KERNEL: &'static str = "/boot/bzImage";
    /// Where an ISO carries its initramfs.
    pub const INITRD: &'static str = "/boot/initrd";

    /// The medium's usual files with `cmdline`.
    pub fn on_medium(cmdline: &str) -> Self {
        KernelBoot { kernel: Self::KERNEL.into(), initrd: Self::INITRD.into(), cmdline: cmdline.into() }
    }
}

/// The kernel's name.
impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Arch;

    #[test]
    fn names_round_trip() {
        for a in Arch::ALL {
            assert_eq!(a.name().parse::<Arch>(), Ok(a));
            assert_eq!(a.debian().parse::<Arch>(), Ok(a));
            assert!(a.rust_target().starts_with(a.name()));
            assert!(a.gnu_triplet().starts_with(a.name()));
        }
        assert_eq!(Arch::Aarch64.elf_machine(), 183);
        assert_eq!(Arch::X86_64.elf_machine(), 62);
    }

    #[test]
    fn serde_writes_debian_names_and_reads_either() {
        assert_eq!(serde_json::to_string(&Arch::Aarch64).unwrap(), "\"arm64\"");
        assert_eq!(serde_json::from_str::<Arch>("\"x86_64\"").unwrap(), Arch::X86_64);
        let e = serde_json::from_str::<Arch>("\"riscv64\"").unwrap_err().to_string();
        assert!(e.contains("riscv64"), "{e}");
    }
}
