/**
 * A file system size that surely holds content described only by its total file bytes and its
 * number of entries (files, directories, symlinks, hard links), with the options' geometry.
 */
import { computeGeometry, validateOptions, UFS_ROOTINO } from './geometry.js';
import type { Ufs2Options } from './types.js';

const MiB = 1024 * 1024;
/** Largest directory entry: 8-byte header + 255-byte name + NUL, padded to 4. */
const MAX_DIRENT = 264;

export interface ContentSize {
  /** Sum of regular file sizes in bytes. */
  dataBytes: number;
  /** Number of entries (every path, including directories and hard links). */
  entries: number;
}

/**
 * Upper bound, in bytes (a whole number of MiB), for a file system that holds the content and
 * still has newfs's reserved space (minFreePercent) free. Worst cases are counted: a tail kept in
 * fragments wastes less than one fragment (every file within the direct blocks, every directory, every
 * slow symlink); only a file past the 12 direct blocks is stored in whole blocks and may waste up to a
 * block, and there can be at most dataBlocks / 12 such files; files may need indirect blocks (one per
 * NINDIR data blocks plus up to three per file on the path to them).
 */
export function estimateUfs2Size(content: ContentSize, options: Partial<Ufs2Options> = {}): number {
  const { bsize, fsize, minfree } = validateOptions({ sizeBytes: 1, timestamp: 0, seed: '', ...options });
  const frag = bsize / fsize;
  const nindir = bsize / 8;
  const dataBytes = Math.max(0, Math.ceil(content.dataBytes));
  const entries = Math.max(1, Math.ceil(content.entries)) + 1;
  const dataBlocks = Math.ceil(dataBytes / bsize);
  const needFrags =
    Math.ceil(dataBytes / fsize) +
    entries + // a fragment of tail waste per entry
    Math.ceil(dataBlocks / 12) * (frag - 1) + // whole-block tails of files past the direct blocks
    Math.ceil((entries * MAX_DIRENT) / fsize) + // directory contents
    (Math.ceil(dataBlocks / nindir) * 2 + Math.min(entries, Math.ceil(dataBlocks / 12)) * 3) * frag; // indirect blocks
  const needInodes = entries + UFS_ROOTINO + 1;
  let size = Math.ceil((needFrags * fsize) / (1 - minfree / 100)) + 4 * MiB;
  for (let attempt = 0; attempt < 200; attempt++) {
    size = Math.ceil(size / MiB) * MiB;
    try {
      const g = computeGeometry({ timestamp: 0, seed: '', ...options, sizeBytes: size });
      const usable = Math.floor(g.dsize * (1 - minfree / 100));
      if (usable >= needFrags && g.ncg * g.ipg >= needInodes) return size;
    } catch {
      // too small for any geometry: grow
    }
    size = Math.ceil(size * 1.05) + MiB;
  }
  throw new Error('internal: no UFS2 size found for the content');
}
