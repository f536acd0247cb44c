#!/bin/sh
# /init of the minikube ISO's initramfs.
#
# The kernel unpacked the whole root into its initial rootfs (a tmpfs, since no root= is given).
# runc cannot pivot_root while / is that initial mount, because it has no parent mount. So bind
# the rootfs onto /sysroot, move that bind mount over /, and start systemd inside it: / is then a
# real mount with a parent, nothing is copied (no second copy of the root in RAM, no copy time).
# switch_root is not used: it would delete the files of the old root, which are our files.
export PATH=/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "minikube-init: entering the root at $(cut -d' ' -f1 /proc/uptime)s" > /dev/console
mkdir -p /sysroot
mount --bind / /sysroot
for m in /dev /proc; do
  mount --move "$m" "/sysroot$m"
done
cd /sysroot || exit 1
mount --move . /
exec chroot . /usr/lib/systemd/systemd
