//! The arm64 guest binaries, cross-built on this machine by `cargo xtask agent --arch arm64`
//! (the function the image builds call), are static aarch64 ELF files: machine EM_AARCH64, no
//! program interpreter, no shared library needed. Nothing of the target is run. Without the
//! cross toolchain this fails, naming `bash scripts/setup.sh`.

use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::Endianness;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// What is wrong with `path` as a static executable for `machine`, if anything.
fn static_elf_problems(path: &Path, machine: u16) -> Vec<String> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let file = ElfFile64::<Endianness>::parse(&*data).unwrap_or_else(|e| panic!("{}: not a 64-bit ELF file: {e}", path.display()));
    let (header, endian) = (file.elf_header(), file.endian());
    let mut problems = Vec::new();
    if header.e_machine(endian) != machine {
        problems.push(format!("e_machine is {}, not {machine}", header.e_machine(endian)));
    }
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == elf::PT_INTERP {
            problems.push("has a PT_INTERP (dynamically linked)".into());
        }
        // A static-pie has a dynamic section for its self-relocation, but needs no library.
        if let Some(dynamic) = ph.dynamic(endian, &*data).expect("read PT_DYNAMIC") {
            if dynamic.iter().any(|d| d.d_tag(endian) == u64::from(elf::DT_NEEDED)) {
                problems.push("needs a shared library (DT_NEEDED)".into());
            }
        }
    }
    problems
}

#[test]
fn arm64_guest_binaries_are_static_aarch64() {
    let arch: image::arch::Arch = "arm64".parse().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).args(["agent", "--arch", "arm64"]).current_dir(workspace()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "`cargo xtask agent --arch arm64` failed (the cross toolchain comes from `bash scripts/setup.sh`):\n{stderr}");
    let agent = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(agent.ends_with(Path::new(arch.rust_target()).join("release/minikube-agent")), "{}", agent.display());
    let init = agent.with_file_name("minikube-init");
    for bin in [&agent, &init] {
        let problems = static_elf_problems(bin, elf::EM_AARCH64);
        assert!(problems.is_empty(), "{}: {}", bin.display(), problems.join("; "));
    }
}

/// The check itself: this test binary (dynamically linked, for the host) fails it for the other
/// machine.
#[test]
fn the_check_sees_a_dynamic_binary_of_another_machine() {
    let me = std::env::current_exe().unwrap();
    let other = if cfg!(target_arch = "aarch64") { elf::EM_X86_64 } else { elf::EM_AARCH64 };
    let problems = static_elf_problems(&me, other);
    assert!(problems.iter().any(|p| p.contains("e_machine")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("PT_INTERP")), "{problems:?}");
}
