/**
 * Reproducibility (same entries give the same bytes; another arrival order inside directories gives
 * the same inode numbers and metadata), the too-small error, and invalid input.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import { createUfs2Writer } from '../../src/core/ufs2/writer.js';
import type { BlockTarget } from '../../src/core/ufs2/types.js';
import { S_IFMT } from '../support/ufs2/reader.js';
import { buildImage, checkClean, expectImageMatches, meta, MiB, noise, tempDir, TS, type Entry } from './helpers.js';
import { featureEntries } from './fixtures.js';

const tmp = tempDir('fbxen-ufs2-det-');
afterAll(() => tmp.cleanup());

const fileSha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

/** Moves non-file entries of each directory around, keeping parents before children. */
function reorderNonFiles(entries: readonly Entry[]): Entry[] {
  const files = entries.filter((e) => e.kind === 'file');
  const dirs = entries.filter((e) => e.kind === 'dir').reverse();
  const others = entries.filter((e) => e.kind === 'symlink').reverse();
  const links = entries.filter((e) => e.kind === 'hardlink').reverse();
  // directories may come after their contents: the writer creates parents implicitly and merges
  return [...files, ...others, ...dirs, ...links];
}

function metadataListing(path: string): string[] {
  const img = checkClean(path);
  try {
    return img.walk().map(({ path: p, inode: i }) =>
      [p, i.ino, i.mode.toString(8), i.uid, i.gid, i.flags, i.nlink, (i.mode & S_IFMT) === 0o040000 ? '' : i.size, i.mtime, i.gen].join(' '),
    );
  } finally {
    img.close();
  }
}

describe('UFS2 writer: determinism', () => {
  it('the same entries give the same bytes', async () => {
    const a = join(tmp.dir, 'a.img');
    const b = join(tmp.dir, 'b.img');
    await buildImage(a, featureEntries, { sizeBytes: 64 * MiB });
    await buildImage(b, featureEntries, { sizeBytes: 64 * MiB }, 4096 + 7); // other chunking
    expect(fileSha(a)).toBe(fileSha(b));
  });

  it('another arrival order of directories, symlinks and hard links gives the same bytes', async () => {
    const a = join(tmp.dir, 'c.img');
    const b = join(tmp.dir, 'd.img');
    await buildImage(a, featureEntries, { sizeBytes: 64 * MiB });
    await buildImage(b, reorderNonFiles(featureEntries), { sizeBytes: 64 * MiB });
    expect(fileSha(a)).toBe(fileSha(b));
  });

  it('another arrival order of files gives the same inode numbers and metadata (only data placement moves)', async () => {
    const a = join(tmp.dir, 'e.img');
    const b = join(tmp.dir, 'f.img');
    const files = featureEntries.filter((e) => e.kind === 'file');
    const shuffled = [...featureEntries.filter((e) => e.kind === 'dir'), ...[...files].reverse(), ...featureEntries.filter((e) => e.kind !== 'dir' && e.kind !== 'file')];
    await buildImage(a, featureEntries, { sizeBytes: 64 * MiB });
    await buildImage(b, shuffled, { sizeBytes: 64 * MiB });
    expect(metadataListing(b)).toEqual(metadataListing(a));
    const img = checkClean(b);
    expectImageMatches(img, featureEntries);
    img.close();
  });

  it('the seed changes only fs_id and generation numbers', async () => {
    const a = join(tmp.dir, 'g.img');
    const b = join(tmp.dir, 'h.img');
    await buildImage(a, featureEntries, { sizeBytes: 64 * MiB, seed: 'one' });
    await buildImage(b, featureEntries, { sizeBytes: 64 * MiB, seed: 'two' });
    expect(fileSha(a)).not.toBe(fileSha(b));
    const strip = (l: string[]): string[] => l.map((s) => s.split(' ').slice(0, -1).join(' '));
    expect(strip(metadataListing(a))).toEqual(strip(metadataListing(b)));
  });
});

/** A target that only counts, for error tests. */
const nullTarget = (): BlockTarget => ({ write: async () => undefined });
const base = { timestamp: TS, seed: 's' };
async function* once(b: Uint8Array): AsyncIterable<Uint8Array> {
  yield b;
}

describe('UFS2 writer: merging', () => {
  it('a repeated directory takes the later metadata; a directory may follow its contents', async () => {
    const entries: Entry[] = [
      { kind: 'file', path: 'd/f', meta: meta(0o644), data: Buffer.from('x') },
      { kind: 'dir', path: 'd', meta: meta(0o700) },
      { kind: 'dir', path: 'd', meta: meta(0o750, { uid: 3 }) },
    ];
    const p = join(tmp.dir, 'merge.img');
    await buildImage(p, entries, { sizeBytes: 16 * MiB });
    const img = checkClean(p);
    const d = img.walk().find((e) => e.path === 'd')!.inode;
    expect([d.mode & 0o7777, d.uid]).toEqual([0o750, 3]);
    img.close();
  });
});

describe('UFS2 writer: errors', () => {
  it('says how much space is needed when the content does not fit, and keeps consuming input', async () => {
    const w = createUfs2Writer(nullTarget(), { ...base, sizeBytes: 8 * MiB });
    let consumed = 0;
    async function* big(): AsyncIterable<Uint8Array> {
      const chunk = noise(MiB, 3);
      for (let i = 0; i < 20; i++) {
        consumed += chunk.length;
        yield chunk;
      }
    }
    await w.file('big', meta(0o644), 20 * MiB, big());
    expect(consumed).toBe(20 * MiB);
    const err = await w.finish().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    const m = /needs at least (\d+) MiB, has (\d+) MiB/.exec((err as Error).message);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(20);
    expect(Number(m![2])).toBe(8);
    expect((err as InputError).hint).toMatch(/--size/);
  });

  it('reports too few inodes as too small', async () => {
    const w = createUfs2Writer(nullTarget(), { ...base, sizeBytes: 8 * MiB, bytesPerInode: 1024 * 1024 });
    for (let i = 0; i < 400; i++) w.directory(`d${i}`, meta(0o755));
    await expect(w.finish()).rejects.toThrow(/file system too small: needs at least \d+ MiB/);
  });

  it('rejects a size below the minimum geometry', () => {
    expect(() => createUfs2Writer(nullTarget(), { ...base, sizeBytes: 100_000 })).toThrow(InputError);
  });

  const cases: Array<[string, (w: ReturnType<typeof createUfs2Writer>) => unknown, RegExp]> = [
    ['duplicate file', async (w) => (await w.file('a', meta(0o644), 1, once(Buffer.from('x'))), w.file('a', meta(0o644), 0, once(Buffer.alloc(0)))), /duplicate path "a"/],
    ['duplicate symlink', (w) => (w.symlink('s', 'x', meta(0o777)), w.symlink('s', 'y', meta(0o777))), /duplicate path "s"/],
    ['directory over a file', async (w) => (await w.file('a', meta(0o644), 0, once(Buffer.alloc(0))), w.directory('a', meta(0o755))), /"a" is both a directory and a file/],
    ['path under a file', async (w) => (await w.file('a', meta(0o644), 0, once(Buffer.alloc(0))), w.file('a/b', meta(0o644), 0, once(Buffer.alloc(0)))), /"a\/b" is under "a", which is not a directory/],
    ['hard link to nothing', (w) => w.hardlink('l', 'missing'), /hard link "l" points to "missing", which does not exist/],
    ['hard link to a directory', (w) => (w.directory('d', meta(0o755)), w.hardlink('l', 'd')), /which is a dir, not a regular file/],
    ['hard link to a symlink', (w) => (w.symlink('s', 'x', meta(0o777)), w.hardlink('l', 's')), /which is a symlink, not a regular file/],
    ['dot-dot path', (w) => w.directory('a/../b', meta(0o755)), /invalid path "a\/..\/b"/],
    ['absolute path', (w) => w.directory('/etc', meta(0o755)), /invalid path/],
    ['long name', (w) => w.directory('x'.repeat(256), meta(0o755)), /name too long/],
    ['empty symlink', (w) => w.symlink('s', '', meta(0o777)), /invalid target/],
    ['bad mode', (w) => w.directory('d', meta(0o10755)), /invalid metadata for "d"/],
    ['short data', (w) => w.file('f', meta(0o644), 10, once(Buffer.alloc(5))), /5 bytes of data, but 10 announced/],
    ['long data', (w) => w.file('f', meta(0o644), 3, once(Buffer.alloc(5))), /more data than the 3 bytes announced/],
  ];
  for (const [name, act, message] of cases) {
    it(`rejects ${name} with a clear InputError`, async () => {
      const w = createUfs2Writer(nullTarget(), { ...base, sizeBytes: 16 * MiB });
      const err = await (async () => act(w))().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as Error).message).toMatch(message);
    });
  }

  it('rejects entries after finish()', async () => {
    const w = createUfs2Writer(nullTarget(), { ...base, sizeBytes: 16 * MiB });
    await w.finish();
    expect(() => w.directory('x', meta(0o755))).toThrow(/finished/);
  });

  it('rejects invalid geometry options', () => {
    expect(() => createUfs2Writer(nullTarget(), { ...base, sizeBytes: 16 * MiB, blockSize: 3000 })).toThrow(/block size 3000/);
    expect(() => createUfs2Writer(nullTarget(), { ...base, sizeBytes: 16 * MiB, fragmentSize: 1024 })).toThrow(/fragment size 1024/);
    expect(() => createUfs2Writer(nullTarget(), { ...base, sizeBytes: 16 * MiB, volumeLabel: 'bad label!' })).toThrow(/volume label/);
  });
});
