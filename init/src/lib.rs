//! The boot plan of the minikube ISO's small initramfs, shared by the builder (which writes it)
//! and `/init` (which reads it), so its format is defined once.
//!
//! The plan is a short text file at [`PLAN_PATH`] in the initramfs:
//!
//! ```text
//! kernel 6.1.0-44-amd64
//! module virtio_blk
//! module isofs
//! fallback sr_mod
//! layer boot/root.sqfs 5f1c...e9 180355072 77ab...01 5f1c...e9
//! layer boot/top.sqfs 0a9b...41 1048576 03cd...9f 0a9b...41
//! ```
//!
//! `module` lines name the modules to load, in order (dependencies are read from `modules.dep`);
//! `fallback` lines the ones loaded only when no device holds the medium once those are loaded
//! (the CD and SATA drivers, which a VM whose medium is a virtio disk never needs).
//! `layer` lines name the read-only root images on the medium, lowest first: the SHA-256 of the
//! data, its length, and the root hash and salt of the dm-verity tree that follows the data in
//! the same file ([`verity`]). `/init` checks the tree's top block against the root hash, then
//! mounts each image through a verity device (every other block is checked when it is first
//! read) and stacks them with overlayfs under a writable layer: on the data disk when it is there
//! ([`data`]), else a tmpfs.

pub mod data;
pub mod verity;

use std::fmt;

/// Where the plan lives in the initramfs.
pub const PLAN_PATH: &str = "/etc/minikube-init.plan";
/// Where modules live in the initramfs (merged /usr).
pub const MODULES_DIR: &str = "/usr/lib/modules";
/// The emergency shell in the initramfs.
pub const SHELL: &str = "/usr/bin/sh";
/// Prefix of every console line `/init` prints.
pub const CONSOLE_PREFIX: &str = "minikube-init:";
/// The line that starts a failure report on the console.
pub const FAILED_MARKER: &str = "minikube-init: FAILED:";
/// The line printed when the root is mounted and systemd is about to start.
pub const ROOT_READY_MARKER: &str = "minikube-init: root ready";

/// One read-only root image on the medium: its data, then its dm-verity hash tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// Path on the medium, relative to its root (e.g. `boot/root.sqfs`).
    pub path: String,
    /// Lower-case hex SHA-256 of the data (the filesystem image without its tree).
    pub sha256: String,
    /// Bytes of data (a multiple of [`verity::BLOCK`]); the hash tree follows.
    pub data_bytes: u64,
    /// Lower-case hex root hash of the tree.
    pub root_hash: String,
    /// Lower-case hex salt of the tree.
    pub salt: String,
}

/// What `/init` must do, as written by the image builder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The kernel release the modules belong to.
    pub kernel: String,
    /// Modules to load, in order.
    pub modules: Vec<String>,
    /// Modules to load when no device holds the medium after [`Plan::modules`].
    pub fallback: Vec<String>,
    /// Root images, lowest layer first.
    pub layers: Vec<Layer>,
}

/// A plan that cannot be read, with the line at fault.
#[derive(Debug, PartialEq, Eq)]
pub struct PlanError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PLAN_PATH} line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for PlanError {}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_hex(s: &str) -> bool {
    s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
}

impl Plan {
    /// A short name for this set of root images (from their dm-verity root hashes): the key of
    /// the root's writable layer on the data disk, so a new ISO starts from its own files.
    pub fn root_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for l in &self.layers {
            h.update(l.root_hash.as_bytes());
            h.update(b"\n");
        }
        hex::encode(&h.finalize()[..8])
    }

    /// The plan's text. Fails on a value that could not be read back (empty, or with spaces).
    pub fn render(&self) -> Result<String, PlanError> {
        let bad = |message: String| Err(PlanError { line: 0, message });
        if !is_word(&self.kernel) {
            return bad(format!("kernel release {:?} is not one word", self.kernel));
        }
        let mut s = format!("kernel {}\n", self.kernel);
        for m in &self.modules {
            if !is_word(m) {
                return bad(format!("module name {m:?} is not one word"));
            }
            s.push_str(&format!("module {m}\n"));
        }
        for m in &self.fallback {
            if !is_word(m) {
                return bad(format!("module name {m:?} is not one word"));
            }
            s.push_str(&format!("fallback {m}\n"));
        }
        if self.layers.is_empty() {
            return bad("no layer: the plan needs at least one root image".into());
        }
        for l in &self.layers {
            if !is_word(&l.path) || l.path.starts_with('/') || l.path.split('/').any(|c| c == "..") {
                return bad(format!("layer path {:?} must be relative to the medium, one word, without ..", l.path));
            }
            if ![&l.sha256, &l.root_hash].iter().all(|h| is_hex64(h)) || !is_hex(&l.salt) {
                return bad(format!("layer {}: its SHA-256, root hash or salt is not lower-case hex", l.path));
            }
            if l.data_bytes == 0 || l.data_bytes % verity::BLOCK != 0 {
                return bad(format!("layer {}: {} data bytes is not a positive multiple of {}", l.path, l.data_bytes, verity::BLOCK));
            }
            s.push_str(&format!("layer {} {} {} {} {}\n", l.path, l.sha256, l.data_bytes, l.root_hash, l.salt));
        }
        Ok(s)
    }

    /// Read a plan; every line is checked.
    pub fn parse(text: &str) -> Result<Plan, PlanError> {
        let mut p = Plan::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| PlanError { line, message };
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["kernel", v] => p.kernel = v.to_string(),
                ["module", m] => p.modules.push(m.to_string()),
                ["fallback", m] => p.fallback.push(m.to_string()),
                ["layer", path, sum, size, root, salt] => {
                    for (what, h) in [("SHA-256", sum), ("root hash", root)] {
                        if !is_hex64(h) {
                            return Err(err(format!("layer {path}: {what} {h:?} is not 64 lower-case hex digits")));
                        }
                    }
                    if !is_hex(salt) {
                        return Err(err(format!("layer {path}: salt {salt:?} is not lower-case hex")));
                    }
                    let data_bytes: u64 = size
                        .parse()
                        .ok()
                        .filter(|n| *n > 0 && n % verity::BLOCK == 0)
                        .ok_or_else(|| err(format!("layer {path}: data length {size:?} is not a positive multiple of {}", verity::BLOCK)))?;
                    p.layers.push(Layer { path: path.to_string(), sha256: sum.to_string(), data_bytes, root_hash: root.to_string(), salt: salt.to_string() });
                }
                _ => {
                    return Err(err(format!(
                        "cannot read {l:?} (want `kernel V`, `module NAME`, `fallback NAME` or `layer PATH SHA256 DATA_BYTES ROOT_HASH SALT`)"
                    )))
                }
            }
        }
        if p.kernel.is_empty() {
            return Err(PlanError { line: 0, message: "no `kernel` line".into() });
        }
        if p.layers.is_empty() {
            return Err(PlanError { line: 0, message: "no `layer` line".into() });
        }
        Ok(p)
    }
}

/// Module name as the kernel knows it: file name without `.ko[.xz|.zst|.gz]`, `-` as `_`.
pub fn module_name(file: &str) -> Option<String> {
    let base = file.rsplit('/').next()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|s| base.strip_suffix(s))?;
    Some(stem.replace('-', "_"))
}

/// `modules.dep` as a map: module name -> (path relative to the modules dir, dependency paths).
pub fn parse_modules_dep(text: &str) -> std::collections::BTreeMap<String, (String, Vec<String>)> {
    let mut m = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else { continue };
        let Some(name) = module_name(path) else { continue };
        m.insert(name, (path.trim().to_string(), deps.split_whitespace().map(str::to_string).collect()));
    }
    m
}

/// The order to load `wanted` in: each module after the modules it depends on, each once.
/// A name that is not in `dep` is returned in the error (the caller checks `modules.builtin`).
pub fn load_order(dep: &std::collections::BTreeMap<String, (String, Vec<String>)>, wanted: &[String]) -> (Vec<String>, Vec<String>) {
    let mut order: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    for w in wanted {
        let w = w.replace('-', "_");
        let Some((path, deps)) = dep.get(&w) else {
            missing.push(w);
            continue;
        };
        // modules.dep lists a module's whole dependency closure, each after what it needs:
        // loading them from the last to the first satisfies every dependency.
        for d in deps.iter().rev().chain(std::iter::once(path)) {
            if !order.contains(d) {
                order.push(d.clone());
            }
        }
    }
    (order, missing)
}

/// [`load_order`] in waves: each module in the wave after the last of its dependencies, so the
/// modules of one wave can be loaded at the same time (one per CPU), the waves one after another.
pub fn load_waves(dep: &std::collections::BTreeMap<String, (String, Vec<String>)>, wanted: &[String]) -> (Vec<Vec<String>>, Vec<String>) {
    let (order, missing) = load_order(dep, wanted);
    let deps_of: std::collections::BTreeMap<&str, &Vec<String>> = dep.values().map(|(p, d)| (p.as_str(), d)).collect();
    // `order` has every module after its dependencies: one pass finds each one's wave.
    let mut wave: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let mut waves: Vec<Vec<String>> = Vec::new();
    for m in &order {
        let w = deps_of.get(m.as_str()).map_or(0, |ds| ds.iter().filter_map(|d| wave.get(d.as_str())).map(|w| w + 1).max().unwrap_or(0));
        wave.insert(m, w);
        if waves.len() <= w {
            waves.resize(w + 1, Vec::new());
        }
        waves[w].push(m.clone());
    }
    (waves, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_put_each_module_after_its_dependencies() {
        let text = "kernel/fs/isofs/isofs.ko:\nkernel/drivers/scsi/sr_mod.ko: kernel/drivers/cdrom/cdrom.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko\nkernel/drivers/cdrom/cdrom.ko:\nkernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko\nkernel/drivers/scsi/scsi_common.ko:\n";
        let dep = parse_modules_dep(text);
        let (waves, missing) = load_waves(&dep, &["sr_mod".into(), "isofs".into(), "nope".into()]);
        assert_eq!(missing, vec!["nope".to_string()]);
        assert_eq!(
            waves,
            vec![
                vec!["kernel/drivers/scsi/scsi_common.ko".to_string(), "kernel/drivers/cdrom/cdrom.ko".into(), "kernel/fs/isofs/isofs.ko".into()],
                vec!["kernel/drivers/scsi/scsi_mod.ko".to_string()],
                vec!["kernel/drivers/scsi/sr_mod.ko".to_string()],
            ]
        );
        let (order, _) = load_order(&dep, &["sr_mod".into(), "isofs".into()]);
        assert_eq!(waves.concat().len(), order.len(), "every module once");
    }

    fn sample() -> Plan {
        Plan {
            kernel: "6.1.0-9-amd64".into(),
            modules: vec!["virtio_blk".into(), "isofs".into()],
            fallback: vec!["sr_mod".into()],
            layers: vec![
                Layer { path: "boot/root.sqfs".into(), sha256: "a".repeat(64), data_bytes: 8192, root_hash: "c".repeat(64), salt: "a".repeat(64) },
                Layer { path: "boot/top.sqfs".into(), sha256: "b".repeat(64), data_bytes: 4096, root_hash: "e".repeat(64), salt: "b".repeat(64) },
            ],
        }
    }

    #[test]
    fn plan_round_trips() {
        let p = sample();
        assert_eq!(Plan::parse(&p.render().unwrap()).unwrap(), p);
    }

    #[test]
    fn bad_plans_name_the_line() {
        let e = Plan::parse("kernel 6\nlayer boot/x.sqfs nothex 8192 nothex 00\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("SHA-256 \"nothex\" is not 64 lower-case hex"), "{e}");
        let h = "a".repeat(64);
        let e = Plan::parse(&format!("kernel 6\nlayer boot/x.sqfs {h} 100 {h} 00\n")).unwrap_err();
        assert!(e.to_string().contains("line 2") && e.to_string().contains("data length \"100\""), "{e}");
        assert!(Plan::parse("kernel 6\n").unwrap_err().message.contains("no `layer`"));
        assert!(Plan::parse("kernel 6\nbogus\n").unwrap_err().message.contains("bogus"));
        let mut p = sample();
        p.layers[0].path = "/abs".into();
        assert!(p.render().is_err());
        p.layers.clear();
        assert!(p.render().is_err());
    }

    #[test]
    fn dependencies_load_first() {
        let dep = parse_modules_dep(
            "kernel/fs/isofs/isofs.ko:\nkernel/drivers/scsi/sr_mod.ko: kernel/drivers/cdrom/cdrom.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko\nkernel/drivers/cdrom/cdrom.ko:\nkernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko\n",
        );
        let (order, missing) = load_order(&dep, &["sr-mod".into(), "isofs".into(), "nope".into()]);
        assert_eq!(
            order,
            [
                "kernel/drivers/scsi/scsi_common.ko",
                "kernel/drivers/scsi/scsi_mod.ko",
                "kernel/drivers/cdrom/cdrom.ko",
                "kernel/drivers/scsi/sr_mod.ko",
                "kernel/fs/isofs/isofs.ko"
            ]
        );
        assert_eq!(missing, ["nope"]);
    }
}
