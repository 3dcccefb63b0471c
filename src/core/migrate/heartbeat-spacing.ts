/** How far the beats lost inside a gap may have strayed from their count times the mean spacing. */
import type { Beat } from './heartbeat-lines.js';
import type { Segment } from './heartbeat-stretches.js';

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
export function lostSpacing(segs: Segment[], before: Beat, after: Beat, fallback: number): { mean: number; walk: (m: number) => number } {
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
