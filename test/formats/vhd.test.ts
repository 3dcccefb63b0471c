/**
 * The VHD writer, checked by readers that are not ours: qemu-img (info + compare against the raw
 * image) and, where built with libvhdi, sleuthkit's `mmls -i vhd`. The byte-level checks below decode
 * the file by the specification's offsets, independently of the writer's encoder functions.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { vhdGeometry, writeDynamicVhd } from '../../src/core/formats/vhd.js';
import { InputError } from '../../src/core/errors.js';
import { makeSparseFile } from '../support/sparse.js';

const dir = mkdtempSync(join(tmpdir(), 'fbxen-vhd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MiB = 1024 * 1024;

const makeRaw = (name: string, size: number, writes: Array<[number, Buffer]>) => makeSparseFile(join(dir, name), size, writes);

function qemuInfo(path: string): { format: string; 'virtual-size': number } {
  return JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-f', 'vpc', path], { encoding: 'utf8' }));
}

function qemuCompare(raw: string, vhd: string): { status: number | null; out: string } {
  const r = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'vpc', raw, vhd], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

/** Sum-based checksum as the specification defines it, written here from the spec text. */
function specChecksum(buf: Buffer, at: number): number {
  const copy = Buffer.from(buf);
  copy.fill(0, at, at + 4);
  let s = 0;
  for (const b of copy) s += b;
  return ~s >>> 0;
}

describe('writeDynamicVhd', () => {
  it('writes a dynamic VHD that qemu-img reads back identical to the raw image, with the exact size', async () => {
    const size = 37 * MiB + 512 * 3; // not a multiple of the block size nor of any CHS geometry
    const rnd = Buffer.alloc(700 * 512);
    for (let i = 0; i < rnd.length; i++) rnd[i] = (i * 7919 + 13) & 0xff;
    const raw = makeRaw('a.raw', size, [
      [0, Buffer.from('first sector')],
      [5_000_000, Buffer.from('hello')],
      [30 * MiB + 4096, rnd],
      [size - 512, Buffer.from('last sector')],
    ]);
    const out = join(dir, 'a.vhd');
    const { size: written } = await writeDynamicVhd(raw, out, { timestamp: 1717200000, seed: 'seed-a' });
    expect(written).toBe(statSync(out).size);

    const info = qemuInfo(out);
    expect(info.format).toBe('vpc');
    expect(info['virtual-size']).toBe(size);
    const cmp = qemuCompare(raw, out);
    expect(cmp.out).toContain('Images are identical');
    expect(cmp.status).toBe(0);

    const f = readFileSync(out);
    const footer = f.subarray(f.length - 512);
    expect(f.subarray(0, 512).equals(footer)).toBe(true); // footer copy at the start
    expect(footer.toString('latin1', 0, 8)).toBe('conectix');
    expect(footer.readUInt32BE(12)).toBe(0x00010000);
    expect(Number(footer.readBigUInt64BE(16))).toBe(512);
    expect(footer.readUInt32BE(24)).toBe(1717200000 - 946684800);
    expect(footer.toString('latin1', 28, 32)).toBe('tap\0');
    expect(Number(footer.readBigUInt64BE(40))).toBe(size);
    expect(Number(footer.readBigUInt64BE(48))).toBe(size);
    expect(footer.readUInt32BE(60)).toBe(3);
    expect(footer.readUInt32BE(64)).toBe(specChecksum(footer, 64));

    const header = f.subarray(512, 1536);
    expect(header.toString('latin1', 0, 8)).toBe('cxsparse');
    expect(header.readBigUInt64BE(8)).toBe(0xffffffffffffffffn);
    const batOffset = Number(header.readBigUInt64BE(16));
    const entries = header.readUInt32BE(28);
    expect(entries).toBe(Math.ceil(size / (2 * MiB)));
    expect(header.readUInt32BE(32)).toBe(2 * MiB);
    expect(header.readUInt32BE(36)).toBe(specChecksum(header, 36));

    // Blocks 0 (first sector), 2 (5 000 000), 15 (30 MiB) and 18 (last) hold data; all others are holes.
    const allocated: number[] = [];
    for (let i = 0; i < entries; i++) {
      const e = f.readUInt32BE(batOffset + i * 4);
      if (e === 0xffffffff) continue;
      allocated.push(i);
      const blockAt = e * 512;
      expect(blockAt).toBeGreaterThanOrEqual(batOffset + entries * 4);
      expect(blockAt + 512 + 2 * MiB).toBeLessThanOrEqual(f.length - 512);
      expect(f.subarray(blockAt, blockAt + 512).every((b) => b === 0xff)).toBe(true); // sector bitmap
    }
    expect(allocated).toEqual([0, 2, 15, 18]);
    expect(f.length).toBe(512 + 1024 + 512 + 4 * (512 + 2 * MiB) + 512);
  });

  it('keeps a GPT readable through libvhdi (sleuthkit mmls -i vhd), backup header on the last LBA', async () => {
    const raw = makeRaw('gpt.raw', 33 * MiB + 512, []);
    execFileSync('sgdisk', ['-n', '1:2048:+8M', '-t', '1:a503', '-n', '2:0:0', '-t', '2:a503', raw], { stdio: 'pipe' });
    const out = join(dir, 'gpt.vhd');
    await writeDynamicVhd(raw, out, { timestamp: 0, seed: 'gpt' });
    const fromRaw = execFileSync('mmls', ['-i', 'raw', raw], { encoding: 'utf8' });
    const fromVhd = execFileSync('mmls', ['-i', 'vhd', out], { encoding: 'utf8' });
    expect(fromVhd).toBe(fromRaw);
    expect(fromVhd).toMatch(/GUID Partition Table/);
    // sgdisk would complain if the backup header were not on the VHD's last sector.
    const check = spawnSync('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', out, join(dir, 'gpt.back.raw')]);
    expect(check.status).toBe(0);
    const verify = execFileSync('sgdisk', ['-v', join(dir, 'gpt.back.raw')], { encoding: 'utf8' });
    expect(verify).toMatch(/No problems found/);
  });

  it('is reproducible: same input and options give the same bytes; the seed sets the UUID', async () => {
    const raw = makeRaw('r.raw', 4 * MiB, [[MiB, Buffer.from('data')]]);
    await writeDynamicVhd(raw, join(dir, 'r1.vhd'), { timestamp: 1700000000, seed: 's' });
    await writeDynamicVhd(raw, join(dir, 'r2.vhd'), { timestamp: 1700000000, seed: 's' });
    await writeDynamicVhd(raw, join(dir, 'r3.vhd'), { timestamp: 1700000000, seed: 't' });
    const a = readFileSync(join(dir, 'r1.vhd'));
    expect(a.equals(readFileSync(join(dir, 'r2.vhd')))).toBe(true);
    const c = readFileSync(join(dir, 'r3.vhd'));
    expect(a.subarray(68, 84).equals(c.subarray(68, 84))).toBe(false);
    // Only the footers (start and end copies: UUID and checksum) differ.
    expect(a.subarray(512, a.length - 512).equals(c.subarray(512, c.length - 512))).toBe(true);
  });

  it('skips the holes the build recorded without changing a byte', async () => {
    const writes: [number, Buffer][] = [[3 * MiB + 5, Buffer.from('data')], [8 * MiB - 2, Buffer.from('spans two blocks')]];
    const raw = makeRaw('h.raw', 12 * MiB, writes);
    await writeDynamicVhd(raw, join(dir, 'h-scan.vhd'), { timestamp: 0, seed: 'h' });
    const { size } = await writeDynamicVhd(raw, join(dir, 'h-ranges.vhd'), { timestamp: 0, seed: 'h', ranges: writes.map(([o, d]) => [o, o + d.length]) });
    expect(readFileSync(join(dir, 'h-ranges.vhd')).equals(readFileSync(join(dir, 'h-scan.vhd')))).toBe(true);
    expect(size).toBe(512 + 1024 + 512 + 3 * (512 + 2 * MiB) + 512); // blocks 1, 3 and 4
    expect(qemuCompare(raw, join(dir, 'h-ranges.vhd')).status).toBe(0);
  });

  it('writes an all-zero image as header, BAT and footer only', async () => {
    const raw = makeRaw('z.raw', 64 * MiB, []);
    const out = join(dir, 'z.vhd');
    const { size } = await writeDynamicVhd(raw, out, { timestamp: 0, seed: 'z' });
    expect(size).toBe(512 + 1024 + 512 + 512);
    expect(qemuInfo(out)['virtual-size']).toBe(64 * MiB);
    expect(qemuCompare(raw, out).status).toBe(0);
  });

  it('refuses a raw image that is not whole sectors, and writes nothing into the output', async () => {
    const raw = join(dir, 'odd.raw');
    writeFileSync(raw, Buffer.alloc(1000));
    const out = join(dir, 'odd.vhd');
    await expect(writeDynamicVhd(raw, out, { timestamp: 0, seed: 'x' })).rejects.toBeInstanceOf(InputError);
    expect(() => statSync(out)).toThrow();
  });

  it('matches the specification geometry for sizes at the table boundaries', () => {
    // Values from the spec's algorithm worked by hand: 127 MiB and the 65535*16*63 boundary.
    expect(vhdGeometry(127 * MiB)).toEqual({ cylinders: 1024 * 0 + Math.floor(Math.floor(260096 / 17) / 15), heads: 15, sectorsPerTrack: 17 });
    expect(vhdGeometry(65535 * 16 * 63 * 512)).toEqual({ cylinders: Math.floor(Math.floor((65535 * 16 * 63) / 255) / 16), heads: 16, sectorsPerTrack: 255 });
    expect(vhdGeometry(3 * 1024 * MiB).heads).toBe(16);
  });

  it('property: random sparse images round-trip through qemu-img compare', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 24 * 1024 }), // size in sectors (up to 12 MiB)
        fc.array(fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 3000 })), { maxLength: 6 }),
        async (sectors, writes) => {
          const size = sectors * 512;
          const w = writes.map(([o, d]): [number, Buffer] => {
            const off = o % size;
            return [off, Buffer.from(d.subarray(0, size - off))];
          });
          const raw = makeRaw(`p${n}.raw`, size, w);
          const out = join(dir, `p${n++}.vhd`);
          await writeDynamicVhd(raw, out, { timestamp: 1, seed: String(n) });
          expect(qemuInfo(out)['virtual-size']).toBe(size);
          const cmp = qemuCompare(raw, out);
          expect(cmp.status, cmp.out).toBe(0);
        },
      ),
      { numRuns: 15 },
    );
  });
});
