#!/usr/bin/env bash
# Install everything the build and the tests need on a Debian 12 / Ubuntu machine (as root, or
# with sudo). Safe to run again.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  # building and checking images
  xorriso isolinux syslinux-common cpio zstd xz-utils bzip2 gzip kmod gpgv debian-archive-keyring
  squashfs-tools erofs-utils libcap2-bin
  # veritysetup: the reference check of the root images' dm-verity trees
  cryptsetup-bin
  grub-efi-amd64-bin grub-common mtools ovmf openssl git ca-certificates curl
  # signing and packing the throwaway repositories of image/tests/extra_repo.rs
  gnupg dpkg
  # booting them
  qemu-system-x86 qemu-utils openssh-client
  # OCI images and containers
  skopeo umoci podman runc crun docker.io iptables uidmap
  # C toolchain for -sys crates
  build-essential pkg-config
  # arm64 guest binaries, cross-built here (glibc static, as on amd64), and booting arm64 images
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-system-arm qemu-efi-aarch64
)
$SUDO apt-get update -q
if ! $SUDO apt-get install -y -q --no-install-recommends "${pkgs[@]}"; then
  # A newer qemu-utils from backports blocks qemu-system-x86 from the release: take the
  # release's qemu-utils so both match.
  rel=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  $SUDO apt-get install -y -q --no-install-recommends --allow-downgrades "${pkgs[@]/#qemu-utils/qemu-utils\/$rel}"
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs) and run this again" >&2
  exit 1
fi
rustup target add x86_64-unknown-linux-gnu >/dev/null 2>&1 || true
# The arm64 guest binaries need the target's standard library. rustup is the user's (not sudo's);
# adding an installed target again is a no-op, any other failure stops the script.
rustup=$(command -v rustup || echo "${CARGO_HOME:-$HOME/.cargo}/bin/rustup")
if [ ! -x "$rustup" ]; then
  echo "rustup not found (looked in PATH and $rustup): the arm64 build needs the Rust target aarch64-unknown-linux-gnu" >&2
  exit 1
fi
if ! "$rustup" target add aarch64-unknown-linux-gnu; then
  echo "rustup target add aarch64-unknown-linux-gnu failed" >&2
  exit 1
fi
# CI checks formatting and lints before the tests.
if ! "$rustup" component add rustfmt clippy; then
  echo "rustup component add rustfmt clippy failed" >&2
  exit 1
fi
# Kubernetes, etcd, CoreDNS and crictl are built from their Go modules (`cargo xtask kubernetes`):
# the machine's Go toolchain (1.24 or newer), which reaches the Go module proxy.
if ! command -v go >/dev/null; then
  echo "go not found: the Kubernetes bundle is built from Go modules; install Go 1.24 or newer (https://go.dev/dl) and run this again" >&2
  exit 1
fi
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
if [ -z "$go_minor" ] || [ "$go_minor" -lt 24 ]; then
  echo "$(go env GOVERSION): the Kubernetes bundle needs Go 1.24 or newer" >&2
  exit 1
fi
echo "setup done"
