/**
 * Where file data goes: the fragment allocator with its two lanes, and the room the leading lane
 * is given.
 */
import type { Geometry } from './geometry.js';
import type { Lane } from './types.js';

/**
 * Fragment allocator over the whole file system: a bitmap of used fragments (metadata areas are
 * pre-marked), and for each lane a cursor for whole blocks and one open block whose fragments take
 * file tails. Lane 1, when there is one, owns the data area up to `laneEnd`; lane 0 starts there.
 */
export class Allocator {
  readonly used: Uint8Array;
  private readonly cursor = [0, 0];
  private readonly fragBlock = [-1, -1];
  private readonly fragNext = [0, 0];
  /** Where lane 1's room ends (a fragment address); lane 1 never allocates at or past it. */
  readonly laneEnd: number;
  constructor(
    private readonly g: Geometry,
    leadingBlocks = 0,
  ) {
    this.used = new Uint8Array(Math.ceil(g.sizeFrags / 8));
    for (let cg = 0; cg < g.ncg; cg++) {
      const base = cg * g.fpg;
      if (cg === 0) this.mark(0, g.dblkno + g.csfrags);
      else this.mark(base + g.sblkno, g.dblkno - g.sblkno);
    }
    let end = 0;
    for (let free = 0; free < leadingBlocks && end + g.frag <= g.sizeFrags; end += g.frag) if (this.freeBlockAt(end)) free++;
    this.laneEnd = end;
    this.cursor[0] = end;
  }
  mark(start: number, count: number): void {
    let i = start;
    const end = start + count;
    while (i < end && i & 7) this.used[i >> 3]! |= 1 << (i & 7), i++;
    while (i + 8 <= end) this.used[i >> 3] = 0xff, (i += 8);
    while (i < end) this.used[i >> 3]! |= 1 << (i & 7), i++;
  }
  isUsed(f: number): boolean {
    return (this.used[f >> 3]! & (1 << (f & 7))) !== 0;
  }
  private freeBlockAt(b: number): boolean {
    if (this.g.frag === 8) return this.used[b >> 3] === 0;
    for (let i = 0; i < this.g.frag; i++) if (this.isUsed(b + i)) return false;
    return true;
  }
  /** The next free block of the lane (block-aligned fragment address, not yet marked), or -1. */
  private nextFree(lane: Lane): number {
    const limit = lane === 1 ? this.laneEnd : this.g.sizeFrags;
    while (this.cursor[lane]! + this.g.frag <= limit) {
      const b = this.cursor[lane]!;
      this.cursor[lane] = b + this.g.frag;
      if (this.freeBlockAt(b)) return b;
    }
    return -1;
  }
  /** A whole free block (block-aligned fragment address), or -1 when the lane is full. */
  block(lane: Lane = 0): number {
    const b = this.nextFree(lane);
    if (b >= 0) this.mark(b, this.g.frag);
    return b;
  }
  /** `n` (< frag) contiguous fragments inside one block, or -1 when the lane is full. */
  frags(n: number, lane: Lane = 0): number {
    if (this.fragBlock[lane]! < 0 || this.fragNext[lane]! + n > this.g.frag) {
      const b = this.nextFree(lane);
      if (b < 0) return -1;
      this.fragBlock[lane] = b;
      this.fragNext[lane] = 0;
    }
    const at = this.fragBlock[lane]! + this.fragNext[lane]!;
    this.fragNext[lane] = this.fragNext[lane]! + n;
    this.mark(at, n);
    return at;
  }
}

/**
 * The room lane 1 is given: what `entries` entries holding `dataBytes` of file data can take at most
 * (every block of data, a partial block per file, its indirect blocks, and a block of fragments left
 * behind when a tail does not fit the open one), in bytes of `blockSize` blocks.
 */
export function leadingLaneBytes(lane: { dataBytes: number; entries: number }, blockSize = 32768): number {
  const dataBlocks = Math.ceil(lane.dataBytes / blockSize) + lane.entries;
  return (dataBlocks + Math.ceil(dataBlocks / (blockSize / 8)) + 3 * lane.entries + 1) * blockSize;
}
