#!/bin/sh
# customize.sh: run by build-image.sh through mmdebstrap's customize hook INSIDE the new root (chroot), with
# the scripts and keys copied in at /tmp/fbxen-lab. Installs the lab init, ssh keys and host files, and
# leaves in /tmp/fbxen-lab-out what build-image.sh takes out: the hypervisor, the kernel, the small
# initramfs and versions.txt.
set -eu
in=/tmp/fbxen-lab
out=/tmp/fbxen-lab-out
mkdir -p "$out"

install -m 0755 "$in/dom0-init.sh" /sbin/fbxen-lab-init

# sshd: only the pinned host key; root logs in with the lab's key or dom0's own (xl migrate localhost).
rm -f /etc/ssh/ssh_host_*
install -m 0600 "$in/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 0644 "$in/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
cat >> /etc/ssh/sshd_config <<'CFG'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
# fbxen's netfront round trip forwards its listener onto xenbr0's address (docs/remote.md)
GatewayPorts clientspecified
CFG
install -d -m 0700 /root/.ssh
cat "$in/id_ed25519.pub" "$in/dom0_root_key.pub" > /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
install -m 0600 "$in/dom0_root_key" /root/.ssh/id_ed25519
printf 'localhost,127.0.0.1,fbxen-lab %s\n' "$(cut -d' ' -f1,2 "$in/ssh_host_ed25519_key.pub")" > /root/.ssh/known_hosts
# minbase has no /etc/hosts: xl migrate NAME localhost needs one.
printf '127.0.0.1\tlocalhost\n127.0.1.1\tfbxen-lab\n' > /etc/hosts
echo fbxen-lab > /etc/hostname

zcat /boot/xen-4.17-amd64.gz > "$out/xen"
for d in /lib/modules/*; do kver=${d##*/}; done
cp "/boot/vmlinuz-$kver" "$out/vmlinuz"
# shellcheck disable=SC2016 # dpkg-query's own format, not the shell's
dpkg-query -W -f '${Package} ${Version}\n' > "$out/versions.txt"
echo "kernel $kver" >> "$out/versions.txt"

# The initramfs: busybox-static and the modules /dev/vda and ext4 need, in dependency order.
ird=$(mktemp -d)
mkdir -p "$ird/bin"
cp /bin/busybox "$ird/bin/busybox"
install -m 0755 "$in/initramfs-init.sh" "$ird/init"
: > "$ird/modules.order"
modprobe --show-depends -S "$kver" -a virtio_pci virtio_blk ext4 | while read -r kind path _; do
  [ "$kind" = insmod ] || continue
  case "$path" in *.ko) ;; *) echo "customize: unexpected module file $path" >&2; exit 1 ;; esac
  grep -qx "$path" "$ird/modules.order" && continue
  mkdir -p "$ird$(dirname "$path")"
  cp "$path" "$ird$path"
  echo "$path" >> "$ird/modules.order"
done
# busybox's cpio: the dom0 root has no cpio of its own
(cd "$ird" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) | gzip -6 > "$out/initrd.gz"
rm -rf "$ird"

# The STAND-IN GUEST's base (a test double for real-xl test B, docs/lab.md "The stand-in guest"): a Linux
# PVH domU booted with the vmlinuz above; the test appends a second archive with its init, fbxen's guest
# scripts and the FreeBSD stand-ins. dash is its sh (busybox's sh runs its own applets before PATH, so the
# stand-ins named sysctl, mount, dmesg... would never run), coreutils' date for the heartbeat's clock
# (busybox's date has no %N), busybox for the rest; the modules of the PV disks, the CD's ISO 9660 and the
# PV NIC, in dependency order. cat, not cp: /lib64's loader is an absolute link.
sb=$(mktemp -d)
mkdir -p "$sb/bin" "$sb/lib/x86_64-linux-gnu" "$sb/lib64"
for f in bin/busybox bin/dash bin/date lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2; do
  cat "/$f" > "$sb/$f"
  chmod 0755 "$sb/$f"
done
ln -s dash "$sb/bin/sh"
for a in $(/bin/busybox --list); do
  [ -e "$sb/bin/$a" ] || [ -L "$sb/bin/$a" ] || ln -s busybox "$sb/bin/$a"
done
: > "$sb/standin-modules.order"
modprobe --show-depends -S "$kver" -a xen-blkfront isofs xen-netfront | while read -r kind path _; do
  [ "$kind" = insmod ] || continue
  case "$path" in *.ko) ;; *) echo "customize: unexpected module file $path" >&2; exit 1 ;; esac
  grep -qx "$path" "$sb/standin-modules.order" && continue
  mkdir -p "$sb$(dirname "$path")"
  cp "$path" "$sb$path"
  echo "$path" >> "$sb/standin-modules.order"
done
(cd "$sb" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) | gzip -6 > "$out/standin-base.cpio.gz"
rm -rf "$sb"

# What apt downloaded is not needed in the image.
rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/*
