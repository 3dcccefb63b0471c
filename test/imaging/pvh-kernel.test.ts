/**
 * build keeps the image's kernel beside the image when it can boot PVH (<name>.kernel, recorded in
 * build.json's pvhKernel), and says why not otherwise. End to end on the FreeBSD-shaped sample whose
 * kernel.txz carries a gcc-built kernel with the PVH note; GRUB's own UFS2 code compares it with the
 * image's /boot/kernel/kernel.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { stagePvhKernel } from '../../src/core/imaging/pvh-kernel.js';
import { fbxen, listing } from '../support/cli.js';
import { buildKernel, haveToolchain } from '../support/kernel/freebsd-like-kernel.js';
import { sampleDist, tmpDir } from '../support/samples.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Record {
  pvhKernel: { file: string | null; unavailable?: string; size?: number; sha256?: string; ident?: string; freebsdVersion?: number; pvhEntry?: string; xenhvm?: boolean; xenpci?: boolean };
  partitions: { index: number; label: string }[];
}

/** A copy of the sample whose kernel.txz holds `kernel` as boot/kernel/kernel (MANIFEST's digest updated). */
function sampleWithKernel(kernel: string): string {
  const dist = join(tmpDir('pvh-dist'), 'dist');
  cpSync(sampleDist(), dist, { recursive: true });
  const script = `
import hashlib, io, sys, tarfile, lzma
dist, kernel = sys.argv[1], sys.argv[2]
src = tarfile.open(dist + '/kernel.txz', 'r:xz')
buf = io.BytesIO()
out = tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT)
for m in src.getmembers():
    data = src.extractfile(m).read() if m.isfile() else None
    if m.name.lstrip('./') == 'boot/kernel/kernel':
        data = open(kernel, 'rb').read()
        m.size = len(data)
    out.addfile(m, io.BytesIO(data) if data is not None else None)
out.close()
open(dist + '/kernel.txz', 'wb').write(lzma.compress(buf.getvalue(), check=lzma.CHECK_CRC64))
digest = hashlib.sha256(open(dist + '/kernel.txz', 'rb').read()).hexdigest()
lines = open(dist + '/MANIFEST').read().splitlines()
lines = ['\\t'.join([f[0], digest] + f[2:]) if f[0] == 'kernel.txz' else l for l, f in ((l, l.split('\\t')) for l in lines)]
open(dist + '/MANIFEST', 'w').write('\\n'.join(lines) + '\\n')
`;
  execFileSync('python3', ['-c', script, dist, kernel]);
  return dist;
}

function build(dist: string, name: string) {
  const out = tmpDir('pvh-out');
  const r = fbxen(['build', '--dist', dist, '--arch', 'amd64', '--out', out, '--cache-dir', `${out}-cache`, '--disk-size', '256M', '--swap', '0', '--format', 'raw', '--json', '--name', name], { env: { SOURCE_DATE_EPOCH: '1717300000' } });
  return { ...r, out };
}

describe.skipIf(!haveToolchain)('stagePvhKernel (skipped without gcc and ld, which make the test kernels)', () => {
  const work = tmpDir('pvh-stage');
  it('writes a PVH-capable kernel under a temporary name and records what it is', async () => {
    const bytes = readFileSync(buildKernel(work, 'k'));
    const pending: string[] = [];
    const r = await stagePvhKernel(bytes, work, 'img', pending);
    expect(r.record).toEqual({ file: 'img.kernel', size: bytes.length, sha256: sha256(bytes), ident: 'GENERIC', freebsdVersion: 1403000, pvhEntry: '0x2a0030', xenhvm: true, xenpci: true });
    expect(r.final?.[1]).toBe(join(work, 'img.kernel'));
    expect(pending).toEqual([r.final?.[0]]);
    expect(readFileSync(r.final![0]).equals(bytes)).toBe(true);
    expect(existsSync(join(work, 'img.kernel'))).toBe(false); // renamed into place only with the rest
  });
  it.each([
    ['no PVH note', ['NO_PVH', '-DVERSION="1104000"'], /__FreeBSD_version 1104000\) has no Xen PVH entry point .*12\.0-RELEASE amd64 is the first/],
    ['no XENHVM', ['-DXENHVM=""'], /built without options XENHVM/],
  ])('writes nothing for a kernel with %s, and says why', async (_what, defines, pattern) => {
    const pending: string[] = [];
    const r = await stagePvhKernel(readFileSync(buildKernel(work, `k-${pending.length}-${defines.length}-${_what.length}`, defines)), work, 'img', pending);
    expect(r.final).toBeUndefined();
    expect(pending).toEqual([]);
    expect(r.record.file).toBeNull();
    expect((r.record as { unavailable: string }).unavailable).toMatch(pattern);
  });
  it('a kernel the ELF reader refuses still builds (HVM), with the reason recorded', async () => {
    const bytes = Buffer.from(readFileSync(buildKernel(work, 'damaged')));
    bytes.writeBigUInt64LE(BigInt(bytes.length - 8), 40); // e_shoff: the section table runs past the end
    const r = await stagePvhKernel(bytes, work, 'img', []);
    expect(r.record).toEqual({ file: null, unavailable: expect.stringMatching(/^\/boot\/kernel\/kernel is not a kernel fbxen can read: the section header table .* lies outside the file/) });
  });
});

describe.skipIf(!haveToolchain)('fbxen build keeps the PVH kernel beside the image (skipped without gcc and ld)', () => {
  let pvh: ReturnType<typeof build>;
  let kernel: Buffer;
  beforeAll(() => {
    const k = buildKernel(tmpDir('pvh-k'), 'kernel');
    kernel = readFileSync(k);
    pvh = build(sampleWithKernel(k), 'p');
  });

  it('writes <name>.kernel, the same bytes as the image\'s /boot/kernel/kernel, and records it', () => {
    expect(pvh.stderr).not.toMatch(/error/i);
    expect(pvh.code).toBe(0);
    expect(listing(pvh.out)).toEqual(['build.json', 'p.kernel', 'p.raw']);
    const record = JSON.parse(pvh.stdout) as Record;
    expect(JSON.parse(readFileSync(join(pvh.out, 'build.json'), 'utf8'))).toEqual(record);
    expect(record.pvhKernel).toEqual({ file: 'p.kernel', size: kernel.length, sha256: sha256(kernel), ident: 'GENERIC', freebsdVersion: 1403000, pvhEntry: '0x2a0030', xenhvm: true, xenpci: true });
    const kept = join(pvh.out, 'p.kernel');
    expect(readFileSync(kept).equals(kernel)).toBe(true);
    expect(statSync(kept).mode & 0o777).toBe(0o444);
    const rootfs = record.partitions.find((p) => p.label === 'rootfs')!;
    const g = spawnSync('grub-fstest', [join(pvh.out, 'p.raw'), '--', 'cmp', `(loop0,gpt${rootfs.index})/boot/kernel/kernel`, kept], { encoding: 'utf8' });
    expect(g.status, g.stderr).toBe(0);
  });

  it('writes no kernel for the plain sample (no Xen notes) and says why in build.json', () => {
    const plain = build(sampleDist(), 'h');
    expect(plain.code).toBe(0);
    expect(listing(plain.out)).toEqual(['build.json', 'h.raw']);
    const record = JSON.parse(plain.stdout) as Record;
    expect(record.pvhKernel).toEqual({ file: null, unavailable: expect.stringMatching(/\(no Xen notes at all\) has no Xen PVH entry point \(XEN_ELFNOTE_PHYS32_ENTRY\); FreeBSD 12\.0-RELEASE amd64 is the first/) });
  });
});
