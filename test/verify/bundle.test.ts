/**
 * Bundle reading and packing, checked against independent tar implementations: GNU tar and bsdtar
 * (libarchive, the tar of FreeBSD's base system) write bundles we must read, and read the ones we pack.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EvidenceIncompleteError, InputError } from '../../src/core/errors.js';
import { bundleFromTarBytes, checkBundleRun, packBundle, readBundle, type Bundle } from '../../src/core/verify/index.js';
import { FIXTURES } from '../support/verify/fixtures.js';

const HEALTHY = join(FIXTURES, '13.2-healthy-derived');
const tmp = () => mkdtemp(join(tmpdir(), 'fbxen-bundle-'));

describe('readBundle', () => {
  it('reads a directory: meta, index in order, every section', async () => {
    const b = await readBundle(HEALTHY);
    expect(b.meta.bundle).toBe('fbxen-bundle/1');
    expect(b.index[0]).toEqual({ name: 'uname', status: 0, command: 'uname -a' });
    expect(b.index.find((e) => e.name === 'sysctl')?.status).toBe(1);
    expect([...b.sections.keys()].sort()).toEqual(b.index.map((e) => e.name).sort());
    expect(b.sections.get('vmstat-ia.0')).toMatch(/^interrupt\s+total\s+rate\n/);
  });

  for (const [tool, args] of [
    ['bsdtar (FreeBSD tar)', ['-czf']],
    ['GNU tar', ['--format=pax', '-czf']],
    ['GNU tar, plain', ['--format=ustar', '-cf']],
  ] as const) {
    it(`reads what ${tool} wrote, gzip'd or not, under ./ or a top directory`, async () => {
      const dir = await tmp();
      const bin = tool.startsWith('bsdtar') ? 'bsdtar' : 'tar';
      const flat = join(dir, 'flat.tar');
      execFileSync(bin, [...args, flat, '-C', HEALTHY, 'meta', 'index', 'sections']);
      const dotted = join(dir, 'dotted.tar');
      execFileSync(bin, [...args, dotted, '-C', HEALTHY, '.']);
      const nested = join(dir, 'nested.tar');
      execFileSync(bin, [...args, nested, '-C', FIXTURES, '13.2-healthy-derived']);
      const want = await readBundle(HEALTHY);
      for (const t of [flat, dotted, nested]) {
        const got = await readBundle(t);
        expect(got.meta).toEqual(want.meta);
        expect(got.index).toEqual(want.index);
        expect(got.sections).toEqual(want.sections);
      }
    });
  }

  it('says what is wrong with a non-bundle: no meta, another format, damaged gzip, missing path', async () => {
    const dir = await tmp();
    await mkdir(join(dir, 'empty'));
    await expect(readBundle(join(dir, 'empty'))).rejects.toThrow(/has no "meta" file/);
    await mkdir(join(dir, 'v2'));
    await writeFile(join(dir, 'v2/meta'), 'bundle=fbxen-bundle/2\n');
    await expect(readBundle(join(dir, 'v2'))).rejects.toThrow(/bundle=fbxen-bundle\/1/);
    const gz = gzipSync(Buffer.alloc(4096, 7));
    await writeFile(join(dir, 'bad.tgz'), gz.subarray(0, gz.length - 9));
    await expect(readBundle(join(dir, 'bad.tgz'))).rejects.toBeInstanceOf(InputError);
    await expect(readBundle(join(dir, 'nope'))).rejects.toThrow(/does not exist/);
  });
});

describe('packBundle', () => {
  it('bsdtar lists and extracts exactly the bundle files, byte for byte', async () => {
    const dir = await tmp();
    const b = await readBundle(HEALTHY);
    const tgz = join(dir, 'b.tgz');
    await writeFile(tgz, await packBundle(b));
    const listing = execFileSync('bsdtar', ['-tzf', tgz], { encoding: 'utf8' }).trim().split('\n').sort();
    expect(listing).toEqual(['index', 'meta', 'sections/', ...[...b.sections.keys()].map((n) => `sections/${n}.out`)].sort());
    const out = join(dir, 'x');
    await mkdir(out);
    execFileSync('bsdtar', ['-xzf', tgz, '-C', out]);
    for (const n of b.sections.keys()) expect(await readFile(join(out, 'sections', `${n}.out`), 'utf8')).toBe(await readFile(join(HEALTHY, 'sections', `${n}.out`), 'utf8'));
    expect(await readFile(join(out, 'meta'), 'utf8')).toBe(await readFile(join(HEALTHY, 'meta'), 'utf8'));
  });

  it('is deterministic and round trips any bundle (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,20}$/), fc.string({ maxLength: 2000 }), { maxKeys: 8 }),
        fc.dictionary(fc.stringMatching(/^[a-z][a-z-]{0,10}$/), fc.stringMatching(/^[^\n]{0,30}$/), { maxKeys: 4 }),
        async (sections, extraMeta) => {
          const b: Bundle = {
            meta: { ...extraMeta, bundle: 'fbxen-bundle/1' },
            index: Object.keys(sections).map((name, i) => ({ name, status: i % 3, command: `c ${name}` })),
            sections: new Map(Object.entries(sections)),
          };
          const packed = await packBundle(b);
          expect(Buffer.from(await packBundle(b)).equals(Buffer.from(packed))).toBe(true);
          const back = await bundleFromTarBytes(packed, 'packed');
          expect(back.meta).toEqual(b.meta);
          expect(back.index).toEqual(b.index);
          expect(back.sections).toEqual(b.sections);
        },
      ),
      { numRuns: 80 },
    );
  });
});

describe('checkBundleRun: the run id inside the bundle', () => {
  const withRun = (run: string | undefined): Bundle => ({ meta: { bundle: 'fbxen-bundle/1', ...(run === undefined ? {} : { run }) }, index: [], sections: new Map() });

  it('must equal the frame\'s run and the expected run; a bundle without a run id in a frame is refused too', () => {
    expect(() => checkBundleRun(withRun('R9'), { frameRun: 'R9', expected: 'R9', what: 'frame' })).not.toThrow();
    expect(() => checkBundleRun(withRun('R0'), { frameRun: 'R9', what: 'frame' })).toThrow(/evidence from another run: .* collected for run R0 \(meta run\), but the frame's run is R9/);
    expect(() => checkBundleRun(withRun('R9'), { frameRun: 'R9', expected: 'R1', what: 'frame' })).toThrow(/fbxen expects run R1/);
    for (const missing of [undefined, '-', '']) expect(() => checkBundleRun(withRun(missing), { frameRun: 'R9', what: 'frame' })).toThrow(/does not say which run it belongs to/);
    // nothing to compare with (--bundle without --run): any bundle is read
    expect(() => checkBundleRun(withRun(undefined), { what: 'bundle' })).not.toThrow();
  });

  it('refuses with exit 2 (no verdict), not as bad input', () => {
    let err: unknown;
    try {
      checkBundleRun(withRun('R0'), { expected: 'R9', what: 'bundle' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EvidenceIncompleteError);
    expect((err as EvidenceIncompleteError).exitCode).toBe(2);
  });
});

describe('fbxen boot --verify (verifyIntoArtifacts): the same run check, and the CD it attached', () => {
  it('a replayed bundle is refused before any report is written; this run\'s bundle without cdN fails cdrom', async () => {
    const { verifyIntoArtifacts } = await import('../../src/core/boot/artifacts.js');
    const dir = await tmp();
    const paths = { reportJson: join(dir, 'report.json'), reportJunit: join(dir, 'report.junit.xml') };
    const b = await readBundle(join(FIXTURES, '13.2-no-cd-derived'));
    await expect(verifyIntoArtifacts({ ...b, meta: { ...b.meta, run: 'R0' } }, paths, 'R9')).rejects.toThrow(/evidence from another run: .*collected for run R0/);
    await expect(readFile(paths.reportJson, 'utf8')).rejects.toThrow();
    const report = await verifyIntoArtifacts({ ...b, meta: { ...b.meta, run: 'R9' } }, paths, 'R9');
    expect(report.results.find((r) => r.id === 'cdrom')).toMatchObject({ verdict: 'fail', evidence: expect.arrayContaining(['fbxen boot attached a CD drive to this domain']) });
    expect(JSON.parse(await readFile(paths.reportJson, 'utf8'))).toMatchObject({ run: 'R9' });
  });
});

describe('migrate-test\'s console channel: the same run check', () => {
  it('a frame of this run holding another run\'s bundle is refused; this run\'s is returned', async () => {
    const { waitForCapturedFrame } = await import('../../src/core/migrate/channel.js');
    const { ConsoleCapture } = await import('../../src/core/migrate/capture.js');
    const { encodeConsoleFrame } = await import('../../src/core/verify/index.js');
    const b = await readBundle(HEALTHY);
    // the console of run mt-1 carries a frame whose bundle says `run`
    const capture = async (run: string) => {
      const c = new ConsoleCapture(undefined);
      c.write(encodeConsoleFrame(await packBundle({ ...b, meta: { ...b.meta, run } }), 'mt-1', 'pre-migrate'));
      return c;
    };
    await expect(waitForCapturedFrame(await capture('mt-0'), 'mt-1', 'pre-migrate', 1000, { pollMs: 10 })).rejects.toThrow(/evidence from another run: .*collected for run mt-0/);
    expect((await waitForCapturedFrame(await capture('mt-1'), 'mt-1', 'pre-migrate', 1000, { pollMs: 10 })).meta.run).toBe('mt-1');
  });
});
