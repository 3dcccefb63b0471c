/**
 * Property tests: random trees (deep, wide, many hard links, long and non-ASCII names, empty,
 * fragment-tail, multi-block and sparse files, fast and slow symlinks) with random geometries
 * round-trip through the writer and the independent reader, pass the fsck-like checker, and get
 * the same inode numbers and metadata whatever the arrival order. estimateUfs2Size always fits.
 */
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { estimateUfs2Size } from '../../src/core/ufs2/estimate.js';
import { FileFlags } from '../../src/core/ufs2/types.js';
import { buildImage, checkClean, expectImageMatches, meta, MiB, noise, sparseFile, tempDir, type Entry } from './helpers.js';

const tmp = tempDir('fbxen-ufs2-prop-');
afterAll(() => tmp.cleanup());

const nameChars = fc.constantFrom(...'abcXYZ019._- é€'.split(''));
const shortName = fc.string({ unit: nameChars, minLength: 1, maxLength: 6 }).filter((s) => s !== '.' && s !== '..');
const longName = fc.integer({ min: 200, max: 255 }).map((n) => 'L'.repeat(n));
const name = fc.oneof({ weight: 6, arbitrary: shortName }, { weight: 1, arbitrary: longName });

const fileSize = fc.oneof(
  fc.constantFrom(0, 1, 511, 512, 4095, 4096, 4097, 32767, 32768, 32769),
  fc.integer({ min: 0, max: 200_000 }),
  fc.integer({ min: 380_000, max: 420_000 }), // around the end of the direct blocks at 32K
);

type Op =
  | { op: 'dir'; dir: string[]; name: string; mode: number; flags: number }
  | { op: 'file'; dir: string[]; name: string; size: number; kind: 'noise' | 'zero' | 'sparse'; seed: number; mode: number; uid: number }
  | { op: 'symlink'; dir: string[]; name: string; targetLen: number }
  | { op: 'hardlink'; dir: string[]; name: string; pick: number };

const dirPath = fc.array(fc.constantFrom('a', 'b', 'c', 'dd', 'é'), { maxLength: 6 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('dir' as const), dir: dirPath, name, mode: fc.constantFrom(0o755, 0o1777, 0o555, 0o700), flags: fc.constantFrom(0, FileFlags.SF_IMMUTABLE) }),
  fc.record({
    op: fc.constant('file' as const),
    dir: dirPath,
    name,
    size: fileSize,
    kind: fc.constantFrom('noise' as const, 'zero' as const, 'sparse' as const),
    seed: fc.integer({ min: 1, max: 1 << 30 }),
    mode: fc.constantFrom(0o644, 0o4555, 0o2555, 0o600),
    uid: fc.constantFrom(0, 5, 1001, 65534),
  }),
  fc.record({ op: fc.constant('symlink' as const), dir: dirPath, name, targetLen: fc.integer({ min: 1, max: 300 }) }),
  fc.record({ op: fc.constant('hardlink' as const), dir: dirPath, name, pick: fc.nat() }),
);

/** Turns random operations into a valid entry list (no duplicates, nothing under a file). */
function toEntries(ops: readonly Op[]): Entry[] {
  const kinds = new Map<string, 'dir' | 'other'>([['', 'dir']]);
  const files: string[] = [];
  const out: Entry[] = [];
  const usable = (parts: string[]): boolean => {
    for (let i = 1; i < parts.length; i++) if (kinds.get(parts.slice(0, i).join('/')) === 'other') return false;
    return true;
  };
  for (const o of ops) {
    const parts = [...o.dir, o.name];
    const path = parts.join('/');
    if (!usable(parts)) continue;
    const existing = kinds.get(path);
    for (let i = 1; i < parts.length; i++) if (!kinds.has(parts.slice(0, i).join('/'))) kinds.set(parts.slice(0, i).join('/'), 'dir');
    if (o.op === 'dir') {
      // a repeated directory takes the later metadata, so its entries' order matters: keep one
      if (existing !== undefined && out.some((e) => e.path === path)) continue;
      if (existing === 'other') continue;
      kinds.set(path, 'dir');
      out.push({ kind: 'dir', path, meta: meta(o.mode, { flags: o.flags, mtime: 1_600_000_000 + o.mode }) });
      continue;
    }
    if (existing !== undefined) continue;
    if (o.op === 'hardlink' && files.length === 0) continue;
    kinds.set(path, 'other');
    if (o.op === 'file') {
      const data =
        o.kind === 'noise' ? noise(o.size, o.seed) : o.kind === 'zero' ? Buffer.alloc(o.size) : sparseFile(o.size, o.size > 10 ? [[o.size >> 1, noise(10, o.seed)]] : []);
      out.push({ kind: 'file', path, meta: meta(o.mode, { uid: o.uid, gid: o.uid, mtime: 1_650_000_000 + o.seed }), data });
      files.push(path);
    } else if (o.op === 'symlink') {
      out.push({ kind: 'symlink', path, target: 'T'.repeat(o.targetLen - 1) + '!', meta: meta(0o755) });
    } else {
      out.push({ kind: 'hardlink', path, target: files[o.pick % files.length]! });
    }
  }
  return out;
}

const geometry = fc.constantFrom(
  { blockSize: 32768, fragmentSize: 4096 },
  { blockSize: 16384, fragmentSize: 2048 },
  { blockSize: 4096, fragmentSize: 512 },
  { blockSize: 65536, fragmentSize: 8192 },
  { blockSize: 8192, fragmentSize: 8192 },
);

function listing(path: string): string[] {
  const img = checkClean(path);
  try {
    return img.walk().map(({ path: p, inode: i }) => [p, i.ino, i.mode, i.uid, i.gid, i.flags, i.nlink, i.size, i.mtime, i.blocks].join(' '));
  } finally {
    img.close();
  }
}

let run = 0;
describe('UFS2 writer: properties', () => {
  it('random trees round-trip and pass the checker, in any arrival order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 20, maxLength: 150, size: "max" }), geometry, fc.integer(), async (ops, geo, shuffleSeed) => {
        const entries = toEntries(ops);
        const dataBytes = entries.reduce((s, e) => s + (e.kind === 'file' ? (Buffer.isBuffer(e.data) ? e.data.length : e.data.size) : 0), 0);
        const sizeBytes = Math.max(estimateUfs2Size({ dataBytes, entries: entries.length }, geo), 32 * MiB);
        const a = join(tmp.dir, `p${run}.img`);
        const b = join(tmp.dir, `q${run++}.img`);
        await buildImage(a, entries, { sizeBytes, ...geo });
        const img = checkClean(a);
        expectImageMatches(img, entries);
        img.close();
        // another arrival order: hard links still after their targets
        const rnd = fc.sample(fc.shuffledSubarray(entries, { minLength: entries.length, maxLength: entries.length }), { seed: shuffleSeed, numRuns: 1 })[0]!;
        const order = [...rnd.filter((e) => e.kind !== 'hardlink'), ...entries.filter((e) => e.kind === 'hardlink')];
        await buildImage(b, order, { sizeBytes, ...geo });
        const la = listing(a);
        const lb = listing(b);
        // block counts may differ only through tail-fragment packing; everything else is equal
        const strip = (l: string[]): string[] => l.map((s) => s.split(' ').slice(0, -1).join(' '));
        expect(strip(lb)).toEqual(strip(la));
      }),
      { numRuns: 30 },
    );
  });

  it('estimateUfs2Size fits worst-case content: many tiny files of awkward sizes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 40_000 }), { minLength: 1, maxLength: 300 }), geometry, async (sizes, geo) => {
        const entries: Entry[] = sizes.map((s, i) => ({ kind: 'file', path: `d${i % 7}/f${i}`, meta: meta(0o644), data: noise(s, i + 1) }));
        const dataBytes = sizes.reduce((a, b) => a + b, 0);
        const sizeBytes = estimateUfs2Size({ dataBytes, entries: entries.length + 7 }, geo);
        const p = join(tmp.dir, `e${run++}.img`);
        const { stats } = await buildImage(p, entries, { sizeBytes, ...geo });
        expect(stats.fragmentsFree).toBeGreaterThan(0);
        checkClean(p).close();
      }),
      { numRuns: 15 },
    );
  });
});
