//! File capabilities (`setcap`'s job in maintainer scripts, e.g. `cap_net_raw+ep` on ping),
//! declared in a spec's `[capabilities]` and stored as the `security.capability` extended
//! attribute (VFS_CAP_REVISION_2, as the kernel and `getcap` read it).

use std::fmt;

/// Capability names in bit order (linux/capability.h).
const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The extended attribute that holds file capabilities.
pub const XATTR: &str = "security.capability";

/// A file's capabilities, from `setcap` text such as `cap_net_raw+ep` or `cap_setuid,cap_setgid+ep`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct FileCaps {
    pub permitted: u64,
    pub inheritable: u64,
    pub effective: bool,
}

impl TryFrom<String> for FileCaps {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for FileCaps {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (names, flags) = s.split_once('+').ok_or_else(|| format!("{s:?}: want NAMES+FLAGS, e.g. cap_net_raw+ep"))?;
        let mut mask = 0u64;
        for n in names.split(',') {
            let short = n.trim().strip_prefix("cap_").unwrap_or(n.trim());
            let bit = NAMES.iter().position(|x| *x == short).ok_or_else(|| format!("{s:?}: unknown capability {n:?}"))?;
            mask |= 1 << bit;
        }
        let mut c = FileCaps { permitted: 0, inheritable: 0, effective: false };
        for f in flags.chars() {
            match f {
                'p' => c.permitted |= mask,
                'i' => c.inheritable |= mask,
                'e' => c.effective = true,
                _ => return Err(format!("{s:?}: unknown flag {f:?} (e, p, i)")),
            }
        }
        if c.effective && c.permitted == 0 && c.inheritable == 0 {
            return Err(format!("{s:?}: e needs p or i"));
        }
        Ok(c)
    }
}

impl FileCaps {
    /// The `security.capability` value: struct vfs_cap_data, revision 2, little-endian.
    pub fn xattr_value(&self) -> Vec<u8> {
        let magic: u32 = 0x0200_0000 | u32::from(self.effective);
        let mut v = Vec::with_capacity(20);
        v.extend_from_slice(&magic.to_le_bytes());
        for half in [0, 32] {
            v.extend_from_slice(&((self.permitted >> half) as u32).to_le_bytes());
            v.extend_from_slice(&((self.inheritable >> half) as u32).to_le_bytes());
        }
        v
    }
}

impl fmt::Display for FileCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = (0..NAMES.len()).filter(|b| (self.permitted | self.inheritable) >> b & 1 == 1).map(|b| format!("cap_{}", NAMES[b])).collect();
        write!(
            f,
            "{}+{}{}{}",
            names.join(","),
            if self.effective { "e" } else { "" },
            if self.inheritable != 0 { "i" } else { "" },
            if self.permitted != 0 { "p" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_caps_encode_as_getcap_reads_them() {
        let c: FileCaps = "cap_net_raw+ep".parse().unwrap();
        assert_eq!(c.permitted, 1 << 13);
        // What `setcap cap_net_raw+ep` stores (read back with getfattr -e hex).
        assert_eq!(c.xattr_value(), [0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(c.to_string(), "cap_net_raw+ep");
    }

    #[test]
    fn bad_text_is_an_error_naming_it() {
        assert!("cap_net_raw".parse::<FileCaps>().unwrap_err().contains("NAMES+FLAGS"));
        assert!("cap_nope+ep".parse::<FileCaps>().unwrap_err().contains("cap_nope"));
        assert!("cap_net_raw+x".parse::<FileCaps>().unwrap_err().contains("'x'"));
    }
}
