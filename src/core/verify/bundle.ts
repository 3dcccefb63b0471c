/**
 * fbxen-bundle/1 (docs/probe-protocol.md): a directory or tar(.gz) holding `meta`, `index` and
 * `sections/<name>.out`. The guest collects raw output; everything here only reads or packs it.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { InputError } from '../errors.js';
import { readTar } from '../build/tar.js';

export const BUNDLE_FORMAT = 'fbxen-bundle/1';
export const SECTION_NAME = /^[a-z0-9][a-z0-9.-]*$/;
export const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface IndexEntry {
  name: string;
  status: number;
  command: string;
}

export interface Bundle {
  meta: Record<string, string>;
  index: IndexEntry[];
  sections: Map<string, string>;
}

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

const MAX_BUNDLE_BYTES = 256 * 1024 * 1024;

/** Reads a bundle from tar bytes (gzip-compressed or not). */
export async function bundleFromTarBytes(bytes: Uint8Array, label: string): Promise<Bundle> {
  let tar: Uint8Array = bytes;
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      tar = gunzipSync(bytes, { maxOutputLength: MAX_BUNDLE_BYTES });
    } catch (err) {
      throw new InputError(`${label}: the gzip data is damaged (${(err as Error).message})`, {
        hint: 'collect the bundle again; a truncated transfer is the usual cause',
        cause: err,
      });
    }
  }
  const files = new Map<string, Uint8Array>();
  async function* once() {
    yield tar;
  }
  for await (const entry of readTar(once(), label)) {
    const chunks: Uint8Array[] = [];
    for await (const c of entry.data) chunks.push(c.slice());
    if (entry.header.type === 'file') files.set(entry.header.name, Buffer.concat(chunks));
  }
  return bundleFromFiles(rebase(files), label);
}

async function readDirBundle(dir: string): Promise<Bundle> {
  const files = new Map<string, Uint8Array>();
  for (const name of ['meta', 'index']) {
    try {
      files.set(name, await readFile(join(dir, name)));
    } catch {
      /* missing: bundleFromFiles says what is wrong */
    }
  }
  let names: string[] = [];
  try {
    names = await readdir(join(dir, 'sections'));
  } catch {
    names = [];
  }
  for (const n of names) if (n.endsWith('.out')) files.set(`sections/${n}`, await readFile(join(dir, 'sections', n)));
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
  return bundleFromTarBytes(await readFile(path), path);
}

// ---- packing (host reference; test doubles that play a guest use it) ----

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function ustarHeader(name: string, size: number, typeflag: '0' | '5'): Uint8Array {
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
