/**
 * The TEST-ONLY stand-in guest (FBXEN_TEST_STANDIN_GUEST, src/core/boot/standin-guest.ts) through the real
 * CLI entry and the fake xl (a SIMULATION of xl 4.17): the refusals that keep it from being set by
 * accident, the --dry-run plan and the stderr warning, and a boot whose xl.cfg, run.json and report say
 * "stand-in guest, test-only". The guest's console replays a fixture bundle with the real rc.d script and
 * collector (the fake's @collect); real Xen runs it in test/lab/real-xl-evidence.test.ts.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fbxen, makeHost, makeImage, xlCalls, type Host } from './harness.js';

const FIXTURE = 'fixtures/probes/13.2-healthy-derived';
const sha256 = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

/** A stand-in description with a kernel and a ramdisk (any bytes: the fake xl only opens the kernel). */
function standin(h: Host, over: Record<string, unknown> = {}): string {
  writeFileSync(join(h.dir, 'vmlinuz'), Buffer.from('stand-in kernel bytes'));
  writeFileSync(join(h.dir, 'initrd.gz'), Buffer.from('stand-in ramdisk bytes'));
  const spec = join(h.dir, 'standin.json');
  writeFileSync(spec, JSON.stringify({ kernel: 'vmlinuz', ramdisk: 'initrd.gz', cmdline: 'console=hvc0 quiet', ...over }));
  return spec;
}

describe('FBXEN_TEST_STANDIN_GUEST: the test-only stand-in guest (fake xl, SIMULATION)', () => {
  it('refused without --type pvh, with --kernel or --kernel-env, for xapi, and for a bad description: nothing runs', async () => {
    const h = makeHost();
    const image = makeImage(h, 'freebsd-13.2-RELEASE-amd64.raw');
    h.env.FBXEN_TEST_STANDIN_GUEST = standin(h);
    const base = ['boot', '--image', image, '--name', 'fbxen-si', '--artifacts', h.artifacts, '--run-id', 'run-s'];

    const hvm = await fbxen(base, h);
    expect(hvm.code).toBe(2);
    expect(hvm.stderr).toContain('FBXEN_TEST_STANDIN_GUEST is set, but the boot is not --type pvh');
    expect(hvm.stderr).toContain('test-only variable');

    const kernel = await fbxen([...base, '--type', 'pvh', '--kernel', join(h.dir, 'vmlinuz')], h);
    expect(kernel.code).toBe(2);
    expect(kernel.stderr).toContain('--kernel names another kernel');

    const env = await fbxen([...base, '--type', 'pvh', '--kernel-env', 'boot_verbose=YES'], h);
    expect(env.code).toBe(2);
    expect(env.stderr).toContain('--kernel-env has no meaning for it');

    const xenv = { ...h.env, FBXEN_XAPI_URL: 'https://xapi.invalid', FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: 'secret' };
    const xapi = await fbxen([...base, '--toolstack', 'xapi', '--type', 'pvh', '--dry-run'], { ...h, env: xenv });
    expect(xapi.code).toBe(2);
    expect(xapi.stderr).toContain('--toolstack xapi cannot boot it');

    h.env.FBXEN_TEST_STANDIN_GUEST = standin(h, { cmdline: 'console="hvc0"' });
    const quoted = await fbxen([...base, '--type', 'pvh'], h);
    expect(quoted.code).toBe(3);
    expect(quoted.stderr).toContain('cmdline: no quotes or backslashes');

    h.env.FBXEN_TEST_STANDIN_GUEST = standin(h, { ramdisk: 'missing.gz' });
    const missing = await fbxen([...base, '--type', 'pvh'], h);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/missing\.gz \(named in .*standin\.json\) is not a file/);

    h.env.FBXEN_TEST_STANDIN_GUEST = standin(h, { extra: 1 });
    const extra = await fbxen([...base, '--type', 'pvh'], h);
    expect(extra.code).toBe(3);
    expect(extra.stderr).toContain('is not a stand-in description');

    writeFileSync(join(h.dir, 'big.json'), ' '.repeat(64 * 1024 + 1));
    h.env.FBXEN_TEST_STANDIN_GUEST = join(h.dir, 'big.json');
    const big = await fbxen([...base, '--type', 'pvh'], h);
    expect(big.code).toBe(3);
    expect(big.stderr).toContain('is larger than 65536 bytes');

    expect(xlCalls(h)).toEqual([]);
    expect(existsSync(h.artifacts)).toBe(false);
  });

  it('--dry-run: a loud warning on stderr and the plan labels the stand-in, its kernel, ramdisk and cmdline, and the xl.cfg', async () => {
    const h = makeHost();
    const image = makeImage(h, 'freebsd-13.2-RELEASE-amd64.raw');
    h.env.FBXEN_TEST_STANDIN_GUEST = standin(h);
    const r = await fbxen(['boot', '--type', 'pvh', '--image', image, '--name', 'fbxen-si', '--artifacts', h.artifacts, '--run-id', 'run-d', '--dry-run'], h);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('FBXEN_TEST_STANDIN_GUEST is set: booting the TEST-ONLY stand-in guest');
    const dir = join(h.artifacts, 'fbxen-si', 'run-d');
    expect(r.stdout).toContain(`STAND-IN   stand-in guest, test-only (FBXEN_TEST_STANDIN_GUEST=${join(h.dir, 'standin.json')}): NOT FreeBSD`);
    expect(r.stdout).toContain(`ramdisk    ${join(h.dir, 'initrd.gz')} (sha256 ${sha256(join(h.dir, 'initrd.gz'))}); copied to ${join(dir, 'standin-ramdisk')}`);
    expect(r.stdout).toContain('cmdline    console=hvc0 quiet');
    expect(r.stdout).toContain('# Generated by fbxen: TEST-ONLY STAND-IN GUEST');
    expect(r.stdout).toContain(`ramdisk = "${join(dir, 'standin-ramdisk')}"`);
    expect(r.stdout).not.toContain('vfs.root.mountfrom');
    expect(existsSync(h.artifacts)).toBe(false);
  });

  it('a boot with --verify: xl.cfg boots the run\'s copies of kernel and ramdisk, run.json and the report say stand-in guest, test-only', async () => {
    const h = makeHost();
    const image = makeImage(h, 'freebsd-13.2-RELEASE-amd64.raw');
    h.env.FBXEN_TEST_STANDIN_GUEST = standin(h);
    writeFileSync(join(h.state, 'guest.txt'), [`@collect ${FIXTURE}`, '@sleep 50', ''].join('\n'));
    const r = await fbxen(['boot', '--type', 'pvh', '--image', image, '--name', 'fbxen-si', '--artifacts', h.artifacts, '--run-id', 'run-v', '--timeout', '60', '--verify'], h);
    const dir = join(h.artifacts, 'fbxen-si', 'run-v');
    expect(r.code, r.stderr).toBe(0);
    for (const [copy, from] of [['standin-kernel', 'vmlinuz'], ['standin-ramdisk', 'initrd.gz']] as const) {
      expect(sha256(join(dir, copy))).toBe(sha256(join(h.dir, from)));
      expect(statSync(join(dir, copy)).mode & 0o777).toBe(0o444);
    }
    const cfg = readFileSync(join(dir, 'xl.cfg'), 'utf8');
    expect(cfg).toContain(`kernel = "${join(dir, 'standin-kernel')}"\nramdisk = "${join(dir, 'standin-ramdisk')}"\ncmdline = "console=hvc0 quiet"\n`);
    const run = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as Record<string, unknown>;
    expect(run).toMatchObject({ type: 'pvh', outcome: 'verified', standin: { label: 'stand-in guest, test-only', cmdline: 'console=hvc0 quiet', ramdisk: { path: join(dir, 'standin-ramdisk') } } });
    expect(run).not.toHaveProperty('kernel');
    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { standin?: string; results: { id: string; verdict: string }[] };
    expect(report.standin).toBe('stand-in guest, test-only');
    expect(Object.fromEntries(report.results.map((x) => [x.id, x.verdict]))).toMatchObject({ 'xen-guest': 'pass', 'generic-xenhvm': 'pass', 'pv-timer': 'pass', netfront: 'inconclusive' });
    expect(readFileSync(join(dir, 'report.junit.xml'), 'utf8')).toContain('(stand-in guest, test-only)');
    expect(r.stdout + r.stderr).toContain('STAND-IN GUEST, TEST-ONLY');
  }, 120_000);
  it('"vif": true: the plan and xl.cfg give it fbxen\'s vif, and netfront weighs that vif (a bundle without xn0 fails it); without, no vif', async () => {
    const h = makeHost();
    const image = makeImage(h, 'freebsd-13.2-RELEASE-amd64.raw');
    h.env.FBXEN_TEST_STANDIN_GUEST = standin(h);
    const base = ['boot', '--type', 'pvh', '--image', image, '--name', 'fbxen-si', '--artifacts', h.artifacts];
    const none = await fbxen([...base, '--run-id', 'run-n', '--dry-run'], h);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toContain('vif        none (the replayed bundle has no xn0 to answer for one)');
    expect(none.stdout).not.toMatch(/^vif = /m);

    h.env.FBXEN_TEST_STANDIN_GUEST = standin(h, { vif: true });
    const dry = await fbxen([...base, '--run-id', 'run-w', '--dry-run'], h);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain("vif        fbxen's vif on the bridge, as for FreeBSD");
    expect(dry.stdout).toMatch(/^vif = \[ "mac=00:16:3e:[0-9a-f:]{8},bridge=xenbr0,type=vif" \]$/m);

    writeFileSync(join(h.state, 'guest.txt'), [`@collect ${FIXTURE}`, '@sleep 50', ''].join('\n'));
    const r = await fbxen([...base, '--run-id', 'run-v', '--timeout', '60', '--verify'], h);
    const dir = join(h.artifacts, 'fbxen-si', 'run-v');
    expect(readFileSync(join(dir, 'xl.cfg'), 'utf8')).toMatch(/^vif = \[ "mac=00:16:3e:[0-9a-f:]{8},bridge=xenbr0,type=vif" \]$/m);
    expect(JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8'))).toMatchObject({ standin: { vif: true } });
    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { results: { id: string; verdict: string; evidence: string[] }[] };
    const netfront = report.results.find((x) => x.id === 'netfront')!;
    // the replayed 13.2-healthy bundle has no xn0, and the run gave one vif: weighed, it is missing
    expect(netfront.verdict, JSON.stringify(netfront)).toBe('fail');
    expect(netfront.evidence.join('\n')).toMatch(/^vif 0 \(devid 0\) 00:16:3e:[0-9a-f:]{8} on xenbr0 \(fbxen boot run run-v .*\) has no xn interface/m);
    expect(r.code).toBe(1);
  }, 120_000);
});
