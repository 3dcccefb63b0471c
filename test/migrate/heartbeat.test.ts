/**
 * The heartbeat: its parser under console noise, and the downtime on synthetic timelines with known gaps
 * (same-host counter, a counter that jumps to another host's clock, lost beats on reattach, a wall clock
 * stepped on resume); and the real guest script run under dash with a sysctl stand-in.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { beatCheck, estimateDowntime, formatBeat, formatInfo, parseHeartbeat, type StampedLine } from '../../src/core/migrate/heartbeat.js';

const REPO = join(import.meta.dirname, '../..');
const MOD = 4294967296n;

interface Timeline {
  periodMs: number;
  jitterMs: number;
  beatsBefore: number;
  beatsAfter: number;
  downtimeMs: number;
  lostAfter: number;
  wallOffset: number;
  /** the guest wall clock steps by this much on resume (ms) */
  wallStepMs: number;
  /** the counter continues (same host) or restarts from another clock */
  counterJump: number | null;
  counterStart: number;
  sleepCutShort?: boolean;
  /** the console reached the host this much later after the migration (another path, e.g. ssh) */
  afterLatencyMs?: number;
  /** a loaded guest: this share of beats is held up by a stall of stallMinMs..stallMaxMs (scheduling, a fork that waits) */
  stallRate?: number;
  stallMinMs?: number;
  stallMaxMs?: number;
  seed: number;
}

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** Console lines a guest writing beats around a pause of `downtimeMs` would produce, with host arrival times. */
function synth(t: Timeline, run = 'r1'): StampedLine[] {
  const rand = rng(t.seed);
  // Stalls draw from their own stream, so the timelines without stalls stay what they were.
  const stallRand = rng(t.seed ^ 0x5bd1e995);
  const stall = () => (t.stallRate && stallRand() < t.stallRate ? (t.stallMinMs ?? 5) + stallRand() * ((t.stallMaxMs ?? 40) - (t.stallMinMs ?? 5)) : 0);
  const lines: StampedLine[] = [];
  let tau = 1000 + t.counterStart; // host seconds
  const base = 1_790_000_000;
  lines.push({ hostMs: tau * 1000, text: formatInfo(run, { timecounter: 'XENTIMER', frequency: 1e9, mask: MOD - 1n, periodMs: 10 }) });
  const total = t.beatsBefore + t.beatsAfter;
  let reattachMs = 0;
  for (let i = 1; i <= total; i++) {
    const after = i > t.beatsBefore;
    const step = (t.periodMs + (rand() * 2 - 1) * t.jitterMs + stall()) / 1000;
    if (i === t.beatsBefore + 1) {
      // The pause starts somewhere in the spacing after the last beat; on resume the running sleep is
      // either cut short (the guest clock jumped past its deadline) or runs to its end.
      const pauseStart = tau + rand() * step;
      const resume = pauseStart + t.downtimeMs / 1000;
      tau = t.sleepCutShort ? resume : tau + step + t.downtimeMs / 1000;
      reattachMs = (tau + (t.lostAfter * t.periodMs) / 1000) * 1000 + 3;
    } else tau += step;
    const wallTime = tau + t.wallOffset + (after ? t.wallStepMs / 1000 : 0);
    const wall = Math.floor(base + wallTime);
    const readAt = tau + 0.0005 + rand() * 0.0005; // sysctl runs just after date
    const clock = after && t.counterJump !== null ? readAt + t.counterJump : readAt;
    const counter = BigInt(Math.floor(clock * 1e9)) % MOD;
    if (after && i <= t.beatsBefore + t.lostAfter) continue; // written while the console was not attached
    const hostMs = Math.max(tau * 1000 + 0.2 + rand() + (after ? (t.afterLatencyMs ?? 0) : 0), after ? reattachMs : 0);
    lines.push({ hostMs, text: formatBeat(run, { seq: i, wall, counter }) });
    if (rand() < 0.05) lines.push({ hostMs, text: 'xn0: backend features: feature-sg feature-gso-tcp4' });
  }
  return lines;
}

const timeline = fc.record({
  periodMs: fc.integer({ min: 10, max: 16 }),
  // A real guest forks date(1) and sysctl(8) and sleeps for every beat (FreeBSD's sleep has 1 ms ticks),
  // so its spacing varies by well over 0.2 ms. Near-perfect beats at a spacing that divides a second
  // (10 ms, jitter under 0.1 ms) would keep one phase against the wall clock's seconds, and a counter
  // jump that lands within that phase's width could pass for continuity (docs/migrate-test.md).
  jitterMs: fc.double({ min: 0.2, max: 1.5, noNaN: true }),
  beatsBefore: fc.integer({ min: 150, max: 300 }),
  beatsAfter: fc.integer({ min: 250, max: 400 }),
  downtimeMs: fc.integer({ min: 40, max: 5000 }),
  lostAfter: fc.integer({ min: 0, max: 20 }),
  wallOffset: fc.double({ min: 0, max: 0.999, noNaN: true }),
  wallStepMs: fc.constant(0),
  counterJump: fc.option(fc.double({ min: 1, max: 100_000, noNaN: true }), { nil: null }),
  counterStart: fc.double({ min: 0, max: 10, noNaN: true }),
  sleepCutShort: fc.boolean(),
  seed: fc.integer({ min: 1, max: 2 ** 31 }),
});

// The loaded guest of issue 13: 15 % of beats held up 5-40 ms, and a save-restore that lost 100-150 beats.
const loadedGuest = { stallRate: 0.15, stallMinMs: 5, stallMaxMs: 40 };

/**
 * The error distribution in docs/migrate-test.md, and the claim behind it: every estimate within its own
 * bound. HB_STATS=N runs N random timelines per case (the suite skips it: 20,000 take minutes).
 */
describe.skipIf(!process.env.HB_STATS)('error distribution (HB_STATS=N random timelines per case, for docs/migrate-test.md)', () => {
  it('every estimate is within its own bound; prints the distribution', () => {
    const n = Number(process.env.HB_STATS);
    const cases = [
      ['same host, none lost', timeline.filter((t) => t.counterJump === null).map((t) => ({ ...t, lostAfter: 0 }))],
      ['another host, none lost', timeline.filter((t) => t.counterJump !== null).map((t) => ({ ...t, lostAfter: 0 }))],
      ['same host, up to 10 lost', timeline.filter((t) => t.lostAfter <= 10 && t.counterJump === null)],
      ['another host, up to 10 lost', timeline.filter((t) => t.lostAfter <= 10 && t.counterJump !== null)],
      ['loaded, same host, 100-150 lost', timeline.filter((t) => t.counterJump === null).chain((t) => fc.integer({ min: 100, max: 150 }).map((lostAfter) => ({ ...t, ...loadedGuest, lostAfter, beatsAfter: t.beatsAfter + lostAfter })))],
      ['loaded, another host, 100-150 lost', timeline.filter((t) => t.counterJump !== null).chain((t) => fc.integer({ min: 100, max: 150 }).map((lostAfter) => ({ ...t, ...loadedGuest, lostAfter, beatsAfter: t.beatsAfter + lostAfter })))],
    ] as const;
    const outside: string[] = [];
    for (const [name, arb] of cases) {
      const errs: number[] = [];
      const bounds: number[] = [];
      for (const t of fc.sample(arb, { numRuns: n, seed: 20261206 })) {
        const est = estimateDowntime(parseHeartbeat(synth(t), 'r1'))!;
        const err = Math.abs(est.downtimeMs - t.downtimeMs);
        errs.push(err);
        bounds.push(est.uncertaintyMs!);
        if (err > est.uncertaintyMs! + 0.1 + 1e-9) outside.push(`${name}: ${JSON.stringify({ t, est })}`);
      }
      const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))]!.toFixed(1);
      const ratio = errs.map((e, i) => e / bounds[i]!);
      console.log(`| ${name} | ${q(errs, 0.5)} ms | ${q(errs, 0.99)} | ${q(errs, 1)} | ${errs.filter((e) => e > 20).length} | ${q(bounds, 0.5)} | ${q(bounds, 0.99)} | ${q(bounds, 1)} | ${q(ratio, 1)} |`);
    }
    expect(outside).toEqual([]);
  }, 3_600_000); // 4 × 20,000 timelines take minutes
});

describe('parseHeartbeat', () => {
  it('keeps only whole lines of the run whose check passes, once per seq', () => {
    const good = formatBeat('r1', { seq: 1, wall: 100, counter: 5n });
    const lines: StampedLine[] = [
      { text: good },
      { text: good }, // duplicate
      { text: `kernel: xbd0: something FBXEN1 HB r1 2 100 6 ${beatCheck(2, 100, 6n)}` }, // a kernel message before ours
      { text: `\x1b[0mFBXEN1 HB r1 3 100 7 ${beatCheck(3, 100, 7n)}\r` },
      { text: `FBXEN1 HB r1 4 100 8 ${beatCheck(4, 100, 8n) + 1}` }, // bad check
      { text: `FBXEN1 HB r1 5 100 8` }, // truncated
      { text: `FBXEN1 HB other 6 100 9 ${beatCheck(6, 100, 9n)}` }, // another run
      { text: formatInfo('r1', { timecounter: 'TSC-low', frequency: 1_500_000_000, mask: MOD - 1n, periodMs: 10 }) },
    ];
    const hb = parseHeartbeat(lines, 'r1');
    expect(hb.beats.map((b) => b.seq)).toEqual([1, 2, 3]);
    expect(hb.rejected).toBe(2);
    expect(hb.info).toEqual({ timecounter: 'TSC-low', frequency: 1_500_000_000, modulus: MOD, periodMs: 10 });
  });

  it('property: noise never crashes it and never yields a beat whose check fails', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 80 }), { maxLength: 40 }), fc.array(fc.tuple(fc.integer({ min: 1, max: 1e6 }), fc.integer({ min: 0, max: 2e9 }), fc.bigInt({ min: 0n, max: MOD - 1n }))), (noise, beats) => {
        const lines: StampedLine[] = [];
        beats.forEach(([seq, wall, counter], i) => {
          lines.push({ text: `${noise[i % Math.max(1, noise.length)] ?? ''}${formatBeat('r', { seq, wall, counter })}` });
          if (noise[i]) lines.push({ text: `FBXEN1 HB r ${noise[i]}` });
        });
        const hb = parseHeartbeat(lines, 'r');
        for (const b of hb.beats) expect(beatCheck(b.seq, b.wall, b.counter)).toBeLessThan(65521);
        expect(new Set(hb.beats.map((b) => b.seq)).size).toBe(hb.beats.length);
        expect(hb.beats.length).toBe(new Set(beats.map(([s]) => s)).size);
      }),
    );
  });
});

describe('estimateDowntime on synthetic timelines with known gaps', () => {
  it('same host, continuous counter: the counter measures the gap', () => {
    const t: Timeline = { periodMs: 12, jitterMs: 1, beatsBefore: 200, beatsAfter: 300, downtimeMs: 180, lostAfter: 0, wallOffset: 0.3, wallStepMs: 0, counterJump: null, counterStart: 0, seed: 7 };
    const est = estimateDowntime(parseHeartbeat(synth(t), 'r1'))!;
    expect(est.method).toBe('guest-counter');
    expect(Math.abs(est.downtimeMs - 180)).toBeLessThanOrEqual(est.uncertaintyMs!);
    expect(est.uncertaintyMs).toBeLessThanOrEqual(20);
    expect(est.beforeSeq).toBe(200);
    expect(est.afterSeq).toBe(201);
  });

  it('another host: the counter jumps, both sides are anchored to the wall clock', () => {
    const t: Timeline = { periodMs: 12, jitterMs: 1, beatsBefore: 200, beatsAfter: 300, downtimeMs: 850, lostAfter: 0, wallOffset: 0.7, wallStepMs: 0, counterJump: 1234.567, counterStart: 0, seed: 9 };
    const est = estimateDowntime(parseHeartbeat(synth(t), 'r1'))!;
    expect(est.method).toBe('guest-wall-anchored');
    expect(Math.abs(est.downtimeMs - 850)).toBeLessThanOrEqual(20);
    expect(est.uncertaintyMs).toBeLessThanOrEqual(20);
  });

  it('beats lost while the console reattached are counted out, not taken for downtime', () => {
    const t: Timeline = { periodMs: 10, jitterMs: 0.5, beatsBefore: 200, beatsAfter: 300, downtimeMs: 120, lostAfter: 40, wallOffset: 0.1, wallStepMs: 0, counterJump: null, counterStart: 0, seed: 3 };
    const est = estimateDowntime(parseHeartbeat(synth(t), 'r1'))!;
    expect(est.lostBeats).toBe(40);
    expect(Math.abs(est.downtimeMs - 120)).toBeLessThanOrEqual(20);
  });

  it('a wall clock stepped on resume is corrected with the offset against the host arrival times', () => {
    const t: Timeline = { periodMs: 12, jitterMs: 0.5, beatsBefore: 250, beatsAfter: 300, downtimeMs: 300, lostAfter: 0, wallOffset: 0.5, wallStepMs: 2500, counterJump: 77.7, counterStart: 0, seed: 11 };
    const est = estimateDowntime(parseHeartbeat(synth(t), 'r1'))!;
    expect(est.method).toBe('guest-wall-anchored');
    expect(Math.abs(est.downtimeMs - 300)).toBeLessThanOrEqual(20);
    expect(est.clockOffsetMs.after! - est.clockOffsetMs.before!).toBeGreaterThan(2400);
  });

  it('same host, an outage longer than the counter wrap (XENTIMER: 2^32 ns, 4.29 s): the wall seconds unwrap it', () => {
    for (const downtimeMs of [4100, 9300, 13_000]) {
      const t: Timeline = { periodMs: 12, jitterMs: 1, beatsBefore: 200, beatsAfter: 300, downtimeMs, lostAfter: 10, wallOffset: 0.4, wallStepMs: 0, counterJump: null, counterStart: 0, seed: 21 };
      const est = estimateDowntime(parseHeartbeat(synth(t), 'r1'))!;
      expect(est.method).toBe('guest-counter');
      expect(Math.abs(est.downtimeMs - downtimeMs)).toBeLessThanOrEqual(20);
      expect(Math.abs(est.downtimeMs - downtimeMs)).toBeLessThanOrEqual(est.uncertaintyMs! + 2);
      expect(est.lostBeats).toBe(10);
    }
  });

  it('counterexamples a property run found (bounds that were 1 ms too tight across a counter jump)', () => {
    const cases: Timeline[] = [
      { periodMs: 10, jitterMs: 0, beatsBefore: 150, beatsAfter: 250, downtimeMs: 541, lostAfter: 0, wallOffset: 0, wallStepMs: 0, counterJump: 21.481137656786476, counterStart: 0, sleepCutShort: false, seed: 1 },
      { periodMs: 12, jitterMs: 0, beatsBefore: 157, beatsAfter: 250, downtimeMs: 40, lostAfter: 0, wallOffset: 0, wallStepMs: 0, counterJump: 96765.62053626594, counterStart: 0, sleepCutShort: true, seed: 26 },
    ];
    for (const t of cases) {
      const est = estimateDowntime(parseHeartbeat(synth(t), 'r1'))!;
      const err = Math.abs(est.downtimeMs - t.downtimeMs);
      expect(err).toBeLessThanOrEqual(20);
      expect(err).toBeLessThanOrEqual(est.uncertaintyMs! + 2);
    }
  });

  // Same host: the counter runs on through the pause, across any number of wraps (unwrapped with the wall
  // seconds), checked against the host's arrival times. Another host: each side is anchored to the wall
  // clock (docs/migrate-test.md has the error distribution over 20,000 timelines of each kind).
  const checkEstimate = (t: Timeline, within20: boolean) => {
    const est = estimateDowntime(parseHeartbeat(synth(t), 'r1'));
    expect(est).toBeDefined();
    const err = Math.abs(est!.downtimeMs - t.downtimeMs);
    if (within20) expect(err).toBeLessThanOrEqual(20);
    expect(err).toBeLessThanOrEqual((est!.uncertaintyMs ?? Infinity) + 2 + 1e-9); // 2: the 0.1 ms rounding of both, and float noise
    expect(est!.lostBeats).toBe(t.lostAfter);
    // The clock offset: guest wall clock minus host arrival time, known here by construction.
    const offset = (1_790_000_000 + t.wallOffset) * 1000;
    expect(est!.clockOffsetMs.before).not.toBeNull();
    expect(Math.abs(est!.clockOffsetMs.before! - offset)).toBeLessThanOrEqual(15);
    if (est!.clockOffsetMs.after !== null) expect(Math.abs(est!.clockOffsetMs.after - offset - t.wallStepMs)).toBeLessThanOrEqual(15);
  };
  const runs = Number(process.env.FBXEN_PROPERTY_RUNS ?? 300);

  it('property: same host, up to 10 beats lost on the console: within 20 ms of the true downtime and within its own bound', () => {
    fc.assert(
      fc.property(timeline.filter((t) => t.lostAfter <= 10 && t.counterJump === null), (t) => checkEstimate(t, true)),
      { numRuns: runs },
    );
  });

  it('property: another host, up to 10 beats lost: within its own bound', () => {
    fc.assert(
      fc.property(timeline.filter((t) => t.lostAfter <= 10 && t.counterJump !== null), (t) => checkEstimate(t, false)),
      { numRuns: runs },
    );
  });

  // Wall-clock anchoring is within 20 ms in all but about 1 in 20,000 random timelines (the worst seen:
  // 20.3 ms); this fixed sample keeps the claim checked without a rare random failure in CI.
  it('another host, 2,000 fixed timelines: within 20 ms of the true downtime', () => {
    for (const t of fc.sample(timeline.filter((x) => x.lostAfter <= 10 && x.counterJump !== null), { numRuns: 2000, seed: 20261124 })) checkEstimate(t, true);
  });

  it('property: a console path that changes with the migration (up to 30 ms slower after) stays within the bound the estimate reports', () => {
    fc.assert(
      fc.property(timeline.filter((t) => t.lostAfter <= 10), fc.double({ min: 0, max: 30, noNaN: true }), (t, afterLatencyMs) => {
        const est = estimateDowntime(parseHeartbeat(synth({ ...t, afterLatencyMs }), 'r1'))!;
        expect(Math.abs(est.downtimeMs - t.downtimeMs)).toBeLessThanOrEqual(est.uncertaintyMs! + 2 + 1e-9);
        expect(est.lostBeats).toBe(t.lostAfter);
      }),
      { numRuns: runs },
    );
  });

  it('property: with many beats lost (a slow reattach) the estimate stays within its own, wider bound', () => {
    fc.assert(
      fc.property(timeline, fc.integer({ min: 0, max: 80 }), (t, lost) => {
        const est = estimateDowntime(parseHeartbeat(synth({ ...t, lostAfter: lost }), 'r1'))!;
        expect(Math.abs(est.downtimeMs - t.downtimeMs)).toBeLessThanOrEqual(est.uncertaintyMs! + 2);
        expect(est.lostBeats).toBe(lost);
      }),
      { numRuns: 150 },
    );
  });

  // A loaded guest (issue 13): 15 % of beats held up 5-40 ms, and a save-restore whose console reattach
  // lost 100+ beats. Counting the lost beats at the median spacing (which the stalls do not move) left
  // out the stalls they carried: 2072 ± 68.8 ms reported for a guest stopped 1795.9 ms.
  it('a loaded guest (stalls on 15 % of beats) that lost 120 beats: the bound holds the true downtime', () => {
    const t: Timeline = { periodMs: 13, jitterMs: 1, beatsBefore: 300, beatsAfter: 400, downtimeMs: 1796, lostAfter: 120, wallOffset: 0.42, wallStepMs: 0, counterJump: null, counterStart: 0, sleepCutShort: false, ...loadedGuest, seed: 1795 };
    const est = estimateDowntime(parseHeartbeat(synth(t), 'r1'))!;
    expect(est.lostBeats).toBe(120);
    expect(Math.abs(est.downtimeMs - t.downtimeMs), JSON.stringify(est)).toBeLessThanOrEqual(est.uncertaintyMs!);
  });

  it('counterexample a property run found: 24 stalls of 3 ms among 161 lost beats where 9 were expected (a Gaussian bound was 2 ms short)', () => {
    const t: Timeline = { periodMs: 10, jitterMs: 0.2, beatsBefore: 154, beatsAfter: 261, downtimeMs: 100, lostAfter: 161, wallOffset: 0, wallStepMs: 0, counterJump: null, counterStart: 0, sleepCutShort: false, stallRate: 0.05745358625426889, stallMinMs: 3, stallMaxMs: 3, seed: 803110037 };
    const est = estimateDowntime(parseHeartbeat(synth(t), 'r1'))!;
    expect(est.lostBeats).toBe(161);
    expect(Math.abs(est.downtimeMs - t.downtimeMs), JSON.stringify(est)).toBeLessThanOrEqual(est.uncertaintyMs! + 0.1);
  });

  // Stall rate and size as parameters; same host (save-restore, a localhost migration) and another host.
  // From 8 % of beats: the 250+ steps seen then hold 20 stalls or more (none: a chance below 1e-9), and
  // the bound learns them. Stalls too rare to be seen (1 in 1,000 beats) can still hide among 100+ lost
  // beats: a stated limit, measured in docs/migrate-test.md, which no evidence here can bound.
  const loaded = fc.record({
    stallRate: fc.double({ min: 0.08, max: 0.3, noNaN: true }),
    stallMinMs: fc.integer({ min: 1, max: 10 }),
    stallSpanMs: fc.integer({ min: 0, max: 60 }),
    lost: fc.integer({ min: 0, max: 200 }),
  });
  const checkLoaded = (t: Timeline, l: { stallRate: number; stallMinMs: number; stallSpanMs: number; lost: number }) => {
    const tl: Timeline = { ...t, lostAfter: l.lost, stallRate: l.stallRate, stallMinMs: l.stallMinMs, stallMaxMs: l.stallMinMs + l.stallSpanMs, beatsAfter: Math.max(t.beatsAfter, l.lost + 100) };
    const est = estimateDowntime(parseHeartbeat(synth(tl), 'r1'))!;
    expect(est.lostBeats).toBe(l.lost);
    // 0.1: both values are rounded to 0.1 ms
    expect(Math.abs(est.downtimeMs - tl.downtimeMs), JSON.stringify(est)).toBeLessThanOrEqual(est.uncertaintyMs! + 0.1 + 1e-9);
  };

  it('property: a loaded guest (stalls of up to 70 ms on 8-30 % of beats), up to 200 beats lost, same host: within its own bound', () => {
    fc.assert(
      fc.property(timeline.filter((t) => t.counterJump === null && t.downtimeMs >= 100), loaded, checkLoaded),
      { numRuns: runs },
    );
  });

  it('property: a loaded guest, up to 200 beats lost, another host: within its own bound', () => {
    fc.assert(
      fc.property(timeline.filter((t) => t.counterJump !== null && t.downtimeMs >= 100), loaded, checkLoaded),
      { numRuns: runs },
    );
  });

  it('a long heartbeat (250,000 beats: about an hour) is estimated, not a stack overflow', () => {
    const t: Timeline = { periodMs: 12, jitterMs: 1, beatsBefore: 125_000, beatsAfter: 125_000, downtimeMs: 300, lostAfter: 3, wallOffset: 0.3, wallStepMs: 0, counterJump: null, counterStart: 0, seed: 5 };
    const est = estimateDowntime(parseHeartbeat(synth(t), 'r1'))!;
    expect(est.lostBeats).toBe(3);
    expect(Math.abs(est.downtimeMs - t.downtimeMs)).toBeLessThanOrEqual(est.uncertaintyMs! + 0.1);
  });

  it('without HBINFO only host arrival times count, and the result says so', () => {
    const t: Timeline = { periodMs: 10, jitterMs: 0, beatsBefore: 50, beatsAfter: 50, downtimeMs: 200, lostAfter: 0, wallOffset: 0, wallStepMs: 0, counterJump: null, counterStart: 0, seed: 1 };
    const lines = synth(t).filter((l) => !l.text.includes('HBINFO'));
    const est = estimateDowntime(parseHeartbeat(lines, 'r1'))!;
    expect(est.method).toBe('host-arrival');
    expect(est.uncertaintyMs).toBeNull();
    expect(Math.abs(est.downtimeMs - 200)).toBeLessThanOrEqual(10);
  });

  it('too few beats: no estimate', () => {
    expect(estimateDowntime(parseHeartbeat([{ text: formatBeat('r1', { seq: 1, wall: 1, counter: 1n }) }], 'r1'))).toBeUndefined();
  });
});

describe('guest/fbxen-heartbeat under dash (FreeBSD sysctl stand-in: SIMULATION)', () => {
  const env = { ...process.env, PATH: `${join(REPO, 'test/support/migrate/standins')}:${process.env.PATH ?? ''}` };

  it('writes lines the host parser accepts, numbered without holes, at about the asked period', () => {
    const r = spawnSync('dash', [join(REPO, 'guest/fbxen-heartbeat'), '--run', 'hb-test', '--max-seconds', '2'], { env, encoding: 'utf8', timeout: 10_000 });
    expect(r.status).toBe(0);
    const hb = parseHeartbeat(r.stdout.split('\n').map((text) => ({ text })), 'hb-test');
    expect(hb.rejected).toBe(0);
    expect(hb.info?.timecounter).toBe('XENTIMER');
    expect(hb.beats.length).toBeGreaterThan(20);
    expect(hb.beats.map((b) => b.seq)).toEqual(hb.beats.map((_b, i) => i + 1));
    const est = estimateDowntime(hb)!;
    expect(est.spacingMs).toBeGreaterThanOrEqual(10);
    expect(est.spacingMs).toBeLessThan(60);
  });

  it('stops on a stop file made after its start; one left by an earlier run of the same ID does not stop it (was: 1 beat, then out)', async () => {
    const stop = join(mkdtempSync(join(tmpdir(), 'hb-stop-')), 'stop'); // in the run's TMPDIR, removed with it
    writeFileSync(stop, ''); // left over: an earlier run of this --run was told to stop after it had ended
    const hb = spawn('dash', [join(REPO, 'guest/fbxen-heartbeat'), '--run', 'x', '--stop-file', stop, '--max-seconds', '60'], { env });
    let out = '';
    hb.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number | null>((r) => hb.on('exit', (code) => r(code)));
    // more than one beat: the stale file did not end it (each beat checks the stop file)
    while ((out.match(/FBXEN1 HB x /g) ?? []).length < 5 && hb.exitCode === null) await sleep(20);
    expect(hb.exitCode, out).toBeNull();
    writeFileSync(stop, '');
    // the stop is seen within a beat or two; far inside --max-seconds 60
    const code = await Promise.race([exited, sleep(30_000).then(() => 'still running')]);
    hb.kill();
    expect(code).toBe(0);
    expect(existsSync(stop)).toBe(false); // removed as it leaves
  });

  it('refuses bad arguments', () => {
    for (const bad of [['--run', 'bad run'], ['--run', 'x', '--period-ms', '0'], ['--run', 'x', '--load', 'gpu'], []]) {
      const b = spawnSync('dash', [join(REPO, 'guest/fbxen-heartbeat'), ...bad], { env, encoding: 'utf8' });
      expect(b.status).toBe(2);
    }
  });

  it('passes shellcheck as POSIX sh', () => {
    const r = spawnSync('shellcheck', ['-s', 'sh', join(REPO, 'guest/fbxen-heartbeat')], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
