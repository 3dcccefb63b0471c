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
 *
 * Here: the estimator. The line grammar is heartbeat-lines.ts, the stretches and their anchoring
 * heartbeat-stretches.ts, the bound on lost beats' spacing heartbeat-spacing.ts.
 */
import type { Beat, ParsedHeartbeat } from './heartbeat-lines.js';
import { lostSpacing } from './heartbeat-spacing.js';
import { ANCHOR_SLACK_S, clockOffset, hostAnchor, median, segments, splitAt, wallAnchoredGap, type Segment } from './heartbeat-stretches.js';

export {
  HEARTBEAT_MODULUS,
  beatCheck,
  formatBeat,
  formatDiskRound,
  formatInfo,
  infoCheck,
  parseHeartbeat,
  type Beat,
  type DiskRound,
  type HeartbeatInfo,
  type ParsedHeartbeat,
  type StampedLine,
} from './heartbeat-lines.js';

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
