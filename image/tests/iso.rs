//! ISO images checked by independent readers (the `iso9660` crate, xorriso) and booted by
//! SeaBIOS under qemu, as a CD and as a raw disk.
//!
//! Needs: xorriso, isolinux, syslinux-common, qemu-system-x86 (apt).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image::iso::{self, BiosBoot, EfiBoot, IsoFile, IsoImage, ESP_BOOTLOADER, GRUB_EFI_MODULE_DIR};

const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
const ISOHDPFX_BIN: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
const EPOCH: i64 = 1_700_000_000;

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (apt install isolinux syslinux-common)"))
}

fn bios(cfg: &str) -> BiosBoot {
    BiosBoot {
        isolinux_bin: read(ISOLINUX_BIN),
        ldlinux_c32: read(LDLINUX_C32),
        isolinux_cfg: cfg.as_bytes().to_vec(),
        isohybrid_mbr: Some(read(ISOHDPFX_BIN)),
    }
}

/// An image with a kernel-sized host file, small files and a nested path.
fn sample(dir: &Path, cfg: &str) -> IsoImage {
    let initrd = dir.join("initrd.src");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&initrd, &data).unwrap();
    let mut img = IsoImage::new("MINIKUBE", EPOCH)
        .file("boot/bzImage", vec![0xAB; 123_457])
        .file("boot/initrd", IsoFile::Host(initrd))
        .file("version.json", "{\"iso_version\":\"test\"}\n")
        .file("a/b/c/d/e/f/g/h/i/deep.txt", "deep\n");
    img.bios = Some(bios(cfg));
    img
}

fn xorriso(iso: &Path, args: &[&str]) -> String {
    let out = Command::new("xorriso").arg("-indev").arg(iso).args(args).output().expect("xorriso is installed (apt package xorriso)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "xorriso {args:?}: {text}");
    text
}

fn iso_file(iso: &iso9660::ISO9660<std::fs::File>, path: &str) -> Vec<u8> {
    match iso.open(path).unwrap() {
        Some(iso9660::DirectoryEntry::File(f)) => {
            let mut v = Vec::new();
            f.read().read_to_end(&mut v).unwrap();
            v
        }
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn readers_see_the_files_and_the_boot_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let img = sample(dir.path(), "DEFAULT x\n");
    let out = dir.path().join("out.iso");
    let written = iso::write(&img, &out).unwrap();
    assert_eq!(written.size, std::fs::metadata(&out).unwrap().len());
    assert_eq!(written.size, iso::plan(&img).unwrap());
    assert_eq!(written.size % 2048, 0);
    // Nothing left beside the target.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // The iso9660 crate reads the primary tree.
    let reader = iso9660::ISO9660::new(std::fs::File::open(&out).unwrap()).unwrap();
    assert_eq!(iso_file(&reader, "boot/bzImage"), vec![0xAB; 123_457]);
    assert_eq!(iso_file(&reader, "boot/initrd"), std::fs::read(dir.path().join("initrd.src")).unwrap());
    assert_eq!(iso_file(&reader, "version.json"), b"{\"iso_version\":\"test\"}\n");
    assert_eq!(iso_file(&reader, "isolinux/isolinux.cfg"), b"DEFAULT x\n");
    assert_eq!(iso_file(&reader, "isolinux/ldlinux.c32"), read(LDLINUX_C32));
    // isolinux.bin carries the boot-info table: bytes 8..24 differ from the input, the rest not.
    let bin = iso_file(&reader, "isolinux/isolinux.bin");
    let orig = read(ISOLINUX_BIN);
    assert_eq!(bin.len(), orig.len());
    assert_eq!(bin[64..], orig[64..]);
    let pvd_lba = u32::from_le_bytes(bin[8..12].try_into().unwrap());
    assert_eq!(pvd_lba, 16, "boot-info table: primary volume descriptor at sector 16");

    // xorriso: El Torito catalog with a BIOS no-emulation entry, load size 4, boot-info table.
    let report = xorriso(&out, &["-report_el_torito", "plain"]);
    assert!(report.contains("El Torito catalog  : "), "{report}");
    let entry = report.lines().find(|l| l.starts_with("El Torito boot img :   1")).unwrap_or_else(|| panic!("{report}"));
    assert!(entry.contains("BIOS") && entry.contains("none") && entry.contains(" 4 "), "{entry}");
    assert!(report.contains("El Torito img path :   1  /isolinux/isolinux.bin"), "{report}");
    assert!(report.contains("El Torito cat path : /boot.catalog"), "{report}");
    assert!(report.contains("El Torito img opts :   1  boot-info-table isohybrid-suitable"), "{report}");
    assert!(!report.contains("UEFI"), "{report}");
    // The MBR is isohybrid: boot code from isohdpfx.bin and a partition over the image.
    let mbr = std::fs::read(&out).unwrap()[..512].to_vec();
    assert_eq!(&mbr[..432], &read(ISOHDPFX_BIN)[..432]);
    assert_eq!(&mbr[510..], &[0x55, 0xAA]);
    let rep = xorriso(&out, &["-report_system_area", "plain"]);
    assert!(rep.contains("isohybrid"), "{rep}");

    // Rock Ridge keeps the real names; the file list has every file.
    let list = xorriso(&out, &["-find", "/", "-type", "f"]);
    for path in [
        "'/boot/bzImage'",
        "'/boot/initrd'",
        "'/version.json'",
        "'/a/b/c/d/e/f/g/h/i/deep.txt'",
        "'/isolinux/isolinux.bin'",
        "'/isolinux/ldlinux.c32'",
        "'/isolinux/isolinux.cfg'",
    ] {
        assert!(list.lines().any(|l| l == path), "{path} in {list}");
    }
    // xorriso shows the catalog as its own file type (e), not as a regular file.
    let root = xorriso(&out, &["-lsl", "/"]);
    assert!(root.lines().any(|l| l.starts_with('e') && l.ends_with(" 'boot.catalog'")), "{root}");
    let joliet = Command::new("xorriso").args(["-read_fs", "norock", "-indev"]).arg(&out).args(["-find", "/boot", "-type", "f"]).output().unwrap();
    let joliet = String::from_utf8_lossy(&joliet.stdout);
    assert!(joliet.contains("'/boot/bzImage'"), "Joliet keeps case: {joliet}");
}

#[test]
fn two_writes_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let img = sample(dir.path(), "DEFAULT x\n");
    let (a, b) = (dir.path().join("a.iso"), dir.path().join("b.iso"));
    iso::write(&img, &a).unwrap();
    iso::write(&img, &b).unwrap();
    let bytes = std::fs::read(&a).unwrap();
    assert!(bytes == std::fs::read(&b).unwrap());
    // Writing over an existing image replaces it.
    iso::write(&img, &a).unwrap();
    assert!(bytes == std::fs::read(&a).unwrap());
    // The date comes from SOURCE_DATE_EPOCH: another epoch, other bytes.
    let mut later = img.clone();
    later.source_date_epoch = EPOCH + 86_400;
    iso::write(&later, &b).unwrap();
    assert!(bytes != std::fs::read(&b).unwrap());
    let report = xorriso(&b, &["-pvd_info"]);
    assert!(report.contains("2023111"), "dated from the epoch: {report}");
}

#[test]
fn bad_descriptions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = iso::write(&IsoImage::new("lower case", EPOCH), &dir.path().join("x.iso")).unwrap_err();
    assert!(err.to_string().contains("lower case"), "{err}");
    let mut img = sample(dir.path(), "DEFAULT x\n").file("isolinux/isolinux.cfg", "other");
    img.volume_id = "OK".into();
    let err = iso::write(&img, &dir.path().join("x.iso")).unwrap_err();
    assert!(err.to_string().contains("isolinux/isolinux.cfg"), "{err}");
    let missing = IsoImage::new("OK", EPOCH).file("boot/initrd", IsoFile::Host(PathBuf::from("/nonexistent/initrd")));
    let err = iso::write(&missing, &dir.path().join("x.iso")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/initrd"), "{err}");
    assert!(!dir.path().join("x.iso").exists());
}

/// Run qemu until `marker` appears on the serial console (or the timeout); returns the output.
fn boot_until(args: &[&str], marker: &str, timeout: Duration) -> String {
    let mut child = Command::new("qemu-system-x86_64")
        // No -nographic: SeaBIOS would mirror the VGA text screen onto the same serial port and
        // interleave it with isolinux's own serial output. Only isolinux writes to serial here.
        .args(["-accel", "tcg", "-m", "256", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 is installed (apt package qemu-system-x86)");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < timeout {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.extend(chunk);
            if String::from_utf8_lossy(&seen).contains(marker) {
                break;
            }
        }
        if let Ok(Some(_)) = child.try_wait() {
            while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
                seen.extend(chunk);
            }
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    String::from_utf8_lossy(&seen).into_owned()
}

const MARKER: &str = "ISOLINUX-MARKER-7f3a";

/// isolinux sends its console to serial, then fails to load a kernel named after the marker:
/// "Loading /boot/ISOLINUX-MARKER-7f3a... failed" on serial proves isolinux.bin ran, loaded
/// ldlinux.c32 and read isolinux.cfg from the image. (`SAY` is printed before the SERIAL
/// directive takes effect, so it only reaches the VGA screen.)
fn marker_cfg() -> String {
    format!("SERIAL 0 115200\nSAY {MARKER}\nDEFAULT marker\nPROMPT 0\nLABEL marker\n  KERNEL /boot/{MARKER}\n")
}

const LOADING: &str = "Loading /boot/ISOLINUX-MARKER-7f3a";

#[test]
fn seabios_boots_isolinux_from_cd_and_from_raw_disk() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("boot.iso");
    iso::write(&sample(dir.path(), &marker_cfg()), &out).unwrap();
    let path = out.to_str().unwrap();

    let cd = boot_until(&["-cdrom", path, "-boot", "d"], LOADING, Duration::from_secs(90));
    assert!(cd.contains(LOADING), "CD boot reached isolinux: {cd}");

    let drive = format!("file={path},format=raw,if=ide,snapshot=on");
    let disk = boot_until(&["-drive", &drive, "-boot", "c"], LOADING, Duration::from_secs(90));
    assert!(disk.contains(LOADING), "raw disk boot (hybrid MBR) reached isolinux: {disk}");

    // Control: the same image without the isohybrid MBR does not boot as a disk.
    let mut plain = sample(dir.path(), &marker_cfg());
    plain.bios.as_mut().unwrap().isohybrid_mbr = None;
    let plain_iso = dir.path().join("plain.iso");
    iso::write(&plain, &plain_iso).unwrap();
    let drive = format!("file={},format=raw,if=ide,snapshot=on", plain_iso.display());
    let none = boot_until(&["-drive", &drive, "-boot", "c"], LOADING, Duration::from_secs(15));
    assert!(!none.contains(LOADING), "a CD-only image must not boot as a disk: {none}");
    // ...but still boots as a CD.
    let cd = boot_until(&["-cdrom", plain_iso.to_str().unwrap(), "-boot", "d"], LOADING, Duration::from_secs(90));
    assert!(cd.contains(LOADING), "{cd}");
}

#[test]
fn efi_entry_is_listed_when_an_esp_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = sample(dir.path(), "DEFAULT x\n");
    // Contents are not booted here: any FAT-sized blob exercises the layout.
    let mut esp = vec![0u8; 1 << 20];
    esp[510] = 0x55;
    esp[511] = 0xAA;
    img.efi = Some(EfiBoot { esp_image: esp.clone() });
    let out = dir.path().join("efi.iso");
    iso::write(&img, &out).unwrap();
    let report = xorriso(&out, &["-report_el_torito", "plain"]);
    let uefi = report.lines().find(|l| l.starts_with("El Torito boot img :   2")).unwrap_or_else(|| panic!("{report}"));
    assert!(uefi.contains("UEFI"), "{uefi}");
    assert!(report.lines().any(|l| l.starts_with("El Torito boot img :   1") && l.contains("BIOS")), "{report}");
    // The ESP is stored whole in the image, where the catalog points.
    let bytes = std::fs::read(&out).unwrap();
    let start_lba: usize = report
        .lines()
        .find(|l| l.starts_with("El Torito boot img :   2"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("LBA in {report}"));
    assert_eq!(&bytes[start_lba * 2048..start_lba * 2048 + esp.len()], &esp[..]);
    let sa = xorriso(&out, &["-report_system_area", "plain"]);
    assert!(sa.contains("GPT"), "{sa}");
}

const OVMF: &str = "/usr/share/ovmf/OVMF.fd";
const GRUB_MARKER: &str = "GRUB-MARKER-51c2";

/// GRUB built with our config into an ESP image, appended to the ISO: OVMF boots it from CD and
/// from the same file as a raw disk (GPT), and GRUB finds the ISO's file system by volume id.
#[test]
fn ovmf_boots_grub_from_cd_and_from_raw_disk() {
    let cfg = iso::grub_cfg("MINIKUBE", "console=ttyS0 console=tty0", GRUB_MARKER);
    let grub = iso::grub_efi(&cfg, Path::new(GRUB_EFI_MODULE_DIR)).expect("apt install grub-efi-amd64-bin grub-common");
    assert_eq!(&grub[..2], b"MZ", "a PE image");
    assert!(grub == iso::grub_efi(&cfg, Path::new(GRUB_EFI_MODULE_DIR)).unwrap(), "grub-mkimage is reproducible");
    let esp = iso::esp_image(&[(ESP_BOOTLOADER, &grub)]).unwrap();
    assert!(esp == iso::esp_image(&[(ESP_BOOTLOADER, &grub)]).unwrap(), "ESP image is reproducible");

    let dir = tempfile::tempdir().unwrap();
    // The ESP as a FAT file system, read by mtools.
    let esp_path = dir.path().join("esp.img");
    std::fs::write(&esp_path, &esp).unwrap();
    let copy = Command::new("mcopy").arg("-i").arg(&esp_path).args(["::EFI/BOOT/BOOTX64.EFI", "-"]).output().expect("apt install mtools");
    assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));
    assert!(copy.stdout == grub, "mtools reads BOOTX64.EFI back");

    let mut img = sample(dir.path(), &marker_cfg());
    img.efi = Some(EfiBoot { esp_image: esp });
    let out = dir.path().join("uefi.iso");
    iso::write(&img, &out).unwrap();
    let path = out.to_str().unwrap();
    let found = format!("{GRUB_MARKER}: ISO found at");

    let cd = boot_until(&["-bios", OVMF, "-cdrom", path], &found, Duration::from_secs(240));
    assert!(cd.contains(&found), "UEFI CD boot reached GRUB and found the ISO: {cd}");
    let drive = format!("file={path},format=raw,if=ide,snapshot=on");
    let disk = boot_until(&["-bios", OVMF, "-drive", &drive], &found, Duration::from_secs(240));
    assert!(disk.contains(&found), "UEFI disk boot (GPT ESP) reached GRUB and found the ISO: {disk}");

    // The same file still boots BIOS from CD and disk with the GPT hybrid MBR.
    let bios_cd = boot_until(&["-cdrom", path, "-boot", "d"], LOADING, Duration::from_secs(90));
    assert!(bios_cd.contains(LOADING), "{bios_cd}");
    let bios_disk = boot_until(&["-drive", &drive, "-boot", "c"], LOADING, Duration::from_secs(90));
    assert!(bios_disk.contains(LOADING), "{bios_disk}");
}
