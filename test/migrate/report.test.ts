/** The report renderers: summary statistics, exit codes, JUnit (parsed back with xml2js), the SVG chart (parsed back). */
import { parseStringPromise } from 'xml2js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_REASON_CHARS, migrateExitCode, oneLine, renderDowntimeSvg, renderMigrateJunit, renderMigrateText, summarize, type IterationResult, type MigrateReport } from '../../src/core/migrate/index.js';
import { toolstackReason } from '../../src/core/toolstack/xl/xl-migrate.js';

function it_(name: string, verdict: IterationResult['verdict'], downtimeMs: number | null, extra: Partial<IterationResult> = {}): IterationResult {
  return {
    name,
    verdict,
    reason: verdict === 'pass' ? 'ok' : 'the <reason> & "why"',
    downtimeMs,
    downtime: downtimeMs === null ? null : { downtimeMs, uncertaintyMs: 8, method: 'guest-counter', gapMs: downtimeMs + 6, beforeSeq: 10, afterSeq: 11, lostBeats: 0, spacingMs: 12, beats: 300, clockOffsetMs: { before: -3, after: -2 } },
    toolstackMs: 1500,
    clockOffsetMs: { before: -3, after: -2 },
    probes: [
      { id: 'migration', verdict: verdict === 'fail' ? 'fail' : 'pass', evidence: ['same boot'], ...(verdict === 'fail' ? { hint: 'look' } : {}) },
      { id: 'cdrom', verdict: 'skip', evidence: ['no CD'] },
    ],
    where: { host: 'localhost', id: '9', name: 'g', state: 'running' },
    disk: null,
    ...extra,
  };
}

function report(iterations: IterationResult[], status: MigrateReport['status'] = 'pass'): MigrateReport {
  return { run: 'r', toolstack: 'xl', domain: 'g', mode: 'live', to: 'localhost', load: 'none', status, skipReason: status === 'skip' ? 'xl has no migrate' : null, stopReason: null, iterations, summary: summarize(iterations), where: iterations.at(-1)?.where ?? null, artifactsDir: '/a' };
}

describe('summary and exit codes', () => {
  it('min/median/max over measured iterations only', () => {
    const s = summarize([it_('migrate/1', 'pass', 120), it_('migrate/2', 'pass', 80), it_('migrate/3', 'error', null), it_('migrate/4', 'pass', 300)]);
    expect(s).toMatchObject({ iterations: 4, passed: 3, downtimeMs: { min: 80, median: 120, max: 300 } });
    expect(summarize([it_('migrate/1', 'pass', 10), it_('migrate/2', 'pass', 20)]).downtimeMs!.median).toBe(15);
    expect(summarize([]).downtimeMs).toBeNull();
  });

  it('0 pass or skip, 1 fail, 2 no answer', () => {
    expect(migrateExitCode(report([], 'skip'))).toBe(0);
    expect(migrateExitCode(report([it_('migrate/1', 'pass', 1)], 'pass'))).toBe(0);
    expect(migrateExitCode(report([it_('migrate/1', 'fail', 1)], 'fail'))).toBe(1);
    expect(migrateExitCode(report([it_('migrate/1', 'error', null)], 'error'))).toBe(2);
    expect(migrateExitCode(report([it_('migrate/1', 'inconclusive', null)], 'inconclusive'))).toBe(2);
  });
});

describe('JUnit', () => {
  it('a testcase per iteration and per probe, counts that add up, text escaped', async () => {
    const r = report([it_('migrate/1', 'pass', 100), it_('migrate/2', 'fail', 200), it_('migrate/3', 'error', null)], 'fail');
    const doc = await parseStringPromise(renderMigrateJunit(r));
    const suite = doc.testsuites.testsuite[0];
    const cases = suite.testcase as Array<{ $: { classname: string; name: string; time?: string }; failure?: unknown[]; error?: Array<{ $: { message: string } }>; skipped?: unknown[] }>;
    expect(cases).toHaveLength(9);
    expect(cases.filter((c) => c.$.classname === 'fbxen.migrate').map((c) => c.$.name)).toEqual(['migrate/1', 'migrate/2', 'migrate/3']);
    expect(cases[0]!.$.time).toBe('1.500');
    expect(Number(suite.$.failures)).toBe(cases.filter((c) => c.failure).length);
    expect(Number(suite.$.errors)).toBe(1);
    expect(Number(suite.$.skipped)).toBe(cases.filter((c) => c.skipped).length);
    expect(cases.find((c) => c.error)!.error![0]!.$.message).toBe('the <reason> & "why"');
  });

  it('a skipped run is one skipped testcase with the reason', async () => {
    const doc = await parseStringPromise(renderMigrateJunit(report([], 'skip')));
    expect(doc.testsuites.testsuite[0].testcase[0].skipped[0].$.message).toBe('xl has no migrate');
    expect(renderMigrateText(report([], 'skip'))).toMatch(/SKIPPED: xl has no migrate/);
  });
});

describe('a failed migration keeps the toolstack\'s reason, bounded', () => {
  const XL_FAILED = [
    'migration target: Ready to receive domain.',
    'Saving to migration stream new xl format (info 0x3/0x0/1342)',
    'libxl: error: libxl_stream_write.c:350:libxl__xc_domain_save_done: Domain 5:saving domain: domain did not respond to suspend request: Invalid argument',
    'migration sender: libxl_domain_suspend failed (rc=-8)',
    'Migration failed, resuming at sender.',
  ];

  it('xl buried under 1 MB of progress lines: its error lines and its last lines come through, in at most 2,000 characters', () => {
    const progress = Array.from({ length: 20_000 }, (_, i) => `xc: info: Saving memory: iter ${i} (last sent 1234 skipped 0): 262144/262144  100%\r`).join('');
    const stderr = `${XL_FAILED.slice(0, 2).join('\n')}\n${progress}\n${XL_FAILED.slice(2).join('\n')}\n`;
    expect(stderr.length).toBeGreaterThan(1_000_000);
    const reason = oneLine(`migrate of g failed (exit 1):\n${toolstackReason(stderr)}\nthe domain is now: g (5) running on localhost`);
    expect(reason.length).toBeLessThanOrEqual(MAX_REASON_CHARS);
    for (const why of XL_FAILED.slice(2)) expect(reason).toContain(why);
    expect(reason).toMatch(/^migrate of g failed \(exit 1\): /);
    expect(reason).toMatch(/the domain is now: g \(5\) running on localhost$/);
  });

  it('property: one line, never longer than the limit, keeping the head and the tail of what it cuts', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 400 }), { maxLength: 40 }), fc.integer({ min: 40, max: 3000 }), (lines, max) => {
        const out = oneLine(lines.join('\n'), max);
        expect(out).not.toMatch(/[\x00-\x1f\x7f]/);
        expect(out.length).toBeLessThanOrEqual(max);
        const clean = lines.map((l) => l.replace(/[\x00-\x1f\x7f]/g, '').trim()).filter((l) => l);
        if (clean.length && out.length < max) for (const l of clean) expect(out).toContain(l);
        if (clean.length && out.length === max) {
          expect(out.startsWith(clean[0]!.slice(0, 10))).toBe(true);
          expect(out.endsWith(clean.at(-1)!.slice(-10))).toBe(true);
        }
      }),
    );
  });

  it('a run stopped before its first iteration is an error testcase in JUnit, and says so in the text', async () => {
    const r: MigrateReport = { ...report([], 'error'), stopReason: '`xl info` failed (status 1): ERROR:  Can\'t find hypervisor information in sysfs!' };
    const doc = await parseStringPromise(renderMigrateJunit(r));
    expect(Number(doc.testsuites.$.errors)).toBe(1);
    expect(Number(doc.testsuites.$.skipped)).toBe(0);
    expect(doc.testsuites.testsuite[0].testcase[0].error[0].$.message).toMatch(/xl info` failed .*hypervisor/);
    expect(renderMigrateText(r)).toMatch(/ERROR before the first iteration: `xl info` failed/);
  });

  it('a run stopped before its first iteration with no answer (inconclusive) is an error testcase too, not a skipped one', async () => {
    const r: MigrateReport = { ...report([], 'inconclusive'), stopReason: 'the pre-migrate bundle cannot tell whether the guest is a Xen PVHVM guest: xen-guest is inconclusive' };
    const doc = await parseStringPromise(renderMigrateJunit(r));
    expect(Number(doc.testsuites.$.skipped)).toBe(0);
    expect(Number(doc.testsuites.$.errors)).toBe(1);
    const e = doc.testsuites.testsuite[0].testcase[0].error[0];
    expect(e.$.type).toBe('inconclusive');
    expect(e.$.message).toMatch(/^inconclusive: the pre-migrate bundle cannot tell/);
  });
});

describe('SVG chart', () => {
  it('property: well-formed SVG with one bar per iteration, inside the plot, tallest bar for the largest downtime', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: null }), { minLength: 0, maxLength: 60 }), async (values) => {
        const its = values.map((v, k) => it_(`migrate/${k + 1}`, v === null ? 'error' : 'pass', v));
        const doc = await parseStringPromise(renderDowntimeSvg(report(its)));
        const rects = (doc.svg.rect ?? []) as Array<{ $: { y: string; height: string } }>;
        expect(rects).toHaveLength(values.length);
        for (const r of rects) {
          expect(Number(r.$.height)).toBeGreaterThanOrEqual(0);
          expect(Number(r.$.y)).toBeGreaterThanOrEqual(40 - 0.1);
          expect(Number(r.$.y) + Number(r.$.height)).toBeLessThanOrEqual(320 - 48 + 0.1);
        }
        const measured = values.map((v, k) => [v, k] as const).filter(([v]) => v !== null);
        if (measured.length) {
          const maxK = measured.reduce((a, b) => (b[0]! > a[0]! ? b : a))[1];
          const tallest = Math.max(...rects.map((r) => Number(r.$.height)));
          expect(Number(rects[maxK]!.$.height)).toBe(tallest);
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe('golden renderings', () => {
  it('the text table, JUnit and SVG of a fixed three-iteration report', async () => {
    const { join } = await import('node:path');
    const dir = join(import.meta.dirname, '../../fixtures/migrate');
    const r = report([it_('migrate/1', 'pass', 120), it_('migrate/2', 'fail', 80), it_('migrate/3', 'error', null, { where: { host: 'localhost', id: '7', name: 'g--migratedaway', state: 'suspended', note: 'also g--incoming (8) paused on localhost' } })], 'fail');
    await expect(renderMigrateText(r)).toMatchFileSnapshot(join(dir, 'report-text.txt'));
    await expect(renderMigrateJunit(r)).toMatchFileSnapshot(join(dir, 'report-junit.xml'));
    await expect(renderDowntimeSvg(r)).toMatchFileSnapshot(join(dir, 'downtime.svg'));
  });
});
