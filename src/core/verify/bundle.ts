/**
 * fbxen-bundle/1 (docs/probe-protocol.md): a directory or tar(.gz) holding `meta`, `index` and
 * `sections/<name>.out`. The guest collects raw output; everything here only reads or packs it.
 */
import { createReadStream } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, Readable } from 'node:stream';
import { createGunzip, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { InputError } from '../errors.js';
import { NAME_PATTERN } from '../util/names.js';
import { readTar } from '../imaging/tar.js';
import type { Bundle, IndexEntry } from '../../probes/types.js';

export const BUNDLE_FORMAT = 'fbxen-bundle/1';
export const SECTION_NAME = /^[a-z0-9][a-z0-9.-]*$/;
export const RUN_ID = NAME_PATTERN;

// The parsed bundle is what the probes take, so its type lives with them.
export type { Bundle, IndexEntry };

const MetaSchema = z
  .record(z.string(), z.string())
  .refine((m) => m.bundle === BUNDLE_FORMAT, { message: `meta has no "bundle=${BUNDLE_FORMAT}" line` });

/** `key=value` lines; blank lines and lines without `=` are ignored (tolerant reader). */
export function parseMeta(text: string): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    meta[line.slice(0, eq).trim()] = line.slice(eq + 1);
  }
  return meta;
}

/** `<name> TAB <status> TAB <command>` lines; malformed lines are skipped, not fatal. */
export function parseIndex(text: string): IndexEntry[] {
  const out: IndexEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const [name, status, ...rest] = line.split('\t');
    if (!name || !SECTION_NAME.test(name) || status === undefined || !/^\d+$/.test(status)) continue;
    out.push({ name, status: Number(status), command: rest.join('\t') });
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

/** Builds a bundle from its files keyed by path relative to the bundle root (`meta`, `sections/x.out`). */
export function bundleFromFiles(files: Map<string, Uint8Array>, label: string): Bundle {
  const metaBytes = files.get('meta');
  if (!metaBytes) {
    throw new InputError(`${label} is not an fbxen bundle: it has no "meta" file`, {
      hint: 'give a directory or tar written by fbxen-collect (see docs/probe-protocol.md)',
    });
  }
  const meta = MetaSchema.safeParse(parseMeta(utf8.decode(metaBytes)));
  if (!meta.success) {
    throw new InputError(`${label}: ${meta.error.issues.map((i) => i.message).join('; ')}`, {
      hint: `this reader understands ${BUNDLE_FORMAT}; collect the bundle again with this fbxen's guest/fbxen-collect`,
    });
  }
  const index = parseIndex(utf8.decode(files.get('index') ?? new Uint8Array()));
  const sections = new Map<string, string>();
  for (const [path, data] of files) {
    const m = /^sections\/(.+)\.out$/.exec(path);
    if (m && SECTION_NAME.test(m[1]!)) sections.set(m[1]!, utf8.decode(data));
  }
  return { meta: meta.data, index, sections };
}

/** Entries in a tar may sit under `./` or one top-level directory; find the root by where `meta` is. */
function rebase(files: Map<string, Uint8Array>): Map<string, Uint8Array> {
  const clean = new Map<string, Uint8Array>();
  for (const [p, d] of files) clean.set(p.replace(/^(\.\/)+/, ''), d);
  if (clean.has('meta')) return clean;
  const metaPath = [...clean.keys()].find((p) => /^[^/]+\/meta$/.test(p));
  if (!metaPath) return clean;
  const prefix = metaPath.slice(0, -'meta'.length);
  const out = new Map<string, Uint8Array>();
  for (const [p, d] of clean) if (p.startsWith(prefix)) out.set(p.slice(prefix.length), d);
  return out;
}

/**
 * What fbxen accepts as one bundle (docs/probe-protocol.md §5): at most this many bytes of tar once
 * decompressed (or of files in a directory bundle), and this many tar entries. A real bundle is far
 * smaller (the largest fixture: 41 KB in 13 sections); the limits bound what a hostile guest can make fbxen hold.
 */
export const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;
export const MAX_BUNDLE_ENTRIES = 4096;

const MIB = MAX_BUNDLE_BYTES / 1024 / 1024;
function tooLarge(label: string, what: string): InputError {
  return new InputError(`${label}: evidence rejected: ${what} more than ${MIB} MiB, the limit for one bundle (a real one is well under 1 MiB)`, {
    hint: 'this is not what fbxen-collect writes: collect the evidence again from a guest you trust',
  });
}

/** Passes the bytes on, and stops with "evidence rejected" once more than the bundle limit went by. */
async function* bounded(source: AsyncIterable<Uint8Array>, label: string, what: string): AsyncGenerator<Uint8Array> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > MAX_BUNDLE_BYTES) throw tooLarge(label, what);
    yield chunk;
  }
}

/** gunzip as a stream: memory stays at zlib's window and one chunk, whatever the data expands to. */
async function* gunzipBounded(source: AsyncIterable<Uint8Array>, label: string): AsyncGenerator<Uint8Array> {
  const gz = createGunzip();
  // Errors of the source or of zlib destroy gz, which ends the loop below with them.
  pipeline(Readable.from(source), gz, () => undefined);
  try {
    yield* bounded(gz, label, 'its gzip data decompresses to');
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`${label}: the gzip data is damaged (${(err as Error).message})`, {
      hint: 'collect the bundle again; a truncated transfer is the usual cause',
      cause: err,
    });
  } finally {
    gz.destroy();
  }
}

/** Reads a bundle from a stream of tar bytes, gzip-compressed or not (seen by its magic number). */
async function bundleFromStream(source: AsyncIterable<Uint8Array>, label: string): Promise<Bundle> {
  const it = source[Symbol.asyncIterator]();
  const first = await it.next();
  const head: Uint8Array = first.done ? new Uint8Array(0) : first.value;
  async function* all() {
    if (head.length) yield head;
    for (;;) {
      const next = await it.next();
      if (next.done) return;
      yield next.value;
    }
  }
  const gzip = head[0] === 0x1f && head[1] === 0x8b;
  const tar = gzip ? gunzipBounded(all(), label) : bounded(all(), label, 'its tar data is');
  const files = new Map<string, Uint8Array>();
  let entries = 0;
  try {
    for await (const entry of readTar(tar, label)) {
      if (++entries > MAX_BUNDLE_ENTRIES) {
        throw new InputError(`${label}: evidence rejected: the tar has more than ${MAX_BUNDLE_ENTRIES} entries, the limit for one bundle`, {
          hint: 'this is not what fbxen-collect writes: collect the evidence again from a guest you trust',
        });
      }
      if (entry.header.type !== 'file') continue; // its data is skipped by the reader
      const chunks: Uint8Array[] = [];
      for await (const c of entry.data) chunks.push(c.slice());
      files.set(entry.header.name, Buffer.concat(chunks));
    }
  } finally {
    // The tar may end before its stream does: close zlib and the file now, not when collected.
    await tar.return(undefined);
    await it.return?.();
  }
  return bundleFromFiles(rebase(files), label);
}

/** Reads a bundle from tar bytes (gzip-compressed or not). */
export async function bundleFromTarBytes(bytes: Uint8Array, label: string): Promise<Bundle> {
  async function* once() {
    yield bytes;
  }
  return bundleFromStream(once(), label);
}

/** Reads a regular file of at most `limit` bytes; more (a file that grew, a device) is rejected. */
async function readAtMost(path: string, limit: number, label: string): Promise<Uint8Array> {
  const fh = await open(path, 'r');
  try {
    const info = await fh.stat();
    if (!info.isFile()) throw new InputError(`${label}: ${path} is not a regular file`, { hint: 'a bundle directory holds only regular files' });
    if (info.size > limit) throw tooLarge(label, 'its files are');
    const buf = Buffer.alloc(info.size + 1);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got > info.size) throw tooLarge(label, 'its files are'); // it grew while being read
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

async function readDirBundle(dir: string): Promise<Bundle> {
  const files = new Map<string, Uint8Array>();
  let left = MAX_BUNDLE_BYTES;
  const add = async (key: string, path: string) => {
    const data = await readAtMost(path, left, dir);
    left -= data.length;
    files.set(key, data);
  };
  for (const name of ['meta', 'index']) {
    try {
      await add(name, join(dir, name));
    } catch (err) {
      if (err instanceof InputError) throw err;
      /* missing: bundleFromFiles says what is wrong */
    }
  }
  let names: string[] = [];
  try {
    names = await readdir(join(dir, 'sections'));
  } catch {
    names = [];
  }
  const sections = names.filter((n) => n.endsWith('.out'));
  if (sections.length > MAX_BUNDLE_ENTRIES) {
    throw new InputError(`${dir}: evidence rejected: more than ${MAX_BUNDLE_ENTRIES} sections, the limit for one bundle`, {
      hint: 'this is not what fbxen-collect writes: collect the evidence again from a guest you trust',
    });
  }
  for (const n of sections) await add(`sections/${n}`, join(dir, 'sections', n));
  return bundleFromFiles(files, dir);
}

/** Reads a bundle from a directory, a .tar or a .tar.gz (detected by content, not by name). */
export async function readBundle(path: string): Promise<Bundle> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw new InputError(`bundle ${path} does not exist or cannot be read`, {
      hint: 'give the directory or tar that fbxen-collect wrote',
      cause: err,
    });
  }
  if (info.isDirectory()) return readDirBundle(path);
  // Compressed or not, a file larger than the limit cannot hold an acceptable bundle.
  if (info.isFile() && info.size > MAX_BUNDLE_BYTES) throw tooLarge(path, 'the file is');
  return bundleFromStream(createReadStream(path, { highWaterMark: 256 * 1024 }), path);
}

// ---- packing (host reference; test doubles that play a guest use it) ----

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** One ustar header with fixed owners and times (packBundle's; tests and the bench build hostile archives with it). */
export function ustarHeader(name: string, size: number, typeflag: '0' | '5'): Uint8Array {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(typeflag === '5' ? 0o755 : 0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(0, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(typeflag, 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

/** Packs a bundle as gzip(ustar) with fixed times and owners, so equal bundles give equal bytes. */
export async function packBundle(bundle: Bundle): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const add = (name: string, data: Uint8Array) => {
    parts.push(ustarHeader(name, data.length, '0'), data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  };
  const meta = Object.entries(bundle.meta)
    .map(([k, v]) => `${k}=${v}\n`)
    .join('');
  add('meta', Buffer.from(meta));
  add('index', Buffer.from(bundle.index.map((e) => `${e.name}\t${e.status}\t${e.command}\n`).join('')));
  parts.push(ustarHeader('sections/', 0, '5'));
  for (const [name, text] of bundle.sections) {
    if (!SECTION_NAME.test(name)) throw new InputError(`section name "${name}" is not allowed`, { hint: 'use [a-z0-9][a-z0-9.-]*' });
    add(`sections/${name}.out`, Buffer.from(text));
  }
  parts.push(Buffer.alloc(1024));
  return new Uint8Array(gzipSync(Buffer.concat(parts)));
}
