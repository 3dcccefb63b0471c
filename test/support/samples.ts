/**
 * FreeBSD-SHAPED sample distributions for tests (test/sample/make-sample.py; NOT a bootable FreeBSD).
 * Made once per (arch, release, variant) and shared by all test files and runs, in a cache keyed by the
 * generator's own sha256 (node_modules/.cache/fbxen-samples/<hash>/, about 13 MB), so that a changed
 * generator never serves an old sample (an old key is left alone: a concurrent run may still read it). Scratch directories go to the run's own
 * TMPDIR (tmpDir below), which the run removes.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const GENERATOR = join(REPO, 'test/sample/make-sample.py');
const SAMPLES_ROOT = join(REPO, 'node_modules/.cache/fbxen-samples');

let samplesDir: string | undefined;
function samplesCache(): string {
  if (samplesDir) return samplesDir;
  const key = createHash('sha256').update(readFileSync(GENERATOR)).digest('hex').slice(0, 16);
  samplesDir = join(SAMPLES_ROOT, key);
  return samplesDir;
}

export function sampleDist(opts: { arch?: 'amd64' | 'i386'; release?: string; variant?: string } = {}): string {
  const arch = opts.arch ?? 'amd64';
  const release = opts.release ?? '14.3-RELEASE';
  const variant = opts.variant ?? 'none';
  const dir = join(samplesCache(), `${arch}-${release}-${variant}`);
  if (existsSync(join(dir, 'MANIFEST'))) return dir;
  mkdirSync(dirname(dir), { recursive: true });
  const work = `${dir}.tmp-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  execFileSync('python3', [GENERATOR, work, '--arch', arch, '--release', release, '--variant', variant], { stdio: 'pipe' });
  try {
    renameSync(work, dir);
  } catch {
    rmSync(work, { recursive: true, force: true }); // another worker made it first
  }
  return dir;
}

/** A scratch directory inside this test run's own TMPDIR (test/support/global-tmp.ts), removed when the run ends. */
export function tmpDir(name: string): string {
  return mkdtempSync(join(tmpdir(), `${name}-`));
}
