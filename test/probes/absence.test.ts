/**
 * Absence of evidence is never negative evidence: evidence cut short anywhere (a head-only dmesg, a
 * vmstat listing stopped before its Total row, a flush section in another format) never turns a probe
 * into `fail`; `skip` only where the bundle proves the feature does not apply; and messages name what
 * the evidence holds (which CPUID leaf is missing).
 */
import fc from 'fast-check';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readBundle, runProbes, type Bundle } from '../../src/core/verify/index.js';
import { explainCpuidSection, parseCpuidSection, parseFlushSection } from '../../src/probes/parsers/text-sections.js';
import { parseVmstat } from '../../src/probes/parsers/vmstat.js';
import { FIXTURES } from '../support/verify/fixtures.js';

const load = (name: string) => readBundle(join(FIXTURES, name));
const withSections = (b: Bundle, sections: Record<string, string>, status: Record<string, number> = {}): Bundle => ({
  meta: { ...b.meta },
  index: b.index.map((e) => (e.name in status ? { ...e, status: status[e.name]! } : e)),
  sections: new Map([...b.sections, ...Object.entries(sections)]),
});
const verdict = (b: Bundle, id: string, opts: Parameters<typeof runProbes>[1] = {}) => runProbes(b, opts).results.find((r) => r.id === id)!;

describe('evidence cut short is never a failure (property)', () => {
  it('boot messages cut at any line (11.1, real capture, no conftxt): generic-xenhvm and blkfront-flush never fail', async () => {
    const base = await load('11.1-xl-real-dmesg');
    const boot = base.sections.get('dmesg-boot')!.split('\n');
    expect(verdict(base, 'generic-xenhvm').verdict).toBe('pass');
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: boot.length - 1 }), async (k) => {
        const head = `${boot.slice(0, k).join('\n')}\n`;
        // dmesg -a holds the same boot: cut both, as a wrapped or truncated log would be
        const b = withSections(base, { 'dmesg-boot': head, dmesg: head });
        for (const id of ['generic-xenhvm', 'blkfront-flush', 'vector-callback']) expect({ k, id, v: verdict(b, id).verdict }).not.toMatchObject({ v: 'fail' });
      }),
      { numRuns: 60 },
    );
  });

  it('the second vmstat -ia cut before its Total row at any line: pv-timer and pv-ipi never fail', async () => {
    const base = await load('13.2-healthy-derived');
    const rows = base.sections.get('vmstat-ia.1')!.split('\n');
    const total = rows.findIndex((l) => l.startsWith('Total'));
    expect(total).toBeGreaterThan(0);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: total - 1 }), fc.constantFrom(0, 124), async (k, st) => {
        const b = withSections(base, { 'vmstat-ia.1': `${rows.slice(0, k).join('\n')}\n` }, { 'vmstat-ia.1': st });
        for (const id of ['pv-timer', 'pv-ipi']) expect({ k, id, v: verdict(b, id).verdict }).not.toMatchObject({ v: 'fail' });
      }),
      { numRuns: 60 },
    );
  });

  it('a flush section of arbitrary lines without an error or a non-zero status never fails blkfront-flush', async () => {
    const base = await load('13.2-healthy-derived');
    const line = fc.oneof(
      fc.stringMatching(/^[ -~]{0,50}$/).filter((l) => !/error|-status [1-9]|status: [0-9a-f]/i.test(l)),
      fc.constantFrom('write-status 0', 'fsync-status 0', 'sync-status 0', 'kernel-messages-begin', 'kernel-messages-end', 'fsync: not found', '4194304 bytes transferred in 0.05 secs (1 bytes/sec)', 'fbxen-collect: stopped after 60s'),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(line, { maxLength: 12 }), fc.constantFrom(0, 1, 124), async (lines, st) => {
        const b = withSections(base, { flush: `${lines.join('\n')}\n` }, { flush: st });
        const r = verdict(b, 'blkfront-flush');
        expect({ lines, v: r.verdict }).not.toMatchObject({ v: 'fail' });
        // a pass needs the collector's whole round trip
        if (r.verdict === 'pass') expect(lines).toEqual(expect.arrayContaining(['write-status 0', 'fsync-status 0', 'kernel-messages-begin', 'kernel-messages-end']));
      }),
      { numRuns: 300 },
    );
  });
});

describe('flush section parser', () => {
  it('reads dd\'s byte count in FreeBSD (old and new) and GNU wording, and EIO lines, in any format (property)', () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 40 }), fc.constantFrom('bsd-old', 'bsd-new', 'gnu'), fc.boolean(), (n, style, eio) => {
        const dd = { 'bsd-old': `${n} bytes transferred in 0.052 secs (1 bytes/sec)`, 'bsd-new': `${n} bytes (${n} B, ${n} B) transferred 0.052s, 80 MB/s`, gnu: `${n} bytes (${n} B) copied, 0.05 s, 80 MB/s` }[style];
        const text = `${eio ? 'dd: /var/tmp/f: Input/output error\n' : ''}4+0 records in\n4+0 records out\n${dd}\n`;
        const f = parseFlushSection(text);
        expect(f).toMatchObject({ ddBytes: n, write: null, fsync: null, kernelMessages: null });
        expect(f.ioErrors).toEqual(eio ? ['dd: /var/tmp/f: Input/output error'] : []);
      }),
    );
  });

  it('kernel lines inside the collector\'s block are not taken for the commands\' own lines', () => {
    const f = parseFlushSection('write-status 0\nfsync-status 0\nsync-status 0\nkernel-messages-begin\nxbd0: disk error cmd=write 1-8 status: ffffffff\nkernel-messages-end\n');
    expect(f.kernelMessages).toEqual(['xbd0: disk error cmd=write 1-8 status: ffffffff']);
    expect(f.ioErrors).toEqual([]);
  });
});

describe('skip only when the bundle proves it does not apply: the CD', () => {
  it('no cdN: skip when the collector was started by hand (run-source=arg), fail when the run record says a CD was attached', async () => {
    const b = await load('13.2-no-cd-derived');
    expect(b.meta['run-source']).toBe('arg');
    expect(verdict(b, 'cdrom').verdict).toBe('skip');
    const r = verdict(b, 'cdrom', { cdAttached: 'fbxen boot attached a CD drive (run record of run r1)' });
    expect(r.verdict).toBe('fail');
    expect(r.evidence).toContain('fbxen boot attached a CD drive (run record of run r1)');
    expect(r.hint).toMatch(/emulated IDE CD-ROM/);
  });

  it('the host\'s run record wins over the guest\'s meta: run-source=arg cannot turn the fail into a skip', async () => {
    const b = await load('13.2-no-cd-derived');
    const r = verdict({ ...b, meta: { ...b.meta, 'run-source': 'arg', medium: 'x'.repeat(5000) } }, 'cdrom', { cdAttached: 'fbxen boot attached a CD drive to this domain' });
    expect(r.verdict).toBe('fail');
    expect(Math.max(...r.evidence.map((e) => e.length))).toBeLessThan(400); // a guest's meta value is cut short in the report
  });

  it('no cdN with meta run-source=cd (a collector older than the medium key): fail, naming the key', async () => {
    const b = await load('13.2-no-cd-derived');
    const r = verdict({ ...b, meta: { ...b.meta, 'run-source': 'cd' } }, 'cdrom');
    expect(r.verdict).toBe('fail');
    expect(r.evidence.join('\n')).toContain('meta run-source=cd');
  });
});

describe('an empty sysctl value is no value', () => {
  it('"kern.eventtimer.timer: " (cut short) is not a timer other than XENTIMER', async () => {
    const base = await load('13.2-healthy-derived');
    const sysctl = base.sections.get('sysctl')!.replace(/^kern\.eventtimer\.timer: .*$/m, 'kern.eventtimer.timer: ');
    const r = verdict(withSections(base, { sysctl }), 'pv-timer');
    expect(r.verdict).toBe('inconclusive');
    expect(r.evidence[0]).toContain('empty value');
  });
});

describe('a cdrom section in plain command output', () => {
  it('a hand-run dd of cd0 is no read result: inconclusive, saying which line was expected and the index status', async () => {
    const base = await load('13.2-healthy-derived');
    const b = withSections(base, { cdrom: '16+0 records in\n16+0 records out\n32768 bytes transferred in 0.01 secs (3276800 bytes/sec)\n' });
    const r = verdict(b, 'cdrom');
    expect(r.verdict).toBe('inconclusive');
    expect(r.evidence.at(-1)).toBe('the cdrom section has no "cd0 read-status N" line (fbxen-collect\'s format) for cd0; the section exited 0 (index): the medium\'s read is not shown');
  });
});

describe('CPUID messages say what the section holds', () => {
  const line = (leaf: number, ...regs: number[]) => `cpuid level 0x${leaf.toString(16)}: ${regs.map((r) => `0x${r.toString(16).padStart(8, '0')}`).join(' ')}`;
  const XEN = [0x566e6558, 0x65584d4d, 0x4d4d566e];
  // "Microsoft Hv" as EBX, ECX, EDX
  const HV = [0x7263694d, 0x666f736f, 0x76482074];

  it('leaf 0x40000004 without its signature leaf: names the missing leaf and why it matters', () => {
    const t = line(0x40000004, 3, 0, 0, 0);
    expect(parseCpuidSection(t)).toBeUndefined();
    expect(explainCpuidSection(t)).toMatch(/has leaf 0x40000004 but not the signature leaf 0x40000000 .*viridian.*0x40000100/);
  });

  it('viridian on: Hyper-V\'s signature at 0x40000000 and no Xen one at 0x40000100 is said so; with it, Xen\'s leaves are read there', () => {
    const hvOnly = [line(0x40000000, 0x40000006, ...HV), line(0x40000004, 0, 0, 0, 0)].join('\n');
    expect(explainCpuidSection(hvOnly)).toContain('leaf 0x40000000 is "Microsoft Hv", not Xen\'s');
    const both = [hvOnly, line(0x40000100, 0x40000105, ...XEN), line(0x40000104, 3, 0, 0, 0)].join('\n');
    expect(parseCpuidSection(both)).toEqual({ base: 0x40000100, leaf4eax: 3 });
  });

  it('any set of leaves gives either Xen\'s leaf 4 or a message naming what is there (property)', () => {
    const leaf = fc.constantFrom(0x40000000, 0x40000004, 0x40000100, 0x40000104, 0x40000001);
    const regs = fc.oneof(fc.constant(XEN), fc.constant(HV), fc.tuple(fc.nat(), fc.nat(), fc.nat()));
    fc.assert(
      fc.property(fc.array(fc.tuple(leaf, fc.nat(), regs), { maxLength: 6 }), fc.string({ maxLength: 40 }), (rows, noise) => {
        const t = [noise, ...rows.map(([l, a, r]) => line(l, a, ...r))].join('\n');
        if (parseCpuidSection(t)) return;
        const msg = explainCpuidSection(t);
        expect(msg).toMatch(/^the cpuid-xen section\b/);
        if (rows.length) for (const [l] of rows) expect(msg).toContain(`0x${l.toString(16)}`);
      }),
      { numRuns: 300 },
    );
  });

  it('the Xen signature without leaf 4, and a section with no cpuid line at all', () => {
    expect(explainCpuidSection(line(0x40000000, 0x40000105, ...XEN))).toMatch(/Xen signature at 0x40000000 but not leaf 0x40000004/);
    expect(explainCpuidSection('cpucontrol: /dev/cpuctl0: Permission denied\n')).toBe('the cpuid-xen section has no "cpuid level 0x...: ..." line (cpucontrol -i output); it says: cpucontrol: /dev/cpuctl0: Permission denied');
  });
});

describe('vmstat listing completeness', () => {
  it('complete only with its Total row', () => {
    expect(parseVmstat('interrupt total rate\nirq1: atkbd0   2   0\nTotal  2  0\n').complete).toBe(true);
    expect(parseVmstat('interrupt total rate\nirq1: atkbd0   2   0\n').complete).toBe(false);
  });
});

describe('evidence quoted from the guest is bounded', () => {
  it('10,000 disk errors logged during the flush: the verdict is fail, with at most 51 evidence lines of at most 1,000 characters', async () => {
    const base = await load('13.2-healthy-derived');
    const errors = Array.from({ length: 10_000 }, (_, i) => `xbd0: disk error cmd=write ${i}-${i + 8} status: ffffffff ${'x'.repeat(i === 0 ? 5000 : 10)}`);
    const b = withSections(base, { flush: `write-status 0\nfsync-status 0\nsync-status 0\nkernel-messages-begin\n${errors.join('\n')}\nkernel-messages-end\n` });
    const r = verdict(b, 'blkfront-flush');
    expect(r.verdict).toBe('fail');
    expect(r.evidence.length).toBe(51);
    expect(r.evidence.at(-1)).toMatch(/^\(\+\d+ more lines of evidence\)$/);
    expect(Math.max(...r.evidence.map((e) => e.length))).toBeLessThanOrEqual(1000);
  });
});
