/** Reading the raw image the other formats are converted from. */
import type { FileHandle } from 'node:fs/promises';
import { InputError } from '../errors.js';

/** Reads exactly `length` bytes at `position` into the start of `buf`; a short file is an InputError. */
export async function readRawFully(raw: FileHandle, buf: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await raw.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new InputError(`raw image ended early at byte ${position + done}`, { hint: 'the raw image changed while it was being converted; build it again' });
    done += bytesRead;
  }
}
