/**
 * The decompressed-set cache: `sets/<sha256 of the .txz>.tar`, beside `sets/<sha256>.tar.json`, which
 * records the tar's own size and sha256 when the entry is made. The .txz's digest in the name says
 * which set the entry claims to be; only the recorded digest proves the bytes are that set's. So an
 * entry is checked before it is used (its size) and as it streams (its sha256, hashed on a worker
 * thread a step behind the reader); one that fails is removed, and the build goes back to the .txz.
 *
 * The cache copy keeps holes as holes (all-zero blocks are skipped, not written), and no set may
 * expand past MAX_SET_TAR_BYTES or past the size its own xz index gives.
 */
import { mkdir, open, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { EnvironmentError, InputError } from '../errors.js';
import { formatBytes } from '../progress.js';
import { removeStalePartials, temporarySibling, writeFileAtomic } from '../util/atomic.js';
import type { CleanupStack } from '../util/cleanup.js';
import { Sha256Worker } from '../util/sha256.js';
import type { SetFile } from './set-file.js';

/**
 * The most a set may expand to: 16 GiB. FreeBSD 14.3's base.tar is about 1.1 GB; a set that claims
 * more than this is refused before anything is written (a 1.8 MB .txz can hold 5 GiB of zeros).
 */
export const MAX_SET_TAR_BYTES = 16 * 1024 ** 3;

/** A set's expanded size as its xz index gives it, checked against the limit. */
export function checkExpandedSize(set: Pick<SetFile, 'name'>, claimed: number, limit = MAX_SET_TAR_BYTES): number {
  if (claimed > limit) {
    throw new InputError(`${set.name}.txz expands to ${formatBytes(claimed)}, more than fbxen's limit of ${formatBytes(limit)} for one set`, {
      hint: 'FreeBSD release sets expand to a few GiB at most; this one is not a release set (or is a decompression bomb)',
    });
  }
  return claimed;
}

/**
 * Passes a decoder's output through, failing as soon as it goes past `expected` bytes (the xz
 * index's size, itself within the limit): nothing downstream ever sees more than was announced.
 */
export async function* boundExpanded(source: AsyncIterable<Uint8Array>, set: Pick<SetFile, 'name'>, expected: number): AsyncGenerator<Uint8Array> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > expected) {
      throw new InputError(`${set.name}.txz expands to more than the ${formatBytes(expected)} its xz index announced`, {
        hint: 'the set is damaged or crafted; fetch the release again from a mirror you trust',
      });
    }
    yield chunk;
  }
}

/** A cache entry that failed its check while it streamed: the build starts over from the .txz. */
export class StaleCacheEntryError extends EnvironmentError {
  constructor(
    readonly setName: string,
    readonly path: string,
    detail: string,
  ) {
    super(`the cached ${setName}.tar (${path}) ${detail}`, { hint: 'the entry was removed; run the same command again to decompress the set anew' });
  }
}

const Sidecar = z.object({
  schema: z.literal('fbxen-set-cache/1'),
  /** The .txz's sha256 (as in MANIFEST): the entry claims to be this set. */
  set: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
type Sidecar = z.infer<typeof Sidecar>;

export interface CacheEntry {
  path: string;
  size: number;
  sha256: string;
}

/** A write into the cache directory failed: name that directory (not --out) and what to do. */
export function cacheWriteError(err: unknown, dir: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new EnvironmentError(`no space left on the device holding the cache ${dir}`, {
      hint: 'free some space there, choose another --cache-dir, or build with --no-cache (nothing half-written was left)',
      cause: err,
    });
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'EIO') {
    return new EnvironmentError(`cannot write in the cache ${dir}: ${code}`, { hint: 'choose a writable --cache-dir, or build with --no-cache', cause: err });
  }
  return err;
}

// Cache copies skip zero runs at this granularity (file offsets), so a file's holes stay holes.
const HOLE_BLOCK = 64 * 1024;
const ZEROS = Buffer.alloc(HOLE_BLOCK);
// The worker is told how far the file is final about every 16 MiB: few messages, little lag at the end.
const HASH_STEP = 16 * 1024 * 1024;

/** Writes `chunk` at `pos`, leaving its all-zero blocks unwritten (the file is fresh: they read as zeros). */
async function writeSparse(fh: FileHandle, chunk: Uint8Array, pos: number): Promise<void> {
  const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  let runStart = -1;
  let off = 0;
  while (off < buf.length) {
    const end = Math.min(buf.length, off + HOLE_BLOCK - ((pos + off) % HOLE_BLOCK));
    const zero = buf.subarray(off, end).equals(ZEROS.subarray(0, end - off));
    if (!zero && runStart < 0) runStart = off;
    if (zero && runStart >= 0) {
      await fh.write(buf, runStart, off - runStart, pos + runStart);
      runStart = -1;
    }
    off = end;
  }
  if (runStart >= 0) await fh.write(buf, runStart, buf.length - runStart, pos + runStart);
}

export interface SetCacheOptions {
  cacheDir: string;
  set: SetFile;
  signal: AbortSignal;
  warn: (message: string) => void;
  cleanup: CleanupStack;
}

const swept = new Map<string, Promise<void>>();

export class SetCache {
  readonly dir: string;
  readonly tarPath: string;
  readonly metaPath: string;
  private looked: Promise<CacheEntry | undefined> | undefined;

  constructor(private readonly opts: SetCacheOptions) {
    this.dir = join(opts.cacheDir, 'sets');
    this.tarPath = join(this.dir, `${opts.set.sha256}.tar`);
    this.metaPath = `${this.tarPath}.json`;
  }

  /** The entry, when there is one whose record is sound and whose size matches it (else it is removed). */
  lookup(): Promise<CacheEntry | undefined> {
    this.looked ??= this.find();
    return this.looked;
  }

  private async find(): Promise<CacheEntry | undefined> {
    await this.sweep();
    const st = await stat(this.tarPath).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    const meta = await this.readSidecar();
    if (!meta) return this.drop('has no sound record of its size and sha256 (.tar.json)');
    if (meta.set !== this.opts.set.sha256) return this.drop(`is recorded as the tar of another set (${meta.set})`);
    if (meta.size > MAX_SET_TAR_BYTES) return this.drop(`is recorded at ${formatBytes(meta.size)}, over the limit of ${formatBytes(MAX_SET_TAR_BYTES)}`);
    if (st.size !== meta.size) return this.drop(`is ${st.size} bytes, not the ${meta.size} recorded when it was made`);
    return { path: this.tarPath, size: meta.size, sha256: meta.sha256 };
  }

  private async readSidecar(): Promise<Sidecar | undefined> {
    const st = await stat(this.metaPath).catch(() => undefined);
    // A record is about 200 bytes; anything much larger is not one (and is not read into memory).
    if (!st?.isFile() || st.size > 4096) return undefined;
    try {
      const parsed = Sidecar.safeParse(JSON.parse(await readFile(this.metaPath, 'utf8')));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Copies left by builds that were killed (SIGKILL, power) are removed, never a live build's; once per
   * directory and process, so that the two sets' caches do not both report the same file.
   */
  private sweep(): Promise<void> {
    let done = swept.get(this.dir);
    if (!done) {
      done = removeStalePartials(this.dir).then((removed) => {
        for (const r of removed) this.opts.warn(`removed ${r.path} (${formatBytes(r.bytes)}), left by a build that no longer runs`);
      });
      swept.set(this.dir, done);
    }
    return done;
  }

  private async drop(why: string): Promise<undefined> {
    this.opts.warn(`the cached ${this.opts.set.name}.tar ${why}: removed, decompressing ${this.opts.set.name}.txz again`);
    await this.remove();
    return undefined;
  }

  private async remove(): Promise<void> {
    // The record goes first: a tar without one is never trusted.
    await rm(this.metaPath, { force: true });
    await rm(this.tarPath, { force: true });
  }

  /**
   * Streams a cache entry, hashed on a worker thread as it is read. At the end, the bytes read must be
   * exactly the recorded size and digest; otherwise the entry is removed and StaleCacheEntryError
   * thrown, before the build has committed anything (the image is renamed into place much later).
   */
  async *read(entry: CacheEntry): AsyncGenerator<Uint8Array> {
    const { set, signal } = this.opts;
    const hasher = new Sha256Worker(entry.path, { signal });
    const fh = await open(entry.path, 'r');
    let pos = 0;
    let hashed = 0;
    try {
      // The worker reads the same bytes a step behind (from the page cache), so the check costs the
      // reader nothing; the digest is of the file as it was streamed, up to the size read.
      while (pos <= entry.size) {
        signal.throwIfAborted();
        const buf = Buffer.allocUnsafe(1 << 20);
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        if (pos > entry.size) break; // grown since the lookup: nothing past the recorded size is passed on
        if (pos - hashed >= HASH_STEP) {
          hasher.hashTo(pos, [[0, pos]]);
          hashed = pos;
        }
        yield buf.subarray(0, bytesRead);
      }
      await fh.close();
      if (pos !== entry.size) {
        await this.remove();
        throw new StaleCacheEntryError(set.name, entry.path, `${pos > entry.size ? 'grew past' : 'ended before'} the ${entry.size} bytes recorded when it was made`);
      }
      const actual = await hasher.digest(pos, [[0, pos]]);
      if (actual !== entry.sha256) {
        await this.remove();
        throw new StaleCacheEntryError(set.name, entry.path, `has sha256 ${actual}, not the ${entry.sha256} recorded when it was made: it was damaged or replaced`);
      }
    } finally {
      // Also when the reader stops early: neither the descriptor nor the worker outlives the stream.
      await fh.close().catch(() => undefined);
      hasher.dispose();
    }
  }

  /**
   * Passes a set's decompressed tar through while copying it into the cache: under a temporary name,
   * zero blocks left as holes, hashed on a worker thread a step behind; at the end the record
   * (size, sha256) is written, then the tar renamed into place. A failure leaves no entry.
   */
  async *store(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    const { set, signal, cleanup } = this.opts;
    await this.sweep();
    const partial = temporarySibling(this.tarPath);
    const forget = cleanup.push(`remove ${partial}`, () => rm(partial, { force: true }));
    let fh: FileHandle | undefined;
    let hasher: Sha256Worker | undefined;
    try {
      try {
        await mkdir(this.dir, { recursive: true });
        fh = await open(partial, 'w');
      } catch (err) {
        throw cacheWriteError(err, this.dir);
      }
      hasher = new Sha256Worker(partial, { signal });
      let pos = 0;
      let hashed = 0;
      for await (const chunk of source) {
        // The copy is written while the consumer works on the chunk (which it does not modify).
        const writing = writeSparse(fh, chunk, pos);
        writing.catch(() => undefined);
        yield chunk;
        await writing.catch((err: unknown) => {
          throw cacheWriteError(err, this.dir);
        });
        pos += chunk.length;
        if (pos - hashed >= HASH_STEP) {
          // Skipped zeros at the end are not in the file yet: extend it so the worker can read them.
          await fh.truncate(pos).catch((err: unknown) => {
            throw cacheWriteError(err, this.dir);
          });
          hasher.hashTo(pos, [[0, pos]]);
          hashed = pos;
        }
      }
      const size = pos;
      try {
        // Trailing zeros were skipped too: the size comes from truncate.
        await fh.truncate(size);
        await fh.close();
        fh = undefined;
        const sha256 = await hasher.digest(size, [[0, size]]);
        const record: Sidecar = { schema: 'fbxen-set-cache/1', set: set.sha256, size, sha256 };
        await rm(this.metaPath, { force: true });
        await writeFileAtomic(this.metaPath, `${JSON.stringify(record)}\n`);
        await rename(partial, this.tarPath);
      } catch (err) {
        throw cacheWriteError(err, this.dir);
      }
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    } finally {
      await fh?.close().catch(() => undefined);
      hasher?.dispose();
      forget();
    }
  }
}
