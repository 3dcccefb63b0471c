/**
 * The guest collector end to end: POSIX checks (sh -n, dash -n, shellcheck), then runs under dash with
 * SIMULATED FreeBSD commands (test/support/verify/standins) replaying fixture bundles; the bundle it
 * writes (tar for ssh, console frame for boot) is fed to the host analyser in the same test.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundleFromTarBytes, encodeConsoleFrame, extractBundleFromConsole, runProbes, type Bundle } from '../../src/core/verify/index.js';
import { startRoundTripListener, type RoundTripListener } from '../../src/core/net/roundtrip.js';
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
      expect(bundle.index.map((e) => e.name)).toEqual(['uname', 'freebsd-version', 'sysctl', 'conftxt', 'dmesg-boot', 'dmesg', 'vmstat-ia.0', 'load', 'vmstat-ia.1', 'camcontrol-devlist', 'cdrom', 'flush', 'cpuid-xen', 'ifconfig', 'net-sysctl', 'kenv-net', 'kldstat', 'net-rt']);
      expect(verdicts(bundle)).toEqual(expected(name));
    });
  }

  it.concurrent('runs the same under posh (a strict POSIX shell): same sections, same verdicts', async () => {
    const run = await runCollector({ bundleDir: join(FIXTURES, '13.2-healthy-derived'), cd: { run: 'r-posh' } }, ['--frame', '--run', 'r-posh', '--phase', 'boot'], 'posh');
    expect(run.code).toBe(0);
    const got = await extractBundleFromConsole(run.stdout.toString('utf8'), { run: 'r-posh' });
    expect(got.status).toBe('complete');
    if (got.status !== 'complete') return;
    // 13.2-healthy has no network sections: the stand-ins of ifconfig and kldstat find nothing (1), the
    // network OIDs are unknown (1); net-rt says it was not arranged (0)
    expect(got.bundle.index.filter((e) => e.status !== 0).map((e) => e.name)).toEqual(['sysctl', 'cpuid-xen', 'ifconfig', 'net-sysctl', 'kenv-net', 'kldstat']);
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
    // 5 s, not 1: the limit applies to every section, and on a loaded 2-core machine the stand-ins of
    // vmstat and sysctl alone took over 1 s (pv-timer then came out inconclusive for a reason not tested here).
    const run = await runCollector({ bundleDir: join(FIXTURES, '13.2-healthy-derived'), hang: ['camcontrol'] }, ['--tar', '--section-timeout', '5']);
    expect(run.code).toBe(0);
    expect(run.ms).toBeLessThan(60_000); // 5 s limit + the usual ~3 s, with room for a loaded machine
    const bundle = await bundleFromTarBytes(run.stdout, 'tar');
    expect(bundle.index.find((e) => e.name === 'camcontrol-devlist')?.status).toBe(124);
    expect(bundle.sections.get('camcontrol-devlist')).toContain('stopped after 5s');
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

describe('netfront round trip: the collector under dash, a STUB nc (test/probes/stubs/nc), the real host listener on 127.0.0.1', () => {
  const NC_STUB = join(import.meta.dirname, '../probes/stubs');
  const MAC = '00:16:3e:5a:01:02';
  const netfront = (b: Bundle, opts: Parameters<typeof runProbes>[1]) => runProbes(b, opts).results.find((r) => r.id === 'netfront')!;

  async function guestRun(opts: { files?: RoundTripListener; env?: Record<string, string>; fixture?: string }) {
    const guest = await makeGuest({ bundleDir: join(FIXTURES, opts.fixture ?? '13.2-netfront-healthy-derived'), cd: { run: 'r-net' } });
    try {
      if (opts.files) {
        const f = opts.files.runFiles();
        await writeFile(join(guest.dir, 'cd/fbxen/net'), f.net);
        await writeFile(join(guest.dir, 'cd/fbxen/net.bin'), f.netBin);
      }
      const run = await execTool('dash', [COLLECTOR, '--tar', '--run', 'r-net', '--section-timeout', '30'], { ...guest.env, PATH: `${NC_STUB}:${guest.env.PATH}`, ...opts.env });
      expect(run.code).toBe(0);
      return await bundleFromTarBytes(run.stdout, 'tar');
    } finally {
      await guest.dispose();
    }
  }
  const withListener = async <T>(fn: (l: RoundTripListener) => Promise<T>) => {
    const l = await startRoundTripListener({ address: '127.0.0.1', payloadBytes: 256 * 1024 });
    try {
      return await fn(l);
    } finally {
      await l.close();
    }
  };
  const known = (l: RoundTripListener) => ({ net: { source: 'test run record', vifs: [{ mac: MAC, devid: 0 }], roundTrip: l.record() } });

  it.concurrent('byte for byte both ways through xn0: pass, with the host check and the guest\'s sha256 in the evidence', async () => {
    await withListener(async (l) => {
      const b = await guestRun({ files: l });
      const rt = b.sections.get('net-rt')!;
      expect(rt).toContain(`config host=127.0.0.1 up=${l.upPort} down=${l.downPort} bytes=262144`);
      expect(rt).toMatch(/^up-status 0$/m);
      expect(rt).toMatch(/^down-bytes 262144$/m);
      expect(b.meta.collector).toBe('fbxen-collect 1.3.0');
      const r = netfront(b, known(l));
      expect(r.verdict).toBe('pass');
      expect(r.evidence.join('\n')).toContain('round trip through xn0 to 127.0.0.1: byte for byte both ways');
      expect(r.evidence.join('\n')).toMatch(/upload: 262144 bytes from 127\.0\.0\.1:\d+ identical to the payload \(host check\); first byte \d+ ms after the connection/);
    });
  });

  it.concurrent('one byte changed on the way up (stub fault): fail at that offset', async () => {
    await withListener(async (l) => {
      const b = await guestRun({ files: l, env: { FBXEN_STUB_NC_CORRUPT_UP: '70000' } });
      const r = netfront(b, known(l));
      expect(r.verdict).toBe('fail');
      expect(r.evidence[0]).toMatch(/^upload from 127\.0\.0\.1:\d+: corrupt: byte 70000 differs .*first differing byte at offset 70000/);
      expect(r.hint).toMatch(/-txcsum -tso -lro/);
    });
  });

  it.concurrent('bytes lost on the way down (stub fault): fail naming the sizes', async () => {
    await withListener(async (l) => {
      const b = await guestRun({ files: l, env: { FBXEN_STUB_NC_DROP_DOWN: '100000' } });
      expect(b.sections.get('net-rt')).toMatch(/^down-bytes 100000$/m);
      const r = netfront(b, known(l));
      expect(r.verdict).toBe('fail');
      expect(r.evidence[0]).toMatch(/^download: the guest received 100000 bytes with sha256 [0-9a-f]{16}\.\.\., the host sent 262144 bytes .*\(bytes lost\)$/);
    });
  });

  it.concurrent('the listener gone before the guest connects: inconclusive with the guest\'s nc status, never pass or fail', async () => {
    const l = await startRoundTripListener({ address: '127.0.0.1', payloadBytes: 4096 });
    await l.close();
    const b = await guestRun({ files: l });
    expect(b.sections.get('net-rt')).toMatch(/^up-status 1$/m);
    const r = netfront(b, known(l));
    expect(r.verdict).toBe('inconclusive');
    expect(r.evidence[0]).toMatch(/^no upload reached the host's listener 127\.0\.0\.1:\d+ \(the guest's nc exited 1\)/);
  });

  it.concurrent('--net-dir (a collector started by hand or over ssh) under posh: the same round trip, byte for byte', async () => {
    await withListener(async (l) => {
      const guest = await makeGuest({ bundleDir: join(FIXTURES, '13.2-netfront-healthy-derived') });
      try {
        const dir = join(guest.dir, 'net-files');
        await mkdir(dir);
        const f = l.runFiles();
        await writeFile(join(dir, 'net'), f.net);
        await writeFile(join(dir, 'net.bin'), f.netBin);
        const run = await execTool('posh', [COLLECTOR, '--tar', '--run', 'r-posh-net', '--section-timeout', '30', '--net-dir', dir], { ...guest.env, PATH: `${NC_STUB}:${guest.env.PATH}` });
        expect(run.code).toBe(0);
        const b = await bundleFromTarBytes(run.stdout, 'tar');
        expect(netfront(b, known(l)).verdict).toBe('pass');
        // a --net-dir without the files says so, and names the directory
        const none = await execTool('posh', [COLLECTOR, '--tar', '--run', 'r-posh-net', '--section-timeout', '30', '--net-dir', join(guest.dir, 'missing')], { ...guest.env, PATH: `${NC_STUB}:${guest.env.PATH}` });
        const nb = await bundleFromTarBytes(none.stdout, 'tar');
        expect(nb.sections.get('net-rt')).toBe(`not-arranged no readable net and net.bin in --net-dir ${join(guest.dir, 'missing')}\n`);
        expect(netfront(nb, known(l)).verdict).toBe('inconclusive');
      } finally {
        await guest.dispose();
      }
    });
  });

  it.concurrent('no /fbxen/net on the CD: the section says the round trip was not arranged, the probe is inconclusive', async () => {
    const b = await guestRun({});
    expect(b.sections.get('net-rt')).toBe('not-arranged no /fbxen/net on the fbxen medium and no --net-dir (this run arranged no round trip)\n');
    const r = netfront(b, { net: { source: 'test', vifs: [{ mac: MAC }] } });
    expect(r.verdict).toBe('inconclusive');
    expect(r.evidence[0]).toContain('the round trip was not run: no /fbxen/net on the fbxen medium');
  });

  it.concurrent('the network sections replay the guest: xn0 options, forwarding, pf, the tunables', async () => {
    const b = await guestRun({ fixture: '14.1-netfront-offload-forwarding-derived' });
    expect(b.sections.get('ifconfig')).toContain('\toptions=503<RXCSUM,TXCSUM,TSO4,LRO>');
    expect(b.sections.get('net-sysctl')).toContain('net.inet.ip.forwarding: 1');
    expect(b.sections.get('kenv-net')).toBe('kenv: unable to get hw.xen.disable_pv_nics\nkenv: unable to get hw.xn.enable_lro\nkenv: unable to get hw.xn.num_queues\nkenv: unable to get dev.netmap.admode\n');
    expect(b.sections.get('kldstat')).toContain('pf.ko');
    const r = netfront(b, {});
    expect(r.verdict).toBe('inconclusive'); // no round trip here, but the warning is given all the same
    expect(r.evidence.join('\n')).toContain('warning: xn0 offloads TXCSUM, TSO4');
  });
});
