/**
 * The fsck-like checker must not be vacuous: each corruption fsck_ffs would catch is caught here.
 * Also pins the geometry for a few sizes (golden file), checked against newfs's invariants by the
 * checker on every image.
 */
import { closeSync, copyFileSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeGeometry } from '../../src/core/ufs2/geometry.js';
import { estimateUfs2Size } from '../../src/core/ufs2/estimate.js';
import { fsckUfs2 } from '../support/ufs2/fsck.js';
import { openUfs2, type Ufs2Image } from '../support/ufs2/reader.js';
import { featureEntries } from './fixtures.js';
import { buildImage, checkClean, GiB, MiB, tempDir, TS } from './helpers.js';

const tmp = tempDir('fbxen-ufs2-chk-');
afterAll(() => tmp.cleanup());
let good: string;
let n = 0;

beforeAll(async () => {
  good = join(tmp.dir, 'good.img');
  await buildImage(good, featureEntries, { sizeBytes: 64 * MiB });
  checkClean(good).close();
});

/** Copies the good image, lets `mutate` patch it, and returns the checker's findings. */
function corrupt(mutate: (img: Ufs2Image, patch: (offset: number, bytes: Buffer) => void) => void): string[] {
  const p = join(tmp.dir, `bad${n++}.img`);
  copyFileSync(good, p);
  const img = openUfs2(p);
  const fd = openSync(p, 'r+');
  mutate(img, (offset, bytes) => writeSync(fd, bytes, 0, bytes.length, offset));
  closeSync(fd);
  img.close();
  const again = openUfs2(p);
  try {
    return fsckUfs2(again);
  } finally {
    again.close();
  }
}

const inodeOf = (img: Ufs2Image, path: string) => img.walk().find((e) => e.path === path)!.inode;
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const i64 = (v: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(BigInt(v));
  return b;
};

describe('fsck-like checker', () => {
  it('finds a wrong link count', () => {
    const problems = corrupt((img, patch) => {
      const ino = inodeOf(img, 'etc/hello.txt');
      patch(img.inodeOffset(ino.ino) + 2, Buffer.from([5, 0]));
    });
    expect(problems.join('\n')).toMatch(/link count 5, references 1/);
  });

  it('finds a block claimed by two files', () => {
    const problems = corrupt((img, patch) => {
      const a = inodeOf(img, 'etc/f32768');
      const b = inodeOf(img, 'etc/f4096');
      patch(img.inodeOffset(b.ino) + 112, i64(a.db[0]!));
    });
    expect(problems.join('\n')).toMatch(/claimed twice|free map bit/);
  });

  it('finds a free map that disagrees with the inodes', () => {
    const problems = corrupt((img, patch) => {
      const ino = inodeOf(img, 'etc/f32768');
      const cg = img.readCg(0);
      const f = ino.db[0]!;
      const at = (img.sb.cblkno * img.sb.fsize) + cg.freeoff + (f >> 3);
      patch(at, Buffer.from([cg.raw[cg.freeoff + (f >> 3)]! | (1 << (f & 7))]));
    });
    expect(problems.join('\n')).toMatch(/free map bit for fragment/);
  });

  it('finds wrong summary counts', () => {
    const problems = corrupt((img, patch) => {
      patch(img.sb.location + 1016, i64(img.sb.cstotal.nbfree + 1));
      for (let cg = 0; cg < img.sb.ncg; cg++) patch((cg * img.sb.fpg + img.sb.sblkno) * img.sb.fsize + 1016, i64(img.sb.cstotal.nbfree + 1));
    });
    expect(problems.join('\n')).toMatch(/superblock totals/);
  });

  it('finds an unreachable inode and a directory entry with a wrong type', () => {
    const problems = corrupt((img, patch) => {
      const etc = inodeOf(img, 'etc');
      const entry = img.readDir(etc).find((e) => e.name === 'hello.txt')!;
      const addr = img.blockMap(etc).get(0)!;
      patch(addr * img.sb.fsize + entry.offset + 6, Buffer.from([4])); // DT_DIR for a file
    });
    expect(problems.join('\n')).toMatch(/d_type 4 does not match/);
    const gone = corrupt((img, patch) => {
      const etc = inodeOf(img, 'etc');
      const entry = img.readDir(etc).find((e) => e.name === 'one')!;
      const addr = img.blockMap(etc).get(0)!;
      // hide the entry by giving the previous entry its space is complex; zero its inode number instead
      patch(addr * img.sb.fsize + entry.offset, u32(0));
    });
    expect(gone.join('\n')).toMatch(/unreferenced|empty entry in the middle/);
  });

  it('finds a bad backup superblock and a bad geometry field', () => {
    const problems = corrupt((img, patch) => {
      patch((1 * img.sb.fpg + img.sb.sblkno) * img.sb.fsize + 1208, i64(TS + 1));
    });
    expect(problems.join('\n')).toMatch(/cg 1: backup superblock differs/);
    const geo = corrupt((img, patch) => {
      patch(img.sb.location + 20, u32(img.sb.dblkno + 8));
      for (let cg = 0; cg < img.sb.ncg; cg++) patch((cg * img.sb.fpg + img.sb.sblkno) * img.sb.fsize + 20, u32(img.sb.dblkno + 8));
    });
    expect(geo.join('\n')).toMatch(/superblock dblkno/);
  });
});

describe('geometry', () => {
  it('follows newfs for a range of sizes and block sizes (golden)', async () => {
    const rows: string[] = [];
    for (const [size, bsize, fsize] of [
      [64 * MiB, 32768, 4096],
      [1 * GiB, 32768, 4096],
      [1353646080, 32768, 4096],
      [4 * GiB, 32768, 4096],
      [8 * GiB, 32768, 4096],
      [100 * GiB, 32768, 4096],
      [2 * GiB, 4096, 512],
      [2 * GiB, 65536, 8192],
    ] as const) {
      const g = computeGeometry({ sizeBytes: size, blockSize: bsize, fragmentSize: fsize, timestamp: 0, seed: '' });
      rows.push(
        `size=${size} bsize=${bsize} fsize=${fsize}: ncg=${g.ncg} fpg=${g.fpg} ipg=${g.ipg} sblkno=${g.sblkno} cblkno=${g.cblkno} iblkno=${g.iblkno} dblkno=${g.dblkno} cgsize=${g.cgsize} cssize=${g.cssize} dsize=${g.dsize} contigsumsize=${g.contigsumsize} maxcontig=${g.maxcontig} metaspace=${g.metaspace} maxfilesize=${g.maxfilesize}`,
      );
    }
    rows.push(`estimate(FreeBSD-shaped 1,077.7 MB / 18,805 entries) = ${estimateUfs2Size({ dataBytes: 1_077_700_000, entries: 18_805 })}`);
    await expect(rows.join('\n') + '\n').toMatchFileSnapshot('./__golden__/geometry.txt');
  });
});
