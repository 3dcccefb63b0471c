/**
 * sha256 of files on a worker thread, so hashing gigabytes of output uses the second core instead of
 * blocking the event loop (where it used to serialise with the other outputs' hashes and with the
 * writer). A file may be hashed in steps while it is still being written: bytes up to an offset that
 * is final can be hashed early, and the rest once the file is complete.
 *
 * Ranges outside the given extents are known to be zero (a sparse image fbxen sized with ftruncate
 * and then wrote into), so they are fed from memory instead of read back: 4 GiB of holes take about
 * 15 s to read and hash, under 3 s from memory.
 */
import { Worker } from 'node:worker_threads';

import type { ByteRanges } from './ranges.js';

// Plain CommonJS evaluated on the worker: no build step, so it runs the same from src/ (tests) and dist/.
const WORKER_SOURCE = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const ZEROS = Buffer.alloc(1 << 20);
const buf = Buffer.allocUnsafe(4 << 20);
const hash = createHash('sha256');
const fd = openSync(workerData.path, 'r');
let pos = 0;
let reported = 0;
function progress() {
  if (pos - reported >= 64 << 20) { reported = pos; parentPort.postMessage({ progress: pos }); }
}
function zerosTo(until) {
  while (pos < until) {
    const n = Math.min(ZEROS.length, until - pos);
    hash.update(n === ZEROS.length ? ZEROS : ZEROS.subarray(0, n));
    pos += n;
    progress();
  }
}
function dataTo(until) {
  while (pos < until) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, until - pos), pos);
    if (n === 0 && until === Infinity) return;
    if (n === 0) throw new Error(workerData.path + ' ended at byte ' + pos + ', before ' + until);
    hash.update(buf.subarray(0, n));
    pos += n;
    progress();
  }
}
function hashTo(until, extents) {
  if (until === null) return dataTo(Infinity);
  for (const [start, end] of extents) {
    if (end <= pos) continue;
    if (start >= until) break;
    zerosTo(Math.min(start, until));
    dataTo(Math.min(end, until));
  }
  zerosTo(until);
}
parentPort.on('message', (msg) => {
  try {
    hashTo(msg.until, msg.extents);
    if (msg.digest) {
      closeSync(fd);
      parentPort.postMessage({ digest: hash.digest('hex') });
    }
  } catch (err) {
    parentPort.postMessage({ error: err.message, code: err.code });
  }
});
`;

/** Hashes one file on its own worker thread, in order, in as many steps as the caller likes. */
export class Sha256Worker {
  private readonly worker: Worker;
  private readonly result: Promise<string>;
  private finished = false;

  /** `signal` stops the worker (a failed or interrupted build); digest() then rejects. */
  constructor(path: string, options: { signal?: AbortSignal; onProgress?: (bytes: number) => void } = {}) {
    const { signal, onProgress } = options;
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path } });
    const stop = () => this.dispose();
    signal?.addEventListener('abort', stop, { once: true });
    if (signal?.aborted) stop();
    this.result = new Promise<string>((resolve, reject) => {
      this.worker.on('message', (msg: { progress?: number; digest?: string; error?: string; code?: string }) => {
        if (msg.progress !== undefined) onProgress?.(msg.progress);
        else if (msg.digest !== undefined) resolve(msg.digest);
        else reject(Object.assign(new Error(`sha256 of ${path}: ${msg.error}`), { code: msg.code }));
      });
      this.worker.on('error', reject);
      this.worker.on('exit', (code) => reject(new Error(`sha256 of ${path}: worker exited (${code}) before the digest`)));
    });
    // Failures surface through digest(); one that happens while nobody awaits yet must not crash the process.
    this.result.catch(() => undefined);
    void this.result
      .finally(() => {
        signal?.removeEventListener('abort', stop);
        this.dispose();
      })
      .catch(() => undefined);
  }

  /** Hashes the file up to `until` (those bytes must be final), in the background. */
  hashTo(until: number, extents: ByteRanges): void {
    if (this.finished) throw new Error('internal: Sha256Worker used after digest()');
    this.worker.postMessage({ until, extents });
  }

  /** Hashes the rest of the file up to `size` (null: to its end) and resolves with the hex digest. */
  digest(size: number | null, extents: ByteRanges): Promise<string> {
    if (!this.finished) this.worker.postMessage({ until: size, extents, digest: true });
    this.finished = true;
    return this.result;
  }

  /** Stops the worker (a read or copy that ended early); digest() then rejects. */
  dispose(): void {
    void this.worker.terminate();
  }
}

/** sha256 of a whole file (read to its end), on a worker thread. */
export async function sha256File(path: string, options: { signal?: AbortSignal; onProgress?: (bytes: number) => void } = {}): Promise<string> {
  return new Sha256Worker(path, options).digest(null, []);
}
