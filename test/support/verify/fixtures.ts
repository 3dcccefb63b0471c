/** Loads the probe fixtures: fixtures/probes/<case>/ (a bundle, or before/ + after/) with expect.json. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readBundle, type Bundle } from '../../../src/core/verify/index.js';
import type { Verdict } from '../../../src/probes/types.js';

export const FIXTURES = join(import.meta.dirname, '../../../fixtures/probes');

export interface FixtureCase {
  name: string;
  dir: string;
  description: string;
  verdicts: Record<string, Verdict>;
  evidence: Record<string, string>;
  /** the bundle's path (for a migration case: after/) and the before bundle's path */
  bundlePath: string;
  beforePath: string | undefined;
}

export function listFixtureCases(): FixtureCase[] {
  return readdirSync(FIXTURES, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => {
      const dir = join(FIXTURES, d.name);
      const expect = JSON.parse(readFileSync(join(dir, 'expect.json'), 'utf8')) as { description: string; verdicts: Record<string, Verdict>; evidence: Record<string, string> };
      const pair = existsSync(join(dir, 'after'));
      return {
        name: d.name,
        dir,
        description: expect.description,
        verdicts: expect.verdicts,
        evidence: expect.evidence,
        bundlePath: pair ? join(dir, 'after') : dir,
        beforePath: pair ? join(dir, 'before') : undefined,
      };
    });
}

export async function loadCase(c: FixtureCase): Promise<{ bundle: Bundle; before: Bundle | undefined }> {
  return { bundle: await readBundle(c.bundlePath), before: c.beforePath ? await readBundle(c.beforePath) : undefined };
}
