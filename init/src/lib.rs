//! The boot plan of the minikube ISO's small initramfs, shared by the builder (which writes it)
//! and `/init` (which reads it), so its format is defined once.
//!
//! The plan is a short text file at [`PLAN_PATH`] in the initramfs:
//!
//! ```text
//! kernel 6.1.0-44-amd64
//! module sr_mod
//! module isofs
//! layer boot/root.sqfs 5f1c...e9 8388608 77ab...01,03cd...9f,...
//! layer boot/top.sqfs 0a9b...41 8388608 0a9b...41
//! ```
//!
//! `module` lines name the modules to load, in order (dependencies are read from `modules.dep`).
//! `layer` lines name the read-only root images on the medium, lowest first, with the SHA-256 of
//! the whole file, the chunk size and the SHA-256 of each chunk: `/init` checks the chunks on
//! every CPU at once (one SHA-256 stream runs on one CPU only). They are stacked with overlayfs
//! under a tmpfs upper layer.

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

/// One read-only root image on the medium.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// Path on the medium, relative to its root (e.g. `boot/root.sqfs`).
    pub path: String,
    /// Lower-case hex SHA-256 of the image.
    pub sha256: String,
    /// Bytes per chunk.
    pub chunk_bytes: u64,
    /// Lower-case hex SHA-256 of each chunk, in order (the last may be short).
    pub chunks: Vec<String>,
}

/// The chunk size the builder uses.
pub const CHUNK_BYTES: u64 = 8 << 20;

/// SHA-256 of a whole stream and of each `chunk_bytes` chunk of it.
pub fn digest_chunks(mut r: impl std::io::Read, chunk_bytes: u64) -> std::io::Result<(String, Vec<String>, u64)> {
    use sha2::{Digest, Sha256};
    let mut whole = Sha256::new();
    let mut chunks = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let mut chunk = Sha256::new();
        let mut n_chunk = 0u64;
        while n_chunk < chunk_bytes {
            let want = buf.len().min((chunk_bytes - n_chunk) as usize);
            let n = r.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            whole.update(&buf[..n]);
            chunk.update(&buf[..n]);
            n_chunk += n as u64;
        }
        total += n_chunk;
        if n_chunk == 0 {
            break;
        }
        chunks.push(hex::encode(chunk.finalize()));
        if n_chunk < chunk_bytes {
            break;
        }
    }
    Ok((hex::encode(whole.finalize()), chunks, total))
}

/// SHA-256 of `len` bytes of `f` from `offset`.
pub fn digest_range(f: &std::fs::File, offset: u64, len: u64) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = f.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("file ends at {}", offset + done)));
        }
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(hex::encode(h.finalize()))
}

/// What `/init` must do, as written by the image builder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The kernel release the modules belong to.
    pub kernel: String,
    /// Modules to load, in order.
    pub modules: Vec<String>,
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

fn is_word(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
}

impl Plan {
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
        if self.layers.is_empty() {
            return bad("no layer: the plan needs at least one root image".into());
        }
        for l in &self.layers {
            if !is_word(&l.path) || l.path.starts_with('/') || l.path.split('/').any(|c| c == "..") {
                return bad(format!("layer path {:?} must be relative to the medium, one word, without ..", l.path));
            }
            if !is_hex64(&l.sha256) || l.chunks.is_empty() || !l.chunks.iter().all(|c| is_hex64(c)) {
                return bad(format!("layer {}: {:?} or its chunk list is not lower-case hex SHA-256", l.path, l.sha256));
            }
            if l.chunk_bytes == 0 {
                return bad(format!("layer {}: chunk size 0", l.path));
            }
            s.push_str(&format!("layer {} {} {} {}\n", l.path, l.sha256, l.chunk_bytes, l.chunks.join(",")));
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
                ["layer", path, sum, size, chunks] => {
                    if !is_hex64(sum) {
                        return Err(err(format!("layer {path}: {sum:?} is not a lower-case hex SHA-256")));
                    }
                    let chunk_bytes: u64 = size.parse().ok().filter(|n| *n > 0).ok_or_else(|| err(format!("layer {path}: chunk size {size:?}")))?;
                    let chunks: Vec<String> = chunks.split(',').map(str::to_string).collect();
                    if let Some(c) = chunks.iter().find(|c| !is_hex64(c)) {
                        return Err(err(format!("layer {path}: chunk {c:?} is not a lower-case hex SHA-256")));
                    }
                    p.layers.push(Layer { path: path.to_string(), sha256: sum.to_string(), chunk_bytes, chunks });
                }
                _ => return Err(err(format!("cannot read {l:?} (want `kernel V`, `module NAME` or `layer PATH SHA256 CHUNK_BYTES SHA256,...`)"))),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Plan {
        Plan {
            kernel: "6.1.0-9-amd64".into(),
            modules: vec!["sr_mod".into(), "isofs".into()],
            layers: vec![
                Layer { path: "boot/root.sqfs".into(), sha256: "a".repeat(64), chunk_bytes: 8, chunks: vec!["c".repeat(64), "d".repeat(64)] },
                Layer { path: "boot/top.sqfs".into(), sha256: "b".repeat(64), chunk_bytes: 8, chunks: vec!["e".repeat(64)] },
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
        let e = Plan::parse("kernel 6\nlayer boot/x.sqfs nothex 8 nothex\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("not a lower-case hex"), "{e}");
        assert!(Plan::parse("kernel 6\n").unwrap_err().message.contains("no `layer`"));
        assert!(Plan::parse("kernel 6\nbogus\n").unwrap_err().message.contains("bogus"));
        let mut p = sample();
        p.layers[0].path = "/abs".into();
        assert!(p.render().is_err());
        p.layers.clear();
        assert!(p.render().is_err());
    }

    #[test]
    fn chunks_cover_the_stream_and_ranges_match_them() {
        let data: Vec<u8> = (0..20u32).map(|i| i as u8).collect();
        let (whole, chunks, total) = digest_chunks(&data[..], 8).unwrap();
        assert_eq!((chunks.len(), total), (3, 20));
        let dir = std::env::temp_dir().join(format!("minikube-init-test-{}", std::process::id()));
        std::fs::write(&dir, &data).unwrap();
        let f = std::fs::File::open(&dir).unwrap();
        assert_eq!(digest_range(&f, 16, 4).unwrap(), chunks[2]);
        assert_eq!(digest_range(&f, 0, 20).unwrap(), whole);
        assert!(digest_range(&f, 16, 8).is_err(), "reading past the end is an error");
        std::fs::remove_file(&dir).unwrap();
        // An exact multiple has no empty last chunk.
        assert_eq!(digest_chunks(&data[..16], 8).unwrap().1.len(), 2);
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
