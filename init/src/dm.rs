//! A read-only dm-verity device through device-mapper's ioctls (`<linux/dm-ioctl.h>`): create
//! the device, load its one-target table, resume it, and make its block node.
//!
//! Three ioctls on `/dev/mapper/control` are all `/init` needs, so they are written here rather
//! than bringing `dmsetup`/`veritysetup` and their libraries into the initramfs, or a crate
//! whose bindings are generated at build time (libclang on every build machine).

use std::os::fd::AsRawFd;

const CONTROL: &str = "/dev/mapper/control";
/// `sizeof(struct dm_ioctl)`: the header every command starts with.
const HEADER: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const TARGET_SPEC: usize = 40;
const DM_READONLY_FLAG: u32 = 1;

/// The commands used (`enum { DM_VERSION_CMD = 0, ... }`).
#[derive(Clone, Copy)]
enum Cmd {
    DevCreate = 3,
    DevSuspend = 6,
    TableLoad = 9,
}

impl Cmd {
    /// `_IOWR(DM_IOCTL, cmd, struct dm_ioctl)` (the generic encoding: x86 and arm64 alike).
    fn request(self) -> libc::c_ulong {
        (3 << 30) | ((HEADER as libc::c_ulong) << 16) | (0xfd << 8) | self as libc::c_ulong
    }

    fn name(self) -> &'static str {
        match self {
            Cmd::DevCreate => "create",
            Cmd::DevSuspend => "resume",
            Cmd::TableLoad => "table load",
        }
    }
}

/// A `struct dm_ioctl` for `name`, `extra` bytes of payload after it.
fn header(name: &str, flags: u32, target_count: u32, extra: usize) -> Vec<u8> {
    let size = (HEADER + extra).div_ceil(8) * 8;
    let mut b = vec![0u8; size];
    for (i, v) in [4u32, 0, 0].iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    b[12..16].copy_from_slice(&(size as u32).to_ne_bytes()); // data_size
    b[16..20].copy_from_slice(&(HEADER as u32).to_ne_bytes()); // data_start
    b[20..24].copy_from_slice(&target_count.to_ne_bytes());
    b[28..32].copy_from_slice(&flags.to_ne_bytes());
    b[48..48 + name.len()].copy_from_slice(name.as_bytes()); // name[128]
    b
}

fn ioctl(ctl: &std::fs::File, cmd: Cmd, name: &str, buf: &mut [u8]) -> Result<(), String> {
    // SAFETY: `buf` is a `struct dm_ioctl` whose data_size field equals buf.len(): the kernel
    // reads and writes at most that many bytes of it, and `buf` outlives the call.
    let rc = unsafe { libc::ioctl(ctl.as_raw_fd(), cmd.request() as _, buf.as_mut_ptr()) };
    if rc != 0 {
        return Err(format!("device-mapper {} of {name}: {}", cmd.name(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Create the read-only `verity` device `name` over `sectors` 512-byte sectors with the target
/// parameters `params`, and make its block node at `node`.
pub fn create_verity(name: &str, sectors: u64, params: &str, node: &str) -> Result<(), String> {
    if name.len() >= 128 || params.contains('\0') {
        return Err(format!("device-mapper: bad name {name:?} or parameters"));
    }
    let ctl = std::fs::OpenOptions::new().read(true).write(true).open(CONTROL).map_err(|e| format!("{CONTROL} (is dm_mod loaded?): {e}"))?;
    let mut create = header(name, 0, 0, 0);
    ioctl(&ctl, Cmd::DevCreate, name, &mut create)?;
    let dev = u64::from_ne_bytes(create[40..48].try_into().expect("8 bytes"));

    let mut load = header(name, DM_READONLY_FLAG, 1, TARGET_SPEC + params.len() + 1);
    let spec = &mut load[HEADER..];
    spec[8..16].copy_from_slice(&sectors.to_ne_bytes()); // length (sector_start 0)
    spec[20..24].copy_from_slice(&((TARGET_SPEC + params.len() + 1).div_ceil(8) as u32 * 8).to_ne_bytes()); // next
    spec[24..24 + 6].copy_from_slice(b"verity"); // target_type[16]
    spec[TARGET_SPEC..TARGET_SPEC + params.len()].copy_from_slice(params.as_bytes());
    ioctl(&ctl, Cmd::TableLoad, name, &mut load)?;

    // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table goes live.
    let mut resume = header(name, 0, 0, 0);
    ioctl(&ctl, Cmd::DevSuspend, name, &mut resume)?;

    // `dev` is the kernel's huge_encode_dev() of the new device.
    let (major, minor) = (((dev >> 8) & 0xfff) as u32, ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32);
    let path = std::ffi::CString::new(node).map_err(|_| format!("{node}: NUL in path"))?;
    // SAFETY: `path` is a NUL-terminated CString alive for the call.
    if unsafe { libc::mknod(path.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(major, minor)) } != 0 {
        return Err(format!("mknod {node} ({major}:{minor}): {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
