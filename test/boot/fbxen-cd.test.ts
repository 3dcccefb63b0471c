/** The fbxen CD, built with the real xorriso and read back by two independent readers (xorriso, bsdtar). */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createExecaRunner } from '../../src/core/exec/runner.js';
import { defaultCollectorPath, makeFbxenCd } from '../../src/core/iso/fbxen-cd.js';
import { InputError } from '../../src/core/errors.js';

const work = mkdtempSync(join(tmpdir(), 'fbxen-cd-test-'));
/** The real collector when the verify part has shipped it; else a stand-in with the same role. */
const collector = existsSync(defaultCollectorPath())
  ? defaultCollectorPath()
  : (() => {
      const p = join(work, 'stand-in-collect');
      writeFileSync(p, '#!/bin/sh\n# test stand-in for guest/fbxen-collect\necho collect\n');
      return p;
    })();
const runner = createExecaRunner();
const T = 1_763_935_200; // 2025-11-23T22:00:00Z

async function cd(name: string, runId: string, timestamp = T): Promise<string> {
  const outPath = join(work, name);
  await makeFbxenCd({ runId, phase: 'boot', collectorPath: collector, outPath, timestamp }, runner);
  return outPath;
}

describe('fbxen CD', () => {
  it('is ISO9660 + Rock Ridge, volume FBXEN, with /fbxen/run, /fbxen/phase, /fbxen/collect (0555, root)', async () => {
    const iso = await cd('a.iso', '20261123T220000Z-beef');
    const pvd = readFileSync(iso).subarray(16 * 2048, 17 * 2048);
    expect(pvd.subarray(1, 6).toString('latin1')).toBe('CD001');
    expect(pvd.subarray(40, 72).toString('latin1').trim()).toBe('FBXEN');

    const listing = execFileSync('xorriso', ['-indev', iso, '-lsl', '/fbxen'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(listing).toMatch(/^-r-xr-xr-x\s+1\s+0\s+0\s+\d+ .* 'collect'$/m);
    expect(listing).toMatch(/^-r--r--r--\s+1\s+0\s+0\s+22 .* 'run'$/m);
    expect(listing).toMatch(/^-r--r--r--\s+1\s+0\s+0\s+5 .* 'phase'$/m);

    // An independent reader (libarchive) sees the same tree and contents.
    const tv = execFileSync('bsdtar', ['-tvf', iso], { encoding: 'utf8' });
    expect(tv).toMatch(/-r-xr-xr-x .* fbxen\/collect/);
    expect(execFileSync('bsdtar', ['-xOf', iso, 'fbxen/run'], { encoding: 'utf8' })).toBe('20261123T220000Z-beef\n');
    expect(execFileSync('bsdtar', ['-xOf', iso, 'fbxen/phase'], { encoding: 'utf8' })).toBe('boot\n');
    expect(execFileSync('bsdtar', ['-xOf', iso, 'fbxen/collect'])).toEqual(readFileSync(collector));
  });

  it('is reproducible byte for byte, and carries the run id', async () => {
    const a = await cd('r1.iso', 'run-x');
    await new Promise((r) => setTimeout(r, 1100)); // a later wall clock must not matter
    const b = await cd('r2.iso', 'run-x');
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    const c = await cd('r3.iso', 'run-y');
    expect(readFileSync(a).equals(readFileSync(c))).toBe(false);
    const d = await cd('r4.iso', 'run-x', T + 60);
    expect(readFileSync(a).equals(readFileSync(d))).toBe(false);
  });

  it('refuses a run id that could not be the nonce, and a missing collector, writing nothing', async () => {
    const out = join(work, 'bad.iso');
    await expect(makeFbxenCd({ runId: 'a b', collectorPath: collector, outPath: out, timestamp: T }, runner)).rejects.toBeInstanceOf(InputError);
    await expect(makeFbxenCd({ runId: 'ok', collectorPath: join(work, 'nope'), outPath: out, timestamp: T }, runner)).rejects.toThrow(/collector .* is missing/);
    expect(existsSync(out)).toBe(false);
  });

  it('carries the round trip\'s /fbxen/net and /fbxen/net.bin byte for byte (read back by bsdtar), 0444 like run; refuses a name that is not a plain file name or replaces run', async () => {
    const outPath = join(work, 'net.iso');
    const bin = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7919) & 0xff));
    const net = 'host=192.168.122.1\nup=40001\ndown=40002\nbytes=70000\n';
    await makeFbxenCd({ runId: 'run-net', phase: 'boot', collectorPath: collector, outPath, timestamp: T, extraFiles: [{ name: 'net', content: net }, { name: 'net.bin', content: bin }] }, runner);
    expect(execFileSync('bsdtar', ['-xOf', outPath, 'fbxen/net'], { encoding: 'utf8' })).toBe(net);
    expect(execFileSync('bsdtar', ['-xOf', outPath, 'fbxen/net.bin']).equals(bin)).toBe(true);
    expect(execFileSync('xorriso', ['-indev', outPath, '-lsl', '/fbxen'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })).toMatch(/^-r--r--r--\s+1\s+0\s+0\s+70000 .* 'net.bin'$/m);
    for (const name of ['../x', 'run', 'Net', 'a/b']) {
      await expect(makeFbxenCd({ runId: 'ok', collectorPath: collector, outPath: join(work, 'bad-net.iso'), timestamp: T, extraFiles: [{ name, content: 'x' }] }, runner)).rejects.toThrow(/cannot be a file of the fbxen CD/);
    }
    expect(existsSync(join(work, 'bad-net.iso'))).toBe(false);
  });
});
