/** Pieces of the boot flow on their own: image inspection, names, run ids, the transcript, waitForFrame. */
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRunArtifacts, latestRun, newRunId, RUN_ID_PATTERN, transcribingRunner } from '../../src/core/run/artifacts.js';
import { defaultDomainName, inspectImage } from '../../src/core/boot/image.js';
import { waitForFrame } from '../../src/core/boot/wait-for-frame.js';
import { EvidenceIncompleteError, InputError, InterruptedError, TimeoutError, ToolstackError } from '../../src/core/errors.js';
import { createExecaRunner } from '../../src/core/exec/runner.js';
import { DomainNameSchema } from '../../src/core/toolstack/xl/xl-config.js';
import { encodeConsoleFrame, packBundle } from '../../src/core/verify/index.js';
import { sampleBundle } from './harness.js';

const work = mkdtempSync(join(tmpdir(), 'fbxen-units-'));

describe('image', () => {
  it('reads build.json beside the image when present, and ignores a broken one', async () => {
    const dir = mkdtempSync(join(work, 'img-'));
    const disk = Buffer.alloc(4096);
    disk.writeUInt16LE(0xaa55, 510); // a disk to fbxen: the MBR boot signature (formats: image-format.test.ts)
    writeFileSync(join(dir, 'x.raw'), disk);
    writeFileSync(join(dir, 'build.json'), JSON.stringify({ name: 'freebsd-14.3-RELEASE-i386', release: '14.3-RELEASE', arch: 'i386', outputs: [] }));
    const info = await inspectImage('x.raw', dir);
    expect(info).toMatchObject({ path: join(dir, 'x.raw'), format: 'raw', size: 4096, build: { release: '14.3-RELEASE', arch: 'i386' } });
    expect(defaultDomainName(info)).toBe('fbxen-freebsd-14.3-RELEASE-i386');
    writeFileSync(join(dir, 'build.json'), '{ not json');
    expect((await inspectImage('x.raw', dir)).build).toBeUndefined();
    await expect(inspectImage(dir, dir)).rejects.toBeInstanceOf(InputError);
  });

  it('default names are always valid domain names', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), (base) => {
        const name = defaultDomainName({ path: `/x/${base}.raw`, format: 'raw', size: 0 });
        expect(DomainNameSchema.safeParse(name).success, name).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

describe('artifacts', () => {
  it('run ids sort by time and match the contract pattern', () => {
    const id = newRunId(new Date('2026-11-23T22:01:16.123Z'), () => 'beef');
    expect(id).toBe('20261123T220116Z-beef');
    expect(RUN_ID_PATTERN.test(newRunId())).toBe(true);
  });

  it('creates the run directory and points latest at it', async () => {
    const root = join(work, 'runs');
    const a = await createRunArtifacts({ root, name: 'fbxen-a', run: 'r1', cwd: '/' });
    expect(readFileSync(a.consoleLog, 'utf8')).toBe('');
    expect(await latestRun(root, 'fbxen-a')).toBe('r1');
    await createRunArtifacts({ root, name: 'fbxen-a', run: 'r2', cwd: '/' });
    expect(await latestRun(root, 'fbxen-a')).toBe('r2');
    await expect(createRunArtifacts({ root, name: 'fbxen-a', run: '../escape', cwd: '/' })).rejects.toBeInstanceOf(InputError);
  });

  it('the transcript records every command with its timing and the stderr of failures', async () => {
    const log = join(work, 'transcript.log');
    writeFileSync(log, '');
    const r = transcribingRunner(createExecaRunner(), log);
    await r.run('sh', ['-c', 'echo out; echo oops >&2; exit 3'], { allowFailure: true });
    await r.run('true', []);
    await expect(r.run('sh', ['-c', 'echo bad >&2; exit 4'])).rejects.toThrow(/status 4/);
    const text = readFileSync(log, 'utf8');
    expect(text).toMatch(/^\S+Z +\d+ ms exit=3 sh -c 'echo out; echo oops >&2; exit 3'\n {4}\| oops\n/m);
    expect(text).toMatch(/^\S+Z +\d+ ms exit=0 true$/m);
    expect(text).toMatch(/exit=4 sh -c .*\n {4}\| bad/);
  });
});

describe('waitForFrame', () => {
  const frameText = async (run: string) => encodeConsoleFrame(await packBundle(sampleBundle(run)), run, 'boot');

  it('returns the bundle once the frame is complete, ignoring noise and frames of other runs', async () => {
    const log = join(work, 'c1.log');
    writeFileSync(log, 'booting\r\n');
    const waiting = waitForFrame(log, 'mine', 10_000, undefined, { pollMs: 20, phase: 'boot' });
    appendFileSync(log, (await frameText('other')).replace(/\n/g, '\r\n'));
    await new Promise((r) => setTimeout(r, 60));
    appendFileSync(log, `\x1b[0mnoise\r\n${await frameText('mine')}`);
    const got = await waiting;
    expect(got.run).toBe('mine');
    expect(got.bundle.meta.run).toBe('mine');
  });

  it('times out with TimeoutError when no frame came, EvidenceIncompleteError when lines were lost', async () => {
    const none = join(work, 'c2.log');
    writeFileSync(none, 'login: ');
    await expect(waitForFrame(none, 'r', 200, undefined, { pollMs: 20 })).rejects.toBeInstanceOf(TimeoutError);
    const lossy = join(work, 'c3.log');
    const lines = (await frameText('r')).split('\n');
    // Drop data line 2 from both copies: the frame can never be completed.
    writeFileSync(lossy, lines.filter((l) => !/^FBXEN1 D r 2 /.test(l)).join('\n'));
    await expect(waitForFrame(lossy, 'r', 200, undefined, { pollMs: 20 })).rejects.toBeInstanceOf(EvidenceIncompleteError);
  });

  it('stops when the guest is gone, and when the run is cancelled', async () => {
    const log = join(work, 'c4.log');
    writeFileSync(log, 'panic\r\n');
    await expect(waitForFrame(log, 'r', 10_000, undefined, { pollMs: 20, guestGone: async () => 'crashed' })).rejects.toBeInstanceOf(ToolstackError);
    const ac = new AbortController();
    const p = waitForFrame(log, 'r', 10_000, ac.signal, { pollMs: 20 });
    ac.abort(new InterruptedError('SIGINT'));
    await expect(p).rejects.toBeInstanceOf(InterruptedError);
  });
});

describe('autoballoon (xl.conf(5))', () => {
  it('is on for "on", off for "off", and for "auto" (the default) on unless dom0_mem is fixed', async () => {
    const { autoballoonEnabled } = await import('../../src/core/toolstack/xl/xl-preflight.js');
    const conf = join(work, 'xl.conf');
    writeFileSync(conf, '# xl.conf\nautoballoon="off"\n');
    expect(await autoballoonEnabled(conf, '')).toBe(false);
    writeFileSync(conf, 'autoballoon = "on" # always\n');
    expect(await autoballoonEnabled(conf, 'dom0_mem=2G')).toBe(true);
    writeFileSync(conf, '#autoballoon="off"\n');
    expect(await autoballoonEnabled(conf, 'console=com1 dom0_mem=2048M,max:2048M')).toBe(false);
    expect(await autoballoonEnabled(join(work, 'missing.conf'), 'console=com1')).toBe(true);
  });
});
