/**
 * One distribution set as the build reads it: its tar's size, a peek at one file, and the stream of
 * the tar itself, from the decompressed-set cache or from the decoder (copied into the cache on the way).
 */
import { InputError } from '../errors.js';
import { formatBytes } from '../progress.js';
import type { BuildDeps, BuildRequest } from './build-types.js';
import { XzListSchema, type SetFile } from './sets.js';
import { boundExpanded, checkExpandedSize, SetCache } from './set-cache.js';
import { readTar } from './tar.js';
import { decodeCommand, decoderComplaint, type XzDecoder } from './xz-decoder.js';

const MAX_CAPTURE = 256 * 1024 * 1024;

export interface SetStream {
  chunks: AsyncIterable<Uint8Array>;
  /** Resolves when the decompressor (if any) exited cleanly and the cache copy is in place. */
  done: Promise<void>;
  /** Read from the decompressed-set cache: no decoder runs. */
  cached: boolean;
}

function decompressError(set: SetFile, err: unknown, decoder: XzDecoder): InputError {
  const detail = decoderComplaint(decoder, err instanceof Error ? err.message.split('\n').slice(-1)[0]! : String(err));
  return new InputError(`${set.name}.txz could not be decompressed: ${detail}`, {
    hint: 'the set is damaged or truncated (its sha256 matched MANIFEST, so MANIFEST is damaged too); fetch the release again',
    cause: err,
  });
}

export class SetSource {
  // The decompressed-set cache proves its entries (set-cache.ts); the tar's size the decoder may not exceed.
  private readonly cache: SetCache;
  private expected: number | undefined;
  constructor(
    private readonly set: SetFile,
    private readonly req: BuildRequest,
    private readonly deps: BuildDeps,
  ) {
    this.cache = new SetCache({ cacheDir: req.cacheDir, set, signal: deps.signal, warn: (m) => deps.progress.warn(m), cleanup: deps.cleanup });
  }

  private async entry() {
    return this.req.useCache ? this.cache.lookup() : undefined;
  }

  async uncompressedSize(): Promise<number> {
    const hit = await this.entry();
    if (hit) return (this.expected = hit.size);
    const r = await this.deps.runner.run('xz', ['--robot', '--list', this.set.path], { signal: this.deps.signal, allowFailure: true });
    const parsed = XzListSchema.safeParse(r.stdout);
    if (r.exitCode !== 0 || !parsed.success) throw decompressError(this.set, new Error(r.stderr.trim() || 'xz --list found no index'), 'xz');
    return (this.expected = checkExpandedSize(this.set, parsed.data));
  }

  private decompress(lowPriority = false): { chunks: AsyncIterable<Uint8Array>; exited: Promise<unknown> } {
    const [tool, args] = decodeCommand(this.req.xzDecoder, this.set.path);
    const proc = lowPriority ? this.deps.runner.stream('nice', ['-n', '10', tool, ...args], { signal: this.deps.signal }) : this.deps.runner.stream(tool, args, { signal: this.deps.signal });
    const set = this.set;
    const exited = proc.done.catch((err: unknown) => {
      if (this.deps.signal.aborted) throw this.deps.signal.reason;
      throw decompressError(set, err, this.req.xzDecoder);
    });
    // Awaited by the reader when it reaches the end; a build that fails earlier must not leave it unhandled.
    exited.catch(() => undefined);
    async function* chunks() {
      for await (const c of proc.stdout) yield c as Buffer;
      await exited;
    }
    return { chunks: chunks(), exited };
  }

  /**
   * The data of one file of the set (at most `max` bytes), read from the start of the tar without
   * writing anything; the decoder is stopped as soon as the file is seen. undefined: not in the set.
   */
  async peek(wanted: string, max: number): Promise<Buffer | undefined> {
    const stop = new AbortController();
    const onAbort = () => stop.abort(this.deps.signal.reason);
    this.deps.signal.addEventListener('abort', onAbort, { once: true });
    try {
      // From the .txz, never the cache: a cache entry is proven only once read to its end (set-cache.ts),
      // and a peek stops early.
      const [tool, args] = decodeCommand(this.req.xzDecoder, this.set.path);
      const proc = this.deps.runner.stream(tool, args, { signal: stop.signal });
      const source: AsyncIterable<Uint8Array> = proc.stdout;
      const exited: Promise<unknown> = proc.done;
      for await (const entry of readTar(source, `${this.set.name}.txz`)) {
        if (entry.header.type !== 'file' || entry.header.name.replace(/^(\.\/)+/, '') !== wanted) continue;
        const parts: Buffer[] = [];
        for await (const c of capture(entry.data, parts, wanted, max));
        return Buffer.concat(parts);
      }
      await exited.catch((err: unknown) => {
        throw this.deps.signal.aborted ? this.deps.signal.reason : decompressError(this.set, err, this.req.xzDecoder);
      });
      return undefined;
    } finally {
      this.deps.signal.removeEventListener('abort', onAbort);
      stop.abort(); // the decoder, if it is still running
    }
  }

  /**
   * Streams the tar straight from the decoder (copying it into the cache on the way). `lowPriority`:
   * the decoder runs at nice 10, so that when the 2 cores are contended the other set's decoder, the
   * critical path, wins (kernel.txz: a quarter of base.txz's size).
   */
  async stream(lowPriority = false): Promise<SetStream> {
    const hit = await this.entry();
    if (hit) return { chunks: this.cache.read(hit), done: Promise.resolve(), cached: true };
    // No more than the xz index announced (itself within the limit) is ever passed on or cached.
    const expected = this.expected ?? (await this.uncompressedSize());
    const chunks = boundExpanded(this.decompress(lowPriority).chunks, this.set, expected);
    if (!this.req.useCache) return { chunks, done: Promise.resolve(), cached: false };
    // Copied into the cache on the way, under a temporary name, renamed with its record when complete.
    return { chunks: this.cache.store(chunks), done: Promise.resolve(), cached: false };
  }
}

/** Keeps a copy of a file's chunks in `into` while passing them on; used for the few files the build needs itself. */
export async function* capture(data: AsyncIterable<Uint8Array>, into: Buffer[], path: string, max = MAX_CAPTURE): AsyncGenerator<Uint8Array> {
  let total = 0;
  for await (const c of data) {
    total += c.length;
    if (total > max) throw new InputError(`${path} is larger than ${formatBytes(max)}`, { hint: 'the set is not a FreeBSD release set' });
    into.push(Buffer.from(c));
    yield c;
  }
}
