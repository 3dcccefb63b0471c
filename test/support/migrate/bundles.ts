/** Guest bundles for the migrate-test simulations, from the probe fixtures (fixtures/probes/migration-*). */
import { join } from 'node:path';
import { readBundle, type Bundle } from '../../../src/core/verify/index.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/probes');

export async function fixturePair(name: string): Promise<{ before: Bundle; after: Bundle }> {
  return { before: await readBundle(join(FIXTURES, name, 'before')), after: await readBundle(join(FIXTURES, name, 'after')) };
}

export async function fixtureBundle(name: string): Promise<Bundle> {
  return readBundle(join(FIXTURES, name));
}

/**
 * The bundle after migration N of a healthy guest: the interrupt counters of `vmstat -ia` keep growing
 * from one migration to the next (each total times N), as they do on a guest that keeps running.
 */
export function advanced(b: Bundle, n: number): Bundle {
  const sections = new Map(b.sections);
  for (const name of ['vmstat-ia.0', 'vmstat-ia.1']) {
    const text = sections.get(name);
    if (text === undefined) continue;
    sections.set(name, text.replace(/^(.*?\S)(\s+)(\d+)(\s+)(\d+)$/gm, (_m, label: string, s1: string, total: string, s2: string, rate: string) => `${label}${s1}${Number(total) * n}${s2}${rate}`));
  }
  return { ...b, sections };
}
