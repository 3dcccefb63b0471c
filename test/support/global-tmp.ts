/**
 * vitest global setup: every test run gets a temporary directory of its own as TMPDIR (inherited by
 * the test workers and whatever they spawn), removed when the run ends. Tests make their scratch
 * directories with mkdtemp(tmpdir()) and need not clean each one up; none is left in /tmp.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'fbxen-tests-'));
  process.env.TMPDIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
