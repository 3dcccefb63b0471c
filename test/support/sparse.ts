/** Sparse files for format tests: `size` bytes of holes with the given writes. */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

export function makeSparseFile(path: string, size: number, writes: ReadonlyArray<readonly [offset: number, data: Buffer]>): string {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, size);
  for (const [off, data] of writes) writeSync(fd, data, 0, data.length, off);
  closeSync(fd);
  return path;
}
