/**
 * Stretches of the heartbeat where the guest's counter ran continuously, and how each is pinned to the
 * wall clock (and to the host's clock): the pieces estimateDowntime (heartbeat.ts) measures gaps with.
 */
import type { Beat, HeartbeatInfo } from './heartbeat-lines.js';

/** How far the wall-clock constraints of one stretch may conflict and still pin it (anchor). */
export const ANCHOR_SLACK_S = 0.003;

export interface Segment {
  beats: Beat[];
  /** seconds since the segment's first beat, from the counter */
  t: number[];
  /** offset o such that wall = t + o, as an interval; undefined when the constraints do not intersect */
  oLo: number | undefined;
  oHi: number | undefined;
}

export function median(xs: number[]): number {
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
export function segments(beats: Beat[], info: HeartbeatInfo): Segment[] {
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

export function splitAt(seg: Segment, k: number): [Segment, Segment] {
  const a: Segment = { beats: seg.beats.slice(0, k), t: seg.t.slice(0, k), oLo: undefined, oHi: undefined };
  const b: Segment = { beats: seg.beats.slice(k), t: seg.t.slice(k), oLo: undefined, oHi: undefined };
  anchor(a);
  anchor(b);
  return [a, b];
}

/** The gap from the last beat of `a` to the first of `b`, each side pinned to the wall clock on its own; undefined when either side is not. */
export function wallAnchoredGap(a: Segment, b: Segment): { gap: number; half: number } | undefined {
  if (a.oLo === undefined || a.oHi === undefined || b.oLo === undefined || b.oHi === undefined) return undefined;
  const tA = a.t.at(-1)!;
  const tB = b.t[0]!;
  const lo = tB + b.oLo - (tA + a.oHi);
  const hi = tB + b.oHi - (tA + a.oLo);
  return { gap: (lo + hi) / 2, half: (hi - lo) / 2 };
}

/** Host arrival time minus counter time (s), at its minimum over the segment: its least delayed line. */
export function hostAnchor(seg: Segment): number | undefined {
  let best = Infinity;
  seg.beats.forEach((b, k) => {
    if (b.hostMs !== undefined) best = Math.min(best, b.hostMs / 1000 - seg.t[k]!);
  });
  return Number.isFinite(best) ? best : undefined;
}

/** Guest wall clock minus host clock (ms); null when the side is too short to pin its wall clock (no second boundary within ~20 ms). */
export function clockOffset(seg: Segment | undefined): number | null {
  if (!seg || seg.oLo === undefined || seg.oHi === undefined || seg.oHi - seg.oLo > 0.02) return null;
  const o = (seg.oLo + seg.oHi) / 2;
  let best = -Infinity;
  seg.beats.forEach((b, k) => {
    if (b.hostMs !== undefined) best = Math.max(best, (seg.t[k]! + o) * 1000 - b.hostMs);
  });
  return Number.isFinite(best) ? Math.round(best) : null;
}
