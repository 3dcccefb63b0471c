/**
 * The guest collector end to end: POSIX checks (sh -n, dash -n, shellcheck), then runs under dash with
 * SIMULATED FreeBSD commands (test/support/verify/standins) replaying fixture bundles; the bundle it
 * writes (tar for ssh, console frame for boot) is fed to the host analyser in the same test.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundleFromTarBytes, encodeConsoleFrame, extractBundleFromConsole, runProbes, type Bundle } from '../../src/core/verify/index.js';
import { COLLECTOR, RC_SCRIPT, execTool, makeGuest, runCollector, runRcScript } from '../support/verify/collector-harness.js';
import { FIXTURES, listFixtureCases } from '../support/verify/fixtures.js';

const verdicts = (b: Bundle) => Object.fromEntries(runProbes(b).results.map((r) => [r.id, r.verdict]));
const expected = (name: string) => listFixtureCases().find((c) => c.name === name)!.verdicts;

describe('guest scripts are POSIX sh', () => {
  for (const script of [COLLECTOR, RC_SCRIPT]) {
    it(`${script.split('/guest/')[1]}: sh -n, dash -n, shellcheck -s sh`, () => {
      execFileSync('sh', ['-n', script]);
      execFileSync('dash', ['-n', script]);
      // shellcheck exits non-zero on any finding (default severity: style and above)
      execFileSync('shellcheck', ['-s', 'sh', script]);
    });
  }

  it('uses no bash-only syntax (checkbashisms-like spot checks)', async () => {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(COLLECTOR, 'utf8');
    for (const bashism of [/\[\[/, /\bfunction\s+\w+/, /\$\{[a-z_]+\/\//, /<<</, /\blocal\s/, /\bsource\s/]) expect(text).not.toMatch(bashism);
  });
});

describe('collector → host analyser', () => {
  // Fixtures whose verdicts the simulation reproduces in full (the cpuid-xen section needs /dev/cpuctl0).
  const replayed = ['13.2-healthy-derived', '10.0-healthy-derived', '11.1-xl-real-dmesg', '12.4-no-pv-ipi-derived', '13.2-legacy-callback-derived', '13.2-disk-no-features-derived', '13.2-cd-unreadable-derived'];
  for (const name of replayed) {
    it.concurrent(`--tar on a guest replaying ${name} gives the fixture's verdicts`, async () => {
      const run = await runCollector({ bundleDir: join(FIXTURES, name), cd: { run: 'r-tar-1' } }, ['--tar', '--run', 'r-tar-1', '--phase', 'manual']);
      expect(run.stderr).toContain('collecting (run r-tar-1, phase manual)');
      expect(run.code).toBe(0);
      const bundle = await bundleFromTarBytes(run.stdout, 'ssh stdout');
      expect(bundle.meta).toMatchObject({ bundle: 'fbxen-bundle/1', run: 'r-tar-1', phase: 'manual' });
      expect(bundle.index.map((e) => e.name)).toEqual(['uname', 'freebsd-version', 'sysctl', 'conftxt', 'dmesg-boot', 'dmesg', 'vmstat-ia.0', 'load', 'vmstat-ia.1', 'camcontrol-devlist', 'cdrom', 'flush', 'cpuid-xen']);
      expect(verdicts(bundle)).toEqual(expected(name));
    });
  }

  it.concurrent('runs the same under posh (a strict POSIX shell): same sections, same verdicts', async () => {
    const run = await runCollector({ bundleDir: join(FIXTURES, '13.2-healthy-derived'), cd: { run: 'r-posh' } }, ['--frame', '--run', 'r-posh', '--phase', 'boot'], 'posh');
    expect(run.code).toBe(0);
    const got = await extractBundleFromConsole(run.stdout.toString('utf8'), { run: 'r-posh' });
    expect(got.status).toBe('complete');
    if (got.status !== 'complete') return;
    expect(got.bundle.index.filter((e) => e.status !== 0).map((e) => e.name)).toEqual(['sysctl', 'cpuid-xen']);
    expect(verdicts(got.bundle)).toEqual(expected('13.2-healthy-derived'));
  });

  it.concurrent('--frame output survives console noise and line loss, and matches the host encoder byte for byte', async () => {
    const run = await runCollector({ bundleDir: join(FIXTURES, '13.2-healthy-derived'), cd: { run: 'r-frame-1' } }, ['--frame', '--run', 'r-frame-1', '--phase', 'boot']);
    expect(run.code).toBe(0);
    const frame = run.stdout.toString('utf8');
    const lines = frame.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^FBXEN1 BEGIN r-frame-1 boot \d+ [0-9a-f]{64}$/);
    const n = Number(lines[0]!.split(' ')[4]);
    expect(lines).toHaveLength(2 * (n + 2));

    // The same payload through the host's reference encoder gives the same text: one grammar.
    const clean = await extractBundleFromConsole(frame, { run: 'r-frame-1' });
    expect(clean.status).toBe('complete');
    const payload = Buffer.from(lines.slice(1, n + 1).map((l) => l.split(' ')[5]).join(''), 'base64');
    expect(encodeConsoleFrame(payload, 'r-frame-1', 'boot')).toBe(frame);

    // Serial console damage: CRLF, escape sequences, kernel lines in between, a lost line in each copy.
    const damaged = lines
      .filter((_l, i) => i !== 3 && i !== n + 2 + 5)
      .map((l, i) => (i % 7 === 0 ? `\x1b[0m${l}\r` : `${l}\r`))
      .flatMap((l, i) => (i % 11 === 0 ? ['xn0: link state changed to UP\r', l] : [l]))
      .join('\n');
    const got = await extractBundleFromConsole(`login: \n${damaged}\nFreeBSD/amd64 (fbxen) (ttyu0)\n`, { run: 'r-frame-1' });
    expect(got.status).toBe('complete');
    if (got.status !== 'complete') return;
    expect(verdicts(got.bundle)).toEqual(expected('13.2-healthy-derived'));
  });

  it.concurrent('a hanging command is stopped after --section-timeout and the other sections still run', async () => {
    const run = await runCollector({ bundleDir: join(FIXTURES, '13.2-healthy-derived'), hang: ['camcontrol'] }, ['--tar', '--section-timeout', '1']);
    expect(run.code).toBe(0);
    expect(run.ms).toBeLessThan(30_000); // 1 s limit + the usual ~3 s, with room for a loaded machine
    const bundle = await bundleFromTarBytes(run.stdout, 'tar');
    expect(bundle.index.find((e) => e.name === 'camcontrol-devlist')?.status).toBe(124);
    expect(bundle.sections.get('camcontrol-devlist')).toContain('stopped after 1s');
    expect(bundle.sections.get('flush')).toContain('write-status 0');
    expect(verdicts(bundle)['pv-timer']).toBe('pass');
  });

  it.concurrent('a hang inside a collector function (mount of the CD) stops only that section, and the CD mount point is cleaned up', async () => {
    const run = await runCollector({ bundleDir: join(FIXTURES, '13.2-healthy-derived'), cd: { run: 'r-hang' }, hang: ['mount'] }, ['--tar', '--section-timeout', '3']);
    expect(run.code).toBe(0);
    const bundle = await bundleFromTarBytes(run.stdout, 'tar');
    expect(bundle.index.find((e) => e.name === 'cdrom')?.status).toBe(124);
    expect(bundle.sections.get('cdrom')).toContain('cd0 read-status 0');
    expect(bundle.index.find((e) => e.name === 'flush')?.status).toBe(0);
    expect(bundle.index.find((e) => e.name === 'cpuid-xen')).toBeDefined();
    const cd = runProbes(bundle).results.find((r) => r.id === 'cdrom')!;
    expect(cd.verdict).toBe('pass'); // the medium read; the mount did not finish
  });

  it.concurrent('a missing command fails only its own section; the probes that need it are not "pass"', async () => {
    const run = await runCollector({ bundleDir: join(FIXTURES, '13.2-healthy-derived'), missing: ['vmstat', 'sysctl'] }, ['--tar']);
    expect(run.code).toBe(0);
    const bundle = await bundleFromTarBytes(run.stdout, 'tar');
    expect(bundle.index.find((e) => e.name === 'vmstat-ia.0')?.status).toBe(127);
    expect(bundle.sections.get('dmesg-boot')).toContain('xen_et0: <Xen PV Clock>');
    const v = verdicts(bundle);
    expect(v['pv-timer']).toBe('inconclusive');
    expect(v['pv-ipi']).toBe('inconclusive');
    expect(v['xen-guest']).toBe('pass'); // from the kernel messages alone
  });

  it.concurrent('rejects a run id that cannot appear in a frame line (exit 2, nothing on stdout)', async () => {
    const run = await runCollector({ bundleDir: join(FIXTURES, '13.2-healthy-derived') }, ['--run', 'has space']);
    expect(run.code).toBe(2);
    expect(run.stdout.length).toBe(0);
    expect(run.stderr).toContain("run id 'has space'");
  });
});

describe('rc.d script', () => {
  it.concurrent('with the fbxen CD: runs the CD\'s collector in frame mode with the CD\'s run id and phase', async () => {
    const run = await runRcScript({ bundleDir: join(FIXTURES, '13.2-healthy-derived'), cd: { run: 'nonce-7f3a', phase: 'boot', withCollector: true } }, '/nonexistent/fbxen-collect');
    expect(run.code).toBe(0);
    const text = run.stdout.toString('utf8');
    expect(text).toContain('fbxen: collecting evidence for run nonce-7f3a (boot)');
    const got = await extractBundleFromConsole(text, { run: 'nonce-7f3a' });
    expect(got.status).toBe('complete');
    if (got.status !== 'complete') return;
    expect(got.bundle.meta['run-source']).toBe('cd');
    expect(got.bundle.meta.medium).toBe('/dev/cd0');
    const cd = runProbes(got.bundle).results.find((r) => r.id === 'cdrom')!;
    expect(cd.verdict).toBe('pass');
    expect(cd.evidence.join('\n')).toContain('/fbxen/run = nonce-7f3a (this run)');
  });

  it.concurrent('a CD whose run id could not appear in a frame line: says so and collects nothing', async () => {
    const run = await runRcScript({ bundleDir: join(FIXTURES, '13.2-healthy-derived'), cd: { run: 'bad id; rm -rf /' } });
    expect(run.code).toBe(1);
    expect(run.stdout.toString('utf8')).toBe('fbxen: the fbxen CD holds an invalid run id or phase; not collecting\n');
  });

  it.concurrent('finds the fbxen medium by its ISO 9660 label when it is attached as a disk (XenServer fallback)', async () => {
    const run = await runRcScript({ bundleDir: join(FIXTURES, '13.2-no-cd-derived'), cd: { run: 'nonce-disk', phase: 'boot', withCollector: true, byLabel: true } }, '/nonexistent/fbxen-collect');
    expect(run.code).toBe(0);
    const text = run.stdout.toString('utf8');
    expect(text).toContain('fbxen: collecting evidence for run nonce-disk (boot)');
    const got = await extractBundleFromConsole(text, { run: 'nonce-disk' });
    expect(got.status).toBe('complete');
    if (got.status !== 'complete') return;
    // The CD was attached but came as a disk: meta says where the rc.d script found it, and no cdN is a failure.
    expect(got.bundle.meta.medium).toMatch(/iso9660-FBXEN$/);
    const cd = runProbes(got.bundle).results.find((r) => r.id === 'cdrom')!;
    expect(cd.verdict).toBe('fail');
    expect(cd.evidence.join('\n')).toContain('not on a cdN (the CD came as a disk)');
  });

  it.concurrent('the collector keeps FBXEN_MEDIUM in meta only as a plain path (it goes into a key=value line)', async () => {
    for (const [value, kept] of [['/dev/cd1', '/dev/cd1'], ['/dev/cd0\nrun=other', undefined], ['', undefined]] as const) {
      const guest = await makeGuest({ bundleDir: join(FIXTURES, '13.2-healthy-derived') });
      try {
        const run = await execTool('dash', [COLLECTOR, '--tar', '--run', 'm1', '--section-timeout', '5'], { ...guest.env, FBXEN_MEDIUM: value });
        expect(run.code).toBe(0);
        const bundle = await bundleFromTarBytes(run.stdout, 'tar');
        expect({ value, medium: bundle.meta.medium, run: bundle.meta.run }).toEqual({ value, medium: kept, run: 'm1' });
      } finally {
        await guest.dispose();
      }
    }
  });

  it.concurrent('without the fbxen CD: does nothing', async () => {
    const run = await runRcScript({ bundleDir: join(FIXTURES, '13.2-no-cd-derived') });
    expect(run.code).toBe(0);
    expect(run.stdout.toString('utf8')).toBe('');
  });
});
