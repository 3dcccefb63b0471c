#!/bin/sh
# build-image.sh OUT LABDIR-SCRIPTS SUITE PACKAGES MIRROR
# Builds the fbxen lab's dom0 into OUT (an empty directory; the caller renames it into the cache when this
# exits 0): dom0.img (ext4 made by mke2fs -d, no mount), xen (the gunzipped hypervisor, a multiboot ELF
# QEMU loads with -kernel), vmlinuz, initrd.gz (busybox and the disk modules), versions.txt, and the
# keys: ssh_host_ed25519_key.pub (pinned by the client) and id_ed25519 (the lab's root key).
# PACKAGES is comma-separated; MIRROR may be empty (then apt's own sources are used).
set -eu
out=$1
scripts=$2
suite=$3
packages=$4
mirror=${5:-}

case "$out$scripts" in *"'"*) echo "build-image: paths must not contain a single quote" >&2; exit 2 ;; esac

ssh-keygen -q -t ed25519 -N '' -C fbxen-lab-host -f "$out/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C fbxen-lab-client -f "$out/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -C fbxen-lab-dom0 -f "$out/dom0_root_key"

set -- --variant=minbase --include="$packages" --format=null \
  --customize-hook="sh '$scripts/customize.sh' \"\$1\" '$out' '$scripts'" \
  "$suite" /dev/null
[ -z "$mirror" ] || set -- "$@" "$mirror"
# exec: a SIGTERM from fbxen (Ctrl-C, a timeout) reaches mmdebstrap itself, which removes its chroot.
exec mmdebstrap "$@"
