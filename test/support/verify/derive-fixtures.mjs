#!/usr/bin/env node
/**
 * Writes the DERIVED probe fixtures under fixtures/probes/ (run: node test/support/verify/derive-fixtures.mjs).
 *
 * No real `vmstat -i`, eventtimer sysctls or post-migration messages of a FreeBSD Xen guest are published
 * (see fixtures/freebsd/README.md), so these bundles are composed from the FreeBSD source facts in
 * docs/probe-protocol.md and /work/shared/design/freebsd-probes.md: the exact message texts, sysctl
 * names and vmstat -i names per release. Where a real capture exists it is used verbatim: the 11.1
 * case carries the real dmesg.boot from fixtures/freebsd/11.1-xl-xen4.8-hvm-dmesg-boot.txt.
 * Every case has an expect.json with the verdict of every probe; the fixture names end in -derived
 * unless their kernel messages are a real capture.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const outRoot = join(root, 'fixtures/probes');

// ---- release layouts (freebsd-probes.md §7) ----
const LAYOUT = {
  10: { ipis: ['r', 'itlb', 'ipg', 'irg', 'ic', 'b', 'st', 'sp', 'sth'], firstEvtchnIrq: 768, etParent: 'motherboard', features: 'flush, write_barrier' },
  11: { ipis: ['r', 'itlb', 'ipg', 'irg', 'ic', 'b', 'st', 'sp', 'sth'], firstEvtchnIrq: 768, etParent: 'xenpv0', features: 'flush, write_barrier' },
  12: { ipis: ['r', 'itlb', 'ipg', 'irg', 'ic', 'b', 'st', 'sp', 'sth'], firstEvtchnIrq: 256, etParent: 'xenpv0', features: 'flush, write_barrier' },
  13: { ipis: ['r', 'itlb', 'ipg', 'irg', 'ic', 'b', 'st', 'sp'], firstEvtchnIrq: 256, etParent: 'xenpv0', features: 'flush, write_barrier' },
  14: { ipis: ['r', 'itlb', 'b', 'st', 'sp', 'sw'], firstEvtchnIrq: 256, etParent: 'xenpv0', features: 'flush, write_barrier' },
  15: { ipis: ['r', 'itlb', 'b', 'st', 'sp', 'sw'], firstEvtchnIrq: 256, etParent: 'xenpv0', features: 'flush, write_barrier' },
};

const DEFAULTS = {
  release: '13.2-RELEASE',
  ncpu: 2,
  xen: '4.17',
  callback: 'vector', // 'vector' | 'legacy'
  timer: 'XENTIMER', // kern.eventtimer.timer
  timerStalledCpu: undefined,
  pvIpi: true, // event-channel IPI rows
  cpuid: undefined, // EAX of Xen leaf 4, or undefined (section missing)
  disks: [{ unit: 0, mb: 10240, vbd: 768, alias: 'ada0', features: 'default' }],
  cd: 'ok', // 'ok' | 'none' | 'grabbed' | 'unreadable' | 'unread'
  conftxt: true,
  xenhvm: true,
  flush: 'ok', // 'ok' | 'error' | 'none'
  extraDmesg: [],
  vmGuest: 'xen',
};

const hasCd = (c) => ['ok', 'unreadable', 'unread', 'denied'].includes(c.cd);

function uname(c) {
  return `FreeBSD fbxen ${c.release} FreeBSD ${c.release} releng/${c.release.split('-')[0]}-n000000-0000000000 GENERIC amd64\n`;
}

function major(c) {
  return Number(c.release.split('.')[0]);
}

function dmesgBoot(c) {
  const L = LAYOUT[major(c)];
  const out = [
    'Copyright (c) 1992-2023 The FreeBSD Project.',
    `FreeBSD ${c.release} releng/${c.release.split('-')[0]}-n000000-0000000000 GENERIC amd64`,
    'FreeBSD clang version 14.0.5',
    'VT(vga): text 80x25',
  ];
  if (c.vmGuest === 'xen' && c.xenhvm) out.push(`XEN: Hypervisor version ${c.xen} detected.`);
  out.push('CPU: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz (2394.50-MHz K8-class CPU)');
  out.push(c.vmGuest === 'xen' ? 'Hypervisor: Origin = "XenVMMXenVMM"' : 'Hypervisor: Origin = "KVMKVMKVM"');
  out.push('real memory  = 2147483648 (2048 MB)', 'Event timer "LAPIC" quality 600', c.vmGuest === 'xen' ? 'ACPI APIC Table: <Xen HVM>' : 'ACPI APIC Table: <BOCHS  BXPC    >');
  out.push(`FreeBSD/SMP: Multiprocessor System Detected: ${c.ncpu} CPUs`);
  if (c.callback === 'legacy') out.push('Xen HVM callback vector registration failed (-38). Falling back to emulated device interrupt');
  out.push(c.vmGuest === 'xen' ? 'acpi0: <Xen> on motherboard' : 'acpi0: <BOCHS BXPC> on motherboard');
  for (let i = 0; i < c.ncpu; i++) out.push(`cpu${i}: <ACPI CPU> on acpi0`);
  out.push('hpet0: <High Precision Event Timer> iomem 0xfed00000-0xfed003ff on acpi0', 'Timecounter "HPET" frequency 62500000 Hz quality 950', 'Event timer "HPET" frequency 62500000 Hz quality 450');
  out.push('atrtc0: <AT realtime clock> port 0x70-0x71 irq 8 on acpi0', 'Event timer "RTC" frequency 32768 Hz quality 0');
  out.push('atapci0: <Intel PIIX3 WDMA2 controller> port 0x1f0-0x1f7,0x3f6,0x170-0x177,0x376,0xc120-0xc12f at device 1.1 on pci0', 'ata0: <ATA channel> at channel 0 on atapci0', 'ata1: <ATA channel> at channel 1 on atapci0');
  if (c.vmGuest === 'xen' && c.xenhvm) {
    out.push('xenpci0: <Xen Platform Device> port 0xc000-0xc0ff mem 0xf2000000-0xf2ffffff irq 24 at device 2.0 on pci0');
    if (major(c) >= 11) out.push('xenpv0: <Xen PV bus> on motherboard');
    out.push(`granttable0: <Xen Grant-table Device> on ${major(c) >= 11 ? 'xenpv0' : 'xenpci0'}`);
    if (c.callback === 'legacy') {
      out.push('xen_et0: vector callbacks unavailable');
    } else {
      out.push(`xen_et0: <Xen PV Clock> on ${L.etParent}`, 'Event timer "XENTIMER" frequency 1000000000 Hz quality 950', 'Timecounter "XENTIMER" frequency 1000000000 Hz quality 950');
    }
    out.push('xenstore0: <XenStore> on xenpv0', 'Timecounters tick every 10.000 msec', 'xctrl0: <Xen Control Device> on xenstore0', 'xenbusb_front0: <Xen Frontend Devices> on xenstore0');
    for (const d of c.disks) {
      out.push(`xbd${d.unit}: ${d.mb}MB <Virtual Block Device> at device/vbd/${d.vbd} on xenbusb_front0`);
      if (d.alias) out.push(`xbd${d.unit}: attaching as ${d.alias}`);
      const f = d.features === 'default' ? L.features : d.features;
      if (f) out.push(`xbd${d.unit}: features: ${f}`, `xbd${d.unit}: synchronize cache commands enabled.`);
    }
  } else {
    out.push('ada0 at ata0 bus 0 scbus0 target 0 lun 0', 'ada0: <QEMU HARDDISK 2.5+> ATA-7 device');
  }
  if (hasCd(c)) out.push('cd0 at ata1 bus 0 scbus1 target 0 lun 0', 'cd0: <QEMU QEMU DVD-ROM 2.5+> Removable CD-ROM SCSI device');
  out.push(`Trying to mount root from ufs:/dev/${c.disks[0]?.alias ?? 'ada0'}p2 [rw]...`);
  return `${out.join('\n')}\n`;
}

function sysctl(c) {
  const L = LAYOUT[major(c)];
  const disks = [...(hasCd(c) ? ['cd0'] : []), ...c.disks.map((d) => d.alias ?? `xbd${d.unit}`)];
  const out = [
    'kern.ostype: FreeBSD',
    `kern.osrelease: ${c.release}`,
    `kern.vm_guest: ${c.vmGuest}`,
    'kern.boottime: { sec = 1700000000, usec = 402711 } Tue Nov 14 22:13:20 2023',
    `hw.ncpu: ${c.ncpu}`,
    'hw.machine: amd64',
    'hw.machine_arch: amd64',
    `kern.disks: ${disks.reverse().join(' ')}`,
    'kern.eventtimer.periodic: 0',
    `kern.eventtimer.timer: ${c.timer}`,
    'kern.eventtimer.idletick: 0',
    'kern.eventtimer.singlemul: 2',
  ];
  const xenEt = c.vmGuest === 'xen' && c.callback === 'vector' && c.xenhvm;
  out.push(`kern.eventtimer.choice: ${xenEt ? 'XENTIMER(950) ' : ''}LAPIC(600) HPET(450) i8254(100) RTC(0)`);
  if (xenEt) out.push('kern.eventtimer.et.XENTIMER.quality: 950', 'kern.eventtimer.et.XENTIMER.frequency: 1000000000', 'kern.eventtimer.et.XENTIMER.flags: 6');
  out.push('kern.eventtimer.et.LAPIC.quality: 600', 'kern.eventtimer.et.LAPIC.frequency: 0', 'kern.eventtimer.et.LAPIC.flags: 7');
  out.push('kern.eventtimer.et.HPET.quality: 450', 'kern.eventtimer.et.HPET.frequency: 62500000', 'kern.eventtimer.et.HPET.flags: 3');
  out.push(`kern.timecounter.choice: ${xenEt ? 'XENTIMER(950) ' : ''}ACPI-fast(900) HPET(950) i8254(0) dummy(-1000000)`, `kern.timecounter.hardware: ${xenEt ? 'XENTIMER' : 'HPET'}`);
  if (c.vmGuest === 'xen' && c.xenhvm) {
    for (const d of c.disks) {
      const f = d.features === 'default' ? L.features : d.features;
      out.push(`dev.xbd.${d.unit}.features: ${f}`, `dev.xbd.${d.unit}.ring_pages: 1`, `dev.xbd.${d.unit}.max_request_size: 40960`, `dev.xbd.${d.unit}.%parent: xenbusb_front0`, `dev.xbd.${d.unit}.%desc: Virtual Block Device`);
    }
    if (c.disks.length) out.push('dev.xbd.%parent: ');
    else out.push("sysctl: unknown oid 'dev.xbd'");
    if (xenEt) out.push(`dev.xen_et.0.%parent: ${L.etParent}`, 'dev.xen_et.0.%desc: Xen PV Clock', 'dev.xen_et.%parent: ');
    else out.push("sysctl: unknown oid 'dev.xen_et'");
    out.push('dev.xenpci.0.%parent: pci0', 'dev.xenpci.0.%desc: Xen Platform Device', 'dev.xenstore.0.%parent: xenpv0', 'dev.xenstore.0.%desc: XenStore');
  } else {
    for (const o of ['dev.xbd', 'dev.xen_et', 'dev.xenpci', 'dev.xenstore']) out.push(`sysctl: unknown oid '${o}'`);
  }
  out.push("sysctl: unknown oid 'dev.xn'");
  return `${out.join('\n')}\n`;
}

function conftxt(c) {
  if (!c.conftxt) return '';
  const lines = ['options\tCONFIG_AUTOGENERATED', 'ident\tGENERIC', 'machine\tamd64', 'cpu\tHAMMER', 'options\tSMP', 'options\tINCLUDE_CONFIG_FILE'];
  if (c.xenhvm) lines.push('options\tXENHVM', 'device\txenpci');
  lines.push('device\tpci', 'device\tata', 'device\tcd', 'device\tscbus');
  return `${lines.join('\n')}\n`;
}

/** vmstat -ia; `sample` 0 or 1 (after the load): counters grow, except where the case says they stall. */
function vmstat(c, sample, bump = 0) {
  const L = LAYOUT[major(c)];
  const rows = [['irq1: atkbd0', 2], ['irq8: atrtc0', 0], ['irq9: acpi0', 0], ['irq14: ata0', 61], ['irq15: ata1', 120 + sample]];
  const xen = c.vmGuest === 'xen' && c.xenhvm;
  if (xen) rows.push(['irq24: xenpci0', c.callback === 'legacy' ? 90000 + sample * 4000 + bump : 0]);
  for (let cpu = 0; cpu < c.ncpu; cpu++) rows.push([`cpu${cpu}:timer`, c.timer === 'LAPIC' || c.callback === 'legacy' ? 20000 + sample * 200 + bump + cpu : 0]);
  if (xen && c.callback === 'vector') for (let cpu = 0; cpu < c.ncpu; cpu++) rows.push([`cpu${cpu}:xen`, 50000 + sample * 900 + bump + cpu * 7]);
  if (xen && c.callback === 'legacy') rows.push(['cpu0:xen', 90000 + sample * 4000 + bump]);
  let irq = L.firstEvtchnIrq;
  if (xen && c.callback === 'vector') {
    for (let cpu = 0; cpu < c.ncpu; cpu++) {
      const ticking = c.timer === 'XENTIMER' && c.timerStalledCpu !== cpu;
      rows.push([`irq${irq++}: xen_et0:c${cpu}`, ticking ? 40000 + sample * 210 + bump + cpu : 312]);
    }
    if (c.pvIpi) {
      for (let cpu = 0; cpu < c.ncpu; cpu++) {
        for (const ipi of L.ipis) {
          const busy = ipi === 'r' || ipi === 'b' || ipi === 'itlb';
          rows.push([`irq${irq++}: cpu${cpu}:${ipi}`, busy ? 3000 + sample * 150 + bump + cpu : 0]);
        }
      }
    }
    rows.push([`irq${irq++}: xenstore0`, 402]);
    for (const d of c.disks) rows.push([`irq${irq++}: xbd${d.unit}`, 8000 + sample * 40 + bump]);
  }
  if (!xen) rows.push(['irq11: virtio_pci0', 5000 + sample]);
  const total = rows.reduce((s, r) => s + r[1], 0);
  const fmt = (name, n) => `${name.padEnd(30)}${String(n).padStart(12)}${String(Math.floor(n / 1000)).padStart(11)}`;
  return `${'interrupt'.padEnd(30)}${'total'.padStart(12)}${'rate'.padStart(11)}\n${rows.map((r) => fmt(r[0], r[1])).join('\n')}\n${fmt('Total', total)}\n`;
}

function camcontrol(c) {
  const rows = [];
  if (c.vmGuest !== 'xen' || !c.xenhvm) rows.push('<QEMU HARDDISK 2.5+>                 at scbus0 target 0 lun 0 (ada0,pass0)');
  if (hasCd(c)) rows.push('<QEMU QEMU DVD-ROM 2.5+>             at scbus1 target 0 lun 0 (cd0,pass1)');
  return rows.length ? `${rows.join('\n')}\n` : '';
}

function cdromSection(c, run) {
  if (c.cd === 'none' || c.cd === 'grabbed') return { status: 1, text: 'no cdN device in kern.disks\n' };
  if (c.cd === 'denied') return { status: 0, text: 'device cd0\ndd: /dev/cd0: Permission denied\ncd0 read-status 1\nmount_cd9660: /dev/cd0: Operation not permitted\ncd0 mount-status 1\n' };
  if (c.cd === 'unreadable') return { status: 0, text: 'device cd0\ndd: /dev/cd0: Device not configured\ncd0 read-status 1\nmount_cd9660: /dev/cd0: Device not configured\ncd0 mount-status 1\n' };
  return { status: 0, text: `device cd0\n16+0 records in\n16+0 records out\n32768 bytes transferred in 0.010232 secs (3202502 bytes/sec)\ncd0 read-status 0\ncd0 mount-status 0\ncd0 nonce ${run}\ncd0 umount-status 0\n` };
}

function flushSection(c) {
  if (c.flush === 'error') {
    return '4+0 records in\n4+0 records out\n4194304 bytes transferred in 0.061 secs (68759081 bytes/sec)\nwrite-status 0\nfsync: /var/tmp/fbxen.Ab12Cd/flush.bin: Input/output error\nfsync-status 1\nsync-status 0\nkernel-messages-begin\nxbd0: disk error cmd=flush 0-0 status: 1\nkernel-messages-end\n';
  }
  return '4+0 records in\n4+0 records out\n4194304 bytes transferred in 0.052 secs (80659692 bytes/sec)\nwrite-status 0\nfsync-status 0\nsync-status 0\nkernel-messages-begin\nkernel-messages-end\n';
}

function cpuidSection(c) {
  if (c.cpuid === undefined) return { status: 1, text: 'no /dev/cpuctl0 (load the cpuctl module to let fbxen read the Xen CPUID leaves)\n' };
  const hex = (n) => `0x${n.toString(16).padStart(8, '0')}`;
  return {
    status: 0,
    text: `cpuid level 0x40000000: 0x40000105 0x566e6558 0x65584d4d 0x4d4d566e\ncpuid level 0x40000004: ${hex(c.cpuid)} 0x00000000 0x00000000 0x00000000\ncpuid level 0x40000100: 0x00000000 0x00000000 0x00000000 0x00000000\ncpuid level 0x40000104: 0x00000000 0x00000000 0x00000000 0x00000000\n`,
  };
}

function bundle(c, { run, phase, source }) {
  const sections = new Map();
  const index = [];
  const add = (name, command, text, status = 0) => {
    if (text === undefined) return;
    sections.set(name, text);
    index.push(`${name}\t${status}\t${command}`);
  };
  const boot = c.dmesgBootText ?? dmesgBoot(c);
  add('uname', 'uname -a', uname(c));
  add('freebsd-version', 'freebsd-version -ku', `${c.release}\n${c.release}\n`);
  add('sysctl', 'sysctl ... (one OID at a time)', sysctl(c), 1);
  add('conftxt', 'sysctl -n kern.conftxt', conftxt(c));
  add('dmesg-boot', 'cat /var/run/dmesg.boot', boot);
  add('dmesg', 'dmesg -a', `${boot}${[...(c.extraDmesg ?? [])].map((l) => `${l}\n`).join('')}`);
  add('vmstat-ia.0', 'vmstat -ia', c.vmstat0 ?? vmstat(c, 0, c.bump ?? 0));
  add('load', 'one busy process-spawning worker per CPU for 2s', `load: ${c.ncpu} workers for 2s\n`);
  if (!c.singleSample) add('vmstat-ia.1', 'vmstat -ia', vmstat(c, 1, c.bump ?? 0));
  add('camcontrol-devlist', 'camcontrol devlist', camcontrol(c));
  const cd = cdromSection(c, run);
  add('cdrom', 'dd + mount -t cd9660 -o ro each cdN, cat /fbxen/run, umount', c.cd === 'unread' ? undefined : cd.text, cd.status);
  if (c.flush !== 'none') add('flush', 'dd 4 MiB to /var/tmp, fsync, sync, kernel messages meanwhile', flushSection(c));
  const cpu = cpuidSection(c);
  add('cpuid-xen', 'cpucontrol -i 0x40000000/4 and 0x40000100/4 /dev/cpuctl0', cpu.text, cpu.status);
  const meta = { bundle: 'fbxen-bundle/1', run, phase, 'run-source': c.cd === 'none' ? 'arg' : 'cd', collector: 'fbxen-collect 1.0.0', started: '1700000100', finished: '1700000109', 'fixture-source': source };
  return { meta, index, sections };
}

function writeBundle(dir, b) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'sections'), { recursive: true });
  writeFileSync(join(dir, 'meta'), Object.entries(b.meta).map(([k, v]) => `${k}=${v}\n`).join(''));
  writeFileSync(join(dir, 'index'), b.index.map((l) => `${l}\n`).join(''));
  for (const [name, text] of b.sections) writeFileSync(join(dir, 'sections', `${name}.out`), text);
}

const ALL_PASS = { 'xen-guest': 'pass', 'generic-xenhvm': 'pass', 'vector-callback': 'pass', 'pv-timer': 'pass', 'pv-ipi': 'pass', 'blkfront-flush': 'pass', cdrom: 'pass', netfront: 'inconclusive', migration: 'skip' };

const real111 = readFileSync(join(root, 'fixtures/freebsd/11.1-xl-xen4.8-hvm-dmesg-boot.txt'), 'utf8')
  .split('\n')
  .filter((l) => !l.startsWith('#'))
  .join('\n');

/** name → [case options, expected verdicts, what it shows, evidence substrings per probe] */
const CASES = {
  '10.0-healthy-derived': [{ release: '10.0-RELEASE', xen: '4.1' }, ALL_PASS, '10.0 layout: xen_et0 on motherboard, IPI rows incl. sth, event channel irqs from 768'],
  '11.1-xl-real-dmesg': [
    { release: '11.1-RELEASE-p7', xen: '4.8', dmesgBootText: real111, conftxt: false, cd: 'none', disks: [{ unit: 0, mb: 620, vbd: 768, alias: 'ada0', features: 'default' }, { unit: 1, mb: 10240, vbd: 832, alias: 'ada1', features: 'default' }] },
    { ...ALL_PASS, cdrom: 'skip' },
    'REAL dmesg.boot (pfSense 2.4.3 = FreeBSD 11.1-RELEASE-p7 on xl/Xen 4.8, see fixtures/freebsd/); sysctl, vmstat and the collector sections are derived; no conftxt (pfSense kernel), no CD',
    { 'generic-xenhvm': 'kern.conftxt empty', 'blkfront-flush': 'xbd1 (ada1, device/vbd/832): features: flush, write_barrier' },
  ],
  '12.4-no-pv-ipi-derived': [{ release: '12.4-RELEASE', pvIpi: false }, { ...ALL_PASS, 'pv-ipi': 'fail' }, '12.x without cpuN:<ipi> rows: IPIs on the emulated LAPIC is a failure before 14.0', { 'pv-ipi': '12.4-RELEASE: no cpuN:<ipi>' }],
  '13.2-healthy-derived': [{ release: '13.2-RELEASE', ncpu: 4 }, ALL_PASS, '13.x layout: no sth IPI row (r354637), 4 CPUs'],
  '13.2-legacy-callback-derived': [
    { release: '13.2-RELEASE', callback: 'legacy', timer: 'LAPIC', pvIpi: false },
    { ...ALL_PASS, 'vector-callback': 'fail', 'pv-timer': 'fail', 'pv-ipi': 'fail' },
    'legacy PCI IRQ callback: the fallback message, "xen_et0: vector callbacks unavailable", xenpci0 carries the events, no PV IPIs',
    { 'vector-callback': 'Xen HVM callback vector registration failed (-38)', 'pv-timer': 'kern.eventtimer.timer: LAPIC' },
  ],
  '13.2-lapic-timer-derived': [{ release: '13.2-RELEASE', timer: 'LAPIC' }, { ...ALL_PASS, 'pv-timer': 'fail' }, 'XENTIMER registered but LAPIC chosen as event timer (kern.eventtimer.timer set by hand)', { 'pv-timer': 'kern.eventtimer.timer: LAPIC' }],
  '13.2-hpet-timer-derived': [{ release: '13.2-RELEASE', timer: 'HPET' }, { ...ALL_PASS, 'pv-timer': 'fail' }, 'HPET as event timer', { 'pv-timer': 'kern.eventtimer.timer: HPET' }],
  '14.1-timer-stalled-cpu1-derived': [{ release: '14.1-RELEASE', ncpu: 4, timerStalledCpu: 1, cpuid: 0 }, { ...ALL_PASS, 'pv-timer': 'fail' }, 'XENTIMER registered but xen_et0:c1 does not advance', { 'pv-timer': 'xen_et0:c1 312 -> 312' }],
  '14.1-single-sample-derived': [{ release: '14.1-RELEASE', cpuid: 0, singleSample: true }, { ...ALL_PASS, 'pv-timer': 'inconclusive' }, 'the second vmstat -ia sample is missing: ticking cannot be judged'],
  '14.1-apicv-native-ipi-derived': [{ release: '14.1-RELEASE', ncpu: 4, pvIpi: false, cpuid: 0x3 }, ALL_PASS, '14.x on an APIC-virtualising host: no PV IPI rows, Xen CPUID leaf 4 EAX bits 0+1 set: native IPIs are intended', { 'pv-ipi': 'deliberately native' }],
  '13.2-no-ipi-apicv-host-derived': [{ release: '13.2-RELEASE', pvIpi: false, cpuid: 0x3 }, { ...ALL_PASS, 'pv-ipi': 'inconclusive' }, '13.x without PV IPI rows on an APIC-virtualising host: whether 13.x has the 14.0 behaviour is not pinned'],
  '14.1-no-ipi-no-cpuid-derived': [{ release: '14.1-RELEASE', pvIpi: false }, { ...ALL_PASS, 'pv-ipi': 'inconclusive' }, '14.x without PV IPI rows and without the cpuid-xen section (cpuctl not loaded): cannot tell'],
  '14.1-no-ipi-no-apicv-derived': [{ release: '14.1-RELEASE', pvIpi: false, cpuid: 0 }, { ...ALL_PASS, 'pv-ipi': 'fail' }, '14.x without PV IPI rows although Xen reports no APIC virtualisation'],
  '15.0-healthy-derived': [{ release: '15.0-RELEASE', ncpu: 8, cpuid: 0 }, ALL_PASS, '15 layout: IPI rows r itlb b st sp sw, 8 CPUs, host without APICv'],
  '13.2-disk-no-features-derived': [
    { release: '13.2-RELEASE', disks: [{ unit: 0, mb: 10240, vbd: 51712, features: 'default' }, { unit: 1, mb: 2048, vbd: 51728, features: '' }] },
    { ...ALL_PASS, 'blkfront-flush': 'fail' },
    'xbd1 (xvdb) without a "features:" line and dev.xbd.1.features empty',
    { 'blkfront-flush': 'xbd1 (device/vbd/51728)' },
  ],
  '13.2-flush-error-derived': [{ release: '13.2-RELEASE', flush: 'error' }, { ...ALL_PASS, 'blkfront-flush': 'fail' }, 'features negotiated, but the flush round trip failed with a disk error', { 'blkfront-flush': 'kernel: xbd0: disk error' }],
  '13.2-no-flush-section-derived': [{ release: '13.2-RELEASE', flush: 'none' }, { ...ALL_PASS, 'blkfront-flush': 'inconclusive' }, 'features negotiated, flush round trip not run'],
  '13.2-no-cd-derived': [{ release: '13.2-RELEASE', cd: 'none' }, { ...ALL_PASS, cdrom: 'skip' }, 'no CD drive at all, collected by hand (run-source=arg): nothing says a CD was meant', { cdrom: 'meta run-source=arg' }],
  '13.2-cd-grabbed-by-blkfront-derived': [
    { release: '13.2-RELEASE', cd: 'grabbed', disks: [{ unit: 0, mb: 10240, vbd: 768, alias: 'ada0', features: 'default' }, { unit: 1, mb: 1, vbd: 5632, alias: 'ada2', features: 'default' }] },
    { ...ALL_PASS, cdrom: 'fail' },
    'the CD vbd (hdc, device/vbd/5632) attached by blkfront as xbd1/ada2 instead of the emulated ATAPI cd0',
    { cdrom: 'xbd1 (ada2, device/vbd/5632)' },
  ],
  '13.2-cd-unreadable-derived': [{ release: '13.2-RELEASE', cd: 'unreadable' }, { ...ALL_PASS, cdrom: 'fail' }, 'cd0 present, medium cannot be read'],
  '13.2-cd-not-root-derived': [{ release: '13.2-RELEASE', cd: 'denied' }, { ...ALL_PASS, cdrom: 'inconclusive' }, 'collected over ssh as a normal user: /dev/cd0 cannot be opened (Permission denied)', { cdrom: 'the collector did not run as root' }],
  '13.2-cd-not-read-derived': [{ release: '13.2-RELEASE', cd: 'unread' }, { ...ALL_PASS, cdrom: 'inconclusive' }, 'cd0 present but the cdrom section is missing'],
  '13.2-custom-kernel-no-xenhvm-derived': [
    { release: '13.2-RELEASE', xenhvm: false, timer: 'LAPIC', pvIpi: false, disks: [] },
    { ...ALL_PASS, 'generic-xenhvm': 'fail', 'vector-callback': 'inconclusive', 'pv-timer': 'fail', 'pv-ipi': 'fail', 'blkfront-flush': 'fail' },
    'a custom kernel without options XENHVM / device xenpci on Xen: nothing PV attaches',
    { 'generic-xenhvm': 'kern.conftxt has no options XENHVM and device xenpci' },
  ],
  'kvm-not-xen-derived': [
    { release: '14.1-RELEASE', vmGuest: 'kvm', xenhvm: false, timer: 'LAPIC', disks: [] },
    { 'xen-guest': 'fail', 'generic-xenhvm': 'fail', 'vector-callback': 'skip', 'pv-timer': 'skip', 'pv-ipi': 'skip', 'blkfront-flush': 'skip', cdrom: 'skip', netfront: 'skip', migration: 'skip' },
    'a KVM guest: not Xen at all',
    { 'xen-guest': 'kern.vm_guest: kvm' },
  ],
};

/** Bundles with only some sections: every probe inconclusive (or skip). */
function minimal() {
  return {
    meta: { bundle: 'fbxen-bundle/1', run: 'min-1', phase: 'manual', 'fixture-source': 'derived: a collector that could only run uname' },
    index: ['uname\t0\tuname -a', 'sysctl\t127\tsysctl ...'],
    sections: new Map([
      ['uname', uname({ release: '13.2-RELEASE' })],
      ['sysctl', 'sh: sysctl: not found\n'],
    ]),
  };
}

const written = [];
for (const [name, [opts, expect, what, evidence]] of Object.entries(CASES)) {
  const c = { ...DEFAULTS, ...opts };
  const dir = join(outRoot, name);
  const source = name.endsWith('-derived') ? `derived from the FreeBSD source (freebsd-probes.md): ${what}` : what;
  writeBundle(dir, bundle(c, { run: `fx-${name.replace(/[^A-Za-z0-9._-]/g, '')}`.slice(0, 64), phase: 'boot', source }));
  writeFileSync(join(dir, 'expect.json'), `${JSON.stringify({ description: what, verdicts: expect, evidence: evidence ?? {} }, null, 2)}\n`);
  written.push(name);
}
{
  const dir = join(outRoot, 'minimal-uname-only-derived');
  writeBundle(dir, minimal());
  const verdicts = { 'xen-guest': 'inconclusive', 'generic-xenhvm': 'inconclusive', 'vector-callback': 'inconclusive', 'pv-timer': 'inconclusive', 'pv-ipi': 'inconclusive', 'blkfront-flush': 'inconclusive', cdrom: 'inconclusive', netfront: 'inconclusive', migration: 'skip' };
  writeFileSync(join(dir, 'expect.json'), `${JSON.stringify({ description: 'only uname ran (sysctl missing): no verdict possible', verdicts, evidence: {} }, null, 2)}\n`);
  written.push('minimal-uname-only-derived');
}

// ---- migration pairs: <case>/before and <case>/after ----
const MIGRATIONS = {
  'migration-14.1-ok-derived': [{}, 'pass', 'live migration with a non-verbose kernel: same boot, netfront reprints its backend features, counters keep advancing, disk I/O works'],
  'migration-13.2-device-suspend-failed-derived': [{ extraDmesg: ['xctrl_suspend: device_suspend failed'] }, 'fail', 'a suspend that a device refused (blkfront drain timeout -> EBUSY): "xctrl_suspend: device_suspend failed"'],
  'migration-14.1-rebooted-derived': [{ rebooted: true }, 'fail', 'the guest rebooted instead of resuming: dmesg.boot differs'],
  'migration-14.1-timer-stalled-after-derived': [{ timerStalledCpu: 1 }, 'fail', 'after the migration xen_et0:c1 no longer advances'],
  'migration-14.1-no-flush-after-derived': [{ flush: 'none' }, 'inconclusive', 'after the migration the flush section is missing'],
};
for (const [name, [after, verdict, what]] of Object.entries(MIGRATIONS)) {
  const release = name.includes('13.2') ? '13.2-RELEASE' : '14.1-RELEASE';
  const base = { ...DEFAULTS, release, ncpu: 2, cpuid: 0 };
  const run = `fx-${name}`.slice(0, 64);
  const before = bundle(base, { run, phase: 'pre-migrate', source: `derived from the FreeBSD source (freebsd-probes.md §5): ${what}` });
  const a = { ...base, ...after, bump: 5000 };
  if (after.rebooted) a.dmesgBootText = dmesgBoot(base).replace('Timecounters tick every 10.000 msec', 'Timecounters tick every 10.000 msec\nrandom: unblocking device.');
  a.extraDmesg = [...(after.extraDmesg ?? []), 'xn0: backend features: feature-sg feature-gso-tcp4'];
  const afterBundle = bundle(a, { run, phase: 'post-migrate-1', source: `derived from the FreeBSD source (freebsd-probes.md §5): ${what}` });
  writeBundle(join(outRoot, name, 'before'), before);
  writeBundle(join(outRoot, name, 'after'), afterBundle);
  const verdicts = { ...ALL_PASS, migration: verdict };
  if (after.timerStalledCpu !== undefined) verdicts['pv-timer'] = 'fail';
  if (after.flush === 'none') verdicts['blkfront-flush'] = 'inconclusive';
  writeFileSync(join(outRoot, name, 'expect.json'), `${JSON.stringify({ description: what, verdicts, evidence: {} }, null, 2)}\n`);
  written.push(name);
}
process.stdout.write(`wrote ${written.length} fixtures under fixtures/probes/\n`);
