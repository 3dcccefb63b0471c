/**
 * The probes under PVH with what the host knows (ProbeContext.bootType, from fbxen boot's run record):
 * a domain that is not the type fbxen asked for fails xen-guest on the line that shows it; a PVH guest
 * that did not report machdep.bootmethod is judged PVH from the host's record. Bundles are the derived
 * PVH and HVM fixtures (fixtures/probes/*-pvh-*-derived, 15.0-healthy-derived), edited per case.
 */
import { describe, expect, it } from 'vitest';
import { runProbes } from '../../src/core/verify/index.js';
import type { Bundle, ProbeContext } from '../../src/probes/types.js';
import { listFixtureCases, loadCase } from '../support/verify/fixtures.js';

async function fixture(name: string): Promise<Bundle> {
  const c = listFixtureCases().find((x) => x.name === name);
  if (!c) throw new Error(`no fixture ${name}`);
  return (await loadCase(c)).bundle;
}

/** A copy of the bundle with one section's text changed. */
function edit(b: Bundle, section: string, change: (text: string) => string): Bundle {
  const sections = new Map(b.sections);
  sections.set(section, change(sections.get(section) ?? ''));
  return { ...b, sections };
}

function verdicts(b: Bundle, ctx: ProbeContext = {}) {
  const r = runProbes(b, ctx);
  return Object.fromEntries(r.results.map((x) => [x.id, { verdict: x.verdict, evidence: x.evidence.join('\n') }]));
}

const PVH_RUN: ProbeContext = { bootType: { type: 'pvh', source: 'run.json: fbxen boot --type pvh' } };
const HVM_RUN: ProbeContext = { bootType: { type: 'hvm', source: 'run.json: fbxen boot --type hvm' } };

describe('host and guest disagree on the boot type', () => {
  it('booted as pvh, but the guest was started by a loader (machdep.bootmethod BIOS): xen-guest fails', async () => {
    const hvm = edit(await fixture('14.3-pvh-healthy-derived'), 'sysctl', (t) => t.replace('machdep.bootmethod: PVH', 'machdep.bootmethod: BIOS'));
    const v = verdicts(hvm, PVH_RUN);
    expect(v['xen-guest']!.verdict).toBe('fail');
    expect(v['xen-guest']!.evidence).toMatch(/booted as type pvh \(run\.json: fbxen boot --type pvh\)\nmachdep\.bootmethod: BIOS: the guest was started by firmware and loader\(8\), as an HVM guest/);
  });

  it('booted as pvh, and xenpci0 attached (an old collector, no bootmethod): xen-guest fails on that line', async () => {
    const v = verdicts(await fixture('15.0-healthy-derived'), PVH_RUN);
    expect(v['xen-guest']!.verdict).toBe('fail');
    expect(v['xen-guest']!.evidence).toMatch(/xenpci0: <Xen Platform Device> .*: a PVH domain has no device model and so no Xen platform PCI device; this is an HVM domain/);
  });

  it('booted as hvm, but the guest was entered at the PVH entry point: xen-guest fails', async () => {
    const v = verdicts(await fixture('14.3-pvh-healthy-derived'), HVM_RUN);
    expect(v['xen-guest']!.verdict).toBe('fail');
    expect(v['xen-guest']!.evidence).toMatch(/machdep\.bootmethod: PVH: the guest was entered at the PVH entry point/);
  });

  it('agreeing records pass, and an HVM guest reporting BIOS says it is HVM', async () => {
    expect(verdicts(await fixture('14.3-pvh-healthy-derived'), PVH_RUN)['xen-guest']!.verdict).toBe('pass');
    const hvm = edit(await fixture('15.0-healthy-derived'), 'sysctl', (t) => `${t}machdep.bootmethod: BIOS\n`);
    const v = verdicts(hvm, HVM_RUN);
    expect(v['xen-guest']).toEqual({ verdict: 'pass', evidence: expect.stringContaining('machdep.bootmethod: BIOS (HVM: started by firmware and loader(8))') });
    expect(v.cdrom!.verdict).toBe('pass'); // the HVM claim stands
  });
});

describe('a PVH guest without machdep.bootmethod (collector 1.2.0) is judged from the host record', () => {
  it('vector-callback passes as implicit, cdrom skips, generic-xenhvm needs no xenpci', async () => {
    const old = edit(await fixture('14.3-pvh-healthy-derived'), 'sysctl', (t) => t.replace(/^machdep\.bootmethod: .*\n/m, ''));
    const v = verdicts(old, PVH_RUN);
    expect(v['vector-callback']!.verdict).toBe('pass');
    expect(v['vector-callback']!.evidence).toMatch(/^booted as type pvh \(run\.json: fbxen boot --type pvh\); the guest did not report machdep\.bootmethod\nimplicit under PVH/);
    expect(v.cdrom).toEqual({ verdict: 'skip', evidence: expect.stringMatching(/^PVH has no emulated CD drive/) });
    expect(v['generic-xenhvm']!.verdict).toBe('pass');
    // Without the host record either, the guest cannot be told PVH: the HVM claim's rules apply.
    const alone = verdicts(old);
    expect(alone.cdrom!.verdict).toBe('fail');
  });
});

describe('PVH verdicts drawn from lines, not from absence', () => {
  it('the callback registration failure still fails vector-callback under PVH', async () => {
    const b = edit(await fixture('14.3-pvh-healthy-derived'), 'dmesg-boot', (t) => t.replace('acpi0: <Xen> on motherboard', 'Xen HVM callback vector registration failed (-38). Falling back to emulated device interrupt\nacpi0: <Xen> on motherboard'));
    const v = verdicts(b);
    expect(v['vector-callback']).toEqual({ verdict: 'fail', evidence: 'Xen HVM callback vector registration failed (-38). Falling back to emulated device interrupt' });
  });

  it('a kernel config without options XENHVM fails generic-xenhvm under PVH; a cut one is inconclusive', async () => {
    const pvh = await fixture('14.3-pvh-healthy-derived');
    const noHvm = edit(pvh, 'conftxt', (t) => t.replace('options\tXENHVM\n', ''));
    expect(verdicts(noHvm)['generic-xenhvm']).toEqual({ verdict: 'fail', evidence: expect.stringContaining('kern.conftxt has no options XENHVM') });
    const cut = { ...noHvm, index: noHvm.index.map((e) => (e.name === 'conftxt' ? { ...e, status: 124 } : e)) };
    expect(verdicts(cut)['generic-xenhvm']!.verdict).toBe('inconclusive');
  });

  it('no config text and no hypervisor version line: generic-xenhvm is inconclusive under PVH', async () => {
    const b = edit(edit(await fixture('12.4-pvh-bootmethod-xen-derived'), 'dmesg-boot', (t) => t.replace(/^XEN: Hypervisor version .*\n/m, '')), 'dmesg', (t) => t.replace(/^XEN: Hypervisor version .*\n/m, ''));
    expect(verdicts(b)['generic-xenhvm']!.verdict).toBe('inconclusive');
  });
});
