#!/bin/busybox sh
# The dom0's initramfs: load the disk and file system modules, mount /dev/vda and hand over to the lab
# init. Every command goes through busybox by name: no applet links, so none can point busybox at itself.
bb=/bin/busybox
$bb mkdir -p /proc /sys /dev /newroot
$bb mount -t proc proc /proc
$bb mount -t devtmpfs devtmpfs /dev
while read -r mod; do
  $bb insmod "$mod" 2>/dev/null
done < /modules.order
i=0
while [ ! -b /dev/vda ] && [ "$i" -lt 100 ]; do
  $bb sleep 0.1
  i=$((i + 1))
done
if ! $bb mount -t ext4 -o rw /dev/vda /newroot; then
  echo "fbxen-lab initramfs: cannot mount /dev/vda" > /dev/console
  exec $bb sh
fi
$bb umount /proc
$bb umount /dev
exec $bb switch_root /newroot /sbin/fbxen-lab-init
