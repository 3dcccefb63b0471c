/**
 * PVH pieces for the end-to-end tests through the fake xl (a SIMULATION): an output directory as `fbxen
 * build` leaves it (image, `<name>.kernel`, build.json's pvhKernel), kernels made by gcc + ld with the
 * notes FreeBSD's xen-locore.S emits (test/support/kernel), and a guest stand-in whose console is what a
 * PVH guest prints (the kernel's own lines on xc0: no SeaBIOS, no loader) ending with the collector's frame
 * of the derived PVH fixture fixtures/probes/14.3-pvh-healthy-derived (DERIVED from source, not captured).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { macForName } from '../../src/core/toolstack/xl/xl-config.js';
import { encodeConsoleFrame, packBundle, readBundle } from '../../src/core/verify/index.js';
import { buildKernel } from '../support/kernel/freebsd-like-kernel.js';
import { REPO, type Host } from './harness.js';

export const PVH_FIXTURE = join(REPO, 'fixtures/probes/14.3-pvh-healthy-derived');

/** `out/<name>.raw`, `out/<name>.kernel` (a gcc-built PVH-capable kernel) and build.json naming it. */
export function makePvhBuild(host: Host, name = 'freebsd-14.3-RELEASE-amd64'): { image: string; kernel: string; sha256: string } {
  const out = join(host.dir, 'out');
  mkdirSync(out, { recursive: true });
  const image = join(out, `${name}.raw`);
  const data = Buffer.alloc(64 * 1024);
  data[510] = 0x55;
  data[511] = 0xaa;
  data.write('EFI PART', 512, 'latin1');
  writeFileSync(image, data);
  const built = buildKernel(host.dir, 'image-kernel');
  const bytes = readFileSync(built);
  const kernel = join(out, `${name}.kernel`);
  writeFileSync(kernel, bytes, { mode: 0o444 });
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(
    join(out, 'build.json'),
    JSON.stringify({ name, release: '14.3-RELEASE', arch: 'amd64', pvhKernel: { file: `${name}.kernel`, size: bytes.length, sha256, ident: 'GENERIC', freebsdVersion: 1403000, pvhEntry: '0x2a0030', xenhvm: true, xenpci: true } }),
  );
  return { image, kernel, sha256 };
}

/** The console of a PVH guest: the kernel's lines from the start (Xen entered it directly), then the frame. */
/** `domain`: the vif's MAC fbxen derives from the name replaces the fixture's, as the real guest would show its own. */
export async function writePvhGuest(host: Host, run: string, domain: string, opts: { frame?: boolean; tail?: string[] } = {}): Promise<void> {
  const lines = [
    '---<<BOOT>>---',
    'Copyright (c) 1992-2025 The FreeBSD Project.',
    'FreeBSD 14.3-RELEASE releng/14.3-n000000-0000000000 GENERIC amd64',
    'XEN: Hypervisor version 4.17 detected.',
    'xc0: <Xen Console> on xenpv0',
    'xbd0: 10240MB <Virtual Block Device> at device/vbd/51712 on xenbusb_front0',
    'xbd1: 1MB <Virtual Block Device> at device/vbd/51728 on xenbusb_front0',
    'Trying to mount root from ufs:/dev/gpt/rootfs []...',
    '@sleep 100',
  ];
  if (opts.frame !== false) {
    const fixture = await readBundle(PVH_FIXTURE);
    // The derived PVH bundle as this run's collector would send it (the CD's nonce, phase boot).
    const mac = macForName(domain);
    const sections = new Map([...fixture.sections].map(([k, v]) => [k, v.split('00:16:3e:5a:01:02').join(mac)]));
    const bundle = { ...fixture, sections, meta: { ...fixture.meta, run, phase: 'boot' } };
    lines.push(...encodeConsoleFrame(await packBundle(bundle), run, 'boot').split('\n').filter(Boolean));
  }
  lines.push(...(opts.tail ?? ['fbxen-collect: done', '@sleep 50']));
  writeFileSync(join(host.state, 'guest.txt'), `${lines.join('\n')}\n`);
}

/** A kernel the user built (`--kernel FILE`): defines as buildKernel takes them (IDENT, NO_PVH, VERSION...). */
export function userKernel(host: Host, name: string, defines: string[] = []): string {
  return buildKernel(host.dir, name, defines);
}
