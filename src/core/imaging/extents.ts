/**
 * The raw image is a sparse file fbxen sized with ftruncate and then wrote into: every byte outside
 * the ranges it wrote is zero. Recording those ranges lets the image's sha256 (util/sha256.ts) feed
 * zeros from memory for the holes instead of reading gigabytes of them back from the file system.
 */
import type { BlockTarget } from '../ufs2/types.js';

export class WrittenExtents {
  private starts: number[] = [];
  private ends: number[] = [];

  add(offset: number, length: number): void {
    if (length <= 0) return;
    const end = offset + length;
    const last = this.ends.length - 1;
    // Writes mostly arrive in ascending order: extend the last range when they touch it.
    if (last >= 0 && offset >= this.starts[last]! && offset <= this.ends[last]!) {
      if (end > this.ends[last]!) this.ends[last] = end;
      return;
    }
    this.starts.push(offset);
    this.ends.push(end);
  }

  /** Sorted, merged [start, end) ranges. */
  ranges(): [number, number][] {
    const pairs = this.starts.map((s, i) => [s, this.ends[i]!] as [number, number]).sort((a, b) => a[0] - b[0]);
    const out: [number, number][] = [];
    for (const [s, e] of pairs) {
      const prev = out[out.length - 1];
      if (prev && s <= prev[1]) prev[1] = Math.max(prev[1], e);
      else out.push([s, e]);
    }
    return out;
  }

  /** A BlockTarget that records what passes through it (offsets shifted by `base`). */
  recording(target: BlockTarget, base: number): BlockTarget {
    return {
      write: (data, offset) => {
        this.add(base + offset, data.length);
        return target.write(data, offset);
      },
      ...(target.flush ? { flush: () => target.flush!() } : {}),
    };
  }
}
