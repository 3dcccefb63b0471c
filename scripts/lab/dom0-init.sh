#!/bin/sh
# PID 1 of the fbxen lab's dom0 (no systemd in a minbase root): the mounts, device links and directories
# Xen's tools expect, the dom0 kernel modules, xenstored and xenconsoled, a bridge for guest vifs with no
# uplink, sshd on the QEMU user-network NIC, then it waits. Each step is one that cost time when missing
# (see docs/lab.md).
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

log() { echo "fbxen-lab: $*" > /dev/console 2>&1 || true; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -o remount,rw /
# Without /dev/stdin and /dev/fd Xen's locking.sh spins and every disk hotplug times out.
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
ln -sfn /proc/self/fd /dev/fd
# /run/lock: xenconsole's lock file; /run/sshd: sshd's privilege separation directory.
mkdir -p /run/lock /run/sshd /run/xen /var/log/xen
ln -sfn /run/lock /var/lock 2>/dev/null || true
hostname fbxen-lab

for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-blkback xen-netback loop bridge virtio_net; do
  modprobe "$m" || log "modprobe $m failed"
done
grep -q xenfs /proc/mounts || mount -t xenfs xenfs /proc/xen

ip link set lo up
# QEMU's user network (slirp): 10.0.2.15 is its default guest address; ssh arrives through hostfwd.
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
# Guest vifs join xenbr0, which has no uplink: no guest traffic leaves the VM.
ip link add xenbr0 type bridge
ip addr add 10.99.0.1/24 dev xenbr0
ip link set xenbr0 up

/etc/init.d/xen start > /var/log/xen/init.log 2>&1 || log "xen start failed: $(tail -n 3 /var/log/xen/init.log)"
/usr/sbin/sshd -E /var/log/sshd.log || log "sshd failed"
log "dom0 up: $(cut -d' ' -f1 /proc/uptime) s"

# PID 1 must not exit; it reaps orphans by waiting.
trap 'sync; busybox poweroff -f' TERM
while :; do
  sleep 3600 &
  wait $!
done
