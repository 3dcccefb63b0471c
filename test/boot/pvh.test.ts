/**
 * `fbxen boot --type pvh` end to end through the real CLI entry and the fake xl (a SIMULATION of xl 4.17,
 * test/support/fake-xl/xl), with the image's own kernel (build.json's pvhKernel) and with --kernel: the
 * xl.cfg (type pvh, kernel = the run's copy, cmdline), run.json's kernel record, the verdicts the probes
 * give the derived PVH bundle knowing the boot type, Ctrl-C, the refusals, and the --dry-run plan (golden).
 * The kernels are made by gcc + ld (skipped without them, saying so).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { haveToolchain } from '../support/kernel/freebsd-like-kernel.js';
import { domains, fbxen, makeHost, until, xlCalls, type Host } from './harness.js';
import { makePvhBuild, userKernel, writePvhGuest } from './pvh-harness.js';

const runDir = (h: Host, name: string, run: string) => join(h.artifacts, name, run);
const runJson = (h: Host, name: string, run: string) => JSON.parse(readFileSync(join(runDir(h, name, run), 'run.json'), 'utf8')) as Record<string, unknown>;
const sha256 = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

describe.skipIf(!haveToolchain)('boot --type pvh through the fake xl (skipped without gcc and ld, which make the test kernels)', () => {
  it("the image's own kernel: copied into the run, xl.cfg type pvh, run.json keeps the kernel, probes judge PVH; config xl --type pvh prints the same xl.cfg", async () => {
    const h = makeHost();
    const build = makePvhBuild(h);
    await writePvhGuest(h, 'run-p', 'fbxen-pvh');
    const r = await fbxen(['boot', '--type', 'pvh', '--image', build.image, '--name', 'fbxen-pvh', '--artifacts', h.artifacts, '--run-id', 'run-p', '--timeout', '30', '--verify', '--kernel-env', 'boot_verbose=YES'], h);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const dir = runDir(h, 'fbxen-pvh', 'run-p');

    // The kernel the guest booted is the run's read-only copy of the build's, byte for byte.
    const copy = join(dir, 'kernel');
    expect(sha256(copy)).toBe(build.sha256);
    expect(statSync(copy).mode & 0o777).toBe(0o444);

    const cfg = readFileSync(join(dir, 'xl.cfg'), 'utf8');
    expect(cfg).toContain('type = "pvh"\n');
    expect(cfg).toContain(`kernel = "${copy}"\n`);
    expect(cfg).toContain('cmdline = "vfs.root.mountfrom=ufs:/dev/gpt/rootfs,boot_verbose=YES"\n');
    expect(cfg).toContain(`"format=raw, vdev=xvdb, access=ro, devtype=disk, target=${join(dir, 'fbxen-cd.iso')}",`);
    expect(cfg).not.toMatch(/serial|devtype=cdrom|ramdisk/);

    // The domain the fake xl made was a PVH one with that kernel (its `xl list -l` record).
    const calls = xlCalls(h);
    expect(calls).toContainEqual(['create', '-c', join(dir, 'xl.cfg')]);
    expect(domains(h)).toEqual([]);

    expect(runJson(h, 'fbxen-pvh', 'run-p')).toMatchObject({
      type: 'pvh',
      outcome: 'verified',
      kernel: { path: copy, from: build.kernel, source: 'build.json pvhKernel', sha256: build.sha256, ident: 'GENERIC', freebsdVersion: 1403000, pvhEntry: '0x2a0030', xenhvm: true, arch: 'amd64', cmdline: 'vfs.root.mountfrom=ufs:/dev/gpt/rootfs,boot_verbose=YES' },
    });

    // Verdicts on the derived PVH bundle with the host's record of the boot type.
    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { results: { id: string; verdict: string; evidence: string[] }[] };
    const v = Object.fromEntries(report.results.map((x) => [x.id, x]));
    expect(v['xen-guest']!.verdict).toBe('pass');
    expect(v['vector-callback']!.verdict).toBe('pass');
    expect(v['vector-callback']!.evidence.join('\n')).toMatch(/implicit under PVH/);
    expect(v.cdrom!.verdict).toBe('skip');
    expect(v['generic-xenhvm']!.verdict).toBe('pass');
    // The vif the config gave came up as xn0 with its MAC; no round trip here (the fake bridge has no address).
    expect(v.netfront!.verdict).toBe('inconclusive');
    expect(v.netfront!.evidence.join('\n')).toMatch(/xn0/);

    const printed = await fbxen(['config', 'xl', '--type', 'pvh', '--image', build.image, '--name', 'fbxen-pvh', '--artifacts', h.artifacts, '--run-id', 'run-p', '--kernel-env', 'boot_verbose=YES'], h);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe(cfg);

    // fbxen verify --domain reads run.json's type too: the same verdicts.
    const verified = await fbxen(['verify', '--domain', 'fbxen-pvh', '--artifacts', h.artifacts], h);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/cdrom +SKIP/);
  });

  it('--kernel FILE: a kernel the user built boots with the image userland; its ident and sha256 go into run.json', async () => {
    const h = makeHost();
    const build = makePvhBuild(h);
    const mine = userKernel(h, 'mykernel', ['-DIDENT="XENDEBUG"', '-DVERSION="1500023"']);
    await writePvhGuest(h, 'run-k', 'fbxen-mine');
    const r = await fbxen(['boot', '--type', 'pvh', '--kernel', mine, '--image', build.image, '--name', 'fbxen-mine', '--artifacts', h.artifacts, '--run-id', 'run-k', '--verify'], h);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const copy = join(runDir(h, 'fbxen-mine', 'run-k'), 'kernel');
    expect(sha256(copy)).toBe(sha256(mine));
    expect(runJson(h, 'fbxen-mine', 'run-k')).toMatchObject({ type: 'pvh', kernel: { from: mine, source: '--kernel', ident: 'XENDEBUG', freebsdVersion: 1500023, sha256: sha256(mine) } });
    expect(readFileSync(join(runDir(h, 'fbxen-mine', 'run-k'), 'xl.cfg'), 'utf8')).toContain(`kernel = "${copy}"`);
  });

  it('refusals before anything runs: a kernel without the PVH note names 12.0-RELEASE; --kernel with hvm is a usage error; a comma in --kernel-env; xapi', async () => {
    const h = makeHost();
    const build = makePvhBuild(h);
    const old = userKernel(h, 'old', ['NO_PVH', '-DVERSION="1104000"']);
    const base = ['boot', '--image', build.image, '--name', 'fbxen-no', '--artifacts', h.artifacts, '--run-id', 'run-n'];

    const noNote = await fbxen([...base, '--type', 'pvh', '--kernel', old], h);
    expect(noNote.code).toBe(3);
    expect(noNote.stderr).toContain('__FreeBSD_version 1104000) has no Xen PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY); FreeBSD 12.0-RELEASE amd64 is the first release that has one');

    const hvm = await fbxen([...base, '--kernel', old], h);
    expect(hvm.code).toBe(2);
    expect(hvm.stderr).toContain('add --type pvh');

    const comma = await fbxen([...base, '--type', 'pvh', '--kernel-env', 'kern.hz=100,200'], h);
    expect(comma.code).toBe(3);
    expect(comma.stderr).toContain('a comma: FreeBSD splits the PVH cmdline on commas');

    // No emulated IDE under PVH: an empty CD drive means nothing (blkfront drops cdrom vbds).
    const empty = await fbxen([...base, '--type', 'pvh', '--empty-cdrom'], h);
    expect(empty.code).toBe(3);
    expect(empty.stderr).toContain('an empty CD drive has no PVH meaning');

    // No build.json kernel: the image was built before fbxen kept kernels.
    writeFileSync(join(build.image, '..', 'build.json'), JSON.stringify({ name: 'x' }));
    const none = await fbxen([...base, '--type', 'pvh'], h);
    expect(none.code).toBe(3);
    expect(none.stderr).toContain('has no pvhKernel');

    expect(xlCalls(h)).toEqual([]);
    expect(existsSync(h.artifacts)).toBe(false);

    // XAPI: the driver's refusal (docs/xapi.md) reaches the user with exit 3.
    const env = { ...h.env, FBXEN_XAPI_URL: 'https://xapi.invalid', FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: 'secret' };
    const xapi = await fbxen([...base, '--toolstack', 'xapi', '--type', 'pvh', '--dry-run'], { ...h, env });
    expect(xapi.code).toBe(3);
    expect(xapi.stderr).toContain('--toolstack xapi cannot create PVH guests'); // the flow asks the driver's capabilities first
  });

  it("fbxen.yaml's boot: section takes type, kernel and kernel-env (a list or one entry); flags win", async () => {
    const h = makeHost();
    const build = makePvhBuild(h);
    const mine = userKernel(h, 'yaml-kernel', ['-DIDENT="FROMYAML"']);
    const cfg = join(h.dir, 'fbxen.yaml');
    writeFileSync(cfg, `boot:\n  image: ${build.image}\n  type: pvh\n  kernel: ${mine}\n  kernel-env:\n    - boot_verbose=YES\n    - kern.hz=100\n  artifacts: ${h.artifacts}\n`);
    const r = await fbxen(['--config', cfg, 'config', 'xl', '--run-id', 'y1'], h);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('cmdline = "vfs.root.mountfrom=ufs:/dev/gpt/rootfs,boot_verbose=YES,kern.hz=100"\n');
    writeFileSync(cfg, `boot:\n  image: ${build.image}\n  type: pvh\n  kernel-env: boot_single=YES\n  artifacts: ${h.artifacts}\n`);
    const one = await fbxen(['--config', cfg, 'config', 'xl', '--run-id', 'y2'], h);
    expect(one.code).toBe(0);
    expect(one.stdout).toContain('cmdline = "vfs.root.mountfrom=ufs:/dev/gpt/rootfs,boot_single=YES"\n');
    const hvm = await fbxen(['--config', cfg, 'config', 'xl', '--type', 'hvm', '--run-id', 'y3'], h);
    expect(hvm.code).toBe(2); // the flag's hvm against the file's kernel-env: a usage error
    expect(hvm.stderr).toContain('add --type pvh');
  });

  it('a FIFO given as the kernel, or lying as build.json, is refused at once (an open would wait for a writer)', { timeout: 30_000 }, async () => {
    const h = makeHost();
    const build = makePvhBuild(h);
    const fifo = join(h.dir, 'kernel.fifo');
    execFileSync('mkfifo', [fifo]);
    const base = ['boot', '--dry-run', '--type', 'pvh', '--image', build.image, '--artifacts', h.artifacts, '--run-id', 'f1'];
    const asKernel = await fbxen([...base, '--kernel', fifo], h);
    expect(asKernel.code).toBe(3);
    expect(asKernel.stderr).toContain(`the kernel ${fifo} is not a regular file`);
    const buildJson = join(build.image, '..', 'build.json');
    execFileSync('rm', [buildJson]);
    execFileSync('mkfifo', [buildJson]);
    const asBuildJson = await fbxen(base, h);
    expect(asBuildJson.code).toBe(3);
    expect(asBuildJson.stderr).toContain(`${buildJson} is not a regular file`);
  });

  it('Ctrl-C while the PVH guest boots destroys the domain; the run keeps xl.cfg and the kernel copy', async () => {
    const h = makeHost();
    const build = makePvhBuild(h);
    await writePvhGuest(h, 'run-c', 'fbxen-int', { frame: false, tail: ['@hang'] });
    const dir = runDir(h, 'fbxen-int', 'run-c');
    const r = await fbxen(['boot', '--type', 'pvh', '--image', build.image, '--name', 'fbxen-int', '--artifacts', h.artifacts, '--run-id', 'run-c', '--timeout', '60'], h, async () => {
      await until('the PVH domain to run and print', () => domains(h).some((d) => d.state === 'r') && existsSync(join(dir, 'console.log')) && readFileSync(join(dir, 'console.log'), 'utf8').includes('Trying to mount root'));
      process.kill(process.pid, 'SIGINT');
    });
    expect(r.code).toBe(130);
    expect(domains(h)).toEqual([]);
    expect(xlCalls(h)).toContainEqual(['destroy', '1']);
    expect(runJson(h, 'fbxen-int', 'run-c')).toMatchObject({ outcome: 'interrupted', type: 'pvh' });
    expect(existsSync(join(dir, 'xl.cfg'))).toBe(true);
    expect(existsSync(join(dir, 'kernel'))).toBe(true);
  });

  it('--dry-run shows the whole plan: the kernel, its facts and copy, the cmdline, the CD as xvdb, the xl.cfg (golden)', async () => {
    const h = makeHost();
    const build = makePvhBuild(h);
    const r = await fbxen(['boot', '--type', 'pvh', '--dry-run', '--image', build.image, '--name', 'fbxen-plan', '--artifacts', h.artifacts, '--run-id', '20261123T220000Z-beef', '--kernel-env', 'boot_verbose=YES'], h);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    // The gcc-built kernel's sha256 depends on the toolchain: the golden names it by its place.
    const plan = r.stdout.split(h.dir).join('<TMP>').split(build.sha256).join('<SHA256>');
    await expect(plan).toMatchFileSnapshot('../../fixtures/golden/plans/boot-xl-pvh-image-kernel.txt');
    expect(existsSync(h.artifacts)).toBe(false);
    expect(xlCalls(h)).toEqual([]);
  });
});
