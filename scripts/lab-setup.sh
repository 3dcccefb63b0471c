#!/usr/bin/env bash
# Installs what `fbxen lab up` needs on the machine that runs the lab (Debian 12): mmdebstrap builds the
# dom0 root from Debian's archive, mke2fs packs it, QEMU runs it, ssh reaches it. Idempotent: only missing
# packages are installed. The lab tests' CI step (scripts/lab-test.sh) calls this first.
set -euo pipefail

PACKAGES=(mmdebstrap qemu-system-x86 e2fsprogs openssh-client cpio gzip busybox-static ca-certificates)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0
echo "lab-setup: installing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Another apt may hold the locks (unattended-upgrades, scripts/setup.sh in a parallel job): wait for it.
apt_wait=(-o DPkg::Lock::Timeout=600)
for attempt in $(seq 1 120); do
  if out=$($SUDO apt-get "${apt_wait[@]}" update -qq 2>&1); then break; fi
  if ! grep -qi 'lock' <<<"$out" || [ "$attempt" -eq 120 ]; then echo "$out" >&2; exit 1; fi
  sleep 5
done
# No recommends: qemu-system-x86 would pull a GUI stack the lab (-nographic) never uses.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${apt_wait[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
