/**
 * `fbxen boot --toolstack xl` with a guest that prints hostile frame lines (issue 14, point 5), through the
 * real CLI entry and the fake xl (a SIMULATION of xl, test/support/fake-xl/xl). The header line that
 * claims 999,999,999 lines used to exhaust the heap (3.2 GB, exit 134), leave the domain running and
 * write no run.json. Now boot reports the evidence as rejected (exit 3), destroys its domain and records
 * the run; a good frame after the hostile line still wins.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { domains, fbxen, makeHost, makeImage, writeGuest, xlCalls } from './harness.js';

const HOSTILE = `FBXEN1 BEGIN RUN boot 999999999 ${'ab'.repeat(32)}`;
const runJson = (artifacts: string, name: string, run: string) => JSON.parse(readFileSync(join(artifacts, name, run, 'run.json'), 'utf8')) as Record<string, unknown>;

describe('a hostile guest cannot take fbxen boot down', () => {
  it('a header claiming 999,999,999 lines: exit 3 "evidence rejected", domain destroyed, run.json written', async () => {
    const h = makeHost();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-h', frame: false, tail: [HOSTILE.replace('RUN', 'run-h'), '@hang'] });
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-hostile', '--artifacts', h.artifacts, '--run-id', 'run-h', '--timeout', '2'], h);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/evidence rejected: the frame of run run-h, phase boot claims 999999999 lines, more than the \d+/);
    expect(domains(h)).toEqual([]);
    expect(xlCalls(h)).toContainEqual(['destroy', '1']);
    expect(runJson(h.artifacts, 'fbxen-hostile', 'run-h')).toMatchObject({ run: 'run-h', outcome: 'failed' });
    expect(readFileSync(join(h.artifacts, 'fbxen-hostile', 'run-h', 'console.log'), 'utf8')).toContain(HOSTILE.replace('RUN', 'run-h'));
  });

  it('the hostile line before a good frame: the good frame is collected, exit 0', async () => {
    const h = makeHost();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-g', before: [HOSTILE.replace('RUN', 'run-g')] });
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-hostile2', '--artifacts', h.artifacts, '--run-id', 'run-g', '--timeout', '30'], h);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(domains(h)).toEqual([]);
    expect(runJson(h.artifacts, 'fbxen-hostile2', 'run-g')).toMatchObject({ outcome: 'collected' });
  });
});
