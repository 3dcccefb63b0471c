import { guestFacts, xenGuestEvidence, type GuestFacts } from './facts.js';
import { xbdUnits } from './parsers/sysctl.js';
import { defineProbe, fail, inconclusive, pass, skip } from './types.js';

interface Disk {
  unit: number;
  /** GEOM name when it differs from xbdN ("ada0"), and the vbd node */
  alias?: string;
  node?: string;
  features: string | undefined;
}

const ERROR_LINE = /disk error|\bstatus: [0-9a-f]+\b|g_vfs_done\(\).*error|BIO_FLUSH.*(fail|error)|xbd\d+: .*(error|fail)/i;

export function blkfrontDisks(f: GuestFacts): Disk[] {
  const disks = new Map<number, Disk>();
  const disk = (u: number) => {
    let d = disks.get(u);
    if (!d) disks.set(u, (d = { unit: u, features: undefined }));
    return d;
  };
  if (f.sysctl) for (const u of xbdUnits(f.sysctl)) disk(u).features = f.sysctl.values[`dev.xbd.${u}.features`]?.trim();
  for (const line of f.dmesgBoot ?? f.dmesg ?? []) {
    let m = /^xbd(\d+): \d+MB <[^>]*> at (\S+)/.exec(line);
    if (m) disk(Number(m[1])).node = m[2]!;
    m = /^xbd(\d+): attaching as (\S+)/.exec(line);
    if (m) disk(Number(m[1])).alias = m[2]!;
    m = /^xbd(\d+): features: (.*)$/.exec(line);
    if (m) disk(Number(m[1])).features ??= m[2]!.trim();
  }
  // A disk seen only in dmesg with no features line negotiated nothing (the line is printed only when non-empty).
  for (const d of disks.values()) if (d.features === undefined && d.node !== undefined) d.features = '';
  return [...disks.values()].sort((a, b) => a.unit - b.unit);
}

export const diskName = (d: Disk) => `xbd${d.unit}${d.alias ? ` (${d.alias}` : ''}${d.node ? `${d.alias ? ', ' : ' ('}${d.node}` : ''}${d.alias || d.node ? ')' : ''}`;

export const blkfrontFlush = defineProbe<GuestFacts>({
  id: 'blkfront-flush',
  claim: 'every blkfront disk negotiated flush or write_barrier, and a flush round trip logged no error',
  sections: ['sysctl', 'dmesg-boot', 'flush'],
  parse: (bundle) => guestFacts(bundle),
  verdict(f) {
    const x = xenGuestEvidence(f);
    if (x && !x.xen) return skip(x.reason);
    const disks = blkfrontDisks(f);
    if (disks.length === 0) {
      if (x?.xen && f.sysctl?.unknown.includes('dev.xbd')) {
        return fail(['sysctl: unknown oid \'dev.xbd\': no blkfront disk attached; the disks are emulated (or hw.xen.disable_pv_disks is set)'], 'boot a GENERIC kernel with the PV disk path: do not set hw.xen.disable_pv_disks, and give the VM a vbd');
      }
      return inconclusive('no dev.xbd sysctls and no xbdN attach lines: no evidence about blkfront disks');
    }
    const evidence: string[] = [];
    const bad: string[] = [];
    for (const d of disks) {
      const feats = (d.features ?? '').split(/,\s*/).filter(Boolean);
      if (d.features === undefined) {
        evidence.push(`${diskName(d)}: features unknown`);
      } else if (feats.includes('flush') || feats.includes('write_barrier')) {
        evidence.push(`${diskName(d)}: features: ${feats.join(', ')}`);
      } else {
        bad.push(`${diskName(d)}: no "features:" line / dev.xbd.${d.unit}.features="${d.features}": the backend offers neither flush nor write_barrier (missing feature-flush-cache and feature-barrier)`);
      }
    }
    if (bad.length) return fail([...bad, ...evidence], `the backend of ${bad.map((b) => b.split(':')[0]).join(', ')} does not offer cache flushes, so fsync is not durable: enable feature-flush-cache in the backend (blkback/qdisk/tapdisk; file-backed vbds on old Xen lack it)`);
    if (disks.some((d) => d.features === undefined)) return inconclusive(...evidence);
    const fl = f.flush;
    if (!fl) return inconclusive(...evidence, 'the flush section is missing: the flush round trip was not exercised');
    const errors = (fl.kernelMessages ?? []).filter((l) => ERROR_LINE.test(l));
    if (fl.write !== 0 || fl.fsync !== 0 || errors.length) {
      return fail([...evidence, `flush round trip: write-status ${fl.write ?? 'none'}, fsync-status ${fl.fsync ?? 'none'}`, ...errors.map((e) => `kernel: ${e}`)]);
    }
    if (fl.kernelMessages === null) return inconclusive(...evidence, 'the flush section does not show the kernel messages logged meanwhile');
    return pass(...evidence, `flush round trip: write, fsync and sync succeeded; ${fl.kernelMessages.length} kernel message(s) meanwhile, none an error`);
  },
  requiresXen: true,
  hint: 'give the VM a backend that offers feature-flush-cache (or feature-barrier); check "xbdN: features:" in dmesg',
});
