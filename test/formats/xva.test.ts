/**
 * The XVA writer, checked by readers that are not ours: bsdtar (listing), Python's tarfile +
 * xmlrpc.client + hashlib (test/formats/xva_check.py: ova.xml parsed on its own, SHA-1 of every chunk,
 * the disk reassembled with xapi's gap rule and compared with the raw image). ova.xml is a golden file.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { buildOvaValue, writeXva } from '../../src/core/formats/xva.js';
import { encodeXmlRpcValueDocument } from '../../src/core/toolstack/xapi/xmlrpc.js';
import { InputError } from '../../src/core/errors.js';
import { makeSparseFile } from '../support/sparse.js';

const here = dirname(fileURLToPath(import.meta.url));
const checker = join(here, 'xva_check.py');
const dir = mkdtempSync(join(tmpdir(), 'fbxen-xva-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;
const opts = { name: 'fbsd14-test', vcpus: 2, memoryMiB: 1024, timestamp: 1717200000, seed: 'golden' };

const makeRaw = (name: string, size: number, writes: Array<[number, Buffer]>) => makeSparseFile(join(dir, name), size, writes);

function check(xva: string, raw: string): { ok: boolean; virtual_size: number; chunks: number; vcpus: string; memory: string; objects: string[] } {
  const r = spawnSync('python3', [checker, xva, raw], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`xva_check.py: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('writeXva', () => {
  it('writes an XVA that an independent reader accepts and that reassembles to the raw image', async () => {
    const size = 9 * MiB + 3 * 512; // short last chunk
    const raw = makeRaw('a.raw', size, [
      [0, Buffer.from('MBR')],
      [5 * MiB + 17, Buffer.from('middle')],
      [size - 512, Buffer.from('backup GPT lives here')],
    ]);
    const out = join(dir, 'a.xva');
    const { size: written } = await writeXva(raw, out, opts);
    expect(written % 10240).toBe(0);
    const summary = check(out, raw);
    expect(summary).toMatchObject({ ok: true, virtual_size: size, chunks: 3, vcpus: '2', memory: String(1024 * MiB) });
    expect(summary.objects).toEqual(['SR', 'VBD', 'VBD', 'VDI', 'VIF', 'VM', 'network']);

    const listing = execFileSync('bsdtar', ['-tvf', out], { encoding: 'utf8' }).trim().split('\n').map((l) => l.split(/\s+/).pop());
    expect(listing).toEqual(['ova.xml', 'Ref:002/00000000', 'Ref:002/00000000.checksum', 'Ref:002/00000005', 'Ref:002/00000005.checksum', 'Ref:002/00000009', 'Ref:002/00000009.checksum']);
    // GNU-style checksum verification by a second tar implementation
    const extract = spawnSync('bsdtar', ['-xOf', out, 'Ref:002/00000005.checksum'], { encoding: 'utf8' });
    expect(extract.stdout).toMatch(/^[0-9a-f]{40}$/);
  });

  it('always writes first and last chunks, even when they are zero', async () => {
    const raw = makeRaw('z.raw', 4 * MiB, []);
    const out = join(dir, 'z.xva');
    await writeXva(raw, out, opts);
    expect(check(out, raw).chunks).toBe(2);
  });

  it('skips the holes the build recorded without changing a byte, first and last chunk included', async () => {
    const size = 9 * MiB + 3 * 512;
    const writes: [number, Buffer][] = [[5 * MiB + 17, Buffer.from('middle')], [7 * MiB - 3, Buffer.from('spans two chunks')]];
    const raw = makeRaw('h.raw', size, writes);
    await writeXva(raw, join(dir, 'h-scan.xva'), opts);
    await writeXva(raw, join(dir, 'h-ranges.xva'), { ...opts, ranges: writes.map(([o, d]) => [o, o + d.length]) });
    expect(readFileSync(join(dir, 'h-ranges.xva')).equals(readFileSync(join(dir, 'h-scan.xva')))).toBe(true);
    expect(check(join(dir, 'h-ranges.xva'), raw).chunks).toBe(5); // 0, 5, 6, 7 and the last
  });

  it('is reproducible and its ova.xml matches the golden file', async () => {
    const raw = makeRaw('g.raw', 2 * MiB, [[4096, Buffer.from('x')]]);
    await writeXva(raw, join(dir, 'g1.xva'), opts);
    await writeXva(raw, join(dir, 'g2.xva'), opts);
    expect(readFileSync(join(dir, 'g1.xva')).equals(readFileSync(join(dir, 'g2.xva')))).toBe(true);
    const ova = execFileSync('bsdtar', ['-xOf', join(dir, 'g1.xva'), 'ova.xml'], { encoding: 'utf8' });
    await expect(ova).toMatchFileSnapshot('../../fixtures/golden/xapi/ova.xml');
    expect(ova).toBe(encodeXmlRpcValueDocument(buildOvaValue(2 * MiB, opts)));
  });

  it('rejects bad input with an InputError and a hint', async () => {
    const raw = makeRaw('odd.raw', 1000, []);
    await expect(writeXva(raw, join(dir, 'odd.xva'), opts)).rejects.toBeInstanceOf(InputError);
    expect(() => buildOvaValue(MiB, { ...opts, vcpus: 0 })).toThrow(/vcpus/);
    expect(() => buildOvaValue(MiB, { ...opts, memoryMiB: 8 })).toThrow(/memory/);
  });

  it('escapes names so the XML stays well formed', async () => {
    const raw = makeRaw('e.raw', MiB, []);
    const out = join(dir, 'e.xva');
    await writeXva(raw, out, { ...opts, name: 'a<b>&"c\'' });
    const summary = spawnSync('python3', [checker, out, raw], { encoding: 'utf8' });
    expect(summary.status, summary.stdout).toBe(0);
    expect(JSON.parse(summary.stdout).vm).toBe('a<b>&"c\'');
  });
});
