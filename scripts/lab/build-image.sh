#!/bin/sh
# build-image.sh OUT LABDIR-SCRIPTS SUITE PACKAGES MIRROR
# Builds the fbxen lab's dom0 into OUT (an empty directory; the caller renames it into the cache when this
# exits 0): dom0.img (ext4 made by mke2fs -d, no mount), xen (the gunzipped hypervisor, a multiboot ELF
# QEMU loads with -kernel), vmlinuz, initrd.gz (busybox and the disk modules), versions.txt, and the
# keys: ssh_host_ed25519_key.pub (pinned by the client) and id_ed25519 (the lab's root key).
# PACKAGES is comma-separated; MIRROR may be empty (then apt's own sources are used).
#
# Root is not needed: as another user mmdebstrap runs in its unshare mode (a user namespace: newuidmap from
# Debian's uidmap), and the root comes out as a tar that mke2fs packs under fakeroot, so dom0's files are
# root's in the image either way. One path for both: what CI (root) tests is what a user's build runs.
set -eu
out=$1
scripts=$2
suite=$3
packages=$4
mirror=${5:-}

work=$(mktemp -d)
child=
cleanup() {
  # extracted as a user, some directories are read-only to that user
  chmod -R u+rwX "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# A SIGTERM from fbxen (Ctrl-C, a timeout) reaches mmdebstrap, which removes its chroot.
trap '[ -z "$child" ] || kill -TERM "$child" 2>/dev/null; exit 143' TERM
trap '[ -z "$child" ] || kill -INT "$child" 2>/dev/null; exit 130' INT
case "$work" in *[!A-Za-z0-9/._-]*) echo "build-image: TMPDIR must be a plain path (letters, digits, / . _ -): $work" >&2; exit 2 ;; esac

ssh-keygen -q -t ed25519 -N '' -C fbxen-lab-host -f "$out/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C fbxen-lab-client -f "$out/id_ed25519"

# What the customize step needs inside the chroot: the scripts and keys, copied in by mmdebstrap itself
# (in unshare mode the namespace's root could not read this user's 0600 files).
in=$work/in/fbxen-lab
mkdir -p "$in" "$work/out"
cp "$scripts/customize.sh" "$scripts/dom0-init.sh" "$scripts/initramfs-init.sh" "$in/"
cp "$out/ssh_host_ed25519_key" "$out/ssh_host_ed25519_key.pub" "$out/id_ed25519.pub" "$in/"
ssh-keygen -q -t ed25519 -N '' -C fbxen-lab-dom0 -f "$in/dom0_root_key"

if [ "$(id -u)" -eq 0 ]; then mode=root; pack=; else mode=unshare; pack=fakeroot; fi
if [ "$mode" = unshare ] && ! command -v newuidmap >/dev/null 2>&1; then
  echo "build-image: building as a user needs newuidmap (install Debian's uidmap: sudo apt-get install uidmap, or run scripts/lab-setup.sh)" >&2
  exit 3
fi

# shellcheck disable=SC2016 # "$1" is the hook's argument (the chroot), expanded by mmdebstrap's shell
set -- --mode="$mode" --variant=minbase --include="$packages" --format=tar \
  --customize-hook="copy-in $in /tmp" \
  --customize-hook='chroot "$1" /bin/sh /tmp/fbxen-lab/customize.sh' \
  --customize-hook="sync-out /tmp/fbxen-lab-out $work/out" \
  --customize-hook='rm -rf "$1/tmp/fbxen-lab" "$1/tmp/fbxen-lab-out"' \
  "$suite" "$work/root.tar"
[ -z "$mirror" ] || set -- "$@" "$mirror"
mmdebstrap "$@" &
child=$!
wait "$child"
child=
# everything customize.sh left in /tmp/fbxen-lab-out (xen, vmlinuz, initrd.gz, versions.txt, ...)
mv "$work"/out/* "$out/"
for f in xen vmlinuz initrd.gz versions.txt; do
  [ -s "$out/$f" ] || { echo "build-image: customize.sh left no $f" >&2; exit 1; }
done

# 16G, sparse: the root holds the guest images the later phase copies in (about 1 GiB is the system).
# One fakeroot session for both: tar records root's ownership and the device nodes, mke2fs reads them back.
mkdir "$work/root"
# shellcheck disable=SC2016 # the inner shell's own arguments
$pack sh -c 'tar -xpf "$1" -C "$2" --numeric-owner && rm -f "$1" && mke2fs -q -t ext4 -L fbxen-dom0 -d "$2" "$3" 16G' sh "$work/root.tar" "$work/root" "$out/dom0.img"
