#!/usr/bin/env node
/**
 * Writes the DERIVED PVH probe fixtures under fixtures/probes/ (run: node test/probes/derive-pvh-fixtures.mjs).
 *
 * No capture of a FreeBSD PVHv2 DomU's dmesg, sysctls or vmstat -i is published (docs/pvh.md §7), so these
 * bundles are composed from the FreeBSD and Xen source, each line's origin in docs/pvh.md §3 and here:
 *  - machdep.bootmethod "PVH" (14.0+, 13f34e21) or "XEN" (12.x-13.x): sys/x86/xen/pv.c
 *    xen_pvh_parse_preload_data, the branch without loader metadata (the cmdline-only DomU fbxen boots).
 *  - "XEN: Hypervisor version X.Y detected.": sys/x86/xen/hvm.c hypervisor_version(), printed again by
 *    xen_hvm_init(XEN_HVM_INIT_LATE) at SI_SUB_HYPERVISOR (the early call in hammer_time_xen precedes the
 *    message buffer).
 *  - no xenpci0, no atapci/ata, no cd0, no uart, no hpet0/atrtc0/attimer: libxl creates PVH domains with
 *    emulation_flags XEN_X86_EMU_LAPIC only and no device model (libxl_x86.c), its ACPI tables are built
 *    with table_flags 0 (no HPET table, FADT without CMOS RTC: libxl_x86_acpi.c, tools/libacpi/build.c),
 *    and no loader reads /boot/device.hints, so no hinted ISA device attaches.
 *  - "xc0: <Xen Console> on xenpv0": sys/dev/xen/console/xen_console.c (xencons_cnprobe registers the
 *    console when xen_domain() is already true, as under PVH; device_set_desc "Xen Console"; DRIVER_MODULE
 *    on xenpv), with an event channel interrupt row "xc0".
 *  - xen_et0, xenstore0, xenbusb_front0, PV IPI rows: the HVM code paths, unchanged (xen_hvm_domain() is
 *    true for PVH): freebsd-probes.md §2-3, the 12/14 layouts of test/support/verify/derive-fixtures.mjs.
 *  - disks: xvda = device/vbd/51712 and the fbxen CD as a read-only PV disk xvdb = device/vbd/51728 (no
 *    alias: 202-major vbds keep the xbd name), found by the rc.d script as /dev/iso9660/FBXEN (meta medium).
 *  - the sysctl section holds machdep.bootmethod and no dev.xenpci: collector 1.3.0 (machdep.bootmethod
 *    in SYSCTL_OIDS).
 *  - the vif fbxen boot gives every guest: xn0 on xenbusb_front0 with its dev.xn.0 sysctls and the network
 *    sections of collector 1.2.0, as the derived netfront fixture 13.2-netfront-healthy-derived has them
 *    (sys/dev/xen/netfront/netfront.c: the same driver under HVM and PVH); no round trip arranged.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const outRoot = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/probes');

const IPIS = { 12: ['r', 'itlb', 'ipg', 'irg', 'ic', 'b', 'st', 'sp', 'sth'], 14: ['r', 'itlb', 'b', 'st', 'sp', 'sw'] };

const DEFAULTS = { release: '14.3-RELEASE', bootmethod: 'PVH', ncpu: 2, xen: '4.17', conftxt: true, vmstat: true, bootCut: false, vif: true };
const MAC = '00:16:3e:5a:01:02';
const major = (c) => Number(c.release.split('.')[0]);

function dmesgBoot(c) {
  const out = [
    'Copyright (c) 1992-2025 The FreeBSD Project.',
    `FreeBSD ${c.release} releng/${c.release.split('-')[0]}-n000000-0000000000 GENERIC amd64`,
    'FreeBSD clang version 19.1.7',
    `XEN: Hypervisor version ${c.xen} detected.`,
    'CPU: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz (2394.50-MHz K8-class CPU)',
    'Hypervisor: Origin = "XenVMMXenVMM"',
    'real memory  = 1073741824 (1024 MB)',
    'Event timer "LAPIC" quality 600',
    'ACPI APIC Table: <Xen HVM>',
    `FreeBSD/SMP: Multiprocessor System Detected: ${c.ncpu} CPUs`,
    'acpi0: <Xen> on motherboard',
  ];
  for (let i = 0; i < c.ncpu; i++) out.push(`cpu${i}: <ACPI CPU> on acpi0`);
  if (c.bootCut) return `${out.join('\n')}\n`;
  out.push(
    'xenpv0: <Xen PV bus> on motherboard',
    'granttable0: <Xen Grant-table Device> on xenpv0',
    'xen_et0: <Xen PV Clock> on xenpv0',
    'Event timer "XENTIMER" frequency 1000000000 Hz quality 950',
    'Timecounter "XENTIMER" frequency 1000000000 Hz quality 950',
    'xenstore0: <XenStore> on xenpv0',
    'xc0: <Xen Console> on xenpv0',
    'Timecounters tick every 10.000 msec',
    'xctrl0: <Xen Control Device> on xenstore0',
    'xenbusb_front0: <Xen Frontend Devices> on xenstore0',
    'xbd0: 10240MB <Virtual Block Device> at device/vbd/51712 on xenbusb_front0',
    'xbd0: features: flush, write_barrier',
    'xbd0: synchronize cache commands enabled.',
    'xbd1: 1MB <Virtual Block Device> at device/vbd/51728 on xenbusb_front0',
    'xbd1: features: flush, write_barrier',
    'xbd1: synchronize cache commands enabled.',
    ...(c.vif ? ['xn0: <Virtual Network Interface> at device/vif/0 on xenbusb_front0', `xn0: Ethernet address: ${MAC}`, 'xn0: backend features: feature-sg feature-gso-tcp4'] : []),
    'Trying to mount root from ufs:/dev/gpt/rootfs []...',
  );
  return `${out.join('\n')}\n`;
}

function sysctl(c) {
  const out = [
    'kern.ostype: FreeBSD',
    `kern.osrelease: ${c.release}`,
    'kern.vm_guest: xen',
    'kern.boottime: { sec = 1765000000, usec = 402711 } Sat Dec  6 05:46:40 2025',
    `hw.ncpu: ${c.ncpu}`,
    'hw.machine: amd64',
    'hw.machine_arch: amd64',
    `machdep.bootmethod: ${c.bootmethod}`,
    'kern.disks: xbd1 xbd0',
    'kern.eventtimer.periodic: 0',
    'kern.eventtimer.timer: XENTIMER',
    'kern.eventtimer.idletick: 0',
    'kern.eventtimer.singlemul: 2',
    'kern.eventtimer.choice: XENTIMER(950) LAPIC(600)',
    'kern.eventtimer.et.XENTIMER.quality: 950',
    'kern.eventtimer.et.XENTIMER.frequency: 1000000000',
    'kern.eventtimer.et.XENTIMER.flags: 6',
    'kern.eventtimer.et.LAPIC.quality: 600',
    'kern.eventtimer.et.LAPIC.frequency: 0',
    'kern.eventtimer.et.LAPIC.flags: 7',
    'kern.timecounter.choice: XENTIMER(950) dummy(-1000000)',
    'kern.timecounter.hardware: XENTIMER',
  ];
  for (const u of [0, 1]) out.push(`dev.xbd.${u}.features: flush, write_barrier`, `dev.xbd.${u}.ring_pages: 1`, `dev.xbd.${u}.max_request_size: 40960`, `dev.xbd.${u}.%parent: xenbusb_front0`, `dev.xbd.${u}.%desc: Virtual Block Device`);
  out.push('dev.xbd.%parent: ', 'dev.xen_et.0.%parent: xenpv0', 'dev.xen_et.0.%desc: Xen PV Clock', 'dev.xen_et.%parent: ');
  out.push("sysctl: unknown oid 'dev.xenpci'", 'dev.xenstore.0.%parent: xenpv0', 'dev.xenstore.0.%desc: XenStore');
  if (c.vif && !c.bootCut) {
    out.push('dev.xn.0.xenstore_peer_path: /local/domain/0/backend/vif/5/0', 'dev.xn.0.xenbus_peer_domid: 0', 'dev.xn.0.xenbus_connection_state: Connected', 'dev.xn.0.xenbus_dev_type: vif', 'dev.xn.0.xenstore_path: device/vif/0', 'dev.xn.0.%parent: xenbusb_front0', 'dev.xn.0.%driver: xn', 'dev.xn.0.%desc: Virtual Network Interface');
  } else out.push("sysctl: unknown oid 'dev.xn'");
  return `${out.join('\n')}\n`;
}

function conftxt(c) {
  if (!c.conftxt) return '';
  return `${['options\tCONFIG_AUTOGENERATED', 'ident\tGENERIC', 'machine\tamd64', 'cpu\tHAMMER', 'options\tSMP', 'options\tINCLUDE_CONFIG_FILE', 'options\tXENHVM', 'device\txenpci', 'device\tpci', 'device\tata', 'device\tcd', 'device\tscbus'].join('\n')}\n`;
}

function vmstat(c, sample) {
  const rows = [];
  for (let cpu = 0; cpu < c.ncpu; cpu++) rows.push([`cpu${cpu}:timer`, 0]);
  for (let cpu = 0; cpu < c.ncpu; cpu++) rows.push([`cpu${cpu}:xen`, 50000 + sample * 900 + cpu * 7]);
  let irq = 256;
  for (let cpu = 0; cpu < c.ncpu; cpu++) rows.push([`irq${irq++}: xen_et0:c${cpu}`, 40000 + sample * 210 + cpu]);
  for (let cpu = 0; cpu < c.ncpu; cpu++) {
    for (const ipi of IPIS[major(c) >= 14 ? 14 : 12]) rows.push([`irq${irq++}: cpu${cpu}:${ipi}`, ipi === 'r' || ipi === 'b' || ipi === 'itlb' ? 3000 + sample * 150 + cpu : 0]);
  }
  rows.push([`irq${irq++}: xenstore0`, 402], [`irq${irq++}: xc0`, 1210 + sample * 30], [`irq${irq++}: xbd0`, 8000 + sample * 40], [`irq${irq++}: xbd1`, 31]);
  const total = rows.reduce((s, r) => s + r[1], 0);
  const fmt = (name, n) => `${name.padEnd(30)}${String(n).padStart(12)}${String(Math.floor(n / 1000)).padStart(11)}`;
  return `${'interrupt'.padEnd(30)}${'total'.padStart(12)}${'rate'.padStart(11)}\n${rows.map((r) => fmt(r[0], r[1])).join('\n')}\n${fmt('Total', total)}\n`;
}

function bundle(c, run, source) {
  const sections = new Map();
  const index = [];
  const add = (name, command, text, status = 0) => {
    if (text === undefined) return;
    sections.set(name, text);
    index.push(`${name}\t${status}\t${command}`);
  };
  const boot = dmesgBoot(c);
  add('uname', 'uname -a', `FreeBSD fbxen ${c.release} FreeBSD ${c.release} releng/${c.release.split('-')[0]}-n000000-0000000000 GENERIC amd64\n`);
  add('freebsd-version', 'freebsd-version -ku', `${c.release}\n${c.release}\n`);
  add('sysctl', 'sysctl ... (one OID at a time)', sysctl(c), 1);
  add('conftxt', 'sysctl -n kern.conftxt', conftxt(c));
  add('dmesg-boot', 'cat /var/run/dmesg.boot', boot);
  add('dmesg', 'dmesg -a', boot);
  if (c.vmstat) add('vmstat-ia.0', 'vmstat -ia', vmstat(c, 0));
  add('load', 'one busy process-spawning worker per CPU for 2s', `load: ${c.ncpu} workers for 2s\n`);
  if (c.vmstat) add('vmstat-ia.1', 'vmstat -ia', vmstat(c, 1));
  add('camcontrol-devlist', 'camcontrol devlist', '');
  add('cdrom', 'dd + mount -t cd9660 -o ro each cdN, cat /fbxen/run, umount', 'no cdN device in kern.disks\n', 1);
  add('flush', 'dd 4 MiB to /var/tmp, fsync, sync, kernel messages meanwhile', '4+0 records in\n4+0 records out\n4194304 bytes transferred in 0.052 secs (80659692 bytes/sec)\nwrite-status 0\nfsync-status 0\nsync-status 0\nkernel-messages-begin\nkernel-messages-end\n');
  add('cpuid-xen', 'cpucontrol -i 0x40000000/4 and 0x40000100/4 /dev/cpuctl0', 'cpuid level 0x40000000: 0x40000105 0x566e6558 0x65584d4d 0x4d4d566e\ncpuid level 0x40000004: 0x00000000 0x00000000 0x00000000 0x00000000\ncpuid level 0x40000100: 0x00000000 0x00000000 0x00000000 0x00000000\ncpuid level 0x40000104: 0x00000000 0x00000000 0x00000000 0x00000000\n');
  if (c.vif && !c.bootCut) {
    add('ifconfig', 'ifconfig -a', `xn0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n\toptions=503<RXCSUM,TXCSUM,TSO4,LRO>\n\tether ${MAC}\n\tinet 10.99.0.50 netmask 0xffffff00 broadcast 10.99.0.255\n\tmedia: Ethernet manual\n\tstatus: active\nlo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> metric 0 mtu 16384\n\tinet 127.0.0.1 netmask 0xff000000\n`);
    add('net-sysctl', 'sysctl net.inet.ip.forwarding net.inet6.ip6.forwarding net.link.bridge dev.netmap (one OID at a time)', "net.inet.ip.forwarding: 0\nnet.inet6.ip6.forwarding: 0\nsysctl: unknown oid 'net.link.bridge'\ndev.netmap.admode: 0\n", 1);
    add('kenv-net', 'kenv hw.xen.disable_pv_nics hw.xn.enable_lro hw.xn.num_queues dev.netmap.admode (one at a time)', 'kenv: unable to get hw.xen.disable_pv_nics\nkenv: unable to get hw.xn.enable_lro\nkenv: unable to get hw.xn.num_queues\nkenv: unable to get dev.netmap.admode\n', 1);
    add('kldstat', 'kldstat -v', 'Id Refs Address                Size Name\n 1   20 0xffffffff80200000  1f3e2d8 kernel (/boot/kernel/kernel)\n');
    add('net-rt', 'nc round trip with the host listener of /fbxen/net', 'not-arranged no /fbxen/net on the fbxen medium (this run arranged no round trip)\n');
  }
  const meta = {
    bundle: 'fbxen-bundle/1',
    run,
    phase: 'boot',
    'run-source': 'cd',
    medium: '/dev/iso9660/FBXEN',
    collector: 'fbxen-collect 1.3.0',
    started: '1765000100',
    finished: '1765000109',
    'fixture-source': source,
  };
  return { meta, index, sections };
}

function writeBundle(dir, b) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'sections'), { recursive: true });
  writeFileSync(join(dir, 'meta'), Object.entries(b.meta).map(([k, v]) => `${k}=${v}\n`).join(''));
  writeFileSync(join(dir, 'index'), `${b.index.join('\n')}\n`);
  for (const [name, text] of b.sections) writeFileSync(join(dir, 'sections', `${name}.out`), text);
}

const ALL = { 'xen-guest': 'pass', 'generic-xenhvm': 'pass', 'vector-callback': 'pass', 'pv-timer': 'pass', 'pv-ipi': 'pass', 'blkfront-flush': 'pass', cdrom: 'skip', netfront: 'inconclusive', migration: 'skip' };

const CASES = {
  '14.3-pvh-healthy-derived': [{}, ALL, 'a 14.x PVH DomU: machdep.bootmethod PVH, no xenpci0 and no emulated devices, xc0 console, the fbxen CD as the read-only disk xbd1', { 'vector-callback': 'implicit under PVH', cdrom: 'PVH has no emulated CD drive', 'generic-xenhvm': 'device xenpci is not needed under PVH' }],
  '12.4-pvh-bootmethod-xen-derived': [
    { release: '12.4-RELEASE', bootmethod: 'XEN', conftxt: false },
    ALL,
    'a 12.x PVH DomU (machdep.bootmethod XEN before 13f34e21), kernel without INCLUDE_CONFIG_FILE: XENHVM shown by the hypervisor version line',
    { 'xen-guest': 'machdep.bootmethod: XEN', 'generic-xenhvm': 'printed only by a kernel with options XENHVM' },
  ],
  '14.3-pvh-boot-cut-derived': [
    { vmstat: false, bootCut: true },
    { ...ALL, 'vector-callback': 'inconclusive', 'pv-timer': 'inconclusive', 'pv-ipi': 'inconclusive' },
    'a 14.x PVH DomU whose dmesg.boot ends before the Xen drivers attach and whose vmstat -ia sections are missing: event delivery is not shown',
    { 'vector-callback': 'no evidence here that events arrive' },
  ],
};

const written = [];
for (const [name, [opts, verdicts, what, evidence]] of Object.entries(CASES)) {
  const c = { ...DEFAULTS, ...opts };
  const dir = join(outRoot, name);
  writeBundle(dir, bundle(c, `fx-${name}`.slice(0, 64), `derived from the FreeBSD and Xen source (docs/pvh.md §3, test/probes/derive-pvh-fixtures.mjs): ${what}`));
  writeFileSync(join(dir, 'expect.json'), `${JSON.stringify({ description: what, verdicts, evidence: evidence ?? {} }, null, 2)}\n`);
  written.push(name);
}
process.stdout.write(`wrote ${written.length} PVH fixtures under fixtures/probes/\n`);
