/**
 * Two lanes written at once (the build streams base.txz on lane 0 and kernel.txz on lane 1): the image
 * must not depend on how the two streams interleave in time, must equal the one written lane after
 * lane, and must pass the independent reader and checker. A lane whose room was sized too small is an
 * error, never a silent spill into the other lane's area (which would make placement depend on timing).
 */
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import { createFileBlockTarget } from '../../src/core/ufs2/target.js';
import { createUfs2Writer, leadingLaneBytes } from '../../src/core/ufs2/writer.js';
import type { Lane, Ufs2Writer } from '../../src/core/ufs2/types.js';
import { checkClean, expectImageMatches, meta, MiB, noise, tempDir, TS, type Entry } from './helpers.js';

const tmp = tempDir('fbxen-ufs2-lanes-');
afterAll(() => tmp.cleanup());

const fileSha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

function laneEntries(top: string, seed: number): Entry[] {
  const sizes = [0, 1, 4095, 4097, 32768, 100_000, 12 * 32768 + 5, 1_300_000];
  return [
    { kind: 'dir', path: top, meta: meta(0o755) },
    { kind: 'dir', path: `${top}/sub`, meta: meta(0o700, { uid: 3 }) },
    ...sizes.map((size, i): Entry => ({ kind: 'file', path: `${top}/${i % 2 ? 'sub/' : ''}f${i}`, meta: meta(0o644), data: noise(size, seed * 100 + i) })),
    { kind: 'symlink', path: `${top}/link`, target: `sub/f1`, meta: meta(0o755) },
    { kind: 'hardlink', path: `${top}/again`, target: `${top}/f2` },
    // a directory both lanes carry: the writer keeps what the last call said (the guard decides which)
    { kind: 'dir', path: 'shared', meta: meta(0o755) },
  ];
}

const lane0 = laneEntries('base', 1);
const lane1 = laneEntries('kernel', 2);
const dataOf = (entries: Entry[]) => entries.reduce((n, e) => n + (e.kind === 'file' ? (e.data as Buffer).length : 0), 0);

/** A small seeded generator: the schedule of a run. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

async function feed(w: Ufs2Writer, entries: Entry[], lane: Lane, pause: () => Promise<void>): Promise<void> {
  for (const e of entries) {
    await pause();
    if (e.kind === 'dir') w.directory(e.path, e.meta, lane);
    else if (e.kind === 'symlink') w.symlink(e.path, e.target, e.meta, lane);
    else if (e.kind === 'hardlink') w.hardlink(e.path, e.target, lane);
    else {
      const data = e.data as Buffer;
      await w.file(
        e.path,
        e.meta,
        data.length,
        (async function* () {
          for (let off = 0; off < data.length; off += 20_000) {
            await pause();
            yield data.subarray(off, Math.min(data.length, off + 20_000));
          }
        })(),
        lane,
      );
    }
  }
}

/** Writes both lanes; `seed` null: lane 1 after lane 0, else both at once with random pauses. */
async function build(name: string, seed: number | null, leading = { dataBytes: dataOf(lane1), entries: lane1.length }): Promise<string> {
  const path = join(tmp.dir, name);
  const fd = openSync(path, 'w+');
  try {
    ftruncateSync(fd, 64 * MiB);
    const w = createUfs2Writer([createFileBlockTarget(fd, 0), createFileBlockTarget(fd, 0)], { sizeBytes: 64 * MiB, timestamp: TS, seed: 'lanes', leadingLane: leading });
    if (seed === null) {
      const none = async () => undefined;
      await feed(w, lane0, 0, none);
      await feed(w, lane1, 1, none);
    } else {
      const random = rng(seed);
      const pause = () => new Promise<void>((r) => (random() < 0.5 ? setImmediate(r) : setTimeout(r, random() < 0.9 ? 0 : 2)));
      await Promise.all([feed(w, lane0, 0, pause), feed(w, lane1, 1, pause)]);
    }
    await w.finish();
    return path;
  } finally {
    closeSync(fd);
  }
}

describe('UFS2 writer: two lanes at once', () => {
  it('gives the same bytes however the lanes interleave, the same as lane after lane, and a clean file system', async () => {
    const sequential = fileSha(await build('seq.img', null));
    for (const seed of [1, 2, 3, 4]) expect(fileSha(await build(`par${seed}.img`, seed)), `schedule ${seed}`).toBe(sequential);
    const img = checkClean(join(tmp.dir, 'par1.img'));
    // The shared directory's metadata is the one given last, by lane 1 in each lane's own order.
    expectImageMatches(img, [...lane0, ...lane1]);
    img.close();
  });

  it('puts lane 1 first and lane 0 after its room', async () => {
    const room = leadingLaneBytes({ dataBytes: dataOf(lane1), entries: lane1.length });
    expect(room).toBeGreaterThan(dataOf(lane1));
    const img = checkClean(join(tmp.dir, 'seq.img'));
    try {
      const byPath = new Map(img.walk().map(({ path, inode }) => [path.replace(/^\//, ''), inode]));
      const firstBlock = (p: string) => byPath.get(p)!.db[0]!;
      expect(firstBlock('kernel/sub/f7')).toBeLessThan(firstBlock('base/sub/f7'));
      expect(firstBlock('base/f4') * 4096).toBeGreaterThanOrEqual(room);
    } finally {
      img.close();
    }
  });

  it('refuses to let lane 1 spill out of its room', async () => {
    const err = await build('small.img', 5, { dataBytes: 1000, entries: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/the files of the leading lane need more than the \d+ MiB set aside for them/);
  });

  it('has no lane 1 without a leading lane', async () => {
    const path = join(tmp.dir, 'nolane.img');
    const fd = openSync(path, 'w+');
    ftruncateSync(fd, 16 * MiB);
    const w = createUfs2Writer(createFileBlockTarget(fd, 0), { sizeBytes: 16 * MiB, timestamp: TS, seed: 's' });
    expect(() => w.directory('x', meta(0o755), 1)).toThrow(/lane 1 needs Ufs2Options.leadingLane/);
    closeSync(fd);
  });
});
