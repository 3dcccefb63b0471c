/**
 * finish(): everything but file data is laid out here from the byte-sorted tree, in this order —
 * inode numbers, directory and slow-symlink blocks, the room checks, inodes, cylinder groups,
 * superblocks — so none of it depends on arrival order.
 */
import { InputError } from '../errors.js';
import { UFS_ROOTINO } from './geometry.js';
import { estimateUfs2Size } from './estimate.js';
import { numberInodes, writeDirectoryBlocks, writeInodes } from './inodes.js';
import { writeCylinderGroups, writeSuperblocks } from './cylinder-groups.js';
import type { WriterState } from './state.js';
import type { Ufs2Stats } from './types.js';

const MiB = 1024 * 1024;

export async function layOut(s: WriterState, timestamp: number): Promise<Ufs2Stats> {
  const { g } = s;
  const numbering = numberInodes(s);
  const inodesTotal = g.ncg * g.ipg;
  const inodesShort = numbering.maxIno >= inodesTotal;
  if (!inodesShort) await writeDirectoryBlocks(s, numbering);

  if (s.laneOverflow) {
    const room = `${Math.round(((s.alloc.laneEnd / g.frag) * g.bsize) / MiB)} MiB`;
    throw new InputError(`the files of the leading lane need more than the ${room} set aside for them`, {
      hint: 'the set holds more data or entries than its size and MANIFEST say; fetch it again',
    });
  }
  if (s.full || inodesShort) {
    const needed = estimateUfs2Size({ dataBytes: s.dataBytes, entries: s.entries }, s.options);
    throw new InputError(
      `file system too small: needs at least ${Math.ceil(needed / MiB)} MiB, has ${Math.floor((g.sizeFrags * g.fsize) / MiB)} MiB` +
        (inodesShort ? ` (${s.entries} entries, ${inodesTotal - UFS_ROOTINO - 1} inodes)` : ''),
      { hint: `give a larger --size (at least ${Math.ceil(needed / MiB)} MiB)` },
    );
  }

  const inodeUse = await writeInodes(s, numbering, timestamp);
  const { totals, fragsFree } = await writeCylinderGroups(s, inodeUse, timestamp);
  await writeSuperblocks(s, totals, timestamp);
  await s.target.flush?.();
  if (s.laneTarget !== s.target) await s.laneTarget.flush?.();

  return {
    sizeBytes: g.sizeFrags * g.fsize,
    blockSize: g.bsize,
    fragmentSize: g.fsize,
    cylinderGroups: g.ncg,
    inodesTotal,
    inodesUsed: inodesTotal - totals.nifree,
    fragmentsTotal: g.sizeFrags,
    fragmentsFree: fragsFree,
    dataBytes: s.dataBytes,
  };
}
