/** The host side of a fixture's network evidence: `host-net.json` beside the bundle (what fbxen's run record would give the netfront probe). */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NetHostKnowledge } from '../../src/probes/types.js';

export function hostNet(caseDir: string): NetHostKnowledge | undefined {
  const p = join(caseDir, 'host-net.json');
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as NetHostKnowledge) : undefined;
}
