/**
 * FreeBSD-SHAPED sample distributions for tests (test/sample/make-sample.py; NOT a bootable FreeBSD).
 * Made once per (arch, release, variant) under test/.tmp/samples and shared by all test files.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const TMP = join(REPO, 'test/.tmp');

export function sampleDist(opts: { arch?: 'amd64' | 'i386'; release?: string; variant?: string } = {}): string {
  const arch = opts.arch ?? 'amd64';
  const release = opts.release ?? '14.3-RELEASE';
  const variant = opts.variant ?? 'none';
  const dir = join(TMP, 'samples', `${arch}-${release}-${variant}`);
  if (existsSync(join(dir, 'MANIFEST'))) return dir;
  mkdirSync(dirname(dir), { recursive: true });
  const work = `${dir}.tmp-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  execFileSync('python3', [join(REPO, 'test/sample/make-sample.py'), work, '--arch', arch, '--release', release, '--variant', variant], { stdio: 'pipe' });
  try {
    renameSync(work, dir);
  } catch {
    rmSync(work, { recursive: true, force: true }); // another worker made it first
  }
  return dir;
}

export function tmpDir(name: string): string {
  const dir = join(TMP, `${name}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}
