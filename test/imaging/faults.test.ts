/**
 * Faults around the build (issue 14 points 9, 11, 12): what killed builds leave behind, a network cut
 * in the middle of a download, and a full file system under --cache-dir.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { networkErrorCode, resolveSets } from '../../src/core/imaging/sets.js';
import { EnvironmentError } from '../../src/core/errors.js';
import { formatBytes } from '../../src/core/progress.js';
import { fbxen, fbxenInterrupted } from '../support/cli.js';
import { REPO, sampleDist } from '../support/samples.js';

const scratch = mkdtempSync(join(tmpdir(), 'fbxen-faults-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const dir = (name: string) => mkdtempSync(join(scratch, `${name}-${n++}-`));
const handle = { output: () => undefined };
const dist = sampleDist();
const buildArgs = (out: string, cache: string) => ['build', '--dist', dist, '--arch', 'amd64', '--out', out, '--cache-dir', cache, '--disk-size', '256M', '--swap', '32M', '--name', 's', '--format', 'raw'];

/** A pid that existed and is gone: a child that has exited and been reaped. */
function deadPid(): number {
  const r = spawnSync('true');
  return r.pid!;
}

describe('partial outputs of killed builds (14.9)', () => {
  it('a later build in the same --out removes those of dead processes, says so, and keeps those of live ones', async () => {
    const out = dir('out');
    const cache = dir('cache');
    const dead = deadPid();
    const sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
    try {
      const live = sleeper.pid!;
      const mib = Buffer.alloc(1 << 20, 7);
      writeFileSync(join(out, `.s.raw.partial-${dead}-deadbeef`), mib);
      writeFileSync(join(out, `.s.qcow2.partial-${dead}-0badf00d`), mib);
      mkdirSync(join(out, `.fbxen-scratch-${dead}`));
      writeFileSync(join(out, `.fbxen-scratch-${dead}`, 'esp.img'), 'x');
      writeFileSync(join(out, `.s.raw.partial-${live}-cafebabe`), 'a live build');
      writeFileSync(join(out, 'notes.partial-1-deadbeef'), 'not a name fbxen makes');
      const sets = join(cache, 'sets');
      mkdirSync(sets, { recursive: true });
      writeFileSync(join(sets, `.${'0'.repeat(64)}.tar.partial-${dead}-12345678`), mib);

      const r = fbxen(buildArgs(out, cache));
      expect(r.code, r.stderr).toBe(0);
      expect(readdirSync(out).sort()).toEqual([`.s.raw.partial-${live}-cafebabe`, 'build.json', 'notes.partial-1-deadbeef', 's.raw']);
      expect(readdirSync(sets).filter((f) => f.includes('partial'))).toEqual([]);
      for (const name of [`.s.raw.partial-${dead}-deadbeef`, `.s.qcow2.partial-${dead}-0badf00d`]) {
        expect(r.stderr).toContain(`warning: removed ${join(out, name)} (1.0 MiB), left by a build that no longer runs`);
      }
      expect(r.stderr).toContain(`warning: removed ${join(out, `.fbxen-scratch-${dead}`)}`);
      expect(r.stderr).toContain(`warning: removed ${join(sets, `.${'0'.repeat(64)}.tar.partial-${dead}-12345678`)} (1.0 MiB)`);
    } finally {
      sleeper.kill();
    }
  });
});

describe('a build killed with SIGKILL (14.9)', () => {
  it('leaves its partial image, which the next build in the same --out removes and reports', async () => {
    const out = dir('out');
    const cache = dir('cache');
    // xz through the throttled test double: the file system step lasts seconds, so the kill lands in it.
    const env = { PATH: `${join(REPO, 'test/support/slow-bin')}:${process.env.PATH}`, SLOW_XZ_BYTES: '65536', SLOW_XZ_SECONDS: '0.05' };
    const killed = await fbxenInterrupted([...buildArgs(out, cache), '--xz-decoder', 'xz'], (stderr) => stderr.includes('Write the root file system'), 'SIGKILL', { env });
    expect(killed.signal).toBe('SIGKILL');
    const left = readdirSync(out).filter((f) => /^\.s\.raw\.partial-\d+-[0-9a-f]{8}$/.test(f));
    expect(left).toHaveLength(1);

    const r = fbxen(buildArgs(out, cache));
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['build.json', 's.raw']);
    expect(r.stderr).toMatch(new RegExp(`warning: removed ${join(out, left[0]!).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\([\\d.]+ [KMG]?i?B\\), left by a build that no longer runs`));
  });
});

describe('a remote --dist cut mid-transfer (14.11)', () => {
  let server: Server;
  let url: string;
  let cutAfter: number | undefined;
  const requests: { path: string; range?: string | undefined }[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      requests.push({ path: req.url!, range: req.headers.range });
      const m = /^\/(MANIFEST|base\.txz|kernel\.txz)$/.exec(req.url!);
      if (!m) return void res.writeHead(404).end();
      const body = readFileSync(join(dist, m[1]!));
      const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      const rest = body.subarray(from);
      res.writeHead(from ? 206 : 200, { 'content-length': rest.length, ...(from ? { 'content-range': `bytes ${from}-${body.length - 1}/${body.length}` } : {}) });
      if (m[1] === 'base.txz' && cutAfter !== undefined) {
        // Half the body, then the connection drops (a cable pulled, a proxy timing out).
        res.write(rest.subarray(0, cutAfter), () => res.socket?.destroy());
      } else res.end(rest);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('is a network failure (exit 4, resume), not an internal error, and the same command resumes', async () => {
    const cache = dir('cache');
    const opts = { dist: url, arch: 'amd64' as const, mirror: url, cacheDir: cache, signal: new AbortController().signal };
    cutAfter = 200_000;
    const err = await resolveSets(opts, handle).catch((e: unknown) => e);
    cutAfter = undefined;
    expect(err).toBeInstanceOf(EnvironmentError);
    expect((err as EnvironmentError).exitCode).toBe(4);
    expect((err as EnvironmentError).hint).toMatch(/network failure: resume with the same command/);
    // Every byte that was received is kept, and the message says how much that is. (How many of the
    // 200,000 sent arrive before the close is undici's business: 196,481 or 200,000 here. A pipeline
    // through Readable.fromWeb used to drop what it still buffered: 65,409 or 130,945 kept.)
    const partial = readdirSync(join(cache, 'dist')).find((f) => f.endsWith('.partial'))!;
    const kept = statSync(join(cache, 'dist', partial)).size;
    expect(kept).toBeGreaterThan(131_072);
    expect(kept).toBeLessThanOrEqual(200_000);
    expect((err as EnvironmentError).message).toMatch(new RegExp(`^the download of ${url}/base\\.txz was cut after ${formatBytes(kept).replace('.', '\\.')}: .+`));

    requests.length = 0;
    const r = await resolveSets(opts, handle);
    expect(requests.find((q) => q.path === '/base.txz')!.range).toBe(`bytes=${kept}-`);
    expect(readFileSync(r.sets.base.path)).toEqual(readFileSync(join(dist, 'base.txz')));
  });

  it('verifies a cached download on reuse, and fetches a damaged one again with a warning', async () => {
    const cache = dir('cache');
    const opts = { dist: url, arch: 'amd64' as const, mirror: url, cacheDir: cache, signal: new AbortController().signal };
    const first = await resolveSets(opts, handle);
    const bytes = readFileSync(first.sets.kernel.path);
    bytes[1000]! ^= 1;
    writeFileSync(first.sets.kernel.path, bytes);
    const warnings: string[] = [];
    requests.length = 0;
    const again = await resolveSets({ ...opts, warn: (m) => warnings.push(m) }, handle);
    expect(readFileSync(again.sets.kernel.path)).toEqual(readFileSync(join(dist, 'kernel.txz')));
    expect(requests.map((q) => q.path)).toEqual(['/MANIFEST', '/kernel.txz']);
    expect(warnings).toEqual([expect.stringMatching(/^the cached download .*\.txz has sha256 [0-9a-f]{64}, not MANIFEST's: removed, downloading it again$/)]);
  });

  it('refuses a MANIFEST larger than any real one without reading it all', async () => {
    const big = createServer((_req, res) => {
      res.writeHead(200);
      const line = Buffer.alloc(64 * 1024, 'a');
      const more = () => {
        while (res.write(line));
      };
      res.on('drain', more);
      more();
    });
    await new Promise<void>((r) => big.listen(0, '127.0.0.1', r));
    try {
      const at = `http://127.0.0.1:${(big.address() as AddressInfo).port}`;
      await expect(resolveSets({ dist: at, arch: 'amd64', mirror: at, cacheDir: dir('c'), signal: new AbortController().signal }, handle)).rejects.toThrow(/MANIFEST is larger than 1\.0 MiB: not a FreeBSD MANIFEST/);
    } finally {
      big.closeAllConnections();
      await new Promise<void>((r) => big.close(() => r()));
    }
  });

  it('names every class of network failure as one, and no disk failure', () => {
    const wrapped = (code: string, message = code) => new TypeError('fetch failed', { cause: Object.assign(new Error(message), { code }) });
    for (const code of ['ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND', 'ECONNREFUSED', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC', 'ERR_TLS_CERT_ALTNAME_INVALID']) {
      expect(networkErrorCode(wrapped(code)), code).toBe(code);
    }
    // undici's body error when the socket closes: TypeError "terminated", its cause "other side closed".
    expect(networkErrorCode(new TypeError('terminated', { cause: new Error('other side closed') }))).toBe('connection closed');
    expect(networkErrorCode(new Error('Premature close'))).toBe('connection closed');
    for (const code of ['ENOSPC', 'EDQUOT', 'EACCES', 'EROFS', 'EIO']) expect(networkErrorCode(wrapped(code)), code).toBeUndefined();
    expect(networkErrorCode(new Error('something else'))).toBeUndefined();
  });
});

/** A 256 KiB tmpfs: smaller than the sample's base.txz (475 KiB) and its tar (4.5 MiB). */
function mountSmallTmpfs(): { path: string } | { reason: string } {
  if (process.getuid?.() !== 0) return { reason: 'needs root to mount a tmpfs' };
  const path = mkdtempSync(join(tmpdir(), 'fbxen-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'fbxen-test-full', path], { stdio: 'pipe' });
    return { path };
  } catch (err) {
    rmSync(path, { recursive: true, force: true });
    return { reason: `cannot mount a tmpfs here: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}` };
  }
}

function unmount(path: string): void {
  spawnSync('umount', ['-l', path]);
  rmSync(path, { recursive: true, force: true });
}

describe('a full file system under --cache-dir (14.12)', () => {
  // Whether a tmpfs can be mounted is tried when the tests are collected; the one the tests use is
  // mounted by beforeAll, so that it is unmounted whenever it was mounted (hooks of suites whose tests
  // are all filtered out do not run).
  const probe = mountSmallTmpfs();
  if ('path' in probe) unmount(probe.path);
  const skip = 'reason' in probe;
  if ('reason' in probe) console.warn(`skipped: ${probe.reason}`);
  let root = '';
  beforeAll(() => {
    const full = mountSmallTmpfs();
    if ('reason' in full) throw new Error(full.reason);
    root = full.path;
  });
  afterAll(() => {
    if (root) unmount(root);
  });
  const fresh = (name: string) => {
    const path = join(root, name);
    rmSync(path, { recursive: true, force: true });
    mkdirSync(path);
    return path;
  };

  it.skipIf(skip)('the build names the cache, not --out, and leaves nothing half-written in either', () => {
    const cache = fresh('build');
    const out = dir('out');
    const r = fbxen(buildArgs(out, cache));
    expect(r.code, r.stderr).toBe(4);
    expect(r.stderr).toContain(`no space left on the device holding the cache ${join(cache, 'sets')}`);
    expect(r.stderr).toMatch(/--cache-dir|--no-cache/);
    expect(r.stderr).not.toContain(`holding ${out}`);
    expect(readdirSync(out)).toEqual([]);
    const baseSha = /^base\.txz\t([0-9a-f]{64})/m.exec(readFileSync(join(dist, 'MANIFEST'), 'utf8'))![1]!;
    expect(readdirSync(join(cache, 'sets')).filter((f) => f.includes('partial') || f.includes(baseSha))).toEqual([]);
  });

  it.skipIf(skip)('a download into a full cache names the cache', async () => {
    const cache = fresh('download');
    const server = createServer((req, res) => {
      const m = /^\/(MANIFEST|base\.txz|kernel\.txz)$/.exec(req.url!);
      if (!m) return void res.writeHead(404).end();
      res.end(readFileSync(join(dist, m[1]!)));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const at = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const err = await resolveSets({ dist: at, arch: 'amd64', mirror: at, cacheDir: cache, signal: new AbortController().signal }, handle).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EnvironmentError);
      expect((err as Error).message).toBe(`no space left on the device holding the cache ${join(cache, 'dist')}`);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
    expect(existsSync(cache)).toBe(true);
  });
});
