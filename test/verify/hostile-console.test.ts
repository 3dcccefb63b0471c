/**
 * A guest must not be able to take fbxen down through what it prints (issue 14, points 5 and 6): frame
 * headers that claim more than any bundle can hold, floods of headers, gzip bombs inside a valid frame,
 * and the same bombs given as `--bundle FILE.tar.gz` or as a directory. Each asserts the limit and the
 * work done (counted, not timed): what is allocated follows what was received, never what was claimed.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readlinkSync, realpathSync, rmSync, writeFileSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import { bundleFromConsoleLog } from '../../src/core/verify/verify.js';
import { fbxen } from '../support/cli.js';
import { MAX_BUNDLE_BYTES, MAX_BUNDLE_ENTRIES, ustarHeader } from '../../src/core/verify/bundle.js';
import { MAX_FRAME_LINES, MAX_LIVE_FRAMES, type ReaderWork } from '../../src/core/verify/console-frame.js';
import { bundleFromTarBytes, encodeConsoleFrame, extractBundleFromConsole, packBundle, readBundle, type Bundle } from '../../src/core/verify/index.js';

const SHA = 'ab'.repeat(32);
/** The line of issue 14 (there with a longer run id, 132 bytes) that made verify allocate a billion slots. */
const HOSTILE = `FBXEN1 BEGIN r1 boot 999999999 ${SHA}`;

const small = (run: string, phase = 'boot', extra = ''): Bundle => ({
  meta: { bundle: 'fbxen-bundle/1', run, phase },
  index: [{ name: 'uname', status: 0, command: 'uname -a' }],
  sections: new Map([['uname', `FreeBSD g 14.1-RELEASE amd64\n${extra}`]]),
});

// Archives by hand (with packBundle's own header writer), so the tests can build what no collector would write.
function tarOf(files: [string, Buffer][]): Buffer {
  const parts: Uint8Array[] = [];
  for (const [name, data] of files) {
    parts.push(ustarHeader(name, data.length, '0'), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
const META = Buffer.from('bundle=fbxen-bundle/1\nrun=r1\nphase=boot\n');
/** A valid bundle whose one section is `bytes` zeros: gzip makes it about a thousand times smaller. */
const bomb = (bytes: number) => gzipSync(tarOf([['meta', META], ['sections/dmesg.out', Buffer.alloc(bytes)]]), { level: 9 });

const dirs: string[] = [];
const scratch = () => {
  const d = mkdtempSync(join(tmpdir(), 'fbxen-hostile-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('a frame header claiming more than a bundle can hold', () => {
  it('the header line of issue 14 is rejected by name, with nothing allocated for its claim', async () => {
    const work: ReaderWork = { classified: 0, visited: 0, slots: 0 };
    const got = await extractBundleFromConsole(`login: \n${HOSTILE}\n`, { run: 'r1', work });
    expect(got).toMatchObject({ status: 'rejected', run: 'r1', phase: 'boot' });
    if (got.status === 'rejected') expect(got.reason).toContain(`claims 999999999 lines, more than the ${MAX_FRAME_LINES}`);
    expect(work.slots).toBe(0);
    // The same with no run asked for: the newest frame's run is the hostile one.
    expect((await extractBundleFromConsole(HOSTILE, {})).status).toBe('rejected');
  });

  it('the limit is derived from the bundle limit: a frame at it is merely incomplete, one line above is rejected', async () => {
    expect(MAX_FRAME_LINES).toBe(Math.ceil(MAX_BUNDLE_BYTES / 57));
    const work: ReaderWork = { classified: 0, visited: 0, slots: 0 };
    const at = await extractBundleFromConsole(`FBXEN1 BEGIN r1 boot ${MAX_FRAME_LINES} ${SHA}\n`, { run: 'r1', work });
    expect(at).toEqual({ status: 'incomplete', run: 'r1', phase: 'boot', missingLines: MAX_FRAME_LINES, totalLines: MAX_FRAME_LINES });
    expect(work.slots).toBe(0);
    const above = await extractBundleFromConsole(`FBXEN1 BEGIN r1 boot ${MAX_FRAME_LINES + 1} ${SHA}\n`, { run: 'r1' });
    expect(above.status).toBe('rejected');
  });

  it('a hostile header before or after a good frame does not hide it (the newest complete frame wins)', async () => {
    const good = encodeConsoleFrame(await packBundle(small('r1')), 'r1', 'boot');
    for (const log of [`${HOSTILE}\n${good}`, `${good}${HOSTILE}\n`, `${good}${HOSTILE}\n${HOSTILE}\n`]) {
      expect((await extractBundleFromConsole(log, { run: 'r1' })).status).toBe('complete');
    }
  });
});

describe('work follows what was received', () => {
  // N BEGIN lines of one run, each a different frame, every one with a single data line.
  const flood = (n: number) => {
    const out: string[] = [];
    const check = createHash('sha256').update('QUFB').digest('hex').slice(0, 8);
    for (let k = 0; k < n; k++) out.push(`FBXEN1 BEGIN r1 boot 3 ${k.toString(16).padStart(64, '0')}`, `FBXEN1 D r1 1 ${check} QUFB`);
    return `${out.join('\n')}\n`;
  };

  it('a flood of headers costs work linear in the lines, and at most MAX_LIVE_FRAMES candidates are kept', async () => {
    const counts: ReaderWork[] = [];
    for (const n of [25_000, 50_000]) {
      const work: ReaderWork = { classified: 0, visited: 0, slots: 0 };
      const got = await extractBundleFromConsole(flood(n), { run: 'r1', work });
      expect(got).toMatchObject({ status: 'incomplete', run: 'r1', phase: 'boot', missingLines: 2, totalLines: 3 });
      expect(work.classified).toBe(2 * n);
      counts.push(work);
    }
    // The old reader compared every BEGIN with every earlier frame: 25k lines took 1.6 s, 50k 6.6 s.
    expect(counts[1]!.visited).toBeLessThanOrEqual(2 * MAX_LIVE_FRAMES + 2);
    expect(counts[1]!.visited).toBe(counts[0]!.visited);
    expect(counts[1]!.slots).toBeLessThanOrEqual(counts[1]!.visited);
  });

  it('frames of other runs are never assembled', async () => {
    const work: ReaderWork = { classified: 0, visited: 0, slots: 0 };
    const other = encodeConsoleFrame(await packBundle(small('r2')), 'r2', 'boot');
    const mine = encodeConsoleFrame(await packBundle(small('r1')), 'r1', 'boot');
    const got = await extractBundleFromConsole(`${other.repeat(200)}${mine}`, { run: 'r1', work });
    expect(got.status).toBe('complete');
    const mineLines = mine.split('\n').length - 1;
    expect(work.visited).toBeLessThanOrEqual(mineLines);
  });
});

describe('gzip bombs and oversized bundles', () => {
  it('a valid frame whose bundle decompresses beyond the limit is rejected, not inflated', async () => {
    const payload = bomb(MAX_BUNDLE_BYTES + 16 * 1024 * 1024);
    expect(payload.length).toBeLessThan(200 * 1024);
    const got = await extractBundleFromConsole(encodeConsoleFrame(payload, 'r1', 'boot'), { run: 'r1' });
    expect(got).toMatchObject({ status: 'rejected', run: 'r1', phase: 'boot' });
    if (got.status === 'rejected') expect(got.reason).toMatch(/more than 64 MiB/);
  });

  it('a bundle just under the limit is read', async () => {
    const got = await bundleFromTarBytes(bomb(MAX_BUNDLE_BYTES - 64 * 1024), 'b');
    expect(got.sections.get('dmesg')?.length).toBe(MAX_BUNDLE_BYTES - 64 * 1024);
  });

  it('too many tar entries are rejected', async () => {
    const files: [string, Buffer][] = [['meta', META]];
    for (let k = 0; k < MAX_BUNDLE_ENTRIES + 1; k++) files.push([`sections/s${k}.out`, Buffer.alloc(0)]);
    await expect(bundleFromTarBytes(gzipSync(tarOf(files)), 'many')).rejects.toThrow(new RegExp(`more than ${MAX_BUNDLE_ENTRIES} entries`));
  });

  it('--bundle FILE.tar.gz and FILE.tar: the same limits, exit 3 naming the file', async () => {
    const d = scratch();
    const gz = join(d, 'bomb.tar.gz');
    writeFileSync(gz, bomb(MAX_BUNDLE_BYTES + 1024 * 1024));
    const err = await readBundle(gz).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toContain(gz);
    expect((err as InputError).message).toMatch(/more than 64 MiB/);
    // A plain tar larger than the limit: its size alone says no (a sparse file: no disk used).
    const tar = join(d, 'big.tar');
    writeFileSync(tar, tarOf([['meta', META]]).subarray(0, 1024));
    const fd = openSync(tar, 'r+');
    ftruncateSync(fd, MAX_BUNDLE_BYTES + 4096);
    closeSync(fd);
    await expect(readBundle(tar)).rejects.toThrow(/more than 64 MiB/);
  });

  it('a tar that ends before its file does: the file is closed when the bundle is read, not when collected', async () => {
    const d = scratch();
    const files = [join(d, 'a.tar'), join(d, 'a.tar.gz')];
    const tar = Buffer.concat([tarOf([['meta', META]]), Buffer.alloc(4 * 1024 * 1024)]); // zeros after the end marker
    writeFileSync(files[0]!, tar);
    writeFileSync(files[1]!, gzipSync(tar));
    // Only descriptors on these two files count: the worker opens and closes others of its own meanwhile
    // (a whole-process count was off by one under load).
    const openOnBundles = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return real.includes(readlinkSync(join('/proc/self/fd', fd)));
        } catch {
          return false; // closed between the listing and the look
        }
      }).length;
    const real = files.map((f) => realpathSync(f));
    for (let k = 0; k < 20; k++) for (const f of files) expect((await readBundle(f)).meta.bundle).toBe('fbxen-bundle/1');
    expect(openOnBundles()).toBe(0);
  });

  it('a directory bundle with an oversized section is rejected before it is read', async () => {
    const d = scratch();
    mkdirSync(join(d, 'sections'));
    writeFileSync(join(d, 'meta'), META);
    const fd = openSync(join(d, 'sections', 'dmesg.out'), 'w');
    ftruncateSync(fd, MAX_BUNDLE_BYTES + 1);
    closeSync(fd);
    await expect(readBundle(d)).rejects.toThrow(/more than 64 MiB/);
  });
});

describe('fbxen verify (the built CLI) on hostile evidence', () => {
  it('--console-log with the claim of issue 14 and --bundle with a gzip bomb: exit 3 "evidence rejected"', async () => {
    const d = scratch();
    const log = join(d, 'console.log');
    writeFileSync(log, `Booting...\r\n${HOSTILE}\r\nlogin: `);
    const r = fbxen(['verify', '--console-log', log, '--run', 'r1']);
    expect(r.stderr).toContain('evidence rejected: the frame of run r1, phase boot claims 999999999 lines');
    expect(r.code).toBe(3);
    const gz = join(d, 'bomb.tar.gz');
    writeFileSync(gz, bomb(MAX_BUNDLE_BYTES + 1024 * 1024));
    const b = fbxen(['verify', '--bundle', gz]);
    expect(b.stderr).toMatch(/evidence rejected: its gzip data decompresses to more than 64 MiB/);
    expect(b.code).toBe(3);
  });
});

describe('a console log larger than a string can be', () => {
  it('600 MiB of NULs (a sparse file) before the frame: read in pieces, the frame is found', async () => {
    const d = scratch();
    const log = join(d, 'console.log');
    const fd = openSync(log, 'w');
    ftruncateSync(fd, 600 * 1024 * 1024); // more than V8's longest string (about 512 MiB)
    closeSync(fd);
    appendFileSync(log, `\n${encodeConsoleFrame(await packBundle(small('r1')), 'r1', 'boot')}`);
    const bundle = await bundleFromConsoleLog(log, 'r1', undefined);
    expect(bundle.meta.run).toBe('r1');
  });
});
