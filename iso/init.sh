#!/bin/sh
# /init of the minikube ISO's initramfs.
#
# The kernel unpacked the whole root into its initial rootfs. runc cannot pivot_root out of that
# filesystem, so copy it into a tmpfs and switch_root there; switch_root frees the initramfs.
export PATH=/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /sysroot
mount -t tmpfs -o mode=0755,size=90% rootfs-tmpfs /sysroot
for e in /*; do
  case "$e" in
    /sysroot|/proc|/dev|/sys|/init) ;;
    *) cp -a "$e" /sysroot/ ;;
  esac
done
mkdir -p /sysroot/proc /sysroot/dev /sysroot/sys /sysroot/run /sysroot/tmp
chmod 1777 /sysroot/tmp
umount /proc
exec switch_root /sysroot /usr/lib/systemd/systemd
