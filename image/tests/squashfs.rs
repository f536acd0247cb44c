//! Trees written as squashfs by mksquashfs keep owners, modes, device nodes, hard links, symlinks,
//! long names and file capabilities, and the same tree gives the same bytes.

use image::rootfs::{Entry, Kind, Tree};
use image::squashfs::{write, Compressor, Options};
use std::path::Path;
use std::process::Command;

fn tree() -> Tree {
    let mut t = Tree::new();
    let mut root = Entry::dir(0o755);
    root.mtime = 5;
    t.insert("/", root);
    let ping = Entry::file(b"\x7fELF ping".to_vec(), 0o755);
    t.insert("/usr/bin/ping", ping);
    let cap: image::caps::FileCaps = "cap_net_raw+ep".parse().unwrap();
    assert!(t.set_xattr("/usr/bin/ping", image::caps::XATTR, cap.xattr_value()));
    // Two paths sharing one content value with the same metadata: a hard link in the package.
    let gz = Entry::file(b"gzip binary".to_vec(), 0o755);
    t.insert("/usr/bin/gzip", gz.clone());
    t.insert("/usr/bin/gunzip", gz);
    t.insert("/etc/shadow", Entry::file(b"root:*:1::::::\n".to_vec(), 0o640).with_owner(0, 42));
    t.insert("/usr/bin/sudo", Entry::file(b"sudo".to_vec(), 0o4755));
    t.insert("/dev/console", Entry { kind: Kind::CharDev { major: 5, minor: 1 }, mode: 0o600, uid: 0, gid: 0, mtime: 5 });
    t.insert("/bin", Entry::symlink("usr/bin"));
    t.insert(&format!("/usr/share/{}", "n".repeat(150)), Entry::file(b"long".to_vec(), 0o644));
    t.clamp_mtime(100);
    t
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("squashfs-tools and libcap2-bin are installed (scripts/setup.sh)");
    assert!(out.status.success(), "{:?}: {}", cmd, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn metadata_links_and_capabilities_survive_and_bytes_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { compressor: Compressor::Zstd, level: Some(3), block_kib: 128, epoch: 1_700_000_000 };
    let a = write(&tree(), &opts, &dir.path().join("a.sqfs")).unwrap();
    let b = write(&tree(), &opts, &dir.path().join("b.sqfs")).unwrap();
    assert_eq!(a.sha256, b.sha256, "the same tree must give the same bytes");
    let listing = run(Command::new("unsquashfs").arg("-lln").arg(&a.path));
    let line = |p: &str| listing.lines().find(|l| l.ends_with(&format!("squashfs-root{p}"))).unwrap_or_else(|| panic!("{p} missing:\n{listing}")).to_string();
    assert!(line("").starts_with("drwxr-xr-x 0/0"), "{}", line(""));
    assert!(line("/etc/shadow").starts_with("-rw-r----- 0/42"), "{}", line("/etc/shadow"));
    assert!(line("/usr/bin/sudo").starts_with("-rwsr-xr-x 0/0"), "{}", line("/usr/bin/sudo"));
    assert!(listing.contains("crw------- 0/0"), "{listing}");
    assert!(line("/bin -> usr/bin").starts_with("lrwxrwxrwx"));
    line(&format!("/usr/share/{}", "n".repeat(150)));

    // Extract (as root, which CI is) to see hard links and capabilities as the kernel will.
    let x = dir.path().join("x");
    run(Command::new("unsquashfs").arg("-d").arg(&x).arg(&a.path));
    use std::os::unix::fs::MetadataExt;
    let (g, gu) = (std::fs::metadata(x.join("usr/bin/gzip")).unwrap(), std::fs::metadata(x.join("usr/bin/gunzip")).unwrap());
    assert_eq!(g.ino(), gu.ino(), "gzip and gunzip must be one inode");
    assert_eq!(g.nlink(), 2);
    let caps = run(Command::new("getcap").arg(x.join("usr/bin/ping")));
    assert!(caps.contains("cap_net_raw=ep"), "{caps}");
    assert!(Path::new(&x.join("usr/bin/sudo")).exists());
}

/// The dm-verity tree the builder appends is the one the reference tool computes: veritysetup
/// verifies the sealed image with the root hash and salt `seal` reported, and refuses it once a
/// data byte is flipped. mksquashfs and unsquashfs ignore the tree after the filesystem.
#[test]
fn sealed_images_pass_veritysetup_and_fail_it_when_flipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = tree();
    // 1.5 MiB that does not compress: more than 128 data blocks, so the tree has two levels.
    let mut x = 0x9e3779b97f4a7c15u64;
    let noise: Vec<u8> = (0..3 << 19)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    t.insert("/var/noise", Entry::file(noise, 0o644));
    let opts = Options { compressor: Compressor::Zstd, level: Some(3), block_kib: 128, epoch: 1_700_000_000 };
    let w = write(&t, &opts, &dir.path().join("a.sqfs")).unwrap();
    let s = image::squashfs::seal(&w.path).unwrap();
    assert!(s.data_bytes / 4096 > 128, "{s:?}");
    assert_eq!(std::fs::metadata(&w.path).unwrap().len(), s.file_bytes);
    assert_eq!(s.file_bytes, s.data_bytes + minikube_init::verity::tree_bytes(s.data_bytes));
    let verify = |img: &Path| {
        Command::new("veritysetup")
            .args(["verify", "--no-superblock", "--format=1", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096"])
            .arg(format!("--data-blocks={}", s.data_bytes / 4096))
            .arg(format!("--hash-offset={}", s.data_bytes))
            .arg(format!("--salt={}", s.sha256))
            .arg(img)
            .arg(img)
            .arg(&s.root_hash)
            .output()
            .expect("veritysetup is installed (cryptsetup-bin, scripts/setup.sh)")
    };
    let ok = verify(&w.path);
    assert!(ok.status.success(), "veritysetup refused our tree: {}", String::from_utf8_lossy(&ok.stderr));
    assert!(run(Command::new("unsquashfs").arg("-l").arg(&w.path)).contains("squashfs-root/var/noise"));
    // The same image seals to the same bytes.
    let w2 = write(&t, &opts, &dir.path().join("b.sqfs")).unwrap();
    assert_eq!(image::squashfs::seal(&w2.path).unwrap(), s);
    assert_eq!(std::fs::read(&w.path).unwrap(), std::fs::read(&w2.path).unwrap());
    // One flipped bit in the data: the tree no longer matches.
    let mut bytes = std::fs::read(&w.path).unwrap();
    bytes[(s.data_bytes / 2) as usize] ^= 1;
    let bad = dir.path().join("bad.sqfs");
    std::fs::write(&bad, bytes).unwrap();
    let out = verify(&bad);
    assert!(!out.status.success(), "veritysetup accepted a flipped byte");
}

/// A filesystem of one block (a tiny top layer) is padded to two, so it still gets a tree.
#[test]
fn a_one_block_image_is_padded_and_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tree::new();
    t.insert("/etc/x", Entry::file(b"x".to_vec(), 0o644));
    let opts = Options { compressor: Compressor::Zstd, level: Some(3), block_kib: 128, epoch: 1_700_000_000 };
    let w = write(&t, &opts, &dir.path().join("tiny.sqfs")).unwrap();
    assert!(w.size <= 4096, "{}", w.size);
    let s = image::squashfs::seal(&w.path).unwrap();
    assert_eq!(s.data_bytes, 8192);
    assert!(run(Command::new("unsquashfs").arg("-l").arg(&w.path)).contains("squashfs-root/etc/x"));
}
