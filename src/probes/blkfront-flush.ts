import { completeBoot, guestFacts, xenGuestEvidence, type GuestFacts } from './facts.js';
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
  const boot = completeBoot(f);
  for (const line of boot?.lines ?? f.dmesgBoot ?? f.dmesg ?? []) {
    let m = /^xbd(\d+): \d+MB <[^>]*> at (\S+)/.exec(line);
    if (m) disk(Number(m[1])).node = m[2]!;
    m = /^xbd(\d+): attaching as (\S+)/.exec(line);
    if (m) disk(Number(m[1])).alias = m[2]!;
    m = /^xbd(\d+): features: (.*)$/.exec(line);
    if (m) disk(Number(m[1])).features ??= m[2]!.trim();
  }
  // A disk seen only in dmesg with no features line negotiated nothing (the line is printed only when
  // non-empty, right after the attach) - when the messages run past the root mount, not when cut short.
  if (boot) for (const d of disks.values()) if (d.features === undefined && d.node !== undefined) d.features = '';
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
    const rt = flushRoundTrip(f);
    if (rt.verdict === 'fail') {
      return fail([...rt.evidence, ...evidence], 'the disks negotiated cache flushes, but the write/fsync round trip reported an error: look at the lines above and at the backend\'s storage (dom0 kernel log, the vbd\'s file or volume)');
    }
    if (rt.verdict === 'unknown') return inconclusive(...evidence, ...rt.evidence);
    return pass(...evidence, ...rt.evidence);
  },
  requiresXen: true,
  hint: 'give the VM a backend that offers feature-flush-cache (or feature-barrier); check "xbdN: features:" in dmesg',
});

/**
 * What the flush section shows about the write + fsync round trip. `fail` only on a line that reports an
 * error (a non-zero status of the collector's, an I/O error, a disk error logged meanwhile); a section
 * in another format is read for what it holds, and what it lacks makes the answer `unknown`.
 */
export function flushRoundTrip(f: GuestFacts): { verdict: 'ok' | 'fail' | 'unknown'; evidence: string[] } {
  const fl = f.flush;
  const st = f.status.get('flush');
  const exited = st === undefined ? '' : st === 124 ? ' (the collector stopped the section at its time limit: index status 124)' : ` (index status ${st})`;
  if (!fl) return { verdict: 'unknown', evidence: [`the flush section is ${f.present.has('flush') ? 'unreadable' : 'missing'}: the flush round trip was not exercised`] };
  const errors = [...(fl.kernelMessages ?? []).filter((l) => ERROR_LINE.test(l)).map((e) => `kernel: ${e}`), ...fl.ioErrors.map((e) => `flush section: ${e}`)];
  const bad = (['write', 'fsync'] as const).filter((k) => fl[k] !== null && fl[k] !== 0);
  if (errors.length || bad.length) {
    return { verdict: 'fail', evidence: [...bad.map((k) => `flush round trip: ${k}-status ${fl[k]}`), ...errors] };
  }
  const collectorFormat = fl.write !== null || fl.fsync !== null || fl.sync !== null || fl.kernelMessages !== null;
  if (!collectorFormat) {
    const read = [
      ...(fl.ddBytes !== null ? [`dd wrote ${fl.ddBytes} bytes`] : []),
      ...(st !== undefined ? [`the section's command exited ${st} (index)`] : []),
      ...fl.otherErrors.map((e) => `it says: ${e}`),
    ];
    return {
      verdict: 'unknown',
      evidence: [
        `the flush section is not in fbxen-collect's format (no write-status/fsync-status lines, no kernel-messages-begin/end block)${read.length ? `: ${read.join('; ')}` : ''}`,
        'expected: write-status N and fsync-status N after the write and fsync, then the kernel messages logged meanwhile; without an fsync result and those messages the round trip is not shown',
      ],
    };
  }
  const lacking = [fl.write === null && 'write-status', fl.fsync === null && 'fsync-status', fl.kernelMessages === null && 'kernel-messages-begin/end'].filter(Boolean);
  if (lacking.length) {
    return { verdict: 'unknown', evidence: [`the flush section has no ${lacking.join(', ')} line${exited}: ${fl.fsync === null && fl.otherErrors.length ? fl.otherErrors[0] : 'that step was not shown'}`] };
  }
  return { verdict: 'ok', evidence: [`flush round trip: write, fsync and sync succeeded; ${fl.kernelMessages!.length} kernel message(s) meanwhile, none an error`] };
}
