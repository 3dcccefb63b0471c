/**
 * Throughput of the writer on a FreeBSD-shaped set (~1 GB: 15,000 files, 300 directories, hard
 * links, symlinks, a 117 MB file), streamed from memory into a sparse image on disk. Not part of
 * the normal run: UFS2_BENCH=1 npx vitest run test/ufs2/bench.test.ts
 * (set UFS2_BENCH_DIR to write the image somewhere else than the temporary directory).
 */
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createFileBlockTarget, createUfs2Writer, estimateUfs2Size } from '../../src/core/ufs2/index.js';
import { fsckUfs2 } from '../support/ufs2/fsck.js';
import { openUfs2 } from '../support/ufs2/reader.js';
import { meta, MiB, noise, tempDir, TS } from './helpers.js';

const tmp = tempDir('fbxen-ufs2-bench-');
afterAll(() => tmp.cleanup());

describe.runIf(process.env.UFS2_BENCH)('UFS2 writer benchmark', () => {
  it('writes a ~1 GB FreeBSD-shaped set', async () => {
    // Sizes like base.txz: mostly small files, a long tail, a few big ones.
    let x = 12345;
    const rand = (): number => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const sizes: number[] = [117 * MiB, 30 * MiB, 23 * MiB, 16 * MiB];
    while (sizes.reduce((a, b) => a + b, 0) < 1_077_700_000) sizes.push(Math.floor(Math.exp(rand() * 13)));
    const pool = noise(8 * MiB, 7);
    const tarChunk = 64 * 1024; // what a tar parser hands over per read
    const entries = sizes.length + 300 + 1700 + 760;
    const dataBytes = sizes.reduce((a, b) => a + b, 0);
    const sizeBytes = estimateUfs2Size({ dataBytes, entries });
    const dir = process.env.UFS2_BENCH_DIR ?? tmp.dir;
    const path = join(dir, 'bench.img');
    const fd = openSync(path, 'w+');
    ftruncateSync(fd, sizeBytes);
    const target = process.env.UFS2_BENCH_NULL ? Object.assign({ write: async () => undefined, stats: { writeCalls: 0 } }) : createFileBlockTarget(fd, 0);
    const w = createUfs2Writer(target, { sizeBytes, timestamp: TS, seed: 'bench' });
    let rssPeak = 0;
    const t0 = process.hrtime.bigint();
    for (let d = 0; d < 300; d++) w.directory(`usr/share/d${d}`, meta(0o755));
    for (let i = 0; i < sizes.length; i++) {
      const size = sizes[i]!;
      const at = Math.floor(rand() * (pool.length - Math.min(size, pool.length)));
      const chunks = function* (): Iterable<Uint8Array> {
        for (let off = 0; off < size; off += tarChunk) {
          const n = Math.min(tarChunk, size - off);
          const from = (at + off) % (pool.length - tarChunk);
          yield pool.subarray(from, from + n);
        }
      };
      await w.file(`usr/share/d${i % 300}/f${i}`, meta(0o644), size, chunks());
      if (i % 1000 === 0) rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
    }
    for (let i = 0; i < 1700; i++) w.hardlink(`usr/share/d${i % 300}/h${i}`, `usr/share/d${i % 300}/f${i}`);
    for (let i = 0; i < 760; i++) w.symlink(`usr/share/d${i % 300}/s${i}`, `f${i}`, meta(0o755));
    const tFinish = process.hrtime.bigint();
    const stats = await w.finish();
    const finishSecs = Number(process.hrtime.bigint() - tFinish) / 1e9;
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    closeSync(fd);
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
    const report = {
      files: sizes.length,
      dataMB: +(dataBytes / 1e6).toFixed(1),
      fsMB: +(sizeBytes / 1e6).toFixed(1),
      seconds: +secs.toFixed(2),
      finishSeconds: +finishSecs.toFixed(2),
      MBps: +(dataBytes / 1e6 / secs).toFixed(0),
      peakRssMB: +(rssPeak / 1e6).toFixed(0),
      writeCalls: target.stats.writeCalls,
      cylinderGroups: stats.cylinderGroups,
      usedMB: +(((stats.fragmentsTotal - stats.fragmentsFree) * stats.fragmentSize) / 1e6).toFixed(1),
    };
    console.log(JSON.stringify(report));
    const img = openUfs2(path);
    expect(fsckUfs2(img)).toEqual([]);
    img.close();
  });
});
