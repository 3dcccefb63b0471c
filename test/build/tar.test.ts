import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import { readTar, type TarHeader } from '../../src/core/build/tar.js';
import { sampleDist } from '../support/samples.js';

async function* chunked(buf: Uint8Array, sizes: number[]): AsyncGenerator<Uint8Array> {
  let pos = 0;
  let i = 0;
  while (pos < buf.length) {
    const n = Math.max(1, sizes[i++ % sizes.length] ?? 65536);
    yield buf.subarray(pos, pos + n);
    pos += n;
  }
}

async function listAll(buf: Uint8Array, sizes = [65536]) {
  const out: { h: TarHeader; sha256: string; size: number }[] = [];
  for await (const e of readTar(chunked(buf, sizes), 'test.tar')) {
    const hash = createHash('sha256');
    let size = 0;
    for await (const c of e.data) {
      hash.update(c);
      size += c.length;
    }
    out.push({ h: e.header, sha256: hash.digest('hex'), size });
  }
  return out;
}

const baseTar = () => execFileSync('xz', ['-dc', join(sampleDist(), 'base.txz')], { maxBuffer: 1 << 30 });

/** bsdtar (libarchive) as the independent reader: an mtree listing of the same archive. */
function bsdtarMtree(txz: string): Map<string, Record<string, string>> {
  const text = execFileSync('bsdtar', ['-cf', '-', '--format=mtree', '--options=!all,type,uid,gid,mode,flags,link,size,sha256', `@${txz}`], { maxBuffer: 1 << 28 }).toString();
  const out = new Map<string, Record<string, string>>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const [name, ...kv] = line.split(' ');
    const rec: Record<string, string> = {};
    for (const p of kv) {
      const eq = p.indexOf('=');
      if (eq > 0) rec[p.slice(0, eq)] = p.slice(eq + 1);
    }
    out.set((name === '/.' ? '.' : name!).replace(/^\.\//, '').replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))), rec);
  }
  return out;
}

describe('readTar', () => {
  it('reads the sample base set exactly as bsdtar does (types, owners, modes, flags, links, sizes, content)', async () => {
    const entries = await listAll(baseTar());
    const ref = bsdtarMtree(join(sampleDist(), 'base.txz'));
    expect(entries.length).toBe(ref.size);
    const typeName: Record<string, string> = { file: 'file', directory: 'dir', symlink: 'link', hardlink: 'file' };
    let schg = 0;
    for (const { h, sha256 } of entries) {
      const name = h.name.replace(/^\.\//, '').replace(/\/$/, '') || '.';
      const r = ref.get(name === '.' ? '.' : name);
      expect(r, name).toBeDefined();
      expect(typeName[h.type], name).toBe(r!.type);
      expect(h.uid, name).toBe(Number(r!.uid));
      expect(h.gid, name).toBe(Number(r!.gid));
      expect(h.mode.toString(8), name).toBe(Number.parseInt(r!.mode!, 8).toString(8));
      if (h.type === 'symlink') expect(h.linkname).toBe(r!.link);
      if (h.type === 'file') {
        expect(h.size).toBe(Number(r!.size));
        expect(sha256).toBe(r!.sha256digest ?? r!.sha256);
      }
      if (r!.flags && r!.flags !== 'none') {
        expect(h.fflags, name).toBe(r!.flags);
        schg++;
      }
    }
    expect(schg).toBeGreaterThanOrEqual(6); // libc, ld-elf, init, su, passwd, chpass, var/empty
  });

  it('gives the same entries and data however the stream is cut into chunks', async () => {
    const buf = baseTar();
    const reference = await listAll(buf);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 70000 }), { minLength: 1, maxLength: 8 }), async (sizes) => {
        const got = await listAll(buf, sizes);
        expect(got.map((e) => [e.h.name, e.sha256])).toEqual(reference.map((e) => [e.h.name, e.sha256]));
      }),
      { numRuns: 15 },
    );
  });

  it('drains data the consumer leaves unread', async () => {
    const buf = baseTar();
    const names: string[] = [];
    for await (const e of readTar(chunked(buf, [1000]), 'x')) {
      names.push(e.header.name);
      for await (const _ of e.data) break; // read one chunk and stop
    }
    expect(names.length).toBe((await listAll(buf)).length);
  });

  it('refuses a truncated stream, naming the entry', async () => {
    const buf = baseTar();
    const cut = buf.subarray(0, Math.floor(buf.length / 2));
    await expect(listAll(cut)).rejects.toThrow(/test\.tar: the tar stream ends in the middle of/);
  });

  it('refuses a stream without the end-of-archive marker', async () => {
    const buf = baseTar();
    // Cut at a header boundary just before the two zero blocks.
    let end = buf.length;
    while (end > 0 && buf.subarray(end - 512, end).every((b) => b === 0)) end -= 512;
    await expect(listAll(buf.subarray(0, end))).rejects.toThrow(/without its end-of-archive marker/);
  });

  it('refuses a damaged header (checksum)', async () => {
    const buf = Buffer.from(baseTar());
    buf[600] = buf[600]! ^ 0xff; // inside the second header block region or data: find a header
    buf[0] = buf[0]! ^ 0x01;
    await expect(listAll(buf)).rejects.toThrow(/bad tar header checksum at byte 0/);
  });

  it('never fails with anything but an InputError on random corruption', async () => {
    const buf = baseTar().subarray(0, 200 * 1024);
    const end = Buffer.alloc(1024);
    const base = Buffer.concat([buf, end]);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 20 }), async (edits) => {
        const b = Buffer.from(base);
        for (const [at, v] of edits) b[at] = v;
        try {
          await listAll(b);
        } catch (err) {
          expect(err).toBeInstanceOf(InputError);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('reads pax SCHILY.fflags, long names and the kernel set', async () => {
    const kernel = execFileSync('xz', ['-dc', join(sampleDist(), 'kernel.txz')]);
    const entries = await listAll(kernel);
    expect(entries.map((e) => e.h.name)).toContain('./boot/kernel/kernel');
    const base = await listAll(baseTar());
    const long = base.find((e) => e.h.name.includes('L'.repeat(200)));
    expect(long?.h.name.length).toBeGreaterThan(200);
    expect(base.find((e) => e.h.name === './usr/bin/su')?.h).toMatchObject({ mode: 0o4555, fflags: 'schg', uid: 0, gid: 0 });
    expect(readFileSync(join(sampleDist(), 'MANIFEST'), 'utf8')).toContain(`\t${base.length}\tbase`);
  });
});
