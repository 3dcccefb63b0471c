/**
 * The last step of finish(): cylinder groups (maps from the allocation bitmap, counts, fragment and
 * cluster summaries), the summary array, and the superblock with its copies.
 */
import { SBLOCK_UFS2, cgDataFrags } from './geometry.js';
import { encodeCgHeader, encodeSuperblock, type CsTotals } from './layout.js';
import type { InodeUse } from './inodes.js';
import type { WriterState } from './state.js';

export interface CgTotals {
  totals: CsTotals;
  fragsFree: number;
}

export async function writeCylinderGroups(s: WriterState, { inoUsed, cgDirs, cgMaxIno }: InodeUse, timestamp: number): Promise<CgTotals> {
  const { g, alloc, target } = s;
  const csArray = Buffer.alloc(g.cssize);
  const totals: CsTotals = { ndir: 0, nbfree: 0, nifree: 0, nffree: 0 };
  let fragsFree = 0;
  for (let cg = 0; cg < g.ncg; cg++) {
    const base = cg * g.fpg;
    const ndblk = cgDataFrags(g, cg);
    const buf = Buffer.alloc(g.cgsize);
    const cs: CsTotals = { ndir: cgDirs[cg]!, nbfree: 0, nifree: 0, nffree: 0 };
    // inode map
    const inoMap = buf.subarray(g.iusedoff, g.iusedoff + Math.ceil(g.ipg / 8));
    let usedInodes = 0;
    for (let i = 0; i < g.ipg; i++) {
      const ino = cg * g.ipg + i;
      if (inoUsed[ino >> 3]! & (1 << (ino & 7))) {
        inoMap[i >> 3]! |= 1 << (i & 7);
        usedInodes++;
      }
    }
    cs.nifree = g.ipg - usedInodes;
    // free-fragment map, per block: whole free blocks, or runs of free fragments
    const freeMap = buf.subarray(g.freeoff, g.freeoff + Math.ceil(g.fpg / 8));
    const frsum = new Array<number>(8).fill(0);
    const clusterMap = g.contigsumsize > 0 ? buf.subarray(g.clusteroff) : null;
    const nclusterblks = Math.floor(ndblk / g.frag);
    for (let d = 0; d < ndblk; d += g.frag) {
      if (g.frag === 8 && ((base + d) & 7) === 0) {
        // fast path: one bitmap byte is one block
        const byte = alloc.used[(base + d) >> 3]!;
        if (byte === 0xff) continue;
        if (byte === 0) {
          freeMap[d >> 3] = 0xff;
          cs.nbfree++;
          const blk = d / 8;
          if (clusterMap && blk < nclusterblks) clusterMap[blk >> 3]! |= 1 << (blk & 7);
          continue;
        }
      }
      let freeCount = 0;
      let run = 0;
      const runs: number[] = [];
      for (let j = 0; j < g.frag && d + j < ndblk; j++) {
        const f = d + j;
        if (!alloc.isUsed(base + f)) {
          freeMap[f >> 3]! |= 1 << (f & 7);
          freeCount++;
          run++;
        } else if (run > 0) {
          runs.push(run);
          run = 0;
        }
      }
      if (run > 0) runs.push(run);
      if (freeCount === g.frag) {
        cs.nbfree++;
        const blk = d / g.frag;
        if (clusterMap && blk < nclusterblks) clusterMap[blk >> 3]! |= 1 << (blk & 7);
      } else if (freeCount > 0) {
        cs.nffree += freeCount;
        for (const r of runs) frsum[r]!++;
      }
    }
    if (g.contigsumsize > 0) {
      let run = 0;
      const sum = new Array<number>(g.contigsumsize + 1).fill(0);
      for (let b = 0; b <= nclusterblks; b++) {
        if (b < nclusterblks && clusterMap![b >> 3]! & (1 << (b & 7))) run++;
        else if (run > 0) {
          sum[Math.min(run, g.contigsumsize)]!++;
          run = 0;
        }
      }
      for (let i = 1; i <= g.contigsumsize; i++) buf.writeInt32LE(sum[i]!, g.clustersumoff + 4 * i);
    }
    const initediblk = Math.min(g.ipg, Math.max(2 * g.inopb, Math.ceil((cgMaxIno[cg]! + 1) / g.inopb) * g.inopb));
    encodeCgHeader(g, { cgx: cg, ndblk, timestamp, cs, frsum, initediblk, maps: buf });
    await target.write(buf, (base + g.cblkno) * g.fsize);
    csArray.writeInt32LE(cs.ndir, cg * 16);
    csArray.writeInt32LE(cs.nbfree, cg * 16 + 4);
    csArray.writeInt32LE(cs.nifree, cg * 16 + 8);
    csArray.writeInt32LE(cs.nffree, cg * 16 + 12);
    totals.ndir += cs.ndir;
    totals.nbfree += cs.nbfree;
    totals.nifree += cs.nifree;
    totals.nffree += cs.nffree;
    fragsFree += cs.nbfree * g.frag + cs.nffree;
  }
  await target.write(csArray, g.csaddr * g.fsize);
  return { totals, fragsFree };
}

/** The superblock in every cylinder group and at its standard place. */
export async function writeSuperblocks(s: WriterState, totals: CsTotals, timestamp: number): Promise<void> {
  const { g, target, words } = s;
  const fsId: [number, number] = [words(0x7fffffff) | 0, words(0x7ffffffe) | 0];
  const sbFields = { timestamp, fsId, volumeLabel: s.options.volumeLabel ?? '', totals };
  for (let cg = 0; cg < g.ncg; cg++) {
    const at = (cg * g.fpg + g.sblkno) * g.fsize;
    await target.write(encodeSuperblock(g, { ...sbFields, actualLocation: at }), at);
  }
  await target.write(encodeSuperblock(g, { ...sbFields, actualLocation: SBLOCK_UFS2 }), SBLOCK_UFS2);
}
