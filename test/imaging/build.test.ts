/**
 * fbxen build end to end on the FreeBSD-shaped sample, with real consumers checking the image:
 * sgdisk, sfdisk, grub-fstest (GRUB's own UFS2 and GPT code), qemu-img, sleuthkit.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fbxen, fbxenInterrupted, listing } from '../support/cli.js';
import { REPO, sampleDist, tmpDir } from '../support/samples.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface BuildJson {
  name: string;
  release: string;
  arch: string;
  kernel: { ident: string; xenhvm: boolean; xenpci: boolean };
  partitions: { index: number; label: string; type: string; firstLba: number; lastLba: number }[];
  outputs: { format: string; path: string; size: number; sha256: string }[];
  timestamp: number;
}

function buildSample(args: string[], opts: { arch?: 'amd64' | 'i386'; variant?: string; out?: string; env?: Record<string, string> } = {}) {
  const out = opts.out ?? tmpDir('out');
  const cache = join(out, '..', `${out.split('/').pop()}-cache`);
  const r = fbxen(['build', '--dist', sampleDist({ arch: opts.arch, variant: opts.variant }), '--arch', opts.arch ?? 'amd64', '--out', out, '--cache-dir', cache, '--disk-size', '256M', '--swap', '32M', ...args], { env: opts.env });
  return { ...r, out, cache };
}

/** grub-fstest inside the GPT: the device is loop0, not hd0 (imaging.md §2). */
function grub(disk: string, ...cmd: string[]): string {
  return execFileSync('grub-fstest', [disk, '--', ...cmd], { maxBuffer: 1 << 26 }).toString();
}

describe('fbxen build (amd64 sample)', () => {
  let r: ReturnType<typeof buildSample>;
  let record: BuildJson;
  let raw: string;
  beforeAll(() => {
    r = buildSample(['--json', '--name', 'sample'], { env: { SOURCE_DATE_EPOCH: '1717300000' } });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    record = JSON.parse(r.stdout) as BuildJson;
    raw = join(r.out, 'sample.raw');
  });

  it('writes raw, qcow2 and build.json and nothing else', () => {
    expect(listing(r.out)).toEqual(['build.json', 'sample.qcow2', 'sample.raw']);
    expect(JSON.parse(readFileSync(join(r.out, 'build.json'), 'utf8'))).toEqual(record);
    expect(record).toMatchObject({ name: 'sample', release: '14.3-RELEASE', arch: 'amd64', kernel: { ident: 'GENERIC', xenhvm: true, xenpci: true }, timestamp: 1717300000 });
    for (const o of record.outputs) expect(sha256(readFileSync(o.path))).toBe(o.sha256);
  });

  it('has a GPT that sgdisk finds clean, with the recorded partitions', () => {
    expect(execFileSync('sgdisk', ['-v', raw]).toString()).toContain('No problems found');
    const sf = JSON.parse(execFileSync('sfdisk', ['-J', raw]).toString()) as { partitiontable: { partitions: { start: number; size: number; type: string; name: string }[] } };
    expect(sf.partitiontable.partitions.map((p) => ({ label: p.name, type: p.type, firstLba: p.start, lastLba: p.start + p.size - 1 }))).toEqual(
      record.partitions.map((p) => ({ label: p.label, type: p.type, firstLba: p.firstLba, lastLba: p.lastLba })),
    );
    expect(record.partitions.map((p) => p.label)).toEqual(['gptboot0', 'swapfs', 'rootfs']);
  });

  it('has pmbr in sector 0 and gptboot at the start of freebsd-boot', () => {
    const disk = readFileSync(raw);
    const stage = tmpDir('stage');
    execFileSync('bsdtar', ['-xf', join(sampleDist(), 'base.txz'), '-C', stage, './boot/pmbr', './boot/gptboot']);
    const pmbr = readFileSync(join(stage, 'boot/pmbr'));
    const gptboot = readFileSync(join(stage, 'boot/gptboot'));
    expect(disk.subarray(0, 446)).toEqual(pmbr.subarray(0, 446));
    const boot = record.partitions.find((p) => p.label === 'gptboot0')!;
    expect(disk.subarray(boot.firstLba * 512, boot.firstLba * 512 + gptboot.length)).toEqual(gptboot);
  });

  it('has a UFS2 root that GRUB reads: /boot, loader.conf, fstab, the kernel', () => {
    const root = `(loop0,gpt${record.partitions.find((p) => p.label === 'rootfs')!.index})`;
    const boot = grub(raw, 'ls', `${root}/boot/`);
    for (const name of ['kernel/', 'loader.conf', 'pmbr', 'gptboot', 'defaults/']) expect(boot).toContain(name);
    const loader = grub(raw, 'cat', `${root}/boot/loader.conf`);
    expect(loader).toContain('boot_multicons="YES"');
    expect(loader).toContain('console="comconsole,vidconsole"');
    expect(loader).toContain('comconsole_speed="115200"');
    const fstab = grub(raw, 'cat', `${root}/etc/fstab`);
    expect(fstab).toMatch(/^\/dev\/gpt\/rootfs\s+\/\s+ufs\s+rw\s+1\s+1$/m);
    expect(fstab).toMatch(/^\/dev\/gpt\/swapfs\s+none\s+swap\s+sw/m);
    const rc = grub(raw, 'cat', `${root}/etc/rc.conf`);
    expect(rc).toContain('growfs_enable="YES"');
    expect(rc).toContain('ifconfig_xn0="DHCP"');
    const stage = tmpDir('kernel');
    execFileSync('bsdtar', ['-xf', join(sampleDist(), 'kernel.txz'), '-C', stage, './boot/kernel/kernel']);
    expect(spawnSync('grub-fstest', [raw, '--', 'cmp', `${root}/boot/kernel/kernel`, join(stage, 'boot/kernel/kernel')]).status).toBe(0);
  });

  it('has a qcow2 that qemu-img checks and finds identical to the raw image', () => {
    const qcow2 = join(r.out, 'sample.qcow2');
    expect(execFileSync('qemu-img', ['check', qcow2]).toString()).toContain('No errors were found');
    expect(execFileSync('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, qcow2]).toString()).toContain('Images are identical');
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', qcow2]).toString()) as { 'virtual-size': number };
    expect(info['virtual-size']).toBe(256 * 1024 * 1024);
  });

  it('records the sha256 of every output as sha256sum computes it (the qcow2 writer hashes on the way)', () => {
    for (const o of record.outputs) expect(execFileSync('sha256sum', [o.path]).toString().split(' ')[0], o.format).toBe(o.sha256);
  });

  it('writes a qcow2 alone from the same image: qemu-img turns it back into the raw image, byte for byte', () => {
    const only = buildSample(['--json', '--name', 'sample', '--format', 'qcow2'], { env: { SOURCE_DATE_EPOCH: '1717300000' } });
    expect(only.code, only.stderr).toBe(0);
    expect(listing(only.out)).toEqual(['build.json', 'sample.qcow2']);
    const back = join(only.out, 'back.raw');
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', join(only.out, 'sample.qcow2'), back]);
    expect(execFileSync('sha256sum', [back]).toString().split(' ')[0]).toBe(record.outputs.find((o) => o.format === 'raw')!.sha256);
    const qcow2 = (JSON.parse(only.stdout) as BuildJson).outputs;
    expect(qcow2.map((o) => o.format)).toEqual(['qcow2']);
    expect(qcow2[0]!.sha256).toBe(record.outputs.find((o) => o.format === 'qcow2')!.sha256);
  });

  it('is a sparse raw file', () => {
    const blocks = Number(execFileSync('stat', ['-c', '%b', raw]).toString()) * 512;
    expect(blocks).toBeLessThan(64 * 1024 * 1024);
  });
});

describe('fbxen build: reproducibility and the cache', () => {
  it('gives identical bytes for the same inputs, cached or not, and --check-reproducible says so', () => {
    const a = buildSample(['--name', 'x', '--json', '--no-cache']);
    const b = buildSample(['--name', 'x', '--json']);
    const c = buildSample(['--name', 'x', '--json', '--check-reproducible'], { out: b.out });
    for (const x of [a, b, c]) expect(x.code, x.stderr).toBe(0);
    const outs = [a, b, c].map((x) => (JSON.parse(x.stdout) as BuildJson).outputs.map((o) => o.sha256));
    expect(outs[1]).toEqual(outs[0]);
    expect(outs[2]).toEqual(outs[0]);
    expect((JSON.parse(c.stdout) as { reproducible: { identical: boolean } }).reproducible.identical).toBe(true);
    expect(listing(b.out)).toEqual(['build.json', 'x.qcow2', 'x.raw']);
    expect(listing(join(b.cache, 'sets')).filter((f) => f.endsWith('.tar'))).toHaveLength(2);
    expect(listing(join(a.cache, 'sets'))).toEqual([]);
  });

  it('gives the same bytes when the decompressor writes slowly, in small pieces (other chunk boundaries)', () => {
    const normal = buildSample(['--name', 'x', '--json', '--no-cache', '--format', 'raw']);
    const slow = buildSample(['--name', 'x', '--json', '--no-cache', '--format', 'raw'], {
      env: { PATH: `${join(REPO, 'test/support/slow-bin')}:${process.env.PATH}`, SLOW_XZ_BYTES: '65536', SLOW_XZ_SECONDS: '0.01' },
    });
    expect(slow.code, slow.stderr).toBe(0);
    const sha = (r: typeof normal) => (JSON.parse(r.stdout) as BuildJson).outputs[0]!.sha256;
    expect(sha(slow)).toBe(sha(normal));
    expect(listing(slow.out)).toEqual(['build.json', 'x.raw']);
  });

  it('builds i386 too', () => {
    const r = buildSample(['--json', '--format', 'raw'], { arch: 'i386' });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ arch: 'i386', kernel: { xenhvm: true } });
  });

  it('refuses an amd64 kernel given --arch i386', () => {
    const r = fbxen(['build', '--dist', sampleDist(), '--arch', 'i386', '--out', tmpDir('o'), '--cache-dir', tmpDir('c')]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/the kernel is an amd64 kernel, but --arch is i386/);
  });
});

describe('fbxen build: bad inputs end in a clear error and leave no finished-looking output', () => {
  const finished = (out: string) => listing(out).filter((f) => !f.startsWith('.') || f.includes('partial') || f.includes('scratch'));

  it.each([
    ['no-xenhvm', /lacks options XENHVM and device xenpci/],
    ['no-pmbr', /the sets have no \/boot\/pmbr/],
    ['no-gptboot', /the sets have no \/boot\/gptboot/],
    ['no-kernel', /kernel\.txz has no \/boot\/kernel\/kernel/],
    ['traversal-dotdot', /entry "\.\/usr\/\.\.\/\.\.\/etc\/evil": the name contains "\.\."/],
    ['traversal-absolute', /entry "\/etc\/evil": the name is absolute/],
    ['traversal-symlink', /entry "\.\/escape\/evil": the path goes through the symlink "escape"/],
    ['hardlink-outside', /the hard link points outside the root/],
    ['hardlink-missing', /the hard link points to a missing entry/],
    ['device-node', /entry "\.\/dev\/mem": device nodes and FIFOs are refused/],
    ['nul-name', /the name contains a NUL byte/],
    ['long-name', /longer than 255 bytes/],
    ['bad-flag', /unknown file flag "notaflag"/],
  ])('variant %s', (variant, message) => {
    const r = buildSample([], { variant });
    expect(r.stderr).toMatch(message);
    expect(r.code).toBeGreaterThanOrEqual(2);
    expect(finished(r.out)).toEqual([]);
  });

  it('builds a kernel without XENHVM when told to', () => {
    const r = buildSample(['--allow-non-xen-kernel', '--format', 'raw', '--json'], { variant: 'no-xenhvm' });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ kernel: { xenhvm: false } });
  });

  const damaged = (mutate: (dist: string) => void, fixManifest: boolean) => {
    const dist = tmpDir('dist');
    for (const f of ['MANIFEST', 'base.txz', 'kernel.txz']) copyFileSync(join(sampleDist(), f), join(dist, f));
    mutate(dist);
    if (fixManifest) {
      const m = readFileSync(join(dist, 'MANIFEST'), 'utf8').replace(/^(base\.txz\t)[0-9a-f]+/m, `$1${sha256(readFileSync(join(dist, 'base.txz')))}`);
      writeFileSync(join(dist, 'MANIFEST'), m);
    }
    return dist;
  };
  const runDist = (dist: string, extra: string[] = []) => {
    const out = tmpDir('out');
    return { ...fbxen(['build', '--dist', dist, '--out', out, '--cache-dir', tmpDir('c'), '--disk-size', '256M', '--swap', '32M', ...extra]), out };
  };

  it('a sha256 mismatch against MANIFEST', () => {
    const r = runDist(damaged((d) => writeFileSync(join(d, 'base.txz'), Buffer.concat([readFileSync(join(d, 'base.txz')), Buffer.from('x')])), false));
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/base\.txz: sha256 [0-9a-f]+ does not match MANIFEST/);
    expect(finished(r.out)).toEqual([]);
  });

  describe.each(['xz', '7zz'])('decoded by %s', (decoder) => {
    it('a truncated xz (with a MANIFEST that matches it)', () => {
      const r = runDist(damaged((d) => writeFileSync(join(d, 'base.txz'), readFileSync(join(d, 'base.txz')).subarray(0, 200000)), true), ['--xz-decoder', decoder]);
      expect(r.code).toBe(3);
      // xz --list finds no index in a truncated file, before any decoder runs
      expect(r.stderr).toMatch(/base\.txz could not be decompressed: xz: \S+: Compressed data is corrupt/);
      expect(finished(r.out)).toEqual([]);
    });

    it('damaged compressed data (with a MANIFEST that matches it)', () => {
      const r = runDist(
        damaged((d) => {
          const txz = readFileSync(join(d, 'base.txz'));
          for (let at = 4096; at < 4096 + 64; at++) txz[at] = txz[at]! ^ 0x5a;
          writeFileSync(join(d, 'base.txz'), txz);
        }, true),
        ['--xz-decoder', decoder],
      );
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(decoder === 'xz' ? /base\.txz could not be decompressed: xz: \S+: Compressed data is corrupt/ : /base\.txz could not be decompressed: 7zz: Data Error\n/);
      expect(finished(r.out)).toEqual([]);
    });
  });

  it('a corrupt tar inside a valid xz', () => {
    const r = runDist(
      damaged((d) => {
        const tar = execFileSync('xz', ['-dc', join(d, 'base.txz')], { maxBuffer: 1 << 28 });
        for (let at = 0; at < tar.length; at += 512) if (tar.subarray(at + 257, at + 262).toString() === 'ustar' && at > 4096) {
          tar[at] = tar[at]! ^ 0x20;
          break;
        }
        writeFileSync(join(d, 'base.txz'), execFileSync('xz', ['-c'], { input: tar, maxBuffer: 1 << 28 }));
      }, true),
    );
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/base\.txz: bad tar header checksum at byte \d+/);
    expect(finished(r.out)).toEqual([]);
  });

  it('a root file system size too small for the content', () => {
    const r = buildSample(['--size', '2M']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/--size 2\.0 MiB is too small for the sets: the root file system needs at least/);
  });

  it('a disk size too small for the partitions', () => {
    const r = buildSample(['--disk-size', '8M']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/--disk-size 8\.0 MiB is too small: the partitions need/);
  });

  it('an output path that is a file', () => {
    const dir = tmpDir('o');
    writeFileSync(join(dir, 'file'), 'x');
    const r = buildSample([], { out: join(dir, 'file') });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/exists and is not a directory/);
    expect(readFileSync(join(dir, 'file'), 'utf8')).toBe('x');
  });

  // Skipped, visibly, where this machine gives no private mount namespace (the full disk is simulated by one).
  const mountNamespaces = spawnSync('unshare', ['-m', 'true']).status === 0;
  it.skipIf(!mountNamespaces)('a full disk (a 3 MiB tmpfs in a private mount namespace)', () => {
    const dir = tmpDir('full');
    const script = `mount -t tmpfs -o size=3m tmpfs ${dir} && ${process.execPath} dist/cli.js build --dist ${sampleDist()} --out ${dir}/out --cache-dir ${tmpDir('c')} --disk-size 256M --swap 32M; echo "rc=$?"; ls -A ${dir}/out`;
    const r = spawnSync('unshare', ['-m', 'sh', '-c', script], { encoding: 'utf8', env: { ...process.env, CI: 'true', NO_COLOR: '1' } });
    expect(r.stderr).toMatch(/no space left on the device holding/);
    expect(r.stdout).toMatch(/^rc=4$/m);
    expect(r.stdout.split('\n').slice(1).filter(Boolean)).toEqual([]);
  });

  it('an unreachable mirror suggests --dist', () => {
    const r = fbxen(['build', '--release', '14.3-RELEASE', '--mirror', 'http://127.0.0.1:9', '--out', tmpDir('o'), '--cache-dir', tmpDir('c')]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:9\/releases\/amd64\/14\.3-RELEASE\/MANIFEST/);
    expect(r.stderr).toMatch(/hint: without network, give the sets locally: --dist DIR/);
  });

  it('an unsupported release and arch are refused before anything is fetched', () => {
    const r = fbxen(['build', '--release', '15.0-RELEASE', '--arch', 'i386', '--mirror', 'http://127.0.0.1:9', '--out', tmpDir('o')]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/FreeBSD 15\.0-RELEASE has no i386 kernel/);
  });

  it('Ctrl-C during the build: exit 130, no outputs, no temporaries', async () => {
    const out = tmpDir('int');
    // A throttled xz (test double) keeps the build in its file-system step long enough to interrupt it.
    const slowPath = `${join(REPO, 'test/support/slow-bin')}:${process.env.PATH}`;
    const r = await fbxenInterrupted(['build', '--dist', sampleDist(), '--out', out, '--cache-dir', tmpDir('c'), '--disk-size', '256M', '--swap', '32M'], (err) => /STARTED.*Write the root file system/.test(err), 'SIGINT', { env: { PATH: slowPath } });
    expect(r.sentSignal).toBe(true);
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/SIGINT received, cleaning up/);
    expect(listing(out)).toEqual([]);
    // No decompressor left behind (the stand-in's pipeline children exit on SIGPIPE within moments).
    const deadline = Date.now() + 5000;
    while (spawnSync('pgrep', ['-f', `xz -dc -T0 ${sampleDist()}`]).status === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(spawnSync('pgrep', ['-f', `xz -dc -T0 ${sampleDist()}`]).status).toBe(1);
  });
});

describe('fbxen build --format vhd,xva', () => {
  it('writes a VHD qemu-img finds identical to the raw image, and an XVA an independent reader accepts', () => {
    const r = buildSample(['--format', 'raw,vhd,xva', '--json', '--name', 'xs', '--vcpus', '2', '--memory', '1024']);
    expect(r.code, r.stderr).toBe(0);
    const rec = JSON.parse(r.stdout) as BuildJson;
    expect(rec.outputs.map((o) => o.format)).toEqual(['raw', 'vhd', 'xva']);
    expect(listing(r.out)).toEqual(['build.json', 'xs.raw', 'xs.vhd', 'xs.xva']);
    const raw = join(r.out, 'xs.raw');
    expect(execFileSync('qemu-img', ['compare', '-f', 'raw', '-F', 'vpc', raw, join(r.out, 'xs.vhd')]).toString()).toContain('Images are identical');
    const check = spawnSync('python3', [join(REPO, 'test/formats/xva_check.py'), join(r.out, 'xs.xva'), raw], { encoding: 'utf8' });
    expect(check.stdout).not.toMatch(/FAIL/);
    expect(check.status).toBe(0);
    for (const o of rec.outputs) expect(sha256(readFileSync(o.path))).toBe(o.sha256);
  });
});

describe('fbxen build --uefi', () => {
  it('adds an ESP (FAT, checked by fsck.fat) with loader.efi as the removable-media boot path', () => {
    const r = buildSample(['--uefi', '--format', 'raw', '--json', '--name', 'u']);
    expect(r.code, r.stderr).toBe(0);
    const rec = JSON.parse(r.stdout) as BuildJson;
    expect(rec.partitions.map((p) => p.label)).toEqual(['gptboot0', 'efiboot0', 'swapfs', 'rootfs']);
    const esp = rec.partitions.find((p) => p.label === 'efiboot0')!;
    const raw = join(r.out, 'u.raw');
    const fat = join(r.out, 'esp.img');
    execFileSync('dd', [`if=${raw}`, `of=${fat}`, 'bs=512', `skip=${esp.firstLba}`, `count=${esp.lastLba - esp.firstLba + 1}`, 'status=none']);
    expect(spawnSync('fsck.fat', ['-n', fat]).status).toBe(0);
    const stage = tmpDir('efi');
    execFileSync('bsdtar', ['-xf', join(sampleDist(), 'base.txz'), '-C', stage, './boot/loader.efi']);
    expect(spawnSync('grub-fstest', [raw, '--', 'cmp', `(loop0,gpt${esp.index})/EFI/BOOT/BOOTX64.EFI`, join(stage, 'boot/loader.efi')]).status).toBe(0);
    expect(execFileSync('sgdisk', ['-v', raw]).toString()).toContain('No problems found');
  });

  it('is refused clearly when the release has no loader.efi', () => {
    const r = buildSample(['--uefi'], { variant: 'no-loader-efi' });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/--uefi: this release has no \/boot\/loader\.efi/);
    expect(listing(r.out)).toEqual([]);
  });
});

describe('fbxen build: options, config file and plans', () => {
  it('--dry-run prints the plan and creates nothing', () => {
    const out = join(tmpDir('dry'), 'never');
    const r = fbxen(['build', '--release', '14.3-RELEASE', '--out', out, '--cache-dir', '/nonexistent-cache', '--format', 'raw,qcow2,vhd', '--xz-decoder', '7zz', '--dry-run']);
    expect(r.code).toBe(0);
    const plan = r.stdout.replaceAll(out, '<OUT>').replaceAll(REPO, '<FBXEN>');
    expect(plan).toMatchSnapshot();
    expect(existsSync(out)).toBe(false);
  });

  it('--xz-decoder auto takes 7zz when it is on PATH and xz otherwise', () => {
    const bin = tmpDir('fake-7zz');
    writeFileSync(join(bin, '7zz'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const plan = (path: string) => fbxen(['build', '--dist', sampleDist(), '--dry-run', '--json'], { env: { PATH: path } });
    const steps = (path: string) => (JSON.parse(plan(path).stdout) as { steps: string[] }).steps.join('\n');
    const without = process.env.PATH!.split(':').filter((d) => !existsSync(join(d, '7zz'))).join(':');
    expect(steps(`${bin}:${without}`)).toMatch(/^7zz x -txz -so -bso0 -bsp0 \S+base\.txz \| fbxen tar reader/m);
    expect(steps(`${bin}:${without}`)).toMatch(/^nice -n 10 7zz x -txz -so -bso0 -bsp0 \S+kernel\.txz \| fbxen tar reader/m);
    expect(steps(without)).toMatch(/^xz -dc -T0 \S+base\.txz \| fbxen tar reader/m);
    expect(steps(without)).not.toMatch(/7zz/);
  });

  it('reads fbxen.yaml; flags win; a bad key is named', () => {
    const dir = tmpDir('cfg');
    writeFileSync(join(dir, 'fbxen.yaml'), `build:\n  dist: ${sampleDist()}\n  format: raw\n  swap: 0\n  disk-size: 128M\n  name: fromconfig\n`);
    const r = fbxen(['build', '--json', '--name', 'fromflag', '--cache-dir', join(dir, 'cache')], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const rec = JSON.parse(r.stdout) as BuildJson;
    expect(rec.name).toBe('fromflag');
    expect(rec.outputs.map((o) => o.format)).toEqual(['raw']);
    expect(rec.partitions.map((p) => p.label)).toEqual(['gptboot0', 'rootfs']);
    writeFileSync(join(dir, 'bad.yaml'), 'build:\n  disk-sise: 4G\n  swap: lots\n');
    const bad = fbxen(['build', '--config', 'bad.yaml'], { cwd: dir });
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/build\.swap \(config file\): "lots" is not a size/);
    expect(bad.stderr).toMatch(/build\.disk-sise \(config file\): unknown option/);
  });

  it('a usage error exits 2 and says what to do', () => {
    const r = fbxen(['build', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--bogus'/);
    const both = fbxen(['build', '--release', '14.3-RELEASE', '--dist', '/x']);
    expect(both.code).toBe(2); // two options that exclude each other: usage
    expect(both.stderr).toMatch(/give either --release \(with --arch\) or --dist/);
  });
});

describe('fbxen build: the release of --dist sets, known before anything is written', () => {
  const fsStep = /Write the root file system/;
  const finished = (out: string) => listing(out).filter((f) => !f.startsWith('.') || f.includes('partial') || f.includes('scratch'));
  const everything = (out: string) => listing(out).filter((f) => f !== 'cache');

  it('sets without bin/freebsd-version are refused before the file system, with a hint that works: --release-name', () => {
    const r = buildSample([], { variant: 'no-freebsd-version' });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/cannot tell the release of these sets: base\.txz has no bin\/freebsd-version/);
    expect(r.stderr).toMatch(/--release-name/);
    expect(r.stderr).not.toMatch(/--release as well/);
    expect(r.stderr).not.toMatch(fsStep);
    expect(everything(r.out)).toEqual([]);

    const named = buildSample(['--release-name', '14.3-RELEASE', '--format', 'raw', '--json'], { variant: 'no-freebsd-version' });
    expect(named.code, named.stderr).toBe(0);
    expect(JSON.parse(named.stdout)).toMatchObject({ release: '14.3-RELEASE', name: 'freebsd-14.3-RELEASE-amd64' });
  });

  it('an unsupported --release-name, or one the sets contradict, is refused', () => {
    const old = buildSample(['--release-name', '9.3-RELEASE'], { variant: 'no-freebsd-version' });
    expect(old.code).toBe(3);
    expect(old.stderr).toMatch(/FreeBSD 9\.3-RELEASE is not supported/);
    expect(old.stderr).not.toMatch(fsStep);
    expect(everything(old.out)).toEqual([]);

    const wrong = buildSample(['--release-name', '13.2-RELEASE']);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/--release-name 13\.2-RELEASE, but the sets' bin\/freebsd-version says 14\.3-RELEASE/);
    expect(wrong.stderr).not.toMatch(fsStep);
    expect(everything(wrong.out)).toEqual([]);
  });

  it('sets whose bin/freebsd-version names an unsupported release fail before the file system (15.0 i386)', () => {
    const out = tmpDir('o15');
    const r = fbxen(['build', '--dist', sampleDist({ arch: 'i386', release: '15.0-RELEASE' }), '--arch', 'i386', '--out', out, '--cache-dir', join(out, 'cache'), '--disk-size', '256M', '--swap', '32M']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/FreeBSD 15\.0-RELEASE has no i386 kernel/);
    expect(r.stderr).not.toMatch(fsStep);
    expect(everything(out)).toEqual([]);
  });

  it('--release-name without --dist is refused', () => {
    const r = fbxen(['build', '--release', '14.3-RELEASE', '--release-name', '14.3-RELEASE', '--dry-run']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--release-name names the sets of --dist/);
  });

  it.each([
    [['--release', '15.0-RELEASE', '--arch', 'i386'], /FreeBSD 15\.0-RELEASE has no i386 kernel/],
    [['--release', '9.3-RELEASE'], /FreeBSD 9\.3-RELEASE is not supported/],
    [['--dist', '/nonexistent', '--release-name', '9.3-RELEASE'], /FreeBSD 9\.3-RELEASE is not supported/],
    [['--dist', '/nonexistent', '--release-name', '15.0-RELEASE', '--arch', 'i386'], /FreeBSD 15\.0-RELEASE has no i386 kernel/],
  ])('--dry-run refuses what the build refuses: %j', (args, message) => {
    const r = fbxen(['build', ...args, '--out', join(tmpDir('dry'), 'never'), '--dry-run']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(message);
  });

  it('--dry-run says what only the build can know: the release of unnamed sets, the kernel check', () => {
    const r = fbxen(['build', '--dist', '/some/sets', '--out', join(tmpDir('dry'), 'never'), '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/up to bin\/freebsd-version: the release \(USERLAND_VERSION\), checked before anything is written/);
    expect(r.stdout).toMatch(/known only once kernel\.txz is read/);
  });
});
