/**
 * One-pass UFS2 writer. File data goes to its final place as it streams in (allocation follows
 * arrival order: the only way to stay one-pass with bounded memory); everything else — inode
 * numbers, directory contents, directory and slow-symlink blocks, maps, summaries, superblocks — is
 * laid out in finish() from the byte-sorted tree, so it does not depend on arrival order.
 *
 * The stages share one WriterState (state.ts): tree.ts builds the tree, allocator.ts and data.ts
 * place data, finish.ts (with inodes.ts and cylinder-groups.ts) writes the rest.
 */
import { InputError } from '../errors.js';
import { DIRBLKSIZ, computeGeometry } from './geometry.js';
import { Allocator, leadingLaneBytes } from './allocator.js';
import { checkMeta, checkTimestamp, symlinkBytes } from './input.js';
import { newDirNode, newMap, seededWords, type FileNode, type WriterState } from './state.js';
import { addDirectory, addNew, lookup } from './tree.js';
import { writeData } from './data.js';
import { layOut } from './finish.js';
import type { BlockTarget, Lane, Ufs2Options, Ufs2Writer } from './types.js';

export { leadingLaneBytes };

/**
 * `targets`: one target, or one per lane (lane 1's file data goes to the second, so each lane gathers
 * its own contiguous writes; a target is not shared between two streams that interleave).
 */
export function createUfs2Writer(targets: BlockTarget | readonly [BlockTarget, BlockTarget], options: Ufs2Options): Ufs2Writer {
  const [target, laneTarget] = Array.isArray(targets) ? (targets as readonly [BlockTarget, BlockTarget]) : [targets as BlockTarget, targets as BlockTarget];
  const g = computeGeometry(options);
  // Checked now, read again in finish(): the caller may set it once every entry was seen (Ufs2Options.timestamp).
  checkTimestamp(options.timestamp);
  const s: WriterState = {
    g,
    options,
    names: options.nameEncoding ?? 'utf8',
    target,
    laneTarget,
    alloc: new Allocator(g, options.leadingLane ? leadingLaneBytes(options.leadingLane, g.bsize) / g.bsize : 0),
    zeroBlock: Buffer.alloc(g.bsize),
    words: seededWords(options.seed),
    root: newDirNode(null),
    full: false,
    laneOverflow: false,
    entries: 1,
    dataBytes: 0,
  };
  const busy = [false, false];
  let finished = false;

  /** Entries of one lane come one after the other; the two lanes may interleave. */
  const state = (lane: Lane = 0): void => {
    if (finished) throw new InputError('the UFS2 writer is finished; no more entries can be added');
    if (busy[lane]) throw new Error('internal: UFS2 writer calls must not overlap (await file() before the next entry)');
    if (lane === 1 && !options.leadingLane) throw new Error('internal: lane 1 needs Ufs2Options.leadingLane');
  };

  return {
    directory(path, meta, lane = 0) {
      state(lane);
      checkMeta(path, meta);
      addDirectory(s, path, meta);
    },

    symlink(path, linkTarget, meta, lane = 0) {
      state(lane);
      checkMeta(path, meta);
      const bytes = symlinkBytes(path, linkTarget, s.names);
      addNew(s, path, { kind: 'symlink', meta: { ...meta }, target: bytes, ino: 0, map: newMap() });
    },

    hardlink(path, existingPath, lane = 0) {
      state(lane);
      const existing = lookup(s, existingPath);
      if (existing === undefined)
        throw new InputError(`hard link ${JSON.stringify(path)} points to ${JSON.stringify(existingPath)}, which does not exist (yet)`, {
          hint: 'hard links must follow the file they name in the archive',
        });
      if (existing.kind !== 'file')
        throw new InputError(`hard link ${JSON.stringify(path)} points to ${JSON.stringify(existingPath)}, which is a ${existing.kind}, not a regular file`);
      addNew(s, path, existing);
      existing.nlink++;
    },

    async file(path, meta, size, data, lane = 0) {
      state(lane);
      checkMeta(path, meta);
      if (!Number.isSafeInteger(size) || size < 0 || BigInt(size) > g.maxfilesize)
        throw new InputError(`file ${JSON.stringify(path)} has an invalid size ${size}`);
      const node: FileNode = { kind: 'file', meta: { ...meta }, size, nlink: 1, ino: 0, map: newMap() };
      addNew(s, path, node);
      s.dataBytes += size;
      busy[lane] = true;
      try {
        await writeData(s, `file ${JSON.stringify(path)}`, node.map, size, data, true, lane);
      } finally {
        busy[lane] = false;
      }
    },

    async finish() {
      state(0);
      if (busy[1]) throw new Error('internal: finish() while a file of lane 1 is still being written');
      finished = true;
      return layOut(s, checkTimestamp(options.timestamp));
    },
  };
}

export { DIRBLKSIZ };
