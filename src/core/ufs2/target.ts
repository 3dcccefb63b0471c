/**
 * Positioned writes into a disk image (at the partition's byte offset) or a plain file. Small
 * adjacent writes are gathered into one buffer so a set of many small files still goes out in large
 * pwrite() calls; all-zero buffers are skipped because the image is a sparse file the caller has
 * already sized (reads of never-written ranges return zeros).
 */
import { write as fsWrite } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { BlockTarget } from './types.js';

const GATHER = 8 * 1024 * 1024;

export interface FileBlockTarget extends BlockTarget {
  flush(): Promise<void>;
  /** Bytes handed to write(), and bytes actually written (zeros skipped). */
  readonly stats: { bytesIn: number; bytesWritten: number; writeCalls: number };
}

function isAllZero(buf: Buffer): boolean {
  // Compare in 64 KiB slices against a shared zero buffer: memcmp speed, no per-byte JS loop.
  for (let off = 0; off < buf.length; off += ZERO.length) {
    const n = Math.min(ZERO.length, buf.length - off);
    if (!buf.subarray(off, off + n).equals(n === ZERO.length ? ZERO : ZERO.subarray(0, n))) return false;
  }
  return true;
}
const ZERO = Buffer.alloc(64 * 1024);

export function createFileBlockTarget(file: number | FileHandle, baseOffset = 0): FileBlockTarget {
  if (!Number.isSafeInteger(baseOffset) || baseOffset < 0) throw new Error(`internal: invalid base offset ${baseOffset}`);
  const rawWrite =
    typeof file === 'number'
      ? (buf: Buffer, pos: number): Promise<void> =>
          new Promise((resolve, reject) => {
            let done = 0;
            const step = (): void =>
              fsWrite(file, buf, done, buf.length - done, pos + done, (err, n) => {
                if (err) return reject(err);
                done += n;
                if (done < buf.length) step();
                else resolve();
              });
            step();
          })
      : async (buf: Buffer, pos: number): Promise<void> => {
          let done = 0;
          while (done < buf.length) {
            const { bytesWritten } = await file.write(buf, done, buf.length - done, pos + done);
            done += bytesWritten;
          }
        };
  const stats = { bytesIn: 0, bytesWritten: 0, writeCalls: 0 };
  // Two gather buffers: one fills while the other is being written (the write runs on libuv's
  // thread pool, so the caller's parsing overlaps the I/O). At most one write is in flight.
  const buffers = [Buffer.allocUnsafe(GATHER), Buffer.allocUnsafe(GATHER)];
  let current = 0;
  let gather = buffers[0]!;
  let start = -1;
  let length = 0;
  let inFlight: Promise<void> | null = null;

  const out = async (buf: Buffer, offset: number): Promise<void> => {
    if (isAllZero(buf)) return;
    stats.bytesWritten += buf.length;
    stats.writeCalls++;
    await rawWrite(buf, baseOffset + offset);
  };
  const settle = async (): Promise<void> => {
    if (inFlight) {
      const p = inFlight;
      inFlight = null;
      await p;
    }
  };
  /** Starts writing the filled buffer and switches to the other one. */
  const rotate = async (): Promise<void> => {
    if (length === 0) return;
    await settle();
    inFlight = out(gather.subarray(0, length), start);
    // keep a rejection from being unhandled before settle() sees it
    inFlight.catch(() => undefined);
    current ^= 1;
    gather = buffers[current]!;
    start = -1;
    length = 0;
  };
  const flush = async (): Promise<void> => {
    await rotate();
    await settle();
  };
  return {
    stats,
    flush,
    async write(data, offset) {
      stats.bytesIn += data.length;
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      if (length > 0 && offset === start + length && length + buf.length <= GATHER) {
        buf.copy(gather, length);
        length += buf.length;
        return;
      }
      await rotate();
      if (buf.length >= GATHER / 2) {
        await settle();
        await out(buf, offset);
        return;
      }
      buf.copy(gather, 0);
      start = offset;
      length = buf.length;
    },
  };
}
