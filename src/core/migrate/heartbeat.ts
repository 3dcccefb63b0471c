/**
 * The guest heartbeat (guest/fbxen-heartbeat) and the downtime it reveals.
 *
 * Lines on the console (or over ssh), amid kernel noise:
 *   FBXEN1 HBINFO <run> <timecounter> <frequency-hz> <mask> <period-ms> <check>
 *   FBXEN1 HB <run> <seq> <wall-s> <counter> <check>
 * `seq` counts beats the guest wrote (1, 2, ...), `wall-s` is `date -u +%s`, `counter` the raw value of
 * kern.timecounter.hardware's counter (sysctl kern.timecounter.tc.<name>.counter), which wraps at mask+1.
 * check = (7*seq + 3*wall + counter) mod 65521 (HBINFO: (frequency + 3*mask + 7*period) mod 65521):
 * plain sh arithmetic in the guest, no fork; a line whose check fails is noise.
 *
 * How a gap gets to within 20 ms (docs/migrate-test.md has the long form):
 * - within a stretch where the counter runs continuously (consecutive beats agree with the wall seconds),
 *   beat times come from the counter: nanosecond-ish resolution;
 * - across a break of the counter (another host, a restore that restarts the clock source), each side is
 *   pinned to the wall clock by intersecting, over all its beats, "wall second s was showing at counter
 *   time t": the offset interval shrinks to about one beat spacing (~10-15 ms), so a gap between two
 *   stretches is known to within half a spacing per side;
 * - beats lost on the console (a reattach after the migration) are counted by `seq` and taken out: the
 *   downtime is the gap minus the spacing of every beat that should have come in between;
 * - the pause began somewhere in the spacing after the last beat: half a spacing (~6 ms) of the bound.
 */
import { z } from 'zod';

export const HEARTBEAT_MODULUS = 65521;
const TOKEN = '[A-Za-z0-9][A-Za-z0-9._-]{0,63}';
const HB_RE = new RegExp(`FBXEN1 HB (${TOKEN}) ([1-9][0-9]{0,9}) ([0-9]{1,12}) ([0-9]{1,20}) ([0-9]{1,5})\\s*$`);
const DISK_RE = new RegExp(`FBXEN1 HBDISK (${TOKEN}) ([1-9][0-9]{0,9}) (ok|bad) ([0-9]{1,5})\\s*$`);
const INFO_RE = new RegExp(`FBXEN1 HBINFO (${TOKEN}) ([A-Za-z0-9._-]{1,32}) ([1-9][0-9]{0,15}) ([1-9][0-9]{0,20}) ([1-9][0-9]{0,4}) ([0-9]{1,5})\\s*$`);
// eslint-disable-next-line no-control-regex
const NOISE_RE = /\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]/g;

export interface StampedLine {
  /** host arrival time, ms since the epoch (console capture), or undefined when unknown */
  hostMs?: number | undefined;
  text: string;
}

export interface Beat {
  seq: number;
  wall: number;
  counter: bigint;
  hostMs?: number | undefined;
}

export interface HeartbeatInfo {
  timecounter: string;
  frequency: number;
  /** counter modulus = mask + 1 */
  modulus: bigint;
  periodMs: number;
}

const BeatSchema = z.object({ seq: z.number().int().positive(), wall: z.number().int().nonnegative(), counter: z.bigint().nonnegative() });

export function beatCheck(seq: number, wall: number, counter: bigint): number {
  return Number((7n * BigInt(seq) + 3n * BigInt(wall) + counter) % BigInt(HEARTBEAT_MODULUS));
}

export function infoCheck(frequency: number, mask: bigint, periodMs: number): number {
  return Number((BigInt(frequency) + 3n * mask + 7n * BigInt(periodMs)) % BigInt(HEARTBEAT_MODULUS));
}

export function formatBeat(run: string, b: { seq: number; wall: number; counter: bigint }): string {
  return `FBXEN1 HB ${run} ${b.seq} ${b.wall} ${b.counter} ${beatCheck(b.seq, b.wall, b.counter)}`;
}

export function formatDiskRound(run: string, round: number, ok: boolean): string {
  return `FBXEN1 HBDISK ${run} ${round} ${ok ? 'ok' : 'bad'} ${(7 * round + (ok ? 1 : 2)) % HEARTBEAT_MODULUS}`;
}

export function formatInfo(run: string, i: { timecounter: string; frequency: number; mask: bigint; periodMs: number }): string {
  return `FBXEN1 HBINFO ${run} ${i.timecounter} ${i.frequency} ${i.mask} ${i.periodMs} ${infoCheck(i.frequency, i.mask, i.periodMs)}`;
}

export interface DiskRound {
  round: number;
  ok: boolean;
  hostMs?: number | undefined;
}

export interface ParsedHeartbeat {
  info: HeartbeatInfo | undefined;
  /** --load disk: write + fsync + read-back + compare rounds, in round order */
  disk: DiskRound[];
  /** one per seq (the first good copy), in seq order */
  beats: Beat[];
  /** lines that looked like heartbeat lines but failed their check or grammar */
  rejected: number;
}

/** Picks the heartbeat lines of `run` out of console text; tolerant of noise, control bytes and duplicates. */
export function parseHeartbeat(lines: readonly StampedLine[], run: string): ParsedHeartbeat {
  let info: HeartbeatInfo | undefined;
  const bySeq = new Map<number, Beat>();
  const disk = new Map<number, DiskRound>();
  let rejected = 0;
  for (const { text: raw, hostMs } of lines) {
    if (!raw.includes('FBXEN1 HB')) continue;
    let text = /[\x00-\x1f\x7f]/.test(raw) ? raw.replace(NOISE_RE, '') : raw;
    // A kernel message may land before ours on the same line; the last start is the one that can be whole.
    const at = text.lastIndexOf('FBXEN1 HB');
    text = text.slice(at);
    let m = HB_RE.exec(text);
    if (m) {
      if (m[1] !== run) continue;
      const seq = Number(m[2]);
      const wall = Number(m[3]);
      const counter = BigInt(m[4]!);
      const parsed = BeatSchema.safeParse({ seq, wall, counter });
      if (!parsed.success || beatCheck(seq, wall, counter) !== Number(m[5])) {
        rejected++;
        continue;
      }
      if (!bySeq.has(seq)) bySeq.set(seq, { seq, wall, counter, ...(hostMs !== undefined ? { hostMs } : {}) });
      continue;
    }
    m = DISK_RE.exec(text);
    if (m) {
      if (m[1] !== run) continue;
      const round = Number(m[2]);
      const ok = m[3] === 'ok';
      if ((7 * round + (ok ? 1 : 2)) % HEARTBEAT_MODULUS !== Number(m[4])) {
        rejected++;
        continue;
      }
      if (!disk.has(round)) disk.set(round, { round, ok, ...(hostMs !== undefined ? { hostMs } : {}) });
      continue;
    }
    m = INFO_RE.exec(text);
    if (m) {
      if (m[1] !== run) continue;
      const frequency = Number(m[3]);
      const mask = BigInt(m[4]!);
      const periodMs = Number(m[5]);
      if (infoCheck(frequency, mask, periodMs) !== Number(m[6]) || !Number.isSafeInteger(frequency)) {
        rejected++;
        continue;
      }
      info ??= { timecounter: m[2]!, frequency, modulus: mask + 1n, periodMs };
      continue;
    }
    rejected++;
  }
  return { info, beats: [...bySeq.values()].sort((a, b) => a.seq - b.seq), disk: [...disk.values()].sort((a, b) => a.round - b.round), rejected };
}

export type DowntimeMethod = 'guest-counter' | 'guest-wall-anchored' | 'host-arrival';

export interface DowntimeEstimate {
  /** the guest was not running for this long (gap minus the normal spacing of the beats it spans) */
  downtimeMs: number;
  /** ± bound of downtimeMs; null when only host arrival times were usable (an upper bound then) */
  uncertaintyMs: number | null;
  method: DowntimeMethod;
  /** the largest gap itself, and the beats on each side of it */
  gapMs: number;
  afterSeq: number;
  beforeSeq: number;
  /** beats written by the guest but never seen (lost on the console) inside the gap */
  lostBeats: number;
  /** normal beat spacing (median) */
  spacingMs: number;
  beats: number;
  /** guest wall clock minus host clock, before and after the gap (ms), when host arrival times exist */
  clockOffsetMs: { before: number | null; after: number | null };
}

interface Segment {
  beats: Beat[];
  /** seconds since the segment's first beat, from the counter */
  t: number[];
  /** offset o such that wall = t + o, as an interval; undefined when the constraints do not intersect */
  oLo: number | undefined;
  oHi: number | undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))]!;
}

/**
 * Splits the beats into stretches where the counter ran continuously. Two consecutive beats continue a
 * stretch when the counter step (taken modulo the wrap) agrees with the wall seconds: |dt - dw| < 1 s
 * (the wall clock has 1 s resolution) and the step is below half a wrap, where the modulo is unambiguous.
 */
function segments(beats: Beat[], info: HeartbeatInfo): Segment[] {
  const out: Segment[] = [];
  const halfWrap = Number(info.modulus) / info.frequency / 2;
  let cur: Segment | undefined;
  for (let i = 0; i < beats.length; i++) {
    const b = beats[i]!;
    if (cur && i > 0) {
      const p = beats[i - 1]!;
      const dc = (((b.counter - p.counter) % info.modulus) + info.modulus) % info.modulus;
      const dt = Number(dc) / info.frequency;
      const dw = b.wall - p.wall;
      if (dw >= 0 && dt < halfWrap && dw < halfWrap && Math.abs(dt - dw) < 1) {
        cur.beats.push(b);
        cur.t.push(cur.t.at(-1)! + dt);
        continue;
      }
    }
    cur = { beats: [b], t: [0], oLo: undefined, oHi: undefined };
    out.push(cur);
  }
  // A counter that jumped across the gap (another host's clock) can still pass the 1 s test above by
  // chance; the wall seconds on both sides then disagree with it. Such a stretch is split at its largest
  // step, until every stretch is consistent with the wall clock.
  const result: Segment[] = [];
  const queue = [...out];
  while (queue.length) {
    const s = queue.shift()!;
    anchor(s);
    if (s.oLo !== undefined || s.beats.length < 2) {
      result.push(s);
      continue;
    }
    // Split where both sides become consistent with the wall clock. Where several places would do (a
    // jump that lands near a normal step), the migration is where the host saw the longest silence
    // (arrival times), or else where the counter step is least like the beats it spans.
    const n = s.beats.length;
    const preLo: number[] = [];
    const preHi: number[] = [];
    let lo = -Infinity;
    let hi = Infinity;
    for (let j = 0; j < n; j++) {
      lo = Math.max(lo, s.beats[j]!.wall - s.t[j]!);
      hi = Math.min(hi, s.beats[j]!.wall + 1 - s.t[j]!);
      preLo.push(lo);
      preHi.push(hi);
    }
    const sufOk: boolean[] = new Array(n).fill(false);
    lo = -Infinity;
    hi = Infinity;
    for (let j = n - 1; j >= 0; j--) {
      lo = Math.max(lo, s.beats[j]!.wall - s.t[j]!);
      hi = Math.min(hi, s.beats[j]!.wall + 1 - s.t[j]!);
      sufOk[j] = lo <= hi + ANCHOR_SLACK_S;
    }
    const unit: number[] = [];
    for (let j = 1; j < n; j++) if (s.beats[j]!.seq - s.beats[j - 1]!.seq === 1) unit.push(s.t[j]! - s.t[j - 1]!);
    const p = unit.length ? median(unit) : 0;
    const odd = (j: number) => Math.abs(s.t[j]! - s.t[j - 1]! - (s.beats[j]!.seq - s.beats[j - 1]!.seq) * p);
    const silence = (j: number) => {
      const a = s.beats[j - 1]!.hostMs;
      const b = s.beats[j]!.hostMs;
      return a !== undefined && b !== undefined ? b - a : undefined;
    };
    const score = (j: number) => silence(j) ?? odd(j) * 1000;
    let k = -1;
    for (let j = 1; j < n; j++) {
      if (!(preLo[j - 1]! <= preHi[j - 1]! + ANCHOR_SLACK_S && sufOk[j])) continue;
      if (k < 0 || score(j) > score(k)) k = j;
    }
    if (k < 0) {
      k = 1;
      for (let j = 2; j < n; j++) if (odd(j) > odd(k)) k = j;
    }
    const t0 = s.t[k]!;
    queue.unshift(
      { beats: s.beats.slice(0, k), t: s.t.slice(0, k), oLo: undefined, oHi: undefined },
      { beats: s.beats.slice(k), t: s.t.slice(k).map((x) => x - t0), oLo: undefined, oHi: undefined },
    );
  }
  return result;
}

/** wall second s_i was showing at counter time t_i: s_i <= t_i + o < s_i + 1, for every beat. */
function anchor(s: Segment): void {
  let lo = -Infinity;
  let hi = Infinity;
  s.beats.forEach((b, k) => {
    lo = Math.max(lo, b.wall - s.t[k]!);
    hi = Math.min(hi, b.wall + 1 - s.t[k]!);
  });
  // date(1) runs a little before sysctl(8) (a fork apart, ~1 ms): constraints may conflict by that much.
  if (lo <= hi + ANCHOR_SLACK_S) {
    s.oLo = Math.min(lo, hi);
    s.oHi = Math.max(lo, hi);
  }
}

const ANCHOR_SLACK_S = 0.003;

function splitAt(seg: Segment, k: number): [Segment, Segment] {
  const a: Segment = { beats: seg.beats.slice(0, k), t: seg.t.slice(0, k), oLo: undefined, oHi: undefined };
  const b: Segment = { beats: seg.beats.slice(k), t: seg.t.slice(k), oLo: undefined, oHi: undefined };
  anchor(a);
  anchor(b);
  return [a, b];
}

/** Guest wall clock minus host clock (ms); null when the side is too short to pin its wall clock (no second boundary within ~20 ms). */
function clockOffset(seg: Segment | undefined): number | null {
  if (!seg || seg.oLo === undefined || seg.oHi === undefined || seg.oHi - seg.oLo > 0.02) return null;
  const o = (seg.oLo + seg.oHi) / 2;
  let best = -Infinity;
  seg.beats.forEach((b, k) => {
    if (b.hostMs !== undefined) best = Math.max(best, (seg.t[k]! + o) * 1000 - b.hostMs);
  });
  return Number.isFinite(best) ? Math.round(best) : null;
}

/**
 * The largest gap in the heartbeat and the downtime it means. Returns undefined with fewer than 3 beats.
 * With no HBINFO line (or a counter that never runs continuously) only host arrival times are used.
 */
export function estimateDowntime(hb: ParsedHeartbeat): DowntimeEstimate | undefined {
  const beats = hb.beats;
  if (beats.length < 3) return undefined;
  if (hb.info) {
    const segs = segments(beats, hb.info);
    // Normal spacing: counter steps between consecutive seqs inside stretches.
    const steps: number[] = [];
    for (const s of segs) for (let k = 1; k < s.beats.length; k++) if (s.beats[k]!.seq - s.beats[k - 1]!.seq === 1) steps.push(s.t[k]! - s.t[k - 1]!);
    if (steps.length >= 2) {
      const p50 = median(steps);
      const jitter = Math.max(quantile(steps, 0.9) - p50, p50 - quantile(steps, 0.1), 0);
      type Cand = { gap: number; half: number; before: Beat; after: Beat; method: DowntimeMethod; segBefore: Segment; segAfter: Segment; step: number };
      let best: Cand | undefined;
      const consider = (c: Cand) => {
        // Compare by downtime, not raw gap: a gap full of lost beats is not downtime.
        const d = c.gap - (c.after.seq - c.before.seq) * p50;
        if (!best || d > best.gap - (best.after.seq - best.before.seq) * p50) best = c;
      };
      for (const s of segs) {
        // A counter that jumped (another host) by almost a whole number of wraps looks continuous; the
        // wall clock only rules that out down to the width of the stretch's anchoring interval, so a
        // real gap inside a stretch carries that width as its error.
        const width = s.oLo !== undefined && s.oHi !== undefined ? s.oHi - s.oLo : 0;
        for (let k = 1; k < s.beats.length; k++) {
          const gap = s.t[k]! - s.t[k - 1]!;
          const m = s.beats[k]!.seq - s.beats[k - 1]!.seq;
          consider({ gap, half: gap > (m + 2) * p50 ? width : 0, before: s.beats[k - 1]!, after: s.beats[k]!, method: 'guest-counter', segBefore: s, segAfter: s, step: 0 });
        }
      }
      for (let j = 1; j < segs.length; j++) {
        const a = segs[j - 1]!;
        const b = segs[j]!;
        if (a.oLo === undefined || a.oHi === undefined || b.oLo === undefined || b.oHi === undefined) continue;
        const tA = a.t.at(-1)!;
        const tB = b.t[0]!;
        const lo = tB + b.oLo - (tA + a.oHi);
        const hi = tB + b.oHi - (tA + a.oLo);
        consider({ gap: (lo + hi) / 2, half: (hi - lo) / 2, before: a.beats.at(-1)!, after: b.beats[0]!, method: 'guest-wall-anchored', segBefore: a, segAfter: b, step: 0 });
      }
      if (best) {
        const c: Cand = best;
        const m = c.after.seq - c.before.seq;
        // Offsets on each side of the gap, each side anchored on its own (inside one stretch too).
        const sides = c.segBefore === c.segAfter ? splitAt(c.segBefore, c.segBefore.beats.indexOf(c.after)) : [c.segBefore, c.segAfter];
        const before = clockOffset(sides[0]);
        const after = clockOffset(sides[1]);
        let gap = c.gap;
        // The guest re-reads the wall clock on resume (inittodr): a step of its offset against the host
        // is not downtime. Only corrected when the step is larger than the anchoring error.
        if (c.method === 'guest-wall-anchored' && before !== null && after !== null && Math.abs(after - before) > c.half * 1000 + 5) gap -= (after - before) / 1000;
        // The pause began somewhere within one spacing after the last beat before it (and a sleep that
        // was running may or may not be cut short on resume): the gap holds between m-1 and m spacings
        // that are not downtime. Take the middle, and half a spacing of uncertainty.
        const downtime = Math.max(0, gap - (m - 0.5) * p50);
        // 1 ms: date(1) and sysctl(8) run one after the other, not at the same instant.
        // The m spacings inside the gap vary (a random walk: about 2σ√m), and they are counted out at the
        // median spacing, whose own error (about 1.25 σ/√n) counts m times.
        // Robust σ (1.4826 × median absolute deviation): the gap itself and stalls must not inflate it.
        const sd = 1.4826 * median(steps.map((x) => Math.abs(x - p50)));
        const uncertainty = c.half + p50 / 2 + Math.max(jitter, 2 * sd) * Math.sqrt(m) + (m - 1) * ((1.25 * sd) / Math.sqrt(steps.length)) + 0.001;
        return {
          downtimeMs: round1(downtime * 1000),
          uncertaintyMs: round1(uncertainty * 1000),
          method: c.method,
          gapMs: round1(gap * 1000),
          beforeSeq: c.before.seq,
          afterSeq: c.after.seq,
          lostBeats: m - 1,
          spacingMs: round1(p50 * 1000),
          beats: beats.length,
          clockOffsetMs: { before, after },
        };
      }
    }
  }
  return arrivalEstimate(beats);
}

function arrivalEstimate(beats: Beat[]): DowntimeEstimate | undefined {
  const stamped = beats.filter((b) => b.hostMs !== undefined);
  if (stamped.length < 3) return undefined;
  const steps: number[] = [];
  let best = { gap: -1, i: 0 };
  for (let i = 1; i < stamped.length; i++) {
    const gap = stamped[i]!.hostMs! - stamped[i - 1]!.hostMs!;
    if (stamped[i]!.seq - stamped[i - 1]!.seq === 1) steps.push(gap);
    if (gap > best.gap) best = { gap, i };
  }
  const spacing = median(steps.length ? steps : [0]);
  const before = stamped[best.i - 1]!;
  const after = stamped[best.i]!;
  return {
    downtimeMs: round1(Math.max(0, best.gap - spacing / 2)),
    uncertaintyMs: null,
    method: 'host-arrival',
    gapMs: round1(best.gap),
    beforeSeq: before.seq,
    afterSeq: after.seq,
    lostBeats: after.seq - before.seq - 1,
    spacingMs: round1(spacing),
    beats: beats.length,
    clockOffsetMs: { before: null, after: null },
  };
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
