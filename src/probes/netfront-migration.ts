/**
 * The network after a live migration or save/restore (issue 18, docs/netfront-design.md §6.4): what
 * migrate-test calls after each iteration with the bundles from before and after and its listener's
 * record. The same xn units at the same nodes, the MAC unchanged (netfront keeps the one it attached
 * with: ether_ifattach runs once), Connected again, and a round trip after the resume byte for byte;
 * plus the time from the resume to the first byte that reached the host. A missing reconnect line is a
 * note (dmesg -a may have wrapped); a state other than Connected or a bad round trip fails.
 */
import type { HostRoundTrip } from '../core/net/roundtrip.js';
import { netFacts, netfrontVerdict } from './netfront.js';
import type { Bundle, NetHostKnowledge } from './types.js';

export interface NetMigrationCheck {
  verdict: 'ok' | 'fail' | 'unknown';
  evidence: string[];
  hint?: string;
  /** ms from the resume to the first byte of the first upload that connected after it (host clock) */
  firstByteAfterResumeMs: number | null;
}

/** The first upload that connected at or after `resumedAt` (ms since the epoch) and when its first byte came. */
export function firstByteAfterResume(rt: HostRoundTrip, resumedAt: number): { ms: number; peer: string } | null {
  const u = rt.uploads.find((x) => x.connectedAt >= resumedAt && x.firstByteAt !== null);
  return u ? { ms: u.firstByteAt! - resumedAt, peer: u.peer } : null;
}

export function netAcrossMigration(before: Bundle, after: Bundle, o: { net?: NetHostKnowledge | undefined; resumedAt?: number | undefined } = {}): NetMigrationCheck {
  const b = netFacts(before);
  const a = netFacts(after);
  const fails: string[] = [];
  const evidence: string[] = [];
  const notes: string[] = [];
  for (const x of b.xns) {
    const y = a.xns.find((n) => n.unit === x.unit);
    const nm = `xn${x.unit}`;
    if (!y) {
      // absent from a bundle that shows interfaces at all is a loss; otherwise the evidence is silent
      if (a.ifaces || a.g.sysctl?.unknown.includes('dev.xn')) fails.push(`${nm} (${x.node ?? 'node unknown'}) was there before the migration and is gone after it`);
      else notes.push(`${nm}: not shown after the migration (no ifconfig section, no dev.xn)`);
      continue;
    }
    if (x.node && y.node && x.node !== y.node) fails.push(`${nm} moved from ${x.node} to ${y.node}`);
    const mb = x.iface?.ether ?? x.mac;
    const ma = y.iface?.ether ?? y.mac;
    if (mb && ma && mb !== ma) fails.push(`${nm} ether ${mb} before, ${ma} after`);
    else if (ma) evidence.push(`${nm} ether ${ma} unchanged`);
    if (y.connects > x.connects) evidence.push(`${nm} reconnected: ${y.connects - x.connects} new "backend features:" line(s) after the resume`);
    // not decisive: the round trip and the state below say whether the network came back
    else evidence.push(`note: ${nm}: no new "backend features:" line after the resume (netfront did not reconnect, or dmesg -a wrapped)`);
  }
  const probe = netfrontVerdict(a, { net: o.net });
  if (probe.verdict === 'fail') fails.push(...probe.evidence);
  else evidence.push(...probe.evidence);
  let first: ReturnType<typeof firstByteAfterResume> = null;
  const rt = o.net?.roundTrip;
  if (o.resumedAt !== undefined && rt && !('arranged' in rt)) {
    first = firstByteAfterResume(rt, o.resumedAt);
    evidence.push(first ? `first byte after the resume: ${first.ms} ms (from ${first.peer})` : 'no byte reached the host after the resume');
  }
  const ms = first?.ms ?? null;
  if (fails.length) return { verdict: 'fail', evidence: [...fails, ...evidence, ...notes], hint: probe.hint ?? 'the network did not come back as it was after the migration: compare `ifconfig xn0` and `sysctl dev.xn` before and after, and the vif on the destination host', firstByteAfterResumeMs: ms };
  if (probe.verdict !== 'pass' || notes.length) return { verdict: 'unknown', evidence: [...notes, ...evidence], firstByteAfterResumeMs: ms };
  return { verdict: 'ok', evidence, firstByteAfterResumeMs: ms };
}
