/**
 * imageKernel: the kernel build kept beside an image, found through build.json and checked (name inside
 * the directory, size, sha256, still PVH-capable); every way it can be missing or wrong is named.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import { describeKernel, imageKernel } from '../../src/core/kernel/image-kernel.js';
import { buildKernel, haveToolchain } from '../support/kernel/freebsd-like-kernel.js';

const work = mkdtempSync(join(tmpdir(), 'fbxen-image-kernel-'));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let kernel: Buffer;
let oldKernel: Buffer;
let n = 0;

/** An output directory with x.raw, the kernel as x.kernel and build.json; returns the image path. */
function outDir(opts: { buildJson?: unknown; raw?: string; kernelBytes?: Buffer } = {}): string {
  const dir = mkdtempSync(join(work, `out${n++}-`));
  const bytes = opts.kernelBytes ?? kernel;
  writeFileSync(join(dir, 'x.raw'), '');
  writeFileSync(join(dir, 'x.kernel'), bytes);
  const json = opts.buildJson ?? { name: 'x', pvhKernel: { file: 'x.kernel', size: bytes.length, sha256: sha256(bytes), ident: 'GENERIC', pvhEntry: '0x2a0030' } };
  writeFileSync(join(dir, 'build.json'), opts.raw ?? JSON.stringify(json));
  return join(dir, 'x.raw');
}

async function refused(image: string): Promise<InputError> {
  const e = await imageKernel(image).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(InputError);
  return e as InputError;
}

beforeAll(() => {
  if (!haveToolchain) return;
  kernel = readFileSync(buildKernel(work, 'pvh'));
  oldKernel = readFileSync(buildKernel(work, 'old', ['NO_PVH', '-DVERSION="1104000"']));
});

describe.skipIf(!haveToolchain)('imageKernel (skipped without gcc and ld, which make the test kernels)', () => {
  it('finds the kept kernel, checks it and says what it is', async () => {
    const image = outDir();
    const k = await imageKernel(image);
    expect(k.path).toBe(join(image, '..', 'x.kernel'));
    expect(k.sha256).toBe(sha256(kernel));
    expect(k.facts).toMatchObject({ arch: 'amd64', ident: 'GENERIC', pvhEntry: 0x2a0030 });
    expect(describeKernel(k.facts)).toBe(`${k.path} (amd64, ident GENERIC, __FreeBSD_version 1403000, PVH entry 0x2a0030, options XENHVM yes)`);
  });

  it('no build.json, or not JSON, or too large', async () => {
    const image = outDir();
    writeFileSync(join(image, '..', 'build.json'), 'not json');
    expect((await refused(image)).message).toMatch(/build\.json is not JSON/);
    writeFileSync(join(image, '..', 'build.json'), ' '.repeat(1024 * 1024 + 1));
    expect((await refused(image)).message).toMatch(/larger than 1048576 bytes/);
    const lone = join(mkdtempSync(join(work, 'lone-')), 'y.raw');
    writeFileSync(lone, '');
    const e = await refused(lone);
    expect(e.message).toMatch(/there is no build\.json beside .*y\.raw/);
    expect(e.hint).toMatch(/--kernel FILE, or boot with --type hvm/);
  });

  it('an image built before kernels were kept, and one whose kernel cannot boot PVH', async () => {
    expect((await refused(outDir({ buildJson: { name: 'x' } }))).message).toMatch(/has no pvhKernel: the image was built before/);
    const why = '/boot/kernel/kernel (__FreeBSD_version 1104000) has no Xen PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY); FreeBSD 12.0-RELEASE amd64 is the first release that has one';
    expect((await refused(outDir({ buildJson: { pvhKernel: { file: null, unavailable: why } } }))).message).toBe(`the image's kernel cannot boot PVH: ${why}`);
  });

  it.each([['../x.kernel'], ['/etc/passwd'], ['..'], ['sub/x.kernel']])('a file name that leaves the directory: %s', async (file) => {
    const e = await refused(outDir({ buildJson: { pvhKernel: { file, size: kernel.length, sha256: sha256(kernel) } } }));
    expect(e.message).toMatch(/is not a file name in the image's directory|not what fbxen build writes/);
  });

  it('a record of the wrong shape', async () => {
    expect((await refused(outDir({ buildJson: { pvhKernel: { file: 'x.kernel', size: -1, sha256: 'zz' } } }))).message).toMatch(/pvhKernel is not what fbxen build writes/);
  });

  it('a kernel that changed after the build: size, then content', async () => {
    const image = outDir();
    writeFileSync(join(image, '..', 'x.kernel'), Buffer.concat([kernel, Buffer.from([0])]));
    expect((await refused(image)).message).toMatch(/is \d+ bytes, but build\.json recorded \d+: it changed after the build/);
    const flipped = Buffer.from(kernel);
    flipped.writeUInt8(flipped.readUInt8(flipped.length - 1) ^ 0xff, flipped.length - 1);
    writeFileSync(join(image, '..', 'x.kernel'), flipped);
    expect((await refused(image)).message).toMatch(/has sha256 [0-9a-f]{64}, but build\.json recorded [0-9a-f]{64}: it changed after the build/);
  });

  it('a missing kernel file, and a consistent record of a kernel without the PVH note', async () => {
    const image = outDir();
    writeFileSync(join(image, '..', 'build.json'), JSON.stringify({ pvhKernel: { file: 'x.kernel.none', size: 1, sha256: sha256(kernel) } }));
    expect((await refused(image)).message).toMatch(/x\.kernel\.none, cannot be read \(ENOENT\)/);
    expect((await refused(outDir({ kernelBytes: oldKernel }))).message).toMatch(/^cannot boot PVH: .* has no Xen PVH entry point .*12\.0-RELEASE amd64 is the first/);
  });
});
