/**
 * The raw image is a sparse file fbxen sized with ftruncate and then wrote into, and the build records
 * what it wrote (build/extents.ts). Every byte outside those ranges is zero, so the writers of other
 * formats and the sha256 worker can skip the holes without reading them.
 */

/** [start, end) byte ranges, outside of which every byte is zero. */
export type ByteRanges = readonly (readonly [number, number])[];

/**
 * A test "may [start, end) hold data?" for queries in ascending order, one pass over the ranges.
 * Without ranges every span may hold data.
 */
export function dataTester(ranges: ByteRanges | undefined): (start: number, end: number) => boolean {
  if (!ranges) return () => true;
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  let i = 0;
  return (start, end) => {
    while (i < sorted.length && sorted[i]![1] <= start) i++;
    // Ranges that end before a later query's start are passed for good; one that starts after this
    // query's end may still hold the next query's data, so it is not passed here.
    for (let j = i; j < sorted.length && sorted[j]![0] < end; j++) if (sorted[j]![1] > start) return true;
    return false;
  };
}
