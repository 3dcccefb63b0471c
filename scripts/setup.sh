#!/usr/bin/env bash
# Installs what fbxen and its tests need on Debian 12, then the npm packages, then builds.
# Idempotent: only missing Debian packages are installed (apt-get update only when something is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools fbxen runs (xz, 7zz, the faster decoder it prefers; xorriso, mkfs.fat/mtools for --uefi) and the real consumers the tests
# check its outputs with (qemu-img, sgdisk, sfdisk, grub-fstest, sleuthkit, makefs, bsdtar, readelf, the real xl
# parser with libxen-dev for its LD_PRELOAD shim, shellcheck and dash for the guest collector, python3, busybox-static
# for the lab stand-in guest's nc and route).
PACKAGES=(xz-utils 7zip qemu-utils xorriso dosfstools mtools gdisk fdisk grub-common sleuthkit makefs
  libarchive-tools binutils gcc make libc6-dev xen-utils-4.17 libxen-dev shellcheck dash posh python3
  openssh-client openssh-server genisoimage util-linux busybox-static)

# shellcheck source=scripts/lib/apt-install.sh
source scripts/lib/apt-install.sh
apt_install_missing setup "${PACKAGES[@]}"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build   # skipped when dist/ is newer than every source
