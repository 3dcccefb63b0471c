/**
 * Every probe against every fixture (fixtures/probes/<case>/expect.json names the verdict of each probe),
 * plus the coverage rules: every probe has pass, fail and inconclusive-or-skip cases, no pass without
 * evidence, every verdict lists evidence.
 */
import { describe, expect, it } from 'vitest';
import { runProbes } from '../../src/core/verify/index.js';
import { allProbes, probeIds } from '../../src/probes/index.js';
import { listFixtureCases, loadCase } from '../support/verify/fixtures.js';
import { hostNet } from './netfront-support.js';

const cases = listFixtureCases();

describe('probes × fixtures', () => {
  it('has fixtures', () => {
    expect(cases.length).toBeGreaterThanOrEqual(20);
  });

  for (const c of cases) {
    describe(c.name, () => {
      it('expect.json names a verdict for every probe, and nothing else', () => {
        expect(Object.keys(c.verdicts).sort()).toEqual([...probeIds].sort());
      });
      for (const id of probeIds) {
        it(`${id} → ${c.verdicts[id]}`, async () => {
          const { bundle, before } = await loadCase(c);
          const report = runProbes(bundle, { before, net: hostNet(c.dir) });
          const r = report.results.find((x) => x.id === id)!;
          expect({ id, verdict: r.verdict, evidence: r.evidence }).toMatchObject({ id, verdict: c.verdicts[id] });
          expect(r.evidence.length).toBeGreaterThan(0);
          if (r.verdict === 'fail') expect(r.hint).toBeTruthy();
          const needle = c.evidence[id];
          if (needle) expect(r.evidence.join('\n')).toContain(needle);
        });
      }
    });
  }
});

describe('coverage', () => {
  it('every probe has a pass, a fail and an inconclusive-or-skip fixture', async () => {
    const seen = new Map<string, Set<string>>(probeIds.map((id) => [id, new Set()]));
    for (const c of cases) for (const [id, v] of Object.entries(c.verdicts)) seen.get(id)!.add(v);
    for (const p of allProbes) {
      const s = seen.get(p.id)!;
      expect({ id: p.id, pass: s.has('pass'), fail: s.has('fail') }).toEqual({ id: p.id, pass: true, fail: true });
      expect({ id: p.id, other: s.has('inconclusive') || s.has('skip') }).toEqual({ id: p.id, other: true });
    }
  });

  it('every probe has an inconclusive fixture (except migration, which skips without a before bundle)', () => {
    for (const id of probeIds) {
      if (id === 'migration') continue;
      expect({ id, inconclusive: cases.some((c) => c.verdicts[id] === 'inconclusive') }).toEqual({ id, inconclusive: true });
    }
  });

  it('the release layouts 10.0, 11.x, 13.x, 14.x and 15 are covered', () => {
    for (const rel of ['10.0-', '11.1-', '12.4-', '13.2-', '14.1-', '15.0-']) expect(cases.some((c) => c.name.includes(rel))).toBe(true);
  });

  it('fixtures not built from a real capture are named as derived', () => {
    for (const c of cases) if (!c.name.includes('real')) expect(c.name).toMatch(/-derived$/);
  });
});
