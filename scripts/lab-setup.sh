#!/usr/bin/env bash
# Installs what `fbxen lab up` needs on the machine that runs the lab (Debian 12): mmdebstrap builds the
# dom0 root from Debian's archive, mke2fs packs it, QEMU runs it, ssh reaches it. Idempotent: only missing
# packages are installed. The lab tests' CI step (scripts/lab-test.sh) calls this first.
set -euo pipefail

# uidmap and fakeroot: a build as a user (mmdebstrap's unshare mode, the root packed under fakeroot).
PACKAGES=(mmdebstrap qemu-system-x86 e2fsprogs openssh-client cpio gzip busybox-static ca-certificates uidmap fakeroot)

# shellcheck source=scripts/lib/apt-install.sh
source "$(dirname "$0")/lib/apt-install.sh"
# No recommends: qemu-system-x86 would pull a GUI stack the lab (-nographic) never uses.
apt_install_missing lab-setup --no-install-recommends "${PACKAGES[@]}"
