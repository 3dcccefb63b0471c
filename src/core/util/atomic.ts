/**
 * Outputs are written under a temporary name beside the target and renamed into place only when
 * complete, so an interrupted or failed run never leaves a file that looks finished.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** fsync on a fresh descriptor: the file's data reaches the disk before it is renamed into place. */
export async function syncFile(path: string): Promise<void> {
  const f = await open(path, 'r');
  try {
    await f.sync();
  } finally {
    await f.close();
  }
}

export function temporarySibling(target: string): string {
  return join(dirname(target), `.${basename(target)}.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Runs `produce` on a temporary path, then renames it onto `target`; removes the temporary on failure. */
export async function withAtomicOutput<T>(target: string, produce: (tmpPath: string) => Promise<T>): Promise<T> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = temporarySibling(target);
  try {
    const result = await produce(tmp);
    await rename(tmp, target);
    return result;
  } catch (err) {
    await rm(tmp, { force: true, recursive: true });
    throw err;
  }
}

export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  await withAtomicOutput(target, (tmp) => writeFile(tmp, data));
}
