//! cpio newc archives checked with the real GNU cpio (unpacked as root into a temp dir).
//!
//! Needs: `cpio` (apt package cpio) and root (owners and device nodes are restored).

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use image::cpio;
use image::rootfs::{Entry, Kind, Tree};

fn entry(kind: Kind, mode: u32, uid: u32, gid: u32) -> Entry {
    Entry { kind, mode, uid, gid, mtime: 1_700_000_000 }
}

/// A tree with every kind of entry, owned by non-root users.
fn sample() -> Tree {
    let mut t = Tree::new();
    t.insert("/srv", entry(Kind::Dir, 0o750, 1000, 1001));
    t.insert("/srv/data.txt", entry(Kind::File(b"hello cpio\n".to_vec().into()), 0o640, 1001, 1002));
    t.insert("/srv/empty", entry(Kind::File(Vec::new().into()), 0o600, 1003, 1003));
    t.insert("/srv/link", entry(Kind::Symlink("data.txt".into()), 0o777, 1000, 1001));
    t.insert("/srv/abs", entry(Kind::Symlink("/usr/bin/su".into()), 0o777, 0, 0));
    t.insert("/usr/bin/su", entry(Kind::File(vec![0x7f; 4099].into()), 0o4755, 0, 0));
    t.insert("/usr/bin/wall", entry(Kind::File(vec![1, 2, 3].into()), 0o2755, 0, 5));
    t.insert("/tmp", entry(Kind::Dir, 0o1777, 0, 0));
    t.insert("/dev/null", entry(Kind::CharDev { major: 1, minor: 3 }, 0o666, 0, 0));
    t.insert("/dev/sda", entry(Kind::BlockDev { major: 8, minor: 16 }, 0o660, 0, 6));
    t.insert("/run/ctl", entry(Kind::Fifo, 0o620, 1000, 1000));
    t
}

fn run_cpio(args: &[&str], dir: &Path, input: &[u8]) -> (String, String) {
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cpio is installed (apt package cpio)");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "cpio {args:?} failed: {stderr}");
    (stdout, stderr)
}

/// mode, uid, gid, rdev, link target, content.
type Meta = (u32, u32, u32, u64, Option<String>, Option<Vec<u8>>);

/// Metadata of everything under `root`, keyed like tree paths.
fn snapshot(root: &Path) -> BTreeMap<String, Meta> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let key = format!("/{}", p.strip_prefix(root).unwrap().display());
            let link = m.file_type().is_symlink().then(|| std::fs::read_link(&p).unwrap().display().to_string());
            let data = m.file_type().is_file().then(|| std::fs::read(&p).unwrap());
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(key, (m.mode(), m.uid(), m.gid(), m.rdev(), link, data));
        }
    }
    out
}

fn major(rdev: u64) -> u64 {
    ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)
}
fn minor(rdev: u64) -> u64 {
    (rdev & 0xff) | ((rdev >> 12) & !0xff)
}

/// Every entry of concatenated archives, read with the `cpio` crate: (name, ino, mode, nlink).
fn read_all(mut data: &[u8]) -> Vec<(String, u32, u32, u32)> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let mut reader = ::cpio::NewcReader::new(data).unwrap();
        let e = reader.entry().clone();
        let mut sink = Vec::new();
        reader.read_to_end(&mut sink).unwrap();
        data = reader.finish().unwrap();
        if e.is_trailer() {
            continue;
        }
        out.push((e.name().to_string(), e.ino(), e.mode(), e.nlink()));
    }
    out
}

#[test]
fn real_cpio_unpacks_owners_modes_devices_links() {
    let tree = sample();
    let mut archive = Vec::new();
    let n = cpio::write(&tree, &mut archive).unwrap();
    assert_eq!(n as usize, archive.len());

    let dir = tempfile::tempdir().unwrap();
    run_cpio(&["-idmv", "--no-absolute-filenames"], dir.path(), &archive);
    let root = dir.path();
    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();

    let srv = meta("srv");
    assert!(srv.is_dir());
    assert_eq!((srv.mode() & 0o7777, srv.uid(), srv.gid()), (0o750, 1000, 1001));

    let data = meta("srv/data.txt");
    assert_eq!((data.mode() & 0o7777, data.uid(), data.gid()), (0o640, 1001, 1002));
    assert_eq!(data.mtime(), 1_700_000_000);
    assert_eq!(std::fs::read(root.join("srv/data.txt")).unwrap(), b"hello cpio\n");
    assert_eq!(meta("srv/empty").len(), 0);

    let su = meta("usr/bin/su");
    assert_eq!(su.mode() & 0o7777, 0o4755, "setuid bit kept");
    assert_eq!(su.len(), 4099);
    assert_eq!(meta("usr/bin/wall").mode() & 0o7777, 0o2755, "setgid bit kept");
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777, "sticky bit kept");

    let link = meta("srv/link");
    assert!(link.file_type().is_symlink());
    assert_eq!((link.uid(), link.gid()), (1000, 1001));
    assert_eq!(std::fs::read_link(root.join("srv/link")).unwrap(), Path::new("data.txt"));
    assert_eq!(std::fs::read_link(root.join("srv/abs")).unwrap(), Path::new("/usr/bin/su"));

    let null = meta("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!((major(null.rdev()), minor(null.rdev())), (1, 3));
    assert_eq!(null.permissions().mode() & 0o7777, 0o666);
    let sda = meta("dev/sda");
    assert!(sda.file_type().is_block_device());
    assert_eq!((major(sda.rdev()), minor(sda.rdev())), (8, 16));
    assert_eq!(sda.gid(), 6);
    let fifo = meta("run/ctl");
    assert!(fifo.file_type().is_fifo());
    assert_eq!((fifo.mode() & 0o7777, fifo.uid()), (0o620, 1000));

    // Listing: every tree entry appears, with its type letter and owner.
    let (list, _) = run_cpio(&["-tvn"], root, &archive);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), tree.len(), "{list}");
    let find = |name: &str| *lines.iter().find(|l| l.ends_with(name)).unwrap_or_else(|| panic!("{name} in {list}"));
    assert!(find(" srv/link -> data.txt").starts_with("lrwxrwxrwx"));
    assert!(find(" dev/null").starts_with("crw-rw-rw-"));
    assert!(find(" dev/sda").starts_with("brw-rw----"));
    assert!(find(" run/ctl").starts_with("prw--w----"));
    assert!(find(" usr/bin/su").starts_with("-rwsr-xr-x"));
    assert!(find(" srv").contains(" 1000 "), "numeric owner: {list}");
    let names: HashSet<&str> = lines.iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert!(names.contains("."), "root stored as .: {list}");

    // Link counts: directories 2, everything else 1; inode numbers unique.
    let entries = read_all(&archive);
    for (name, _, mode, nlink) in &entries {
        let want = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        assert_eq!(*nlink, want, "{name}");
    }
    let inos: HashSet<u32> = entries.iter().map(|e| e.1).collect();
    assert_eq!(inos.len(), entries.len());
}

#[test]
fn split_parts_concatenated_unpack_to_the_same_set() {
    let mut tree = sample();
    for i in 0..200 {
        tree.insert(&format!("/var/lib/pkg{}/file{i}", i % 7), entry(Kind::File(vec![b'a' + (i % 26) as u8; 100 * i].into()), 0o644, i as u32, 0));
    }
    let mut whole = Vec::new();
    cpio::write(&tree, &mut whole).unwrap();

    let parts = cpio::split(&tree, 3).unwrap();
    assert_eq!(parts.len(), 3);
    let mut concatenated = Vec::new();
    let mut sizes = Vec::new();
    for part in &parts {
        let before = concatenated.len();
        let n = part.write(&mut concatenated).unwrap();
        assert_eq!(n, part.archive_len());
        sizes.push(concatenated.len() - before);
    }
    // Balanced by bytes: no part holds more than half of the data.
    let total: usize = sizes.iter().sum();
    assert!(sizes.iter().all(|&s| s < total / 2), "{sizes:?}");

    // Same entries in the same order with the same inode numbers as the unsplit archive; parents
    // before children; inode numbers unique over all parts.
    let split_entries = read_all(&concatenated);
    assert_eq!(split_entries, read_all(&whole));
    let inos: HashSet<u32> = split_entries.iter().map(|e| e.1).collect();
    assert_eq!(inos.len(), split_entries.len());
    let mut seen = HashSet::new();
    for (name, ..) in &split_entries {
        if let Some((parent, _)) = name.rsplit_once('/') {
            assert!(seen.contains(parent), "{parent} before {name}");
        }
        seen.insert(name.clone());
    }

    // Real cpio stops at the first trailer: unpack each part in sequence into one directory,
    // and compare with the unsplit archive unpacked.
    let a = tempfile::tempdir().unwrap();
    run_cpio(&["-idm", "--no-absolute-filenames"], a.path(), &whole);
    let b = tempfile::tempdir().unwrap();
    let mut offset = 0;
    for s in sizes {
        run_cpio(&["-idm", "--no-absolute-filenames"], b.path(), &concatenated[offset..offset + s]);
        offset += s;
    }
    let (sa, sb) = (snapshot(a.path()), snapshot(b.path()));
    assert_eq!(sa.len() + 1, tree.len(), "every entry but the root unpacked");
    assert_eq!(sa, sb);
}

#[test]
fn files_of_4_gib_are_refused_by_name() {
    let mut tree = Tree::new();
    // Zeroed allocation: the pages are never touched, so this costs no real memory.
    tree.insert("/big/blob", Entry::file(vec![0u8; 1 << 32], 0o644));
    let err = cpio::write(&tree, std::io::sink()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/big/blob") && msg.contains("4 GiB"), "{msg}");
    assert!(cpio::split(&tree, 2).is_err());
}
