/**
 * migrate-test on a PVH guest with the simulated xl (test/support/migrate/sim-xl.ts, a SIMULATION; its
 * `xl list -l` says c_info.type pvh and the domain has only the PV console). The guest's bundles are the
 * derived PVH fixture (fixtures/probes/14.3-pvh-healthy-derived) without machdep.bootmethod, as a 1.2.0
 * collector sends them: only the toolstack's record of the type makes the probes judge it as PVH (cdrom
 * skips, vector-callback is implicit). Live and save-restore; the console is reattached with -t pv.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { migrateTest, type MigrateTestRequest } from '../../src/core/migrate/index.js';
import { silentProgress } from '../../src/core/progress.js';
import { CleanupStack } from '../../src/core/util/cleanup.js';
import type { Bundle } from '../../src/core/verify/index.js';
import { advanced, fixtureBundle } from '../support/migrate/bundles.js';
import { SimXl } from '../support/migrate/sim-xl.js';

const sims: SimXl[] = [];
afterEach(() => {
  for (const s of sims.splice(0)) s.stopAll();
});

/** The PVH bundle as a collector without machdep.bootmethod sends it. */
async function pvhBundle(): Promise<Bundle> {
  const b = await fixtureBundle('14.3-pvh-healthy-derived');
  const sections = new Map(b.sections);
  sections.set('sysctl', (sections.get('sysctl') ?? '').replace(/^machdep\.bootmethod: .*\n/m, ''));
  return { ...b, sections };
}

async function pvhSim(): Promise<SimXl> {
  const b = await pvhBundle();
  const sim = new SimXl({ name: 'fbxen-pvh', type: 'pvh', before: advanced(b, 1), after: (n) => advanced(b, n + 1), loginPrompt: true });
  sims.push(sim);
  return sim;
}

function request(over: Partial<MigrateTestRequest> = {}): MigrateTestRequest {
  return {
    toolstack: 'xl',
    domain: 'fbxen-pvh',
    to: 'localhost',
    iterations: 2,
    mode: 'live',
    load: 'none',
    keepGoing: false,
    evidence: 'console',
    stepTimeoutSec: 5,
    artifactsRoot: mkdtempSync(join(tmpdir(), 'fbxen-migrate-pvh-')),
    runId: 'mt-pvh',
    dryRun: false,
    rollSeconds: 1,
    ...over,
  };
}

function run(sim: SimXl, req: MigrateTestRequest) {
  return migrateTest(req, { runner: sim, progress: silentProgress, signal: new AbortController().signal, cleanup: new CleanupStack(), env: {}, cwd: '/', now: sim.now, pollMs: 10, settleMs: 30 });
}

describe('migrate-test on a PVH guest (SIMULATION)', () => {
  for (const mode of ['live', 'save-restore'] as const) {
    it(`${mode}: the PV console is reattached, the heartbeat measured, the probes after each iteration judge it as PVH`, async () => {
      const sim = await pvhSim();
      const out = await run(sim, request({ mode }));
      expect(out.error).toBeUndefined();
      expect(out.report!.status).toBe('pass');
      expect(out.exitCode).toBe(0);
      const consoles = sim.calls.filter((c) => c.startsWith('xl console'));
      expect(consoles.length).toBeGreaterThanOrEqual(3);
      for (const c of consoles) expect(c).toMatch(/^xl console -t pv \d+$/);
      expect(sim.calls).toContain('xl list -l fbxen-pvh');
      for (const it of out.report!.iterations) {
        expect(it.verdict).toBe('pass');
        expect(it.downtimeMs).toBeGreaterThan(0);
        const v = Object.fromEntries(it.probes.map((p) => [p.id, p]));
        expect(v.cdrom!.verdict).toBe('skip');
        expect(v['vector-callback']!.verdict).toBe('pass');
        expect(v['vector-callback']!.evidence.join('\n')).toMatch(/^booted as type pvh \(xl: the domain's type is pvh\)/);
        expect(v['xen-guest']!.verdict).toBe('pass');
      }
    });
  }
});
