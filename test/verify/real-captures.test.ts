/**
 * The real FreeBSD captures (fixtures/freebsd/, copied with their source lines) through the parsers and
 * probes: what they show is read correctly, and what they cannot show is never a pass.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readBundle, runProbes, type Bundle } from '../../src/core/verify/index.js';
import { parseVmstat } from '../../src/probes/parsers/vmstat.js';

const DIR = join(import.meta.dirname, '../../fixtures/freebsd');
const capture = (name: string) => {
  const text = readFileSync(join(DIR, name), 'utf8');
  expect(text).toMatch(/^# source: \S/m); // the source line travels with the capture
  return text.split('\n').filter((l) => !l.startsWith('#')).join('\n');
};
const bundleOf = (sections: Record<string, string>): Bundle => ({ meta: { bundle: 'fbxen-bundle/1', run: 'cap', phase: 'manual' }, index: [], sections: new Map(Object.entries(sections)) });

describe('real captures', () => {
  it('13-stable bare-metal vmstat -i: every complete row parsed, the truncated last row skipped', () => {
    const v = parseVmstat(capture('13-stable-baremetal-vmstat-i-BASELINE-not-xen.txt'));
    expect(v.rows).toHaveLength(25);
    expect(v.rows[0]).toEqual({ name: 'irq1: atkbd0', irq: 1, source: 'atkbd0', total: 2 });
    expect(v.rows.find((r) => r.source === 'cpu7:timer')).toEqual({ name: 'cpu7:timer', irq: null, source: 'cpu7:timer', total: 4094 });
    expect(v.rows.find((r) => r.source === 'nvme0:io3')?.irq).toBe(147);
    expect(v.rows.some((r) => r.source.startsWith('em0'))).toBe(false);
  });

  it('the bare-metal baseline gives no Xen pass', () => {
    const report = runProbes(bundleOf({ 'vmstat-ia.0': capture('13-stable-baremetal-vmstat-i-BASELINE-not-xen.txt') }));
    for (const r of report.results) expect(r.verdict).not.toBe('pass');
  });

  it('11.1 on xl: the boot messages alone prove Xen, XENHVM+xenpci and the flush features of both disks', () => {
    const boot = capture('11.1-xl-xen4.8-hvm-dmesg-boot.txt');
    const report = runProbes(bundleOf({ 'dmesg-boot': boot }));
    const v = Object.fromEntries(report.results.map((r) => [r.id, r]));
    expect(v['xen-guest']!.verdict).toBe('pass');
    expect(v['xen-guest']!.evidence).toContain('XEN: Hypervisor version 4.8 detected.');
    expect(v['generic-xenhvm']!.verdict).toBe('pass');
    expect(v['vector-callback']!.verdict).toBe('pass'); // xen_et0 attached: it needs the vector callback
    expect(v['pv-timer']!.verdict).toBe('inconclusive'); // no sysctl, no vmstat: cannot say it ticks
    expect(v['blkfront-flush']!.verdict).toBe('inconclusive'); // negotiated, but no flush round trip
    expect(v['blkfront-flush']!.evidence.slice(0, 2)).toEqual(['xbd0 (ada0, device/vbd/768): features: flush, write_barrier', 'xbd1 (ada1, device/vbd/832): features: flush, write_barrier']);
  });

  it('10.3-RELEASE on EC2, only the head of dmesg (fixtures/probes/10.3-ec2-real-dmesg-head): Xen proven, nothing fails', async () => {
    const b = await readBundle(join(DIR, '../probes/10.3-ec2-real-dmesg-head'));
    expect(b.meta['fixture-source']).toMatch(/^REAL: .*nomadlogic/);
    const v = Object.fromEntries(runProbes(b).results.map((r) => [r.id, r]));
    expect(v['xen-guest']!.evidence).toEqual(['XEN: Hypervisor version 4.2 detected.']);
    for (const r of Object.values(v)) expect({ id: r.id, verdict: r.verdict }).not.toMatchObject({ verdict: 'fail' });
    // the kernel's XENHVM shows in the version line; xenpci0 would attach after the point the capture ends
    expect(v['generic-xenhvm']!.evidence.join('\n')).toContain('dmesg.boot ends before the drivers attach');
  });

  it('10.0-CURRENT PVH (truncated capture): nothing passes', () => {
    const report = runProbes(bundleOf({ 'dmesg-boot': capture('10.0-CURRENT-xl-pvh-experimental-dmesg-head.txt') }));
    for (const r of report.results) expect(r.verdict).not.toBe('pass');
  });
});
