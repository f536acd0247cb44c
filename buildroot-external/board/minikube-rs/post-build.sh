#!/usr/bin/env bash
# Buildroot post-build script (both architectures). Runs after the rootfs overlays
# (<repo>/overlay, <repo>/iso/overlay) were copied into the target directory.
# $1: target directory. Buildroot exports HOST_DIR and BR2_EXTERNAL_MINIKUBE_RS_PATH.
set -euo pipefail

target=$1
board="$BR2_EXTERNAL_MINIKUBE_RS_PATH/board/minikube-rs"
repo=$(cd "$BR2_EXTERNAL_MINIKUBE_RS_PATH/.." && pwd)

# /init: the same script the Debian flavor uses (iso/spec.toml [boot] init): it copies the
# initramfs into a tmpfs and switch_roots, so runc's pivot_root works.
init_src="$repo/iso/init.sh"
if [[ ! -f $init_src ]]; then
	echo "post-build: $init_src is missing (iso/spec.toml [boot] init)" >&2
	exit 1
fi
install -D -m 0755 "$init_src" "$target/init"

# wheel may use sudo without a password (the docker user is in wheel, see users.txt).
install -d -m 0750 "$target/etc/sudoers.d"
printf '%%wheel ALL=(ALL:ALL) NOPASSWD: ALL\n' > "$target/etc/sudoers.d/wheel"
chmod 0440 "$target/etc/sudoers.d/wheel"

# Enable the units listed in systemd-enable.txt (comments and blank lines skipped).
while read -r unit; do
	[[ -z $unit || $unit == \#* ]] && continue
	"$HOST_DIR/bin/systemctl" --root="$target" enable "$unit"
done < "$board/systemd-enable.txt"
