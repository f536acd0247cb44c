//! What the bytes of a built ISO are (`cargo xtask bench iso --contents ISO...`): the files on the
//! medium (kernel, initrd, the root layers, bootloaders), and inside the package layer, per
//! Debian package (from the image's own `/var/lib/dpkg/info/*.list`) and per path class (docs,
//! locales, firmware, kernel modules, Go programs, ...), with each file's compressed size
//! estimated as squashfs stores it (blocks compressed one by one, identical files once) and what
//! the spec's `[[files.unused]]` entries match.

use crate::rootfs::glob_match;
use crate::spec::Unused;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ContentsError {
    #[error("{path}: {message}")]
    Iso { path: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("unsquashfs {path}: {message}")]
    Unsquash { path: String, message: String },
}

/// Bytes of a group of files: as stored (raw) and estimated compressed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes {
    pub files: usize,
    pub raw: u64,
    pub packed: u64,
}

impl Bytes {
    fn add(&mut self, raw: u64, packed: u64) {
        self.files += 1;
        self.raw += raw;
        self.packed += packed;
    }
}

/// The measurement of one ISO.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every file on the medium with its size, largest first.
    pub medium: Vec<(String, u64)>,
    pub medium_total: u64,
    /// The package layer's files (identical contents counted once, as squashfs stores them).
    pub layer: Bytes,
    /// Extra copies of identical contents: raw bytes squashfs does not store again.
    pub duplicates: Bytes,
    pub by_package: Vec<(String, Bytes)>,
    pub by_class: Vec<(&'static str, Bytes)>,
    /// Per `[[files.unused]]` entry (its first path): what it matches in this layer.
    pub unused: Vec<(String, Bytes)>,
}

/// Path classes, the first that matches wins (by prefix; `*.h` by suffix).
const CLASSES: &[(&str, &[&str])] = &[
    ("kernel modules", &["/usr/lib/modules/"]),
    ("firmware", &["/usr/lib/firmware/"]),
    ("docs (copyright files)", &["/usr/share/doc/", "/usr/share/common-licenses/"]),
    ("man and info pages", &["/usr/share/man/", "/usr/share/info/"]),
    ("locales", &["/usr/share/locale/", "/usr/lib/locale/", "/usr/share/i18n/"]),
    ("udev hwdb sources", &["/usr/lib/udev/hwdb.d/"]),
    ("perl modules", &["/usr/share/perl", "/usr/lib/x86_64-linux-gnu/perl", "/usr/lib/aarch64-linux-gnu/perl"]),
    ("time zones", &["/usr/share/zoneinfo/"]),
    ("shell completions", &["/usr/share/bash-completion/", "/usr/share/zsh/", "/usr/share/fish/"]),
    ("CNI plugins", &["/usr/lib/cni/"]),
    ("C headers", &["/usr/include/"]),
    ("systemd and udev units, rules", &["/usr/lib/systemd/", "/usr/lib/udev/", "/etc/systemd/"]),
    ("other /etc", &["/etc/"]),
    ("other /usr/share", &["/usr/share/"]),
];

fn class(path: &str, content: &[u8]) -> &'static str {
    if let Some((name, _)) = CLASSES.iter().find(|(_, prefixes)| prefixes.iter().any(|p| path.starts_with(p))) {
        return name;
    }
    if path.ends_with(".h") {
        return "C headers";
    }
    if content.starts_with(b"\x7fELF") {
        let go = object::read::File::parse(content).ok().is_some_and(|f| object::Object::section_by_name(&f, ".go.buildinfo").is_some());
        return match (go, path.contains(".so")) {
            (true, _) => "Go programs",
            (false, true) => "shared libraries (ELF)",
            (false, false) => "other programs (ELF)",
        };
    }
    "other"
}

/// The files of an ISO 9660 medium, recursively, with their sizes.
fn medium_files(iso: &Path) -> Result<Vec<(String, u64)>, ContentsError> {
    let bad = |message: String| ContentsError::Iso { path: iso.display().to_string(), message };
    let file = std::fs::File::open(iso).map_err(|source| ContentsError::Io { path: iso.display().to_string(), source })?;
    let fs = iso9660::ISO9660::new(file).map_err(|e| bad(format!("not an ISO 9660 image: {e}")))?;
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), fs.root.clone())];
    while let Some((at, dir)) = stack.pop() {
        for e in dir.contents() {
            let e = e.map_err(|e| bad(format!("{at}/: {e}")))?;
            let name = e.identifier().trim_end_matches(";1").to_lowercase();
            if name == "." || name == ".." || name == "\0" || name == "\u{1}" {
                continue;
            }
            match e {
                iso9660::DirectoryEntry::Directory(d) => stack.push((format!("{at}/{name}"), d)),
                iso9660::DirectoryEntry::File(f) => out.push((format!("{at}/{name}"), f.size() as u64)),
            }
        }
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// Copy one file of the medium to `to`.
fn extract(iso: &Path, path: &str, to: &Path) -> Result<(), ContentsError> {
    let bad = |message: String| ContentsError::Iso { path: format!("{}:{path}", iso.display()), message };
    let file = std::fs::File::open(iso).map_err(|source| ContentsError::Io { path: iso.display().to_string(), source })?;
    let fs = iso9660::ISO9660::new(file).map_err(|e| bad(e.to_string()))?;
    let Some(iso9660::DirectoryEntry::File(f)) = fs.open(path.trim_start_matches('/')).map_err(|e| bad(e.to_string()))? else {
        return Err(bad("not on the medium".into()));
    };
    let mut out = std::fs::File::create(to).map_err(|source| ContentsError::Io { path: to.display().to_string(), source })?;
    std::io::copy(&mut f.read(), &mut out).map_err(|source| ContentsError::Io { path: to.display().to_string(), source })?;
    Ok(())
}

/// Every regular file under `dir`, as tree paths with their contents (not `assemble::read_overlay`:
/// the unpacked layer holds device nodes and links that are not content).
fn files_under(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, ContentsError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let io = |p: &Path, source| ContentsError::Io { path: p.display().to_string(), source };
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
            let e = e.map_err(|e| io(&d, e))?;
            let t = e.file_type().map_err(|x| io(&e.path(), x))?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let mut c = Vec::new();
                std::fs::File::open(e.path()).and_then(|mut f| f.read_to_end(&mut c)).map_err(|x| io(&e.path(), x))?;
                let rel = e.path().strip_prefix(dir).expect("under dir").to_string_lossy().to_string();
                out.push((format!("/{rel}"), c));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The owning package of each path, from the image's own dpkg file lists (merged /usr applied).
fn owners(files: &[(String, Vec<u8>)]) -> BTreeMap<String, String> {
    let mut owner = BTreeMap::new();
    for (p, c) in files {
        let Some(pkg) = p.strip_prefix("/var/lib/dpkg/info/").and_then(|n| n.strip_suffix(".list")) else { continue };
        let pkg = pkg.split(':').next().unwrap_or(pkg);
        for line in String::from_utf8_lossy(c).lines().filter(|l| l.starts_with('/')) {
            owner.entry(crate::deb::merged_path(line)).or_insert_with(|| pkg.to_string());
        }
    }
    owner
}

/// Squashfs's blocks compressed one by one with zstd at `level`: the estimate of a file's share.
fn packed_size(content: &[u8], level: i32, block: usize) -> u64 {
    content.chunks(block).map(|b| zstd::bulk::compress(b, level).map(|c| c.len().min(b.len())).unwrap_or(b.len()) as u64).sum()
}

/// Measure `iso`'s medium and its package layer (`boot/root.sqfs`, unpacked with `unsquashfs`
/// into a temporary directory), compressed sizes estimated with zstd at `level` in `block_kib`
/// blocks on `jobs` threads; `unused` are the spec's entries to attribute.
pub fn measure(iso: &Path, unused: &[Unused], level: i32, block_kib: usize, jobs: usize) -> Result<Report, ContentsError> {
    let medium = medium_files(iso)?;
    let medium_total = std::fs::metadata(iso).map_err(|source| ContentsError::Io { path: iso.display().to_string(), source })?.len();
    let tmp = tempfile::tempdir().map_err(|source| ContentsError::Io { path: "temporary directory".into(), source })?;
    let sqfs = tmp.path().join("root.sqfs");
    extract(iso, "/boot/root.sqfs", &sqfs)?;
    let root = tmp.path().join("root");
    let o = std::process::Command::new("unsquashfs")
        .args(["-no-xattrs", "-q", "-n", "-d"])
        .arg(&root)
        .arg(&sqfs)
        .output()
        .map_err(|e| ContentsError::Unsquash { path: sqfs.display().to_string(), message: e.to_string() })?;
    if !o.status.success() {
        return Err(ContentsError::Unsquash { path: sqfs.display().to_string(), message: String::from_utf8_lossy(&o.stderr).trim().to_string() });
    }
    let files = files_under(&root)?;
    let owner = owners(&files);
    // One estimate per distinct content (squashfs stores identical files once).
    let mut first: HashMap<String, usize> = HashMap::new();
    let digests: Vec<String> = files.iter().map(|(_, c)| pki::digest::sha256_hex(c)).collect();
    let unique: Vec<usize> = (0..files.len()).filter(|&i| first.insert(digests[i].clone(), i).is_none()).collect();
    let packed: Vec<u64> = fetch::parallel::try_map(&unique, jobs, |_, &i| Ok::<_, std::convert::Infallible>(packed_size(&files[i].1, level, block_kib << 10)))
        .unwrap_or_else(|e| match e {});
    let packed: HashMap<usize, u64> = unique.iter().copied().zip(packed).collect();

    let mut r = Report { medium, medium_total, ..Default::default() };
    let mut by_package: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut by_class: BTreeMap<&'static str, Bytes> = BTreeMap::new();
    let mut by_unused: Vec<Bytes> = vec![Bytes::default(); unused.len()];
    for (i, (path, content)) in files.iter().enumerate() {
        let raw = content.len() as u64;
        let Some(&p) = packed.get(&i) else {
            r.duplicates.add(raw, 0);
            continue;
        };
        r.layer.add(raw, p);
        by_package.entry(owner.get(path).cloned().unwrap_or_else(|| "(no dpkg list: kernel modules, files made at build)".into())).or_default().add(raw, p);
        by_class.entry(class(path, content)).or_default().add(raw, p);
        let matched = |g: &str| {
            let mut cur = Some(path.as_str());
            while let Some(x) = cur {
                if glob_match(g, x) {
                    return true;
                }
                cur = crate::rootfs::parent(x);
            }
            false
        };
        if let Some(u) = unused.iter().position(|u| u.paths.iter().any(|g| matched(g.as_str()))) {
            by_unused[u].add(raw, p);
        }
    }
    r.by_package = by_package.into_iter().collect();
    r.by_package.sort_by_key(|x| std::cmp::Reverse(x.1.packed));
    r.by_class = by_class.into_iter().collect();
    r.by_class.sort_by_key(|x| std::cmp::Reverse(x.1.packed));
    r.unused = unused.iter().zip(by_unused).map(|(u, b)| (u.paths.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" "), b)).collect();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_path_and_by_content() {
        assert_eq!(class("/usr/lib/modules/6.1.0/kernel/fs/ext4/ext4.ko", b"\x7fELF"), "kernel modules");
        assert_eq!(class("/usr/share/doc/x/copyright", b"text"), "docs (copyright files)");
        assert_eq!(class("/usr/lib/x86_64-linux-gnu/perl/5.36/CORE/x.h", b"text"), "perl modules");
        assert_eq!(class("/usr/lib/gcc/x.h", b"text"), "C headers");
        assert_eq!(class("/usr/bin/not-elf", b"#!/bin/sh"), "other");
        // This test binary is an ELF program, not Go.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(class("/usr/bin/x", &me), "other programs (ELF)");
        assert_eq!(class("/usr/lib/libx.so.1", &me), "shared libraries (ELF)");
    }

    #[test]
    fn owners_come_from_the_dpkg_lists_with_merged_usr() {
        let files = vec![
            ("/var/lib/dpkg/info/runc.list".to_string(), b"/.\n/usr\n/usr/sbin/runc\n".to_vec()),
            ("/var/lib/dpkg/info/libc6:amd64.list".to_string(), b"/lib/x.so\n".to_vec()),
        ];
        let o = owners(&files);
        assert_eq!(o.get("/usr/sbin/runc").map(String::as_str), Some("runc"));
        assert_eq!(o.get("/usr/lib/x.so").map(String::as_str), Some("libc6"));
    }

    #[test]
    fn packed_size_compresses_block_by_block_and_never_grows() {
        let zeros = vec![0u8; 4 << 17];
        let p = packed_size(&zeros, 3, 128 << 10);
        assert!(p > 0 && p < 4 * 1024, "{p}");
        let noise: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert!(packed_size(&noise, 3, 128 << 10) <= noise.len() as u64);
    }
}
