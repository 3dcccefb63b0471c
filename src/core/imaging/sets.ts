/**
 * Finding FreeBSD's distribution sets: a release on a mirror, or a --dist directory or URL; MANIFEST
 * parsing and sha256 verification; a content-addressed cache with atomic, resumable downloads.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { z } from 'zod';
import { EnvironmentError, InputError } from '../errors.js';
import { formatBytes, type StepHandle } from '../progress.js';
import { settleAll } from '../util/settle.js';
import { cacheWriteError } from './set-cache.js';
import { SET_NAMES, type SetFile, type SetName } from './set-file.js';
import { sha256File } from '../util/sha256.js';

export { SET_NAMES, type SetFile, type SetName };

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

export interface ResolvedSets {
  origin: string;
  manifestSha256: string;
  sets: Record<SetName, SetFile>;
}

const isUrl = (s: string) => /^https?:\/\//i.test(s);

/**
 * Error codes that mean the network failed, whatever layer reported them (Node's sockets and DNS,
 * undici's fetch, stream plumbing). Disk errors (ENOSPC, EACCES...) are not among them.
 */
const NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENETRESET',
  'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'ENOTFOUND', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_SOCKET_CONNECTION_TIMEOUT', 'ERR_TLS_CERT_ALTNAME_INVALID',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_RESPONSE_STATUS_CODE',
]);
// A request that fails with one of these before any response may have gone out on a kept-alive
// connection the server had just closed as idle: it is sent once more, on a new connection.
const STALE_CONNECTION = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

/** The errors along a cause chain (undici wraps the socket's error in a TypeError "fetch failed"/"terminated"). */
function causes(err: unknown): (Error & { code?: unknown })[] {
  const out: (Error & { code?: unknown })[] = [];
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) out.push(e);
  return out;
}

/** The network error code along a cause chain, if the failure is the network's; undefined otherwise. */
export function networkErrorCode(err: unknown): string | undefined {
  const chain = causes(err);
  // TLS failures on the way (a record that does not decrypt, a renegotiation cut) are the network's too.
  const code = chain.map((e) => e.code).find((c): c is string => typeof c === 'string' && (NETWORK_CODES.has(c) || /^ERR_(SSL|TLS)_/.test(c)));
  if (code) return code;
  // undici: "terminated" when the body stops (the socket closed), "other side closed" from its socket.
  if (chain.some((e) => /^(terminated|other side closed|premature close|socket hang up)$/i.test(e.message))) return 'connection closed';
  return undefined;
}

function detail(err: unknown): string {
  const chain = causes(err);
  const last = chain[chain.length - 1];
  const code = networkErrorCode(err);
  return [last?.message ?? String(err), code && !last?.message.includes(code) ? `(${code})` : ''].filter(Boolean).join(' ');
}

function offline(url: string, cause: unknown): EnvironmentError {
  return new EnvironmentError(`cannot reach ${url}: ${detail(cause)}`, {
    hint: 'without network, give the sets locally: --dist DIR (a directory holding MANIFEST, base.txz and kernel.txz)',
    cause,
  });
}

function cut(url: string, received: number, cause: unknown, kept: boolean): EnvironmentError {
  return new EnvironmentError(`the download of ${url} was cut after ${formatBytes(received)}: ${detail(cause)}`, {
    hint: kept ? 'a network failure: resume with the same command (what was received is kept and the rest is asked for with a Range request)' : 'a network failure: run the same command again',
    cause,
  });
}

/** fetch, sent again (at most twice) when it fails before any response on what was likely a stale kept-alive connection. */
async function request(url: string, signal: AbortSignal, headers: Record<string, string> = {}): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch(url, { signal, headers });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      const stale = causes(err).some((e) => typeof e.code === 'string' && STALE_CONNECTION.has(e.code)) || networkErrorCode(err) === 'connection closed';
      if (stale && attempt < 3) continue;
      throw offline(url, err);
    }
  }
}

/** MANIFEST is about 1 KB; a larger answer is not one, and is not read into memory. */
const MAX_MANIFEST_BYTES = 1024 * 1024;

async function fetchText(url: string, signal: AbortSignal): Promise<string> {
  const res = await request(url, signal);
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined);
    throw new InputError(`${url} answered HTTP ${res.status}`, { hint: 'check --release, --arch and --mirror (or --dist): the release directory must hold MANIFEST' });
  }
  if (!res.body) return '';
  const parts: Buffer[] = [];
  let total = 0;
  try {
    for await (const c of Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>)) {
      total += (c as Buffer).length;
      if (total > MAX_MANIFEST_BYTES) {
        throw new InputError(`${url} is larger than ${formatBytes(MAX_MANIFEST_BYTES)}: not a FreeBSD MANIFEST`, { hint: 'check --mirror or --dist' });
      }
      parts.push(c as Buffer);
    }
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    if (err instanceof InputError) throw err;
    if (networkErrorCode(err)) throw cut(url, total, err, false);
    throw err;
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * Downloads `url` into the cache as <sha256>.txz: to a partial file first (resumed with a Range request
 * when one is left from an interrupted run), verified, then renamed. A finished cache entry is never
 * a half-written file, and it is verified again each time it is used: a damaged one is downloaded anew.
 */
async function download(url: string, expected: string, cacheDir: string, signal: AbortSignal, handle: StepHandle, warn: (message: string) => void): Promise<string> {
  const dir = join(cacheDir, 'dist');
  const final = join(dir, `${expected}.txz`);
  if (await exists(final)) {
    const actual = await sha256File(final, { signal, onProgress: (done) => handle.output(`checking the cached ${url.split('/').pop()}: ${formatBytes(done)}`) });
    if (actual === expected) return final;
    warn(`the cached download ${final} has sha256 ${actual}, not MANIFEST's: removed, downloading it again`);
    await rm(final, { force: true });
  }
  await mkdir(dir, { recursive: true }).catch((err: unknown) => {
    throw cacheWriteError(err, dir);
  });
  const partial = `${final}.partial`;
  let have = (await stat(partial).catch(() => undefined))?.size ?? 0;
  let res = await request(url, signal, have > 0 ? { Range: `bytes=${have}-` } : {});
  if (res.status === 416) {
    have = 0;
    await res.body?.cancel().catch(() => undefined);
    await rm(partial, { force: true });
    res = await request(url, signal);
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => undefined);
    throw new InputError(`${url} answered HTTP ${res.status}`, { hint: 'check the mirror and release' });
  }
  const resumed = res.status === 206;
  if (!resumed) have = 0;
  const total = Number(res.headers.get('content-length') ?? NaN) + have;
  let done = have;
  // The web stream itself, not Readable.fromWeb: when the socket closes, fromWeb's Readable is destroyed
  // with the chunks it had buffered (131,072 of 200,000 received bytes were kept), the web stream
  // hands over everything it received before its error.
  const body = res.body as unknown as AsyncIterable<Uint8Array>;
  const out = createWriteStream(partial, { flags: resumed ? 'a' : 'w' });
  // Which side failed decides the message: the body's errors are the network's, the file's the disk's.
  let writeError: unknown;
  out.on('error', (err) => (writeError ??= err));
  let readError: unknown;
  try {
    for await (const c of body) {
      done += c.length;
      handle.output(`${url.split('/').pop()}: ${formatBytes(done)}${Number.isFinite(total) ? ` of ${formatBytes(total)}` : ''}${resumed ? ' (resumed)' : ''}`);
      if (!out.write(c)) await once(out, 'drain').catch(() => undefined);
      if (writeError) break;
    }
  } catch (err) {
    readError = err;
  }
  // Everything received reaches the file, also when the transfer was cut (a pipeline would drop what
  // the file stream still buffered): the resume asks for the rest from where the file ends.
  out.end();
  await finished(out).catch((err: unknown) => (writeError ??= err));
  if (signal.aborted) throw signal.reason;
  if (writeError) throw cacheWriteError(writeError, dir);
  if (readError) throw networkErrorCode(readError) ? cut(url, done, readError, true) : readError;
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
  /** Warnings worth keeping (a damaged cache entry that was replaced); none when not given. */
  warn?: ((message: string) => void) | undefined;
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
      const path = await download(source, entry.sha256, opts.cacheDir, opts.signal, handle, opts.warn ?? (() => undefined));
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

