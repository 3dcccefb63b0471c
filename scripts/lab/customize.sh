#!/bin/sh
# customize.sh ROOT OUT SCRIPTS: mmdebstrap's customize hook (runs outside the chroot, ROOT is the new
# root file system). Installs the lab init, ssh keys and host files, extracts the hypervisor and kernel,
# builds the small initramfs and packs ROOT into OUT/dom0.img.
set -eu
root=$1
out=$2
scripts=$3

install -m 0755 "$scripts/dom0-init.sh" "$root/sbin/fbxen-lab-init"

# sshd: only the pinned host key; root logs in with the lab's key or dom0's own (xl migrate localhost).
rm -f "$root"/etc/ssh/ssh_host_*
install -m 0600 "$out/ssh_host_ed25519_key" "$root/etc/ssh/ssh_host_ed25519_key"
install -m 0644 "$out/ssh_host_ed25519_key.pub" "$root/etc/ssh/ssh_host_ed25519_key.pub"
cat >> "$root/etc/ssh/sshd_config" <<'CFG'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
CFG
install -d -m 0700 "$root/root/.ssh"
cat "$out/id_ed25519.pub" "$out/dom0_root_key.pub" > "$root/root/.ssh/authorized_keys"
chmod 0600 "$root/root/.ssh/authorized_keys"
install -m 0600 "$out/dom0_root_key" "$root/root/.ssh/id_ed25519"
rm -f "$out/dom0_root_key" "$out/dom0_root_key.pub"
printf 'localhost,127.0.0.1,fbxen-lab %s\n' "$(cut -d' ' -f1,2 "$out/ssh_host_ed25519_key.pub")" > "$root/root/.ssh/known_hosts"
# minbase has no /etc/hosts: xl migrate NAME localhost needs one.
printf '127.0.0.1\tlocalhost\n127.0.1.1\tfbxen-lab\n' > "$root/etc/hosts"
echo fbxen-lab > "$root/etc/hostname"

zcat "$root"/boot/xen-4.17-amd64.gz > "$out/xen"
for d in "$root"/lib/modules/*; do kver=${d##*/}; done
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
# shellcheck disable=SC2016 # dpkg-query's own format, not the shell's
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' > "$out/versions.txt"
echo "kernel $kver" >> "$out/versions.txt"

# The initramfs: busybox-static and the modules /dev/vda and ext4 need, in dependency order.
ird=$(mktemp -d)
mkdir -p "$ird/bin"
cp "$root/bin/busybox" "$ird/bin/busybox"
install -m 0755 "$scripts/initramfs-init.sh" "$ird/init"
: > "$ird/modules.order"
chroot "$root" modprobe --show-depends -S "$kver" -a virtio_pci virtio_blk ext4 | while read -r kind path _; do
  [ "$kind" = insmod ] || continue
  case "$path" in *.ko) ;; *) echo "customize: unexpected module file $path" >&2; exit 1 ;; esac
  grep -qx "$path" "$ird/modules.order" && continue
  mkdir -p "$ird$(dirname "$path")"
  cp "$root$path" "$ird$path"
  echo "$path" >> "$ird/modules.order"
done
(cd "$ird" && find . | cpio -o -H newc --quiet) | gzip -6 > "$out/initrd.gz"
rm -rf "$ird"

# The STAND-IN GUEST's base (a test double for real-xl test B, docs/lab.md "The stand-in guest"): a Linux
# PVH domU booted with the vmlinuz above; the test appends a second archive with its init, fbxen's guest
# scripts and the FreeBSD stand-ins. dash is its sh (busybox's sh runs its own applets before PATH, so the
# stand-ins named sysctl, mount, dmesg... would never run), coreutils' date for the heartbeat's clock
# (busybox's date has no %N), busybox for the rest; the modules of the PV disks, the CD's ISO 9660 and the
# PV NIC, in dependency order. chroot cat: /lib64's loader link is absolute.
sb=$(mktemp -d)
mkdir -p "$sb/bin" "$sb/lib/x86_64-linux-gnu" "$sb/lib64"
for f in bin/busybox:bin/busybox bin/dash:bin/dash bin/date:bin/date lib/x86_64-linux-gnu/libc.so.6:lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2:lib64/ld-linux-x86-64.so.2; do
  chroot "$root" cat "/${f%%:*}" > "$sb/${f#*:}"
  chmod 0755 "$sb/${f#*:}"
done
ln -s dash "$sb/bin/sh"
for a in $(chroot "$root" /bin/busybox --list); do
  [ -e "$sb/bin/$a" ] || [ -L "$sb/bin/$a" ] || ln -s busybox "$sb/bin/$a"
done
: > "$sb/standin-modules.order"
chroot "$root" modprobe --show-depends -S "$kver" -a xen-blkfront isofs xen-netfront | while read -r kind path _; do
  [ "$kind" = insmod ] || continue
  case "$path" in *.ko) ;; *) echo "customize: unexpected module file $path" >&2; exit 1 ;; esac
  grep -qx "$path" "$sb/standin-modules.order" && continue
  mkdir -p "$sb$(dirname "$path")"
  cp "$root$path" "$sb$path"
  echo "$path" >> "$sb/standin-modules.order"
done
(cd "$sb" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -6 > "$out/standin-base.cpio.gz"
rm -rf "$sb"

# What apt downloaded is not needed in the image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# mmdebstrap still has proc, sys and dev mounted in ROOT: mke2fs -d would copy /proc. A plain bind mount
# of ROOT shows the mount points empty.
stage=$(mktemp -d)
mount --bind "$root" "$stage"
trap 'umount "$stage" 2>/dev/null; rmdir "$stage"' EXIT
# 16G, sparse: the root holds the guest images the later phase copies in (about 1 GiB is the system).
mke2fs -q -t ext4 -L fbxen-dom0 -d "$stage" "$out/dom0.img" 16G
