/**
 * Finding FreeBSD's distribution sets: a release on a mirror, or a --dist directory or URL; MANIFEST
 * parsing and sha256 verification; a content-addressed cache with atomic, resumable downloads.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { EnvironmentError, InputError } from '../errors.js';
import { formatBytes, type StepHandle } from '../progress.js';
import { settleAll } from '../util/settle.js';
import { sha256File } from '../util/sha256.js';

export const SET_NAMES = ['base', 'kernel'] as const;
export type SetName = (typeof SET_NAMES)[number];

export interface ManifestEntry {
  file: string;
  sha256: string;
  entries: number;
  set: string;
  description: string;
}

/** FreeBSD's MANIFEST: `base.txz<TAB>sha256<TAB>count<TAB>base<TAB>"Base system (MANDATORY)"<TAB>on`. */
export function parseManifest(text: string, where: string): Map<string, ManifestEntry> {
  const out = new Map<string, ManifestEntry>();
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const f = line.split('\t');
    const [file, sha256, count, set, description] = f;
    if (f.length < 4 || !file || !/^[a-f0-9]{64}$/i.test(sha256 ?? '') || !/^\d+$/.test(count ?? '')) {
      throw new InputError(`${where}: line ${i + 1} is not a MANIFEST line: ${JSON.stringify(line.slice(0, 120))}`, {
        hint: 'MANIFEST lines are: file, sha256, entry count, set name, description, default (tab-separated)',
      });
    }
    out.set(file, { file, sha256: sha256!.toLowerCase(), entries: Number(count), set: set ?? '', description: (description ?? '').replace(/^"|"$/g, '') });
  });
  for (const name of SET_NAMES) {
    if (!out.has(`${name}.txz`)) throw new InputError(`${where} does not list ${name}.txz`, { hint: 'this is not a FreeBSD release directory' });
  }
  return out;
}

export interface Release {
  major: number;
  minor: number;
  /** e.g. "14.3-RELEASE" */
  name: string;
}

export function parseRelease(name: string): Release {
  const m = /^(\d+)\.(\d+)-(RELEASE|BETA\d*|RC\d*|STABLE|CURRENT|ALPHA\d*|PRERELEASE)(-p\d+)?$/.exec(name);
  if (!m) {
    throw new InputError(`"${name}" is not a FreeBSD release name`, { hint: 'use the form 14.3-RELEASE (as on the mirror: releases/<arch>/<release>/)' });
  }
  return { major: Number(m[1]), minor: Number(m[2]), name };
}

export type Arch = 'amd64' | 'i386';

/** The support matrix: GENERIC carries XENHVM from 10.0; i386 kernels end with 14.x. */
export function checkSupported(release: Release, arch: Arch): void {
  if (release.major < 10) {
    throw new InputError(`FreeBSD ${release.name} is not supported: its GENERIC kernel has no Xen PVHVM support (options XENHVM came to GENERIC in 10.0)`, {
      hint: 'use FreeBSD 10.0 or later',
    });
  }
  if (arch === 'i386' && release.major >= 15) {
    throw new InputError(`FreeBSD ${release.name} has no i386 kernel: FreeBSD 15.0 dropped i386 as a kernel platform`, {
      hint: 'use --arch amd64, or an i386 release from 10.0 to 14.x',
    });
  }
}

export function mirrorDirectory(mirror: string, release: string, arch: Arch): string {
  const base = mirror.replace(/\/+$/, '');
  return arch === 'i386' ? `${base}/releases/i386/i386/${release}/` : `${base}/releases/${arch}/${release}/`;
}

export const DEFAULT_MIRROR = 'https://download.freebsd.org';

export interface SetFile {
  name: SetName;
  /** A local file holding the .txz (a --dist file or the cache copy). */
  path: string;
  sha256: string;
  entries: number;
  /** Where it came from (URL or path), for build.json. */
  source: string;
}

export interface ResolvedSets {
  origin: string;
  manifestSha256: string;
  sets: Record<SetName, SetFile>;
}

const isUrl = (s: string) => /^https?:\/\//i.test(s);

function offline(url: string, cause: unknown): EnvironmentError {
  return new EnvironmentError(`cannot reach ${url}: ${(cause as Error)?.cause instanceof Error ? ((cause as Error).cause as Error).message : (cause as Error)?.message}`, {
    hint: 'without network, give the sets locally: --dist DIR (a directory holding MANIFEST, base.txz and kernel.txz)',
    cause,
  });
}

async function fetchText(url: string, signal: AbortSignal): Promise<string> {
  let res: Response;
  try {
    res = await fetch(url, { signal });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw offline(url, err);
  }
  if (!res.ok) throw new InputError(`${url} answered HTTP ${res.status}`, { hint: 'check --release, --arch and --mirror (or --dist): the release directory must hold MANIFEST' });
  return res.text();
}

/**
 * Downloads `url` into the cache as <sha256>.txz: to a partial file first (resumed with a Range request
 * when one is left from an interrupted run), verified, then renamed. A finished cache entry is never
 * a half-written file.
 */
async function download(url: string, expected: string, cacheDir: string, signal: AbortSignal, handle: StepHandle): Promise<string> {
  const final = join(cacheDir, 'dist', `${expected}.txz`);
  if (await exists(final)) return final;
  await mkdir(join(cacheDir, 'dist'), { recursive: true });
  const partial = `${final}.partial`;
  let have = (await stat(partial).catch(() => undefined))?.size ?? 0;
  let res: Response;
  try {
    res = await fetch(url, { signal, headers: have > 0 ? { Range: `bytes=${have}-` } : {} });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw offline(url, err);
  }
  if (res.status === 416) {
    have = 0;
    await rm(partial, { force: true });
    res = await fetch(url, { signal });
  }
  if (!res.ok || !res.body) throw new InputError(`${url} answered HTTP ${res.status}`, { hint: 'check the mirror and release' });
  const resumed = res.status === 206;
  if (!resumed) have = 0;
  const total = Number(res.headers.get('content-length') ?? NaN) + have;
  let done = have;
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  body.on('data', (c: Buffer) => {
    done += c.length;
    handle.output(`${url.split('/').pop()}: ${formatBytes(done)}${Number.isFinite(total) ? ` of ${formatBytes(total)}` : ''}${resumed ? ' (resumed)' : ''}`);
  });
  await pipeline(body, createWriteStream(partial, { flags: resumed ? 'a' : 'w' }), { signal });
  const actual = await sha256File(partial, { signal });
  if (actual !== expected) {
    await rm(partial, { force: true });
    throw new InputError(`${url}: sha256 ${actual} does not match MANIFEST (${expected})`, {
      hint: 'the download is damaged or the mirror is inconsistent; run again (the partial file was removed) or use another --mirror',
    });
  }
  await rename(partial, final);
  return final;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export interface ResolveSetsOptions {
  dist?: string | undefined;
  release?: string | undefined;
  arch: Arch;
  mirror: string;
  cacheDir: string;
  signal: AbortSignal;
}

/** Finds MANIFEST and the sets, downloading into the cache where needed, and verifies every sha256. */
export async function resolveSets(opts: ResolveSetsOptions, handle: StepHandle): Promise<ResolvedSets> {
  const origin = opts.dist ?? mirrorDirectory(opts.mirror, opts.release ?? '', opts.arch);
  const remote = isUrl(origin);
  const join2 = (name: string) => (remote ? `${origin.replace(/\/?$/, '/')}${name}` : join(origin, name));
  let manifestText: string;
  if (remote) manifestText = await fetchText(join2('MANIFEST'), opts.signal);
  else {
    const st = await stat(origin).catch(() => undefined);
    if (!st?.isDirectory()) throw new InputError(`--dist ${origin} is not a directory`, { hint: 'give the directory that holds MANIFEST, base.txz and kernel.txz' });
    manifestText = await readFile(join2('MANIFEST'), 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new InputError(`cannot read ${join2('MANIFEST')}: ${err.code ?? err.message}`, { hint: 'a release directory holds MANIFEST next to base.txz and kernel.txz' });
    });
  }
  const manifest = parseManifest(manifestText, join2('MANIFEST'));
  const sets = {} as Record<SetName, SetFile>;
  const checks: Promise<void>[] = [];
  for (const name of SET_NAMES) {
    const entry = manifest.get(`${name}.txz`)!;
    const source = join2(`${name}.txz`);
    if (remote) {
      const path = await download(source, entry.sha256, opts.cacheDir, opts.signal, handle);
      sets[name] = { name, path, sha256: entry.sha256, entries: entry.entries, source };
      continue;
    }
    const path = source;
    const size = (await stat(path).catch(() => undefined))?.size;
    if (size === undefined) throw new InputError(`${path} is missing`, { hint: 'the release directory must hold base.txz and kernel.txz' });
    sets[name] = { name, path, sha256: entry.sha256, entries: entry.entries, source };
    // Both sets are hashed at once, each on its own worker thread.
    checks.push(
      sha256File(path, { signal: opts.signal, onProgress: (done) => handle.output(`checking ${name}.txz: ${formatBytes(done)} of ${formatBytes(size)}`) }).then((actual) => {
        if (actual !== entry.sha256) {
          throw new InputError(`${path}: sha256 ${actual} does not match MANIFEST (${entry.sha256})`, {
            hint: 'the set is damaged or does not belong to this MANIFEST; fetch it again',
          });
        }
      }),
    );
  }
  // Report the first set in MANIFEST order that failed, whichever worker finished first.
  await settleAll(checks);
  return { origin, manifestSha256: createHash('sha256').update(manifestText).digest('hex'), sets };
}

/** The uncompressed size of an .xz file, from its index (`xz --robot --list`). */
export const XzListSchema = z.string().transform((text, ctx) => {
  const line = text.split('\n').find((l) => l.startsWith('totals\t'));
  const size = line ? Number(line.split('\t')[4]) : NaN;
  if (!Number.isSafeInteger(size)) {
    ctx.addIssue({ code: 'custom', message: 'no totals line' });
    return z.NEVER;
  }
  return size;
});

