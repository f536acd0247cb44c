#!/usr/bin/env bash
# Buildroot post-image script for aarch64: buildroot's own ISO9660 image is x86-only, so build
# the ISO here: /boot/Image, /boot/initrd, /boot/grub/grub.cfg and an El Torito UEFI entry
# (a FAT image labelled EFIBOOTISO holding GRUB's EFI/BOOT/bootaa64.efi).
# $1: images directory. Writes $1/rootfs.iso9660, the file the driver copies to out/minikube.iso.
set -euo pipefail

images=$1
board="$BR2_EXTERNAL_MINIKUBE_RS_PATH/board/minikube-rs"
stage="$images/iso-stage"
epoch=${SOURCE_DATE_EPOCH:-0}

rm -rf "$stage"
install -D -m 0644 "$images/Image" "$stage/boot/Image"
install -D -m 0644 "$images/rootfs.cpio.gz" "$stage/boot/initrd"
install -D -m 0644 "$board/grub.cfg" "$stage/boot/grub/grub.cfg"

efi_img="$stage/boot/grub/efiboot.img"
rm -f "$efi_img"
dd if=/dev/zero of="$efi_img" bs=1M count=4 status=none
"$HOST_DIR/sbin/mkfs.vfat" --invariant -n EFIBOOTISO "$efi_img"
find "$images/efi-part" -exec touch -h -d "@$epoch" {} +
"$HOST_DIR/bin/mcopy" -p -m -s -i "$efi_img" "$images/efi-part/"* ::/
touch -d "@$epoch" "$efi_img"

"$HOST_DIR/bin/xorriso" -as mkisofs -J -R -V MINIKUBE \
	-e boot/grub/efiboot.img -no-emul-boot \
	-o "$images/rootfs.iso9660.tmp" "$stage"
mv "$images/rootfs.iso9660.tmp" "$images/rootfs.iso9660"
