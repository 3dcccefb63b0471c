import { createServer, type Server } from 'node:http';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkSupported, mirrorDirectory, parseManifest, parseRelease, resolveSets } from '../../src/core/imaging/sets.js';
import { EnvironmentError, InputError } from '../../src/core/errors.js';
import { sampleDist } from '../support/samples.js';

// Scratch directories in the run's own TMPDIR (test/support/global-tmp.ts), removed when the run ends.
const tmpDir = (name: string) => mkdtempSync(join(tmpdir(), `${name}-`));

const handle = { output: () => undefined };

describe('MANIFEST and releases', () => {
  it('parses a FreeBSD MANIFEST', () => {
    const m = parseManifest(readFileSync(join(sampleDist(), 'MANIFEST'), 'utf8'), 'MANIFEST');
    expect(m.get('base.txz')).toMatchObject({ set: 'base', description: 'Base system (MANDATORY)' });
    expect(m.get('kernel.txz')!.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
  it('refuses a MANIFEST without the sets or with a bad line', () => {
    expect(() => parseManifest('base.txz\tabc\t1\tbase\n', 'M')).toThrow(/line 1 is not a MANIFEST line/);
    expect(() => parseManifest(`base.txz\t${'a'.repeat(64)}\t1\tbase\t"x"\ton\n`, 'M')).toThrow(/does not list kernel.txz/);
  });
  it('knows the support matrix', () => {
    expect(() => checkSupported(parseRelease('14.3-RELEASE'), 'amd64')).not.toThrow();
    expect(() => checkSupported(parseRelease('10.0-RELEASE'), 'i386')).not.toThrow();
    expect(() => checkSupported(parseRelease('14.2-RELEASE'), 'i386')).not.toThrow();
    expect(() => checkSupported(parseRelease('15.0-RELEASE'), 'amd64')).not.toThrow();
    expect(() => checkSupported(parseRelease('9.3-RELEASE'), 'amd64')).toThrow(/came to GENERIC in 10\.0/);
    expect(() => checkSupported(parseRelease('15.0-RELEASE'), 'i386')).toThrow(/dropped i386/);
    expect(() => parseRelease('fourteen')).toThrow(/not a FreeBSD release name/);
  });
  it('follows the mirror layout (i386 is i386/i386)', () => {
    expect(mirrorDirectory('https://m/', '14.3-RELEASE', 'amd64')).toBe('https://m/releases/amd64/14.3-RELEASE/');
    expect(mirrorDirectory('https://m', '14.3-RELEASE', 'i386')).toBe('https://m/releases/i386/i386/14.3-RELEASE/');
  });
});

describe('resolveSets', () => {
  let server: Server;
  let url: string;
  const requests: { path: string; range?: string }[] = [];
  let corrupt = false;
  beforeAll(async () => {
    const dist = sampleDist();
    server = createServer((req, res) => {
      requests.push({ path: req.url!, range: req.headers.range });
      const m = /^\/releases\/amd64\/14\.3-RELEASE\/(MANIFEST|base\.txz|kernel\.txz)$/.exec(req.url!);
      if (!m) {
        res.writeHead(404).end();
        return;
      }
      let body = readFileSync(join(dist, m[1]!));
      if (corrupt && m[1] === 'kernel.txz') body = Buffer.concat([body.subarray(0, 100), Buffer.from('X'), body.subarray(101)]);
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (range) {
        const from = Number(range[1]);
        res.writeHead(206, { 'content-length': body.length - from, 'content-range': `bytes ${from}-${body.length - 1}/${body.length}` }).end(body.subarray(from));
      } else res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const opts = (cacheDir: string) => ({ release: '14.3-RELEASE', arch: 'amd64' as const, mirror: url, cacheDir, signal: new AbortController().signal });

  it('downloads into the content-addressed cache, verified, and reuses it', async () => {
    const cache = tmpDir('cache');
    requests.length = 0;
    const r = await resolveSets(opts(cache), handle);
    expect(r.sets.base.path).toBe(join(cache, 'dist', `${r.sets.base.sha256}.txz`));
    expect(readFileSync(r.sets.base.path)).toEqual(readFileSync(join(sampleDist(), 'base.txz')));
    expect(requests.map((q) => q.path)).toEqual(['/releases/amd64/14.3-RELEASE/MANIFEST', '/releases/amd64/14.3-RELEASE/base.txz', '/releases/amd64/14.3-RELEASE/kernel.txz']);
    requests.length = 0;
    await resolveSets(opts(cache), handle);
    expect(requests.map((q) => q.path)).toEqual(['/releases/amd64/14.3-RELEASE/MANIFEST']);
  });

  it('resumes an interrupted download with a Range request', async () => {
    const cache = tmpDir('cache-resume');
    const base = readFileSync(join(sampleDist(), 'base.txz'));
    const sha = parseManifest(readFileSync(join(sampleDist(), 'MANIFEST'), 'utf8'), 'M').get('base.txz')!.sha256;
    mkdirSync(join(cache, 'dist'), { recursive: true });
    writeFileSync(join(cache, 'dist', `${sha}.txz.partial`), base.subarray(0, 100000));
    requests.length = 0;
    const r = await resolveSets(opts(cache), handle);
    expect(requests.find((q) => q.path.endsWith('base.txz'))!.range).toBe('bytes=100000-');
    expect(readFileSync(r.sets.base.path)).toEqual(base);
    expect(readdirSync(join(cache, 'dist')).filter((f) => f.endsWith('.partial'))).toEqual([]);
  });

  it('refuses a download whose sha256 does not match MANIFEST, leaving nothing in the cache', async () => {
    const cache = tmpDir('cache-bad');
    corrupt = true;
    try {
      await expect(resolveSets(opts(cache), handle)).rejects.toThrow(/kernel\.txz: sha256 [0-9a-f]{64} does not match MANIFEST/);
    } finally {
      corrupt = false;
    }
    expect(readdirSync(join(cache, 'dist')).filter((f) => f.includes('partial') || statSync(join(cache, 'dist', f)).size === 0)).toEqual([]);
  });

  it('sends a request again when the server had closed its kept-alive connection (issue 13: ECONNRESET under load)', async () => {
    // Under load the suite's first request after a pause went out on a socket the server's keep-alive
    // timer (5 s) closed in the same moment: ECONNRESET, before any response. This server closes every
    // reused connection as the request arrives, the worst case of that race.
    const served = new WeakSet<object>();
    let resets = 0;
    const racy = createServer((req, res) => {
      if (served.has(req.socket)) {
        resets++;
        req.socket.destroy();
        return;
      }
      served.add(req.socket);
      const m = /^\/releases\/amd64\/14\.3-RELEASE\/(MANIFEST|base\.txz|kernel\.txz)$/.exec(req.url!);
      if (!m) res.writeHead(404).end();
      else res.writeHead(200).end(readFileSync(join(sampleDist(), m[1]!)));
    });
    await new Promise<void>((r) => racy.listen(0, '127.0.0.1', r));
    try {
      const mirror = `http://127.0.0.1:${(racy.address() as AddressInfo).port}`;
      const r = await resolveSets({ ...opts(tmpDir('cache-racy')), mirror }, handle);
      expect(readFileSync(r.sets.kernel.path)).toEqual(readFileSync(join(sampleDist(), 'kernel.txz')));
      // The race happened (the test is not vacuous) and every request was sent again.
      expect(resets).toBeGreaterThan(0);
    } finally {
      racy.closeAllConnections();
      await new Promise<void>((r) => racy.close(() => r()));
    }
  });

  it('says HTTP 404 for an unknown release', async () => {
    await expect(resolveSets({ ...opts(tmpDir('c')), release: '13.9-RELEASE' }, handle)).rejects.toThrow(/answered HTTP 404/);
  });

  it('suggests --dist when the mirror cannot be reached', async () => {
    const err = await resolveSets({ ...opts(tmpDir('c')), mirror: 'http://127.0.0.1:9' }, handle).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EnvironmentError);
    expect((err as EnvironmentError).message).toMatch(/cannot reach http:\/\/127\.0\.0\.1:9/);
    expect((err as EnvironmentError).hint).toMatch(/--dist DIR/);
  });

  it('verifies local --dist sets against MANIFEST', async () => {
    const dist = tmpDir('dist');
    for (const f of ['MANIFEST', 'base.txz', 'kernel.txz']) copyFileSync(join(sampleDist(), f), join(dist, f));
    const ok = await resolveSets({ dist, arch: 'amd64', mirror: url, cacheDir: tmpDir('c'), signal: new AbortController().signal }, handle);
    expect(ok.sets.kernel.path).toBe(join(dist, 'kernel.txz'));
    writeFileSync(join(dist, 'kernel.txz'), 'not the set');
    const err = await resolveSets({ dist, arch: 'amd64', mirror: url, cacheDir: tmpDir('c'), signal: new AbortController().signal }, handle).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(String(err)).toMatch(/kernel\.txz: sha256 .* does not match MANIFEST/);
    expect(existsSync(join(dist, 'MANIFEST'))).toBe(true);
  });
});
