/**
 * The decompressed-set cache proves what it returns (issue 14.2) and keeps holes as holes (14.10):
 * SetCache on its own (property tests over chunkings and zero runs), then fbxen build with entries
 * that were flipped, replaced, truncated or made by an fbxen that kept no record.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundExpanded, checkExpandedSize, SetCache, StaleCacheEntryError } from '../../src/core/imaging/set-cache.js';
import type { SetFile } from '../../src/core/imaging/sets.js';
import { CleanupStack } from '../../src/core/util/cleanup.js';
import { fbxen } from '../support/cli.js';
import { sampleDist } from '../support/samples.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const scratch = mkdtempSync(join(tmpdir(), 'fbxen-cache-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const dir = (name: string) => mkdtempSync(join(scratch, `${name}-${n++}-`));

const SET: SetFile = { name: 'base', path: '/nonexistent/base.txz', sha256: 'ab'.repeat(32), entries: 1, source: 'test' };

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

async function* chunksOf(parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p;
}

function cacheIn(cacheDir: string, warnings: string[] = []) {
  return new SetCache({ cacheDir, set: SET, signal: new AbortController().signal, warn: (m) => warnings.push(m), cleanup: new CleanupStack() });
}

/** Data with long zero runs at arbitrary offsets, cut into arbitrary chunks. */
const holey = fc
  .array(fc.record({ zeros: fc.nat({ max: 300_000 }), data: fc.uint8Array({ minLength: 0, maxLength: 5000 }) }), { minLength: 1, maxLength: 8 })
  .chain((runs) => {
    const whole = Buffer.concat(runs.flatMap((r) => [Buffer.alloc(r.zeros), Buffer.from(r.data)]));
    return fc.array(fc.nat({ max: whole.length }), { maxLength: 12 }).map((cuts) => {
      const at = [...new Set([0, ...cuts, whole.length])].sort((a, b) => a - b);
      return { whole, parts: at.slice(1).map((end, i) => whole.subarray(at[i], end)) };
    });
  });

describe('SetCache', () => {
  it('stores exactly what streamed through, records its size and sha256, and reads it back checked', async () => {
    await fc.assert(
      fc.asyncProperty(holey, async ({ whole, parts }) => {
        const cache = cacheIn(dir('store'));
        const passed = await collect(cache.store(chunksOf(parts)));
        expect(passed.equals(whole)).toBe(true);
        expect(readFileSync(cache.tarPath).equals(whole)).toBe(true);
        expect(JSON.parse(readFileSync(cache.metaPath, 'utf8'))).toEqual({ schema: 'fbxen-set-cache/1', set: SET.sha256, size: whole.length, sha256: sha256(whole) });
        const entry = await cacheIn(join(cache.dir, '..')).lookup();
        expect(entry).toEqual({ path: cache.tarPath, size: whole.length, sha256: sha256(whole) });
        expect((await collect(cacheIn(join(cache.dir, '..')).read(entry!))).equals(whole)).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it('refuses an entry with any byte changed, at the end of the stream, and removes it', async () => {
    await fc.assert(
      fc.asyncProperty(holey.filter((h) => h.whole.length > 0), fc.nat(), fc.integer({ min: 1, max: 255 }), async ({ whole, parts }, at, flip) => {
        const cacheDir = dir('flip');
        const cache = cacheIn(cacheDir);
        await collect(cache.store(chunksOf(parts)));
        const bad = Buffer.from(whole);
        bad[at % bad.length]! ^= flip;
        writeFileSync(cache.tarPath, bad);
        const reader = cacheIn(cacheDir);
        const entry = await reader.lookup();
        const err = await collect(reader.read(entry!)).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(StaleCacheEntryError);
        expect(String(err)).toMatch(/has sha256 [0-9a-f]{64}, not the [0-9a-f]{64} recorded/);
        expect(readdirSync(cache.dir)).toEqual([]);
      }),
      { numRuns: 25 },
    );
  });

  it('keeps runs of zeros as holes', async () => {
    const cache = cacheIn(dir('holes'));
    const mib = 1 << 20;
    const parts = [Buffer.alloc(3 * mib + 5), Buffer.from('data'), Buffer.alloc(40 * mib), Buffer.alloc(mib, 1), Buffer.alloc(20 * mib)];
    await collect(cache.store(chunksOf(parts)));
    const st = statSync(cache.tarPath);
    expect(st.size).toBe(parts.reduce((s, p) => s + p.length, 0));
    // 1 MiB of data and a 4-byte run (one 64 KiB block): far under the 64 MiB written through.
    expect(st.blocks * 512).toBeLessThan(2 * mib);
  });

  it('drops entries that are truncated, have no record, or a record of another set, with a warning', async () => {
    const whole = Buffer.from('x'.repeat(100_000));
    for (const damage of ['truncated', 'no record', 'other set', 'record not JSON'] as const) {
      const cacheDir = dir('drop');
      await collect(cacheIn(cacheDir).store(chunksOf([whole])));
      const cache = cacheIn(cacheDir);
      if (damage === 'truncated') truncateSync(cache.tarPath, 5000);
      if (damage === 'no record') rmSync(cache.metaPath);
      if (damage === 'other set') writeFileSync(cache.metaPath, readFileSync(cache.metaPath, 'utf8').replace(SET.sha256, 'cd'.repeat(32)));
      if (damage === 'record not JSON') writeFileSync(cache.metaPath, '{"schema":');
      const warnings: string[] = [];
      expect(await cacheIn(cacheDir, warnings).lookup(), damage).toBeUndefined();
      expect(warnings.join('\n'), damage).toMatch(/the cached base\.tar .*: removed, decompressing base\.txz again/);
      expect(readdirSync(cache.dir), damage).toEqual([]);
    }
  });

  it('leaves no entry when the stream fails half-way', async () => {
    const cacheDir = dir('fail');
    const cache = cacheIn(cacheDir);
    async function* failing() {
      yield Buffer.alloc(70_000, 1);
      throw new Error('decoder died');
    }
    await expect(collect(cache.store(failing()))).rejects.toThrow(/decoder died/);
    expect(readdirSync(cache.dir)).toEqual([]);
  });
});

describe('the expanded size is bounded', () => {
  it('refuses a set whose index announces more than the limit, naming the set and the limit', () => {
    expect(() => checkExpandedSize({ name: 'base' }, 5 * 1024 ** 3, 4 * 1024 ** 3)).toThrow(/base\.txz expands to 5\.0 GiB, more than fbxen's limit of 4\.0 GiB for one set/);
    expect(checkExpandedSize({ name: 'base' }, 4 * 1024 ** 3, 4 * 1024 ** 3)).toBe(4 * 1024 ** 3);
    // The documented default: 16 GiB.
    expect(() => checkExpandedSize({ name: 'kernel' }, 16 * 1024 ** 3 + 1)).toThrow(/kernel\.txz .* limit of 16\.0 GiB/);
  });

  it('stops a decoder that goes past what the index announced, before passing the excess on', async () => {
    const passed: number[] = [];
    const source = chunksOf([Buffer.alloc(600), Buffer.alloc(600), Buffer.alloc(600)]);
    const err = await (async () => {
      for await (const c of boundExpanded(source, { name: 'kernel' }, 1500)) passed.push(c.length);
    })().catch((e: unknown) => e);
    expect(String(err)).toMatch(/kernel\.txz expands to more than the 1\.5 KiB its xz index announced/);
    expect(passed).toEqual([600, 600]);
    expect((await collect(boundExpanded(chunksOf([Buffer.alloc(1500)]), { name: 'kernel' }, 1500))).length).toBe(1500);
  });
});

describe('fbxen build with a damaged decompressed-set cache', () => {
  const dist = sampleDist();
  const manifest = readFileSync(join(dist, 'MANIFEST'), 'utf8');
  const shaOf = (set: string) => new RegExp(`^${set}\\.txz\\t([0-9a-f]{64})`, 'm').exec(manifest)![1]!;
  const baseTar = () => execFileSync('xz', ['-dc', join(dist, 'base.txz')], { maxBuffer: 1 << 28 });
  const kernelTar = () => execFileSync('xz', ['-dc', join(dist, 'kernel.txz')], { maxBuffer: 1 << 28 });
  let cold: { raw: string; cache: string };

  const build = (cache: string, out = dir('out')) => {
    const r = fbxen(['build', '--dist', dist, '--arch', 'amd64', '--out', out, '--cache-dir', cache, '--disk-size', '256M', '--swap', '32M', '--name', 's', '--format', 'raw'], { env: { SOURCE_DATE_EPOCH: '1717300000' } });
    const record = r.code === 0 ? (JSON.parse(readFileSync(join(out, 'build.json'), 'utf8')) as { outputs: { sha256: string }[] }) : undefined;
    return { ...r, out, raw: record?.outputs[0]?.sha256 };
  };

  beforeAll(() => {
    const cache = dir('cache');
    const r = build(cache);
    expect(r.code, r.stderr).toBe(0);
    cold = { raw: r.raw!, cache };
  });

  /** A warm cache whose base entry is then damaged by `damage`. */
  function damaged(damage: (tarPath: string, metaPath: string) => void) {
    const cache = dir('cache');
    execFileSync('cp', ['-r', join(cold.cache, 'sets'), join(cache, 'sets')]);
    const tar = join(cache, 'sets', `${shaOf('base')}.tar`);
    damage(tar, `${tar}.json`);
    const r = build(cache);
    return { ...r, tar };
  }

  function expectRebuilt(r: ReturnType<typeof damaged>, warning: RegExp) {
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(warning);
    // The image is the one the sets make, not one with the cache's bytes in it.
    expect(r.raw).toBe(cold.raw);
    // And the entry was made again, from the set.
    expect(readFileSync(r.tar).equals(baseTar())).toBe(true);
    expect(readdirSync(r.out).sort()).toEqual(['build.json', 's.raw']);
  }

  it('flipped bytes: the build starts over from base.txz, with a warning, and the image is the set\'s', () => {
    const r = damaged((tar) => {
      const b = readFileSync(tar);
      b.writeUInt32BE((b.readUInt32BE(2_000_000) ^ 0xffffffff) >>> 0, 2_000_000);
      writeFileSync(tar, b);
    });
    expectRebuilt(r, /warning: the cached base\.tar \(.*\) has sha256 [0-9a-f]{64}, not the [0-9a-f]{64} recorded when it was made: it was damaged or replaced; building again from base\.txz/);
  });

  it('another valid tar of the same size in its place: its files do not reach the image', () => {
    const r = damaged((tar) => {
      const size = statSync(tar).size;
      const other = kernelTar();
      // A valid tar (the kernel set) padded with zero blocks to the entry's size.
      writeFileSync(tar, Buffer.concat([other, Buffer.alloc(size - other.length)]));
    });
    expectRebuilt(r, /has sha256 [0-9a-f]{64}, not the [0-9a-f]{64} recorded/);
  });

  it('a truncated entry is rebuilt, not blamed on the set', () => {
    const r = damaged((tar) => truncateSync(tar, 100_000));
    expect(r.stderr).not.toMatch(/fetch .* again/);
    expectRebuilt(r, /warning: the cached base\.tar is 100000 bytes, not the \d+ recorded when it was made: removed, decompressing base\.txz again/);
  });

  it('an entry without its record (from an older fbxen) is rebuilt', () => {
    const r = damaged((_tar, meta) => rmSync(meta));
    expectRebuilt(r, /warning: the cached base\.tar has no sound record of its size and sha256/);
  });

  it('a warm build from a sound cache is the cold build, with no warning', () => {
    const cache = dir('cache');
    execFileSync('cp', ['-r', join(cold.cache, 'sets'), join(cache, 'sets')]);
    const r = build(cache);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(/warning/);
    expect(r.raw).toBe(cold.raw);
  });

  it('a set holding a large zero file is cached with its holes', () => {
    const sparseDist = dir('dist');
    copyFileSync(join(dist, 'kernel.txz'), join(sparseDist, 'kernel.txz'));
    const work = dir('work');
    writeFileSync(join(work, 'base.tar'), baseTar());
    // GNU tar appends a 48 MiB file of zeros (a plain file, not a sparse-format entry).
    writeFileSync(join(work, 'zeros'), '');
    truncateSync(join(work, 'zeros'), 48 << 20);
    execFileSync('tar', ['--append', '--format=ustar', '--owner=0', '--group=0', '-f', join(work, 'base.tar'), '-C', work, '--transform', 's,^,./usr/share/,', 'zeros']);
    execFileSync('xz', ['-1', '-k', join(work, 'base.tar')]);
    copyFileSync(join(work, 'base.tar.xz'), join(sparseDist, 'base.txz'));
    const txzSha = sha256(readFileSync(join(sparseDist, 'base.txz')));
    writeFileSync(join(sparseDist, 'MANIFEST'), manifest.replace(/^base\.txz\t[0-9a-f]{64}\t(\d+)/m, (_m, count: string) => `base.txz\t${txzSha}\t${Number(count) + 1}`));
    const cache = dir('cache');
    const r = fbxen(['build', '--dist', sparseDist, '--arch', 'amd64', '--out', dir('out'), '--cache-dir', cache, '--disk-size', '256M', '--swap', '32M', '--name', 's', '--format', 'raw']);
    expect(r.code, r.stderr).toBe(0);
    const st = statSync(join(cache, 'sets', `${txzSha}.tar`));
    expect(st.size).toBeGreaterThan(48 << 20);
    // The sample's own data is under 5 MiB: the 48 MiB of zeros take no room.
    expect(st.blocks * 512).toBeLessThan(8 << 20);
  });
});
