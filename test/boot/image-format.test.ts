/**
 * Issue 13: `boot` and `config xl` tell an image's format by its bytes and refuse what the toolstack
 * cannot use: an XVA or a text file is no disk for xl, qcow2 is none for XenServer, a name that says
 * another format than the bytes is an error naming both. The same refusals hold under --dry-run and
 * `config xl` (a plan never promises what the run refuses), and nothing is created or run.
 * Real images come from fbxen's own writers (XVA, dynamic VHD) over a GPT disk.
 */
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { defaultDomainName, detectImage, HEAD_BYTES, inspectImage, requireImageFor } from '../../src/core/boot/image.js';
import { InputError } from '../../src/core/errors.js';
import { writeDynamicVhd, encodeVhdFooter } from '../../src/core/formats/vhd.js';
import { writeXva } from '../../src/core/formats/xva.js';
import { fbxen, makeHost, makeImage, xlCalls, type Host } from './harness.js';

const MiB = 1024 * 1024;

/** The first HEAD_BYTES and the last 512 bytes of a buffer, as inspectImage reads them. */
function detect(b: Buffer) {
  return detectImage(b.subarray(0, Math.min(b.length, HEAD_BYTES)), b.length >= 512 ? b.subarray(b.length - 512) : Buffer.alloc(0), b.length);
}

function gptDisk(size = 2 * MiB): Buffer {
  const b = Buffer.alloc(size);
  b[510] = 0x55;
  b[511] = 0xaa;
  b.write('EFI PART', 512, 'latin1');
  return b;
}

describe('detectImage: the format from the bytes', () => {
  it('raw GPT and MBR disks, qcow2, fixed and dynamic VHD, XVA', () => {
    expect(detect(gptDisk())).toEqual({ format: 'raw', detail: 'GPT', virtualSize: 2 * MiB });
    const mbr = gptDisk();
    mbr.fill(0, 512, 520);
    expect(detect(mbr)).toMatchObject({ format: 'raw', detail: 'MBR' });
    const qcow = Buffer.alloc(64 * 1024);
    Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]).copy(qcow);
    qcow.writeBigUInt64BE(BigInt(6 * 2 ** 30), 24);
    expect(detect(qcow)).toEqual({ format: 'qcow2', detail: 'version 3', virtualSize: 6 * 2 ** 30 });
    const footer = encodeVhdFooter({ sizeBytes: 2 * MiB, timestamp: 1717200000, uuid: Buffer.alloc(16, 1) });
    const fixed = Buffer.concat([gptDisk(), footer]);
    fixed.writeUInt32BE(2, fixed.length - 512 + 60); // disk type 2: fixed
    expect(detect(fixed)).toEqual({ format: 'vhd', detail: 'fixed', virtualSize: 2 * MiB });
    // A dynamic VHD whose tail was cut: the footer copy at offset 0 still says what it is.
    expect(detect(Buffer.concat([footer, Buffer.alloc(4096)]))).toMatchObject({ format: 'vhd', detail: 'dynamic' });
    const tar = Buffer.alloc(1024);
    tar.write('ova.xml', 0, 'latin1');
    tar.write('ustar', 257, 'latin1');
    expect(detect(tar)).toMatchObject({ format: 'xva' });
  });

  it.each([
    ['an empty file', Buffer.alloc(0), /an empty file/],
    ['a text file', Buffer.from('#!/bin/sh\necho this is not a disk\n'.repeat(100)), /a text file, not a disk image/],
    ['a short text file', Buffer.from('hello\n'), /a text file/],
    ['xz (FreeBSD ships .raw.xz)', Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(600)]), /xz-compressed/],
    ['gzip', Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(600)]), /gzip-compressed/],
    ['zstd', Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(600)]), /zstd-compressed/],
    ['an ISO', (() => { const b = Buffer.alloc(40 * 1024); b.write('\x01CD001', 32768, 'latin1'); return b; })(), /ISO 9660 CD image/],
    ['a tar that is no XVA', (() => { const b = Buffer.alloc(1024); b.write('etc/passwd', 0, 'latin1'); b.write('ustar', 257, 'latin1'); return b; })(), /tar archive \(first member "etc\/passwd"\), not an XVA/],
    ['zeros (no boot sector)', Buffer.alloc(MiB), /no boot signature \(55 AA at byte 510\)/],
    ['a raw disk cut mid-sector', gptDisk().subarray(0, MiB + 100), /not a whole number of 512-byte sectors/],
  ])('%s is no image', (_what, bytes, pattern) => {
    const d = detect(bytes);
    expect(d.format).toBe('none');
    expect(d.format === 'none' && d.what).toMatch(pattern);
  });

  it('property: any bytes get an answer, and a format only with its own signature', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.integer({ min: 0, max: 2 ** 40 }), (bytes, extra) => {
        const head = Buffer.from(bytes);
        const size = head.length + (head.length ? extra : 0);
        const tail = size >= 512 ? head.subarray(Math.max(0, head.length - 512)) : Buffer.alloc(0);
        const d = detectImage(head, tail.length === 512 ? tail : Buffer.alloc(0), size);
        if (d.format === 'qcow2') expect(head.subarray(0, 4)).toEqual(Buffer.from('QFI\xfb', 'latin1'));
        if (d.format === 'vhd') expect(head.includes(Buffer.from('conectix'))).toBe(true);
        if (d.format === 'xva') expect(head.toString('latin1', 0, 8)).toBe('ova.xml\0');
        if (d.format === 'raw') expect([head[510], head[511], size % 512]).toEqual([0x55, 0xaa, 0]);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('inspectImage and requireImageFor', () => {
  let host: Host;
  let raw = '';
  let xva = '';
  let vhd = '';
  beforeAll(async () => {
    host = makeHost();
    raw = join(host.dir, 'disk.raw');
    writeFileSync(raw, gptDisk());
    xva = join(host.dir, 'disk.xva');
    vhd = join(host.dir, 'disk.vhd');
    await writeXva(raw, xva, { name: 'fbsd', vcpus: 1, memoryMiB: 256, timestamp: 1717200000, seed: 's' });
    await writeDynamicVhd(raw, vhd, { timestamp: 1717200000, seed: 's' });
  });

  it('a name that says another format than the bytes: an error naming both', async () => {
    const fake = join(host.dir, 'fake.xva');
    copyFileSync(raw, fake);
    const err = await inspectImage(fake, host.dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toBe(`image ${fake} is named .xva but holds a raw disk (GPT)`);
    const qcow = join(host.dir, 'vhd-really.qcow2');
    copyFileSync(vhd, qcow);
    await expect(inspectImage(qcow, host.dir)).rejects.toThrow(/named \.qcow2 but holds a VHD \(dynamic\)/);
    // ".img" is used for raw and qcow2 alike, and a name without extension claims nothing: the bytes decide.
    copyFileSync(xva, join(host.dir, 'export.img'));
    expect((await inspectImage('export.img', host.dir)).format).toBe('xva');
    copyFileSync(raw, join(host.dir, 'disk'));
    expect((await inspectImage('disk', host.dir)).format).toBe('raw');
  });

  it('xl takes raw and qcow2; XenServer takes raw, VHD and XVA; each refusal says what to do', async () => {
    const r = await inspectImage(raw, host.dir);
    const x = await inspectImage(xva, host.dir);
    const v = await inspectImage(vhd, host.dir);
    expect(() => requireImageFor('xl', r)).not.toThrow();
    expect(() => requireImageFor('xl', x)).toThrow(/is an XVA \(a XenServer VM export\), not a disk xl can boot/);
    try {
      requireImageFor('xl', x);
    } catch (e) {
      expect((e as InputError).hint).toMatch(/--toolstack xapi.*xe vm-import filename=FILE/);
    }
    expect(() => requireImageFor('xl', v)).toThrow(/is a VHD; xl boots raw and qcow2 images/);
    for (const ok of [r, x, v]) expect(() => requireImageFor('xapi', ok)).not.toThrow();
    expect(() => requireImageFor('xapi', { path: '/q.qcow2', format: 'qcow2', size: 1 })).toThrow(/qcow2, which XenServer does not import/);
  });

  it('default names lose the format extension, whatever the format', () => {
    for (const ext of ['raw', 'img', 'qcow2', 'vhd', 'xva', 'XVA']) expect(defaultDomainName({ path: `/out/freebsd-14.3.${ext}` })).toBe('fbxen-freebsd-14.3');
  });
});

describe('fbxen boot and config xl refuse what xl cannot use, --dry-run included, creating nothing', () => {
  const cases: { what: string; make: (h: Host) => Promise<string>; message: RegExp; hint: RegExp }[] = [
    {
      what: 'an XVA',
      make: async (h) => {
        const out = join(h.dir, 'out', 'freebsd.xva');
        await writeXva(makeImage(h, 'src.raw'), out, { name: 'fbsd', vcpus: 1, memoryMiB: 256, timestamp: 1717200000, seed: 's' });
        return out;
      },
      message: /is an XVA \(a XenServer VM export\), not a disk xl can boot/,
      hint: /xe vm-import/,
    },
    {
      what: 'a text file named .raw',
      make: async (h) => {
        const p = join(h.dir, 'notes.raw');
        writeFileSync(p, 'these are my notes, not a disk\n');
        return p;
      },
      message: /notes\.raw is a text file, not a disk image \(named \.raw\)/,
      hint: /fbxen build/,
    },
    {
      what: 'a raw disk named .xva',
      make: async (h) => {
        const p = makeImage(h, 'disk.raw');
        const fake = join(h.dir, 'out', 'disk.xva');
        copyFileSync(p, fake);
        return fake;
      },
      message: /disk\.xva is named \.xva but holds a raw disk \(GPT\)/,
      hint: /rename it/,
    },
  ];
  for (const c of cases) {
    for (const mode of [['boot'], ['boot', '--dry-run'], ['config', 'xl']]) {
      it(`${c.what}: \`${mode.join(' ')}\` exits 3 with the reason and the fix`, async () => {
        const h = makeHost();
        const image = await c.make(h);
        const r = await fbxen([...mode, '--image', image, '--artifacts', h.artifacts, '--run-id', 'r1'], h);
        expect(r.code).toBe(3);
        expect(r.stderr).toMatch(c.message);
        expect(r.stderr).toMatch(c.hint);
        expect(r.stdout).not.toContain('name = '); // no xl.cfg, no plan
        expect(existsSync(h.artifacts)).toBe(false);
        expect(xlCalls(h)).toEqual([]);
      });
    }
  }
});

describe('fbxen boot --toolstack xapi --dry-run', () => {
  const env = (h: Host) => ({ ...h, env: { ...h.env, FBXEN_XAPI_URL: 'https://pool.lab', FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: 'dry-run-pw' } });

  it('names the VM after the XVA without its extension', async () => {
    const h = makeHost();
    const out = join(h.dir, 'out', 'freebsd-14.3.xva');
    await writeXva(makeImage(h, 'src.raw'), out, { name: 'fbsd', vcpus: 1, memoryMiB: 256, timestamp: 1717200000, seed: 's' });
    const r = await fbxen(['--json', 'boot', '--toolstack', 'xapi', '--dry-run', '--image', out, '--artifacts', h.artifacts, '--run-id', 'r1'], env(h));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ dryRun: true, name: 'fbxen-freebsd-14.3' });
  });

  it('takes the name from build.json beside the image, as xl does', async () => {
    const h = makeHost();
    const out = join(h.dir, 'out', 'image.xva');
    await writeXva(makeImage(h, 'src.raw'), out, { name: 'fbsd', vcpus: 1, memoryMiB: 256, timestamp: 1717200000, seed: 's' });
    writeFileSync(join(h.dir, 'out', 'build.json'), JSON.stringify({ name: 'freebsd-14.3-RELEASE-amd64', release: '14.3-RELEASE', arch: 'amd64' }));
    const r = await fbxen(['--json', 'boot', '--toolstack', 'xapi', '--dry-run', '--image', out, '--artifacts', h.artifacts, '--run-id', 'r1'], env(h));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: 'fbxen-freebsd-14.3-RELEASE-amd64' });
  });

  it.each([
    ['a text file', (h: Host) => (writeFileSync(join(h.dir, 'a.vhd'), 'not a disk\n'), join(h.dir, 'a.vhd')), /a\.vhd is a text file, not a disk image/],
    ['qcow2', (h: Host) => makeImage(h, 'disk.qcow2', 'qcow2'), /qcow2, which XenServer does not import/],
    ['a VHD named .raw', (h: Host) => (copyFileSync(makeImage(h, 'x.vhd', 'vhd'), join(h.dir, 'x.raw')), join(h.dir, 'x.raw')), /x\.raw is named \.raw but holds a VHD/],
  ])('refuses %s as the real run does (exit 3, nothing created)', async (_what, make, pattern) => {
    const h = makeHost();
    const image = make(h);
    const r = await fbxen(['boot', '--toolstack', 'xapi', '--dry-run', '--image', image, '--artifacts', h.artifacts, '--run-id', 'r1'], env(h));
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(pattern);
    expect(existsSync(h.artifacts)).toBe(false);
  });
});
