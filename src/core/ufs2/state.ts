/**
 * The state one UFS2 writer shares between its stages (tree building, data placement, finish):
 * the in-memory tree of entries and what the writer has counted and allocated so far.
 */
import { createHash } from 'node:crypto';
import { UFS_NDADDR, UFS_ROOTINO, type Geometry } from './geometry.js';
import type { Allocator } from './allocator.js';
import type { NameEncoding } from './input.js';
import type { BlockTarget, FsMeta, Ufs2Options } from './types.js';

export interface BlockMap {
  db: number[];
  ib: number[];
  /** Fragments allocated to this inode (data and indirect blocks). */
  frags: number;
}

export interface DirNode {
  kind: 'dir';
  meta: FsMeta;
  children: Map<string, Node>;
  parent: DirNode | null;
  ino: number;
  map: BlockMap;
  size: number;
}
export interface FileNode {
  kind: 'file';
  meta: FsMeta;
  size: number;
  nlink: number;
  ino: number;
  map: BlockMap;
}
export interface SymlinkNode {
  kind: 'symlink';
  meta: FsMeta;
  target: Buffer;
  ino: number;
  map: BlockMap;
}
export type Node = DirNode | FileNode | SymlinkNode;

export const newMap = (): BlockMap => ({ db: new Array<number>(UFS_NDADDR).fill(0), ib: [0, 0, 0], frags: 0 });

/** A directory not (yet) given by the input: 0755 root:wheel, its mtime clamped to the build timestamp. */
export const newDirNode = (parent: DirNode | null, meta: FsMeta = { mode: 0o755, uid: 0, gid: 0, mtime: Infinity, flags: 0 }): DirNode => ({
  kind: 'dir',
  meta,
  children: new Map(),
  parent,
  ino: parent === null ? UFS_ROOTINO : 0,
  map: newMap(),
  size: 0,
});

export interface WriterState {
  readonly g: Geometry;
  readonly options: Ufs2Options;
  readonly names: NameEncoding;
  /** Metadata and lane 0's file data. */
  readonly target: BlockTarget;
  /** Lane 1's file data (the same object as `target` when there is one target). */
  readonly laneTarget: BlockTarget;
  readonly alloc: Allocator;
  /** One block of zeros: a whole block equal to it becomes a hole. */
  readonly zeroBlock: Buffer;
  /** Seeded words for fs_id and inode generation numbers. */
  readonly words: (i: number) => number;
  readonly root: DirNode;
  /** Lane 0 ran out of room: the file system is too small. */
  full: boolean;
  /** A lane whose room ran out: the leading lane's size was wrong, which no file system size fixes. */
  laneOverflow: boolean;
  /** Entries so far, the root included (for the size estimate of the "too small" message). */
  entries: number;
  dataBytes: number;
}

/** Seeded 32-bit generator (splitmix-style) for fs_id and inode generation numbers. */
export function seededWords(seed: string): (i: number) => number {
  const h = createHash('sha256').update(`fbxen-ufs2:${seed}`).digest();
  const k0 = h.readUInt32LE(0);
  const k1 = h.readUInt32LE(4);
  return (i: number): number => {
    let x = (Math.imul(i ^ k0, 0x9e3779b1) + k1) >>> 0;
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
    return (x ^ (x >>> 16)) >>> 0;
  };
}
