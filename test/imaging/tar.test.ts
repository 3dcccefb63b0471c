import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import { readTar, type TarHeader } from '../../src/core/imaging/tar.js';
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

// ---- a minimal tar encoder for hand-made headers (names as raw bytes) -------------------------------

function tarHeader(name: Buffer, opts: { type?: string; size?: number; link?: Buffer; uid?: number } = {}): Buffer {
  const h = Buffer.alloc(512);
  name.copy(h, 0, 0, 100);
  const octal = (v: number, at: number, len: number) => h.write(`${v.toString(8).padStart(len - 1, '0')}\0`, at, 'latin1');
  octal(0o644, 100, 8);
  octal(opts.uid ?? 0, 108, 8);
  octal(0, 116, 8);
  octal(opts.size ?? 0, 124, 12);
  octal(1717200000, 136, 12);
  h.write(opts.type ?? '0', 156, 'latin1');
  opts.link?.copy(h, 157, 0, 100);
  h.write('ustar\0' + '00', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}
const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
function paxEntry(records: [string, Buffer | string][]): Buffer {
  const body = Buffer.concat(
    records.map(([k, v]) => {
      const kv = Buffer.concat([Buffer.from(` ${k}=`), Buffer.from(v), Buffer.from('\n')]);
      let len = kv.length + 1;
      while (String(len).length + kv.length !== len) len = String(len).length + kv.length;
      return Buffer.concat([Buffer.from(String(len)), kv]);
    }),
  );
  return Buffer.concat([tarHeader(Buffer.from('PaxHeader'), { type: 'x', size: body.length }), pad(body)]);
}
const fileEntry = (name: Buffer, data: Buffer) => Buffer.concat([tarHeader(name, { size: data.length }), pad(data)]);
const archive = (...parts: Buffer[]) => Buffer.concat([...parts, Buffer.alloc(1024)]);
const latin1 = (s: string) => Buffer.from(s, 'latin1');

describe('readTar: names are bytes', () => {
  it('keeps non-UTF-8 bytes of ustar names, pax paths (hdrcharset=BINARY) and link targets exactly', async () => {
    const a = Buffer.from([0x63, 0x61, 0x66, 0xe9]);
    const b = Buffer.from([0x63, 0x61, 0x66, 0xff]);
    const long = Buffer.concat([Buffer.alloc(200, 0x61), Buffer.from([0x80, 0xfe])]);
    const target = Buffer.from([0x74, 0xc3, 0x28]); // an invalid UTF-8 sequence
    const tar = archive(
      fileEntry(a, Buffer.from('A')),
      fileEntry(b, Buffer.from('B')),
      paxEntry([['hdrcharset', 'BINARY'], ['path', long]]),
      fileEntry(Buffer.from('placeholder'), Buffer.from('L')),
      tarHeader(Buffer.from('link'), { type: '2', link: target }),
    );
    const got = await listAll(tar);
    expect(got.map((e) => latin1(e.h.name).toString('hex'))).toEqual([a, b, long, Buffer.from('link')].map((x) => x.toString('hex')));
    expect(latin1(got[3]!.h.linkname)).toEqual(target);
  });

  it('property: any byte name (no NUL or /) comes back byte for byte, in ustar or in a pax path', async () => {
    const byteName = fc.uint8Array({ minLength: 1, maxLength: 255 }).map((u) => Buffer.from(u.map((x) => (x === 0 || x === 0x2f ? 0x5f : x))));
    await fc.assert(
      fc.asyncProperty(fc.array(byteName, { minLength: 1, maxLength: 8 }), async (names) => {
        const parts = names.map((n, i) => (n.length <= 100 ? fileEntry(n, Buffer.from([i])) : Buffer.concat([paxEntry([['hdrcharset', 'BINARY'], ['path', n]]), fileEntry(Buffer.from('x'), Buffer.from([i]))])));
        const got = await listAll(archive(...parts));
        expect(got.map((e) => latin1(e.h.name))).toEqual(names);
      }),
      { numRuns: 200 },
    );
  });
});

describe('readTar: pax numbers', () => {
  it.each([
    ['uid', '-1'],
    ['gid', 'abc'],
    ['uid', '4294967296'],
    ['size', '-5'],
    ['uid', '1e3'],
    ['mtime', 'yesterday'],
  ])('refuses %s=%s, naming the entry (never the ustar value instead)', async (key, value) => {
    const tar = archive(paxEntry([[key, value]]), fileEntry(Buffer.from('etc/passwd'), Buffer.from('x')));
    await expect(listAll(tar)).rejects.toThrow(new RegExp(`test\\.tar: entry "etc/passwd": pax ${key}="${value}" is not a`));
    await expect(listAll(tar)).rejects.toBeInstanceOf(InputError);
  });
});

describe('readTar: GNU sparse files (tar --sparse --format=posix)', () => {
  const MiB = 1024 * 1024;
  let dir: string | undefined;
  const made = (() => {
    return () => {
      if (dir) return dir;
      dir = mkdtempSync(join(tmpdir(), 'fbxen-sparse-'));
      const f = join(dir, 'small');
      writeFileSync(f, '');
      truncateSync(f, 5 * MiB);
      const fd = openSync(f, 'r+');
      writeSync(fd, 'hello', 100_000);
      writeSync(fd, 'world', 3 * MiB + 7);
      closeSync(fd);
      return dir;
    };
  })();
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.each([['0.0'], ['0.1'], ['1.0']])('GNU tar format %s: the real name, size and bytes', async (version) => {
    const dir = made();
    const tar = execFileSync('tar', ['--sparse', `--sparse-version=${version}`, '--format=posix', '-cf', '-', '-C', dir, 'small']);
    expect(tar.length).toBeLessThan(64 * 1024); // stored sparse: the file is 5 MiB
    const got = await listAll(tar, [7, 513, 4096]);
    const want = createHash('sha256').update(readFileSync(join(dir, 'small'))).digest('hex');
    expect(got.map((e) => [e.h.name, e.h.size, e.size, e.sha256])).toEqual([['small', 5 * MiB, 5 * MiB, want]]);
  });

  it('bsdtar (libarchive) pax sparse files too', async () => {
    const dir = made();
    const tar = execFileSync('bsdtar', ['--format=pax', '-cf', '-', '-C', dir, 'small']);
    const got = await listAll(tar);
    const want = createHash('sha256').update(readFileSync(join(dir, 'small'))).digest('hex');
    expect(got.map((e) => [e.h.name, e.h.size, e.sha256])).toEqual([['small', 5 * MiB, want]]);
  });

  const sparse = (records: [string, string][], data: Buffer) => archive(paxEntry(records), fileEntry(Buffer.from('GNUSparseFile.1/f'), data));
  it.each([
    ['an unsupported major version', [['GNU.sparse.major', '2'], ['GNU.sparse.minor', '0'], ['GNU.sparse.realsize', '10']], Buffer.alloc(512), /format 2\.0 is not supported/],
    ['a segment past the real size', [['GNU.sparse.size', '10'], ['GNU.sparse.map', '8,4'], ['GNU.sparse.name', 'f']], Buffer.alloc(4), /past the real size/],
    ['overlapping segments', [['GNU.sparse.size', '100'], ['GNU.sparse.map', '10,10,15,5'], ['GNU.sparse.name', 'f']], Buffer.alloc(15), /overlap or are out of order/],
    ['a map that disagrees with the stored data', [['GNU.sparse.size', '100'], ['GNU.sparse.map', '0,10'], ['GNU.sparse.name', 'f']], Buffer.alloc(20), /describes 10 bytes of data, the entry stores 20/],
    ['a real size over the limit', [['GNU.sparse.size', String(2 ** 40)], ['GNU.sparse.map', '0,1'], ['GNU.sparse.name', 'f']], Buffer.alloc(1), /over fbxen's limit/],
    ['a 1.0 map that never ends', [['GNU.sparse.major', '1'], ['GNU.sparse.minor', '0'], ['GNU.sparse.realsize', '10'], ['GNU.sparse.name', 'f']], Buffer.from('3\n1\n'.padEnd(512, '\0')), /ends inside the map|longer than the data/],
  ] as [string, [string, string][], Buffer, RegExp][])('refuses %s', async (_what, records, data, message) => {
    await expect(listAll(sparse(records, data))).rejects.toThrow(message);
  });
});

describe('readTar: GNU sparse maps (property)', () => {
  /** Sorted, non-overlapping segments inside realSize, with their bytes. */
  const sparseFile = fc
    .record({
      gaps: fc.array(fc.record({ gap: fc.integer({ min: 0, max: 40_000 }), len: fc.integer({ min: 0, max: 3_000 }), seed: fc.integer({ min: 1, max: 255 }) }), { maxLength: 12 }),
      tail: fc.integer({ min: 0, max: 40_000 }),
      version: fc.constantFrom('0.0', '0.1', '1.0'),
      cuts: fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 5 }),
    })
    .map(({ gaps, tail, version, cuts }) => {
      let pos = 0;
      const segments = gaps.map(({ gap, len, seed }) => {
        const offset = pos + gap;
        pos = offset + len;
        return { offset, data: Buffer.alloc(len, seed) };
      });
      return { segments, realSize: pos + tail, version, cuts };
    });

  it('property: formats 0.0, 0.1 and 1.0 expand to the real file whatever the map and the chunking', async () => {
    await fc.assert(
      fc.asyncProperty(sparseFile, async ({ segments, realSize, version, cuts }) => {
        const stored = Buffer.concat(segments.map((s) => s.data));
        const pairs = segments.flatMap((s) => [s.offset, s.data.length]);
        let records: [string, string][];
        let data = stored;
        let name = Buffer.from('GNUSparseFile.0/f');
        if (version === '0.0') {
          name = Buffer.from('f');
          records = [['GNU.sparse.size', String(realSize)], ['GNU.sparse.numblocks', String(segments.length)], ...segments.flatMap((s): [string, string][] => [['GNU.sparse.offset', String(s.offset)], ['GNU.sparse.numbytes', String(s.data.length)]])];
        } else if (version === '0.1') {
          records = [['GNU.sparse.size', String(realSize)], ['GNU.sparse.numblocks', String(segments.length)], ['GNU.sparse.name', 'f'], ['GNU.sparse.map', pairs.join(',')]];
        } else {
          records = [['GNU.sparse.major', '1'], ['GNU.sparse.minor', '0'], ['GNU.sparse.name', 'f'], ['GNU.sparse.realsize', String(realSize)]];
          data = Buffer.concat([pad(Buffer.from([segments.length, ...pairs].map((n) => `${n}\n`).join(''))), stored]);
        }
        const want = Buffer.alloc(realSize);
        for (const s of segments) s.data.copy(want, s.offset);
        const got = await listAll(archive(paxEntry(records), fileEntry(name, data)), cuts);
        expect(got.map((e) => [e.h.name, e.h.size, e.size, e.sha256])).toEqual([['f', realSize, realSize, createHash('sha256').update(want).digest('hex')]]);
      }),
      { numRuns: 150 },
    );
  });

  it('property: hostile GNU.sparse keys and data give the real file or an InputError, nothing else', async () => {
    const key = fc.constantFrom('GNU.sparse.major', 'GNU.sparse.minor', 'GNU.sparse.size', 'GNU.sparse.realsize', 'GNU.sparse.numblocks', 'GNU.sparse.map', 'GNU.sparse.offset', 'GNU.sparse.numbytes', 'GNU.sparse.name');
    const value = fc.oneof(fc.constantFrom('0', '1', '2', '-1', '', '512', '1,2', '0,10,5,5', '99999999999999999999', 'x'), fc.nat({ max: 5000 }).map(String), fc.array(fc.nat({ max: 2000 }), { maxLength: 6 }).map((a) => a.join(',')));
    const body = fc.oneof(fc.uint8Array({ maxLength: 2048 }).map((u) => Buffer.from(u)), fc.array(fc.nat({ max: 600 }), { maxLength: 7 }).map((a) => pad(Buffer.from(a.map((n) => `${n}\n`).join('')))));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(key, value), { minLength: 1, maxLength: 8 }), body, async (records, data) => {
        try {
          const got = await listAll(archive(paxEntry(records), fileEntry(Buffer.from('f'), data)));
          expect(got[0]!.size).toBe(got[0]!.h.size);
        } catch (err) {
          expect(err).toBeInstanceOf(InputError);
        }
      }),
      { numRuns: 300 },
    );
  });
});
