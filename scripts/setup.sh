#!/usr/bin/env bash
# Installs what fbxen and its tests need on Debian 12, then the npm packages, then builds.
# Idempotent: only missing Debian packages are installed (apt-get update only when something is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools fbxen runs (xz, 7zz, the faster decoder it prefers; xorriso, mkfs.fat/mtools for --uefi) and the real consumers the tests
# check its outputs with (qemu-img, sgdisk, sfdisk, grub-fstest, sleuthkit, makefs, bsdtar, readelf, the real xl
# parser with libxen-dev for its LD_PRELOAD shim, shellcheck and dash for the guest collector, python3).
PACKAGES=(xz-utils 7zip qemu-utils xorriso dosfstools mtools gdisk fdisk grub-common sleuthkit makefs
  libarchive-tools binutils gcc make libc6-dev xen-utils-4.17 libxen-dev shellcheck dash posh python3
  openssh-client openssh-server genisoimage util-linux)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Another apt or dpkg (unattended-upgrades, a parallel job) may hold the locks: wait for it, up to
  # 10 minutes, instead of failing at once. DPkg::Lock::Timeout covers dpkg's lock; the lists lock that
  # `apt-get update` takes is retried here.
  apt_wait=(-o DPkg::Lock::Timeout=600)
  for attempt in $(seq 1 120); do
    if out=$($SUDO apt-get "${apt_wait[@]}" update -qq 2>&1); then break; fi
    if ! grep -qi 'lock' <<<"$out" || [ "$attempt" -eq 120 ]; then echo "$out" >&2; exit 1; fi
    [ "$attempt" -eq 1 ] && echo "setup: waiting for another apt to release its lock..." >&2
    sleep 5
  done
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${apt_wait[@]}" install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build   # skipped when dist/ is newer than every source
