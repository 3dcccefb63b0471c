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
 * - within a stretch where the counter runs continuously (consecutive beats agree with the wall seconds,
 *   which also tell how many wraps a long pause spans), beat times come from the counter:
 *   nanosecond-ish resolution; a pause inside a stretch is checked against the host's clock, because a
 *   counter that jumped to another host's clock can pass for continuous;
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

/**
 * The counter step between two beats, in seconds, when it agrees with the wall seconds (|dt - dw| < 1 s:
 * the wall clock has 1 s resolution); undefined when no reading of it does. The counter is known only
 * modulo its wrap (XENTIMER: 2^32 ns, 4.29 s). A step over several wraps (a pause of seconds on the same
 * host, where the counter runs on) is unwrapped with the wall seconds: when a wrap is longer than 2 s,
 * only one number of wraps fits the 2 s window. With a shorter wrap, only steps below half a wrap count.
 */
function counterStep(p: Beat, b: Beat, info: HeartbeatInfo): number | undefined {
  const wrap = Number(info.modulus) / info.frequency;
  const dc = (((b.counter - p.counter) % info.modulus) + info.modulus) % info.modulus;
  const dt0 = Number(dc) / info.frequency;
  const dw = b.wall - p.wall;
  if (dw < 0) return undefined;
  if (wrap <= 2) return dt0 < wrap / 2 && dw < wrap / 2 && Math.abs(dt0 - dw) < 1 ? dt0 : undefined;
  const dt = dt0 + Math.max(0, Math.round((dw - dt0) / wrap)) * wrap;
  return Math.abs(dt - dw) < 1 ? dt : undefined;
}

/**
 * Splits the beats into stretches where the counter ran continuously: consecutive beats whose counter
 * step agrees with the wall seconds (counterStep).
 */
function segments(beats: Beat[], info: HeartbeatInfo): Segment[] {
  const out: Segment[] = [];
  let cur: Segment | undefined;
  for (let i = 0; i < beats.length; i++) {
    const b = beats[i]!;
    if (cur && i > 0) {
      const dt = counterStep(beats[i - 1]!, b, info);
      if (dt !== undefined) {
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
/** Two sides whose host anchors differ by more than this were not on one continuous counter. */
const HOST_DRIFT_TOLERANCE_S = 0.005;
/** The most a console path may slow down or speed up across a migration (a reattach, ssh to another host). */
const CONSOLE_PATH_CHANGE_S = 0.05;
/** How much the least delay of console lines may differ between the two sides of a pause. */
const HOST_LATENCY_S = 0.002;
/** FreeBSD's sleep(1) wakes on clock ticks (kern.hz 1000): the beat after a resume may come a tick late. */
const SLEEP_TICK_S = 0.001;
/** How far apart date(1) and the sysctl(8) after it read their clocks, at most (a fork and exec). */
const READ_GAP_S = 0.0015;

function splitAt(seg: Segment, k: number): [Segment, Segment] {
  const a: Segment = { beats: seg.beats.slice(0, k), t: seg.t.slice(0, k), oLo: undefined, oHi: undefined };
  const b: Segment = { beats: seg.beats.slice(k), t: seg.t.slice(k), oLo: undefined, oHi: undefined };
  anchor(a);
  anchor(b);
  return [a, b];
}

/** The gap from the last beat of `a` to the first of `b`, each side pinned to the wall clock on its own; undefined when either side is not. */
function wallAnchoredGap(a: Segment, b: Segment): { gap: number; half: number } | undefined {
  if (a.oLo === undefined || a.oHi === undefined || b.oLo === undefined || b.oHi === undefined) return undefined;
  const tA = a.t.at(-1)!;
  const tB = b.t[0]!;
  const lo = tB + b.oLo - (tA + a.oHi);
  const hi = tB + b.oHi - (tA + a.oLo);
  return { gap: (lo + hi) / 2, half: (hi - lo) / 2 };
}

/** Host arrival time minus counter time (s), at its minimum over the segment: its least delayed line. */
function hostAnchor(seg: Segment): number | undefined {
  let best = Infinity;
  seg.beats.forEach((b, k) => {
    if (b.hostMs !== undefined) best = Math.min(best, b.hostMs / 1000 - seg.t[k]!);
  });
  return Number.isFinite(best) ? best : undefined;
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
      // Robust σ (1.4826 × median absolute deviation): the gap itself and stalls must not inflate it.
      const sd = 1.4826 * median(steps.map((x) => Math.abs(x - p50)));
      type Cand = { gap: number; half: number; before: Beat; after: Beat; method: DowntimeMethod; segBefore: Segment; segAfter: Segment; pause: boolean };
      let best: Cand | undefined;
      const consider = (c: Cand) => {
        // Compare by downtime, not raw gap: a gap full of lost beats is not downtime.
        const d = c.gap - (c.after.seq - c.before.seq) * p50;
        if (!best || d > best.gap - (best.after.seq - best.before.seq) * p50) best = c;
      };
      for (const s of segs) {
        // A counter that jumped (another host) by almost a whole number of wraps looks continuous; the
        // wall clock only rules that out down to the width of the stretch's anchoring interval, so any
        // gap longer than its beats' normal spacing (a pause) carries that width as its error.
        const width = s.oLo !== undefined && s.oHi !== undefined ? s.oHi - s.oLo : 0;
        for (let k = 1; k < s.beats.length; k++) {
          const gap = s.t[k]! - s.t[k - 1]!;
          const m = s.beats[k]!.seq - s.beats[k - 1]!.seq;
          const pause = gap - m * p50 > 4 * sd * Math.sqrt(m) + 0.002;
          consider({ gap, half: pause ? width : 0, before: s.beats[k - 1]!, after: s.beats[k]!, method: 'guest-counter', segBefore: s, segAfter: s, pause });
        }
      }
      for (let j = 1; j < segs.length; j++) {
        const a = segs[j - 1]!;
        const b = segs[j]!;
        const anchored = wallAnchoredGap(a, b);
        if (anchored) consider({ ...anchored, before: a.beats.at(-1)!, after: b.beats[0]!, method: 'guest-wall-anchored', segBefore: a, segAfter: b, pause: true });
      }
      /**
       * A pause inside a stretch, seen against the host's clock. Each side's counter is pinned to the
       * host by its least delayed line (host arrival minus counter time, at its minimum over the side's
       * beats). A counter that ran on through the pause gives both sides the same offset; one that
       * jumped (another host) and only happened to agree with the wall seconds does not: the gap is
       * then measured by anchoring each side to the wall clock instead. When they agree, the offsets'
       * difference bounds what a jump could have added, often far below the wall-clock width.
       */
      const checkContinuity = (c: Cand, a: Segment, b: Segment): Cand => {
        const ha = hostAnchor(a);
        const hb = hostAnchor(b);
        if (ha === undefined || hb === undefined) return c;
        const drift = hb - ha;
        if (Math.abs(drift) <= HOST_DRIFT_TOLERANCE_S) return { ...c, half: Math.min(c.half, Math.abs(drift) + HOST_LATENCY_S) };
        if (a.oLo === undefined || a.oHi === undefined || b.oLo === undefined || b.oHi === undefined) return { ...c, half: Math.max(c.half, Math.abs(drift) + HOST_LATENCY_S) };
        // The wall clock can tell a jump of the counter from a console path that changed with the
        // migration: a jump by `drift` would move the counter-to-wall offset by as much, and the two
        // sides' offsets agree more narrowly than that.
        const overlap = Math.min(a.oHi, b.oHi) - Math.max(a.oLo, b.oLo) >= -ANCHOR_SLACK_S;
        if (overlap && Math.abs(drift) > a.oHi - a.oLo + (b.oHi - b.oLo) + ANCHOR_SLACK_S) return c;
        return { ...c, ...wallAnchoredGap(a, b)!, method: 'guest-wall-anchored', segBefore: a, segAfter: b };
      };
      if (best) {
        let c: Cand = best;
        const m = c.after.seq - c.before.seq;
        // Offsets on each side of the gap, each side anchored on its own (inside one stretch too).
        const sides = c.segBefore === c.segAfter ? splitAt(c.segBefore, c.segBefore.beats.indexOf(c.after)) : [c.segBefore, c.segAfter];
        if (c.method === 'guest-counter' && c.pause) c = checkContinuity(c, sides[0]!, sides[1]!);
        const before = clockOffset(sides[0]);
        const after = clockOffset(sides[1]);
        let gap = c.gap;
        let half = c.half;
        // The guest re-reads the wall clock on resume (inittodr): a step of its offset against the host
        // is not downtime. Seen from the host, a console path that got slower with the migration looks
        // the same. A step beyond what a console path could change (seconds: hosts whose clocks
        // disagree) is taken out; a smaller one could be either, so the estimate takes the middle and
        // half the step joins the uncertainty. Below the anchoring error it is noise.
        if (c.method === 'guest-wall-anchored' && before !== null && after !== null) {
          const step = (after - before) / 1000;
          if (Math.abs(step) > CONSOLE_PATH_CHANGE_S) gap -= step;
          else if (Math.abs(step) > c.half + 0.005) {
            gap -= step / 2;
            half += Math.abs(step) / 2;
          }
        }
        // The gap holds m spacings the guest ran (the m-1 beats lost on the console, and the one the
        // pause fell in, which a resume may cut short: between m-1 and m of them): the m draws are
        // counted out at the mean spacing of the stretches around the gap, not the median, which
        // stalls (a loaded guest, ~15 % of beats held up 5-40 ms) do not move although every lost beat
        // carried its share of them (lostSpacing).
        const spacing = lostSpacing(segs, c.before, c.after, p50);
        const downtime = Math.max(0, gap - (m - 0.5) * spacing.mean);
        // READ_GAP_S per clock reading that places the gap: date(1) and sysctl(8) run one after the other,
        // not at the same instant (the counter alone places a gap inside a stretch; each side's wall
        // anchoring places one across stretches).
        const uncertainty = half + spacing.mean / 2 + SLEEP_TICK_S + spacing.walk(m) + (c.method === 'guest-wall-anchored' ? 2 : 1) * READ_GAP_S;
        return {
          downtimeMs: round1(downtime * 1000),
          uncertaintyMs: round1(uncertainty * 1000),
          method: c.method,
          gapMs: round1(gap * 1000),
          beforeSeq: c.before.seq,
          afterSeq: c.after.seq,
          lostBeats: m - 1,
          spacingMs: round1(spacing.mean * 1000),
          beats: beats.length,
          clockOffsetMs: { before, after },
        };
      }
    }
  }
  return arrivalEstimate(beats);
}

/**
 * The chance the bound allows that the m spacings inside a gap stray further than walk(m) (Bernstein's
 * inequality, two-sided). A Gaussian 4.5 sigmas let a loaded guest through: stalls on a few % of beats
 * make the sum's right tail Poisson-like (24 stalls among 161 lost beats where 9 were expected: 62.8 ms
 * off, bound 60.8 ms).
 */
const WALK_RISK = 1e-5;

/**
 * The spacing that counts out the beats inside a gap, and how far the m spacings it spans may be from
 * m times it. Every consecutive step of the stretches counts except the gap's own (a stall is part of
 * the guest's normal spacing: a lost beat was as likely to carry one). The error is the sum of the m
 * steps' departures from the true mean plus m times the mean's own error over the n seen steps:
 * independent terms of variance sd² each (m of them) and (m/n)²·sd² (n of them), each at most b (the
 * largest step's distance from the mean) or (m/n)·b. Bernstein's inequality bounds such a sum whatever
 * the shape of the steps (stalls included); nor can the m steps stray by more than m·b, which decides
 * for one or a few of them.
 */
function lostSpacing(segs: Segment[], before: Beat, after: Beat, fallback: number): { mean: number; walk: (m: number) => number } {
  const xs: number[] = [];
  for (const s of segs) {
    for (let k = 1; k < s.beats.length; k++) {
      if (s.beats[k]!.seq - s.beats[k - 1]!.seq !== 1 || (s.beats[k - 1] === before && s.beats[k] === after)) continue;
      xs.push(s.t[k]! - s.t[k - 1]!);
    }
  }
  // Too few steps to learn their spread from: each of the m may be off by a whole spacing.
  if (xs.length < 2) return { mean: fallback, walk: (m) => m * fallback };
  const n = xs.length;
  let sum = 0;
  for (const x of xs) sum += x;
  const mean = sum / n;
  // Loops, not Math.max(...xs): a long heartbeat has more steps than a call takes arguments.
  let sq = 0;
  let b = 0;
  for (const x of xs) {
    sq += (x - mean) ** 2;
    b = Math.max(b, Math.abs(x - mean));
  }
  const variance = sq / (n - 1);
  const L = Math.log(2 / WALK_RISK);
  return {
    mean,
    walk: (m) => {
      const v = variance * (m + (m * m) / n);
      const c = (b * Math.max(1, m / n) * L) / 3;
      return Math.min(m * b, c + Math.sqrt(c * c + 2 * v * L));
    },
  };
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
