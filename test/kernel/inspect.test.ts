/**
 * inspectKernel on real ELF files made by the system toolchain (gcc + ld) with the notes FreeBSD's
 * amd64 xen-locore.S writes (.note.Xen: GUEST_OS, GUEST_VERSION, XEN_VERSION, PHYS32_ENTRY) and a
 * kern_conf section, and on hostile variants of them: truncated, huge counts, wrong class, broken notes.
 * Each read is counted, so "bounded" is asserted, not assumed.
 */
import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import {
  assertPvhKernel,
  inspectKernel,
  inspectKernelBytes,
  inspectKernelWith,
  kernelRecord,
  MAX_KERNEL_BYTES,
  pvhRefusal,
} from '../../src/core/kernel/inspect.js';
import { buildKernel, haveToolchain } from '../support/kernel/freebsd-like-kernel.js';

const work = mkdtempSync(join(tmpdir(), 'fbxen-kernel-'));

const k: Record<string, string> = {};
beforeAll(() => {
  if (!haveToolchain) return;
  k.pvh = buildKernel(work, 'pvh');
  k.old = buildKernel(work, 'old', ['NO_PVH', '-DVERSION="1104000"']);
  k.i386 = buildKernel(work, 'i386', ['NO_PVH', '-DVERSION="1403000"'], 32);
  k.noXenhvm = buildKernel(work, 'noxenhvm', ['-DXENHVM=""', '-DIDENT="MYKERNEL"']);
  k.noConf = buildKernel(work, 'noconf', ['NO_CONF']);
  k.noNotes = buildKernel(work, 'nonotes', ['NO_XEN_NOTES', '-DXENHVM=""']);
});

async function refusal(p: Promise<unknown>): Promise<InputError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(InputError);
  return e as InputError;
}

describe.skipIf(!haveToolchain)('inspectKernel on ELF files built by gcc and ld (skipped without them)', () => {
  it('a 14.x-like amd64 kernel: arch, ident, options, versions and the PVH entry', async () => {
    const f = await inspectKernel(k.pvh!);
    expect(f).toMatchObject({ arch: 'amd64', elfClass: 64, ident: 'GENERIC', freebsdVersion: 1403000, pvhEntry: 0x2a0030 });
    expect(f.xen).toEqual({ guestOs: 'FreeBSD', guestVersion: '1403000', xenVersion: 'xen-3.0' });
    expect(f.kernConf).toMatchObject({ xenhvm: true, xenpci: true, machine: 'amd64' });
    expect(pvhRefusal(f)).toBeUndefined();
    expect(() => assertPvhKernel(f)).not.toThrow();
    expect(kernelRecord(f)).toMatchObject({ ident: 'GENERIC', pvhEntry: '0x2a0030', freebsdVersion: 1403000, xenhvm: true, xenpci: true });
  });

  it('a kernel linked at FreeBSD\'s virtual base (e_entry 0xffffffff80xxxxxx, past 2^53) is read', async () => {
    const b = Buffer.from(readFileSync(k.pvh!));
    b.writeBigUInt64LE(0xffffffff8037a000n, 24);
    expect((await inspectKernelBytes(b, 'high')).pvhEntry).toBe(0x2a0030);
  });

  it('the same facts from the bytes in memory (what build holds)', async () => {
    const f = await inspectKernelBytes(readFileSync(k.pvh!), '/boot/kernel/kernel');
    expect(f).toMatchObject({ path: '/boot/kernel/kernel', arch: 'amd64', ident: 'GENERIC', pvhEntry: 0x2a0030 });
  });

  it('a kernel without the PVH note is refused, naming 12.0-RELEASE and its own version', async () => {
    const f = await inspectKernel(k.old!);
    expect(f.pvhEntry).toBeUndefined();
    expect(f.freebsdVersion).toBe(1104000);
    expect(pvhRefusal(f)).toMatch(/__FreeBSD_version 1104000\) has no Xen PVH entry point \(XEN_ELFNOTE_PHYS32_ENTRY\); FreeBSD 12\.0-RELEASE amd64 is the first release that has one/);
    const e = (() => {
      try {
        assertPvhKernel(f);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(InputError);
    expect((e as InputError).hint).toMatch(/--type hvm/);
  });

  it('an i386 kernel is refused for PVH', async () => {
    const f = await inspectKernel(k.i386!);
    expect(f).toMatchObject({ arch: 'i386', elfClass: 32, ident: 'GENERIC' });
    expect(pvhRefusal(f)).toMatch(/an i386 kernel; FreeBSD boots PVH on amd64 only/);
  });

  it('a kernel without options XENHVM is refused for PVH, naming its ident', async () => {
    const f = await inspectKernel(k.noXenhvm!);
    expect(f.pvhEntry).toBe(0x2a0030);
    expect(pvhRefusal(f)).toMatch(/ident MYKERNEL\) is built without options XENHVM/);
  });

  it('a kernel without kern_conf: ident unknown, the PVH check stands on the note alone', async () => {
    const f = await inspectKernel(k.noConf!);
    expect(f.kernConf).toBeUndefined();
    expect(f.ident).toBeUndefined();
    expect(pvhRefusal(f)).toBeUndefined();
  });

  it('a kernel with no Xen notes at all says so', async () => {
    expect(pvhRefusal(await inspectKernel(k.noNotes!))).toMatch(/\(no Xen notes at all\) has no Xen PVH entry point/);
  });

  it('finds the notes in the SHT_NOTE section when there is no PT_NOTE segment, and in the segment without section headers', async () => {
    const b = readFileSync(k.pvh!);
    const noPhdrs = Buffer.from(b);
    noPhdrs.writeUInt16LE(0, 56); // e_phnum
    expect((await inspectKernelBytes(noPhdrs, 'no-phdrs')).pvhEntry).toBe(0x2a0030);
    const noShdrs = Buffer.from(b);
    noShdrs.writeBigUInt64LE(0n, 40); // e_shoff
    const f = await inspectKernelBytes(noShdrs, 'no-shdrs');
    expect(f.pvhEntry).toBe(0x2a0030);
    expect(f.kernConf).toBeUndefined(); // kern_conf is found by section name only
  });
});

describe.skipIf(!haveToolchain)('hostile kernels: bounded reads, clear errors (skipped without gcc and ld, which make the base kernel)', () => {
  /** Runs inspectKernelWith over a buffer, counting the bytes read. */
  async function inspectCounting(bytes: Buffer, size = bytes.length): Promise<{ result: unknown; read: number }> {
    let read = 0;
    const result = await inspectKernelWith(
      async (o, l) => {
        read += l;
        return bytes.subarray(o, o + l);
      },
      size,
      'kernel',
    ).catch((e: unknown) => e);
    return { result, read };
  }

  it.each([
    ['not ELF', (b: Buffer) => Buffer.concat([Buffer.from('\x1f\x8b\x08'), b.subarray(3)]), /no ELF magic .*gunzip/],
    ['class 3', (b: Buffer) => Object.assign(Buffer.from(b), { 4: 3 }), /ELF class 3 is neither/],
    ['big-endian', (b: Buffer) => Object.assign(Buffer.from(b), { 5: 2 }), /not little-endian/],
    ['class 32 with machine x86-64', (b: Buffer) => Object.assign(Buffer.from(b), { 4: 1 }), /ELF class 32 does not match machine x86-64/],
    ['65,535 sections', (b: Buffer) => { const c = Buffer.from(b); c.writeUInt16LE(0xfff0, 60); return c; }, /65520 sections, more than the 4096/],
    ['an extended section count of 2^32-1', (b: Buffer) => { const c = Buffer.from(b); c.writeUInt16LE(0, 60); c.writeBigUInt64LE(0xffffffffn, Number(c.readBigUInt64LE(40)) + 32); return c; }, /4294967295 sections/],
    ['a section table past the end', (b: Buffer) => { const c = Buffer.from(b); c.writeBigUInt64LE(BigInt(b.length - 10), 40); return c; }, /section header table .* lies outside the file/],
    ['an offset past 2^53', (b: Buffer) => { const c = Buffer.from(b); c.writeBigUInt64LE(1n << 60n, 40); return c; }, /e_shoff is \d+, larger than any file/],
    ['300 program headers', (b: Buffer) => { const c = Buffer.from(b); c.writeUInt16LE(300, 56); return c; }, /300 program headers/],
    ['short section entries', (b: Buffer) => { const c = Buffer.from(b); c.writeUInt16LE(8, 58); return c; }, /section header entries are 8 bytes/],
    ['a note whose name runs past its area', (b: Buffer) => { const c = Buffer.from(b); c.writeUInt32LE(0xfffffff0, b.indexOf(Buffer.from('Xen\0FreeBSD')) - 12); return c; }, /a note \(name 4294967280 bytes.*runs past the end/],
  ] as [string, (b: Buffer) => Buffer, RegExp][])('%s', async (_what, mutate, pattern) => {
    const { result, read } = await inspectCounting(mutate(readFileSync(k.pvh!)));
    expect(result).toBeInstanceOf(InputError);
    expect((result as Error).message).toMatch(/^kernel is not a kernel fbxen can read: /);
    expect((result as Error).message).toMatch(pattern);
    expect(read).toBeLessThan(64 * 1024);
  });

  it('every truncation gives the facts or an InputError, reading no more than the file (all cut points)', async () => {
    const b = readFileSync(k.pvh!);
    for (let cut = 0; cut < b.length; cut += 7) {
      const { result, read } = await inspectCounting(b.subarray(0, cut));
      if (!(result instanceof InputError)) expect(result).toHaveProperty('arch');
      expect(read).toBeLessThanOrEqual(cut + 64);
    }
  });

  it('any bytes written anywhere give the facts or an InputError, within a 6 MiB read budget (2,000 runs)', async () => {
    const b = readFileSync(k.pvh!);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(b.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), async (writes) => {
        const c = Buffer.from(b);
        for (const [at, v] of writes) c[at] = v;
        const { result, read } = await inspectCounting(c);
        if (!(result instanceof InputError)) expect(result).toHaveProperty('arch');
        expect(read).toBeLessThan(6 * 1024 * 1024);
      }),
      { numRuns: 2000, seed: 18 },
    );
  });

  it('a file larger than any kernel is refused before it is read', async () => {
    const { result, read } = await inspectCounting(Buffer.alloc(0), MAX_KERNEL_BYTES + 1);
    expect((result as Error).message).toMatch(/larger than any FreeBSD kernel/);
    expect(read).toBe(0);
    const sparse = join(work, 'huge');
    writeFileSync(sparse, '');
    truncateSync(sparse, MAX_KERNEL_BYTES + 4096);
    expect((await refusal(inspectKernel(sparse))).message).toMatch(/larger than any FreeBSD kernel/);
  });

  it('a missing file, a directory and an empty file are named', async () => {
    expect((await refusal(inspectKernel(join(work, 'nope')))).message).toMatch(/cannot open the kernel .*nope \(ENOENT\)/);
    expect((await refusal(inspectKernel(work))).message).toMatch(/is not a regular file/);
    const empty = join(work, 'empty');
    writeFileSync(empty, '');
    expect((await refusal(inspectKernel(empty))).message).toMatch(/0 bytes, too short for an ELF header/);
  });
});
