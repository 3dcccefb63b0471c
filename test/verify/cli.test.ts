/**
 * `fbxen verify` as a user runs it (in-process through src/cli.ts run(): real commander, real execa
 * runner): each evidence source, --json, --junit (parsed back with xml2js), exit codes, golden output.
 * --ssh uses a SIMULATED ssh (test/support/verify/fake-ssh) that runs the streamed collector locally
 * under dash with the FreeBSD stand-ins.
 */
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStringPromise } from 'xml2js';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { run } from '../../src/cli.js';
import { encodeConsoleFrame, packBundle, readBundle, sshArgs } from '../../src/core/verify/index.js';
import { STANDINS } from '../support/verify/collector-harness.js';
import { FIXTURES } from '../support/verify/fixtures.js';

const FAKE_SSH = join(import.meta.dirname, '../support/verify/fake-ssh');

let out = '';
let err = '';
beforeEach(() => {
  out = '';
  err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((out += chunk.toString()), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((err += chunk.toString()), true));
});
afterEach(() => vi.restoreAllMocks());

async function fbxen(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const code = await run(args, { ...process.env, CI: 'true', NO_COLOR: '1', ...env });
  return { code, stdout: out, stderr: err };
}

const tmp = () => mkdtemp(join(tmpdir(), 'fbxen-verify-'));

describe('fbxen verify --bundle', () => {
  it('healthy 13.2 guest: exit 0 and a table of verdicts (golden)', async () => {
    const r = await fbxen(['verify', '--quiet', '--bundle', join(FIXTURES, '13.2-healthy-derived')]);
    expect(r.code).toBe(0);
    await expect(r.stdout.replace(FIXTURES, '<fixtures>')).toMatchFileSnapshot('__golden__/13.2-healthy.txt');
  });

  it('--json: one document with run, release, arch and per-probe {id, verdict, evidence, hint} (golden)', async () => {
    const r = await fbxen(['--json', '--quiet', 'verify', '--bundle', join(FIXTURES, '13.2-legacy-callback-derived')]);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as { run: string; release: string; arch: string; results: { id: string; verdict: string; evidence: string[]; hint: string | null }[] };
    expect(doc).toMatchObject({ run: 'fx-13.2-legacy-callback-derived', release: '13.2-RELEASE', arch: 'amd64' });
    expect(doc.results.find((x) => x.id === 'vector-callback')).toMatchObject({ verdict: 'fail', hint: expect.stringContaining('vector callback') });
    await expect(r.stdout).toMatchFileSnapshot('__golden__/13.2-legacy-callback.json');
    expect(r.stderr).toContain('verification failed: vector-callback, pv-timer, pv-ipi');
  });

  it('--junit: a testcase per probe; fail is a failure, skip and inconclusive are skipped (checked with xml2js)', async () => {
    const dir = await tmp();
    const junit = join(dir, 'reports/verify.xml');
    const r = await fbxen(['verify', '--quiet', '--bundle', join(FIXTURES, '14.1-no-ipi-no-cpuid-derived'), '--junit', junit]);
    expect(r.code).toBe(0); // inconclusive is not a failure
    const xml = await readFile(junit, 'utf8');
    await expect(xml).toMatchFileSnapshot('__golden__/14.1-no-ipi-no-cpuid.junit.xml');
    const doc = (await parseStringPromise(xml)) as { testsuites: { $: Record<string, string>; testsuite: { testcase: { $: { name: string }; failure?: unknown[]; skipped?: { $: { message: string } }[] }[] }[] } };
    const cases = doc.testsuites.testsuite[0]!.testcase;
    expect(cases.map((c) => c.$.name)).toEqual(['xen-guest', 'generic-xenhvm', 'vector-callback', 'pv-timer', 'pv-ipi', 'blkfront-flush', 'cdrom', 'netfront', 'migration']);
    expect(cases.find((c) => c.$.name === 'pv-ipi')!.skipped![0]!.$.message).toMatch(/^inconclusive: 14.1-RELEASE: no PV IPI rows/);
    expect(cases.find((c) => c.$.name === 'migration')!.skipped![0]!.$.message).toMatch(/^skip: no "before" bundle/);
    expect(doc.testsuites.$).toMatchObject({ tests: '9', failures: '0', skipped: '3' });
  });

  it('a failing disk: exit 1, the disk and the missing feature named', async () => {
    const dir = await tmp();
    const junit = join(dir, 'j.xml');
    const r = await fbxen(['verify', '--quiet', '--bundle', join(FIXTURES, '13.2-disk-no-features-derived'), '--junit', junit]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/blkfront-flush\s+FAIL\s+xbd1 \(device\/vbd\/51728\): no "features:" line/);
    const doc = (await parseStringPromise(await readFile(junit, 'utf8'))) as { testsuites: { testsuite: { testcase: { $: { name: string }; failure?: { $: { message: string } }[] }[] }[] } };
    const failure = doc.testsuites.testsuite[0]!.testcase.find((c) => c.$.name === 'blkfront-flush')!.failure![0]!;
    expect(failure.$.message).toContain('xbd1');
  });

  it('no verdict possible (every probe inconclusive): exit 2', async () => {
    const r = await fbxen(['verify', '--quiet', '--bundle', join(FIXTURES, 'minimal-uname-only-derived')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('the evidence allowed no verdict');
  });

  it('a tar.gz bundle and --probe filter', async () => {
    const dir = await tmp();
    const tgz = join(dir, 'b.tar.gz');
    await writeFile(tgz, await packBundle(await readBundle(join(FIXTURES, '15.0-healthy-derived'))));
    const r = await fbxen(['--json', '--quiet', 'verify', '--bundle', tgz, '--probe', 'pv-ipi', '--probe', 'pv-timer']);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { results: { id: string }[] }).results.map((x) => x.id)).toEqual(['pv-timer', 'pv-ipi']);
  });

  it('bad input: not a bundle (exit 3), two sources (usage: exit 2), unknown probe id (usage: exit 2), each with a hint', async () => {
    const dir = await tmp();
    await writeFile(join(dir, 'x.tar'), 'not a tar at all'.repeat(100));
    let r = await fbxen(['verify', '--quiet', '--bundle', join(dir, 'x.tar')]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/tar|bundle/);
    r = await fbxen(['verify', '--quiet', '--bundle', 'a', '--console-log', 'b']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('give exactly one of --bundle, --console-log, --ssh, --domain');
    r = await fbxen(['verify', '--quiet', '--bundle', 'a', '--probe', 'nope']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--probe');
  });
});

describe('fbxen verify --console-log', () => {
  async function consoleWithFrame(fixture: string, run: string, phase = 'boot'): Promise<string> {
    const b = await readBundle(join(FIXTURES, fixture));
    b.meta.run = run;
    b.meta.phase = phase;
    return encodeConsoleFrame(await packBundle(b), run, phase);
  }

  it('finds the frame of the run among kernel messages and an older run', async () => {
    const dir = await tmp();
    const log = join(dir, 'console.log');
    const old = await consoleWithFrame('13.2-legacy-callback-derived', 'old-run');
    const cur = await consoleWithFrame('13.2-healthy-derived', 'run-2');
    await writeFile(log, `Booting...\r\n${old}login: \r\n${cur.replace(/\n/g, '\r\n')}xn0: link state changed to UP\r\n`);
    const r = await fbxen(['verify', '--quiet', '--console-log', log, '--run', 'run-2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('run run-2 (boot)');
    const older = await fbxen(['verify', '--quiet', '--console-log', log, '--run', 'old-run']);
    expect(older.code).toBe(1);
  });

  it('lines lost in both copies: "evidence incomplete" with the count, exit 2', async () => {
    const dir = await tmp();
    const log = join(dir, 'console.log');
    const lines = (await consoleWithFrame('13.2-healthy-derived', 'run-3')).split('\n');
    const n = Number(lines[0]!.split(' ')[4]);
    // drop data lines 2 and 5 from both copies
    const drop = new Set([2, 5, n + 2 + 2, n + 2 + 5]);
    await writeFile(log, lines.filter((_l, i) => !drop.has(i)).join('\n'));
    const r = await fbxen(['verify', '--quiet', '--console-log', log, '--run', 'run-3']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`evidence incomplete: 2 of ${n} frame lines missing or damaged for run run-3, phase boot`);
  });

  it('no frame for the run: exit 2 with a hint', async () => {
    const dir = await tmp();
    const log = join(dir, 'console.log');
    await writeFile(log, 'FreeBSD/amd64 (fbxen) (ttyu0)\n\nlogin:\n');
    const r = await fbxen(['verify', '--quiet', '--console-log', log, '--run', 'x1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no fbxen frame');
    expect(r.stderr).toMatch(/fbxen_enable/);
  });

  it('--before-phase: the migration probe compares two phases of the same log', async () => {
    const dir = await tmp();
    const log = join(dir, 'console.log');
    const pair = join(FIXTURES, 'migration-14.1-ok-derived');
    const enc = async (sub: string, phase: string) => {
      const b = await readBundle(join(pair, sub));
      return encodeConsoleFrame(await packBundle(b), b.meta.run!, phase);
    };
    await writeFile(log, `${await enc('before', 'pre-migrate')}some noise\n${await enc('after', 'post-migrate-1')}`);
    const r = await fbxen(['--json', '--quiet', 'verify', '--console-log', log, '--phase', 'post-migrate-1', '--before-phase', 'pre-migrate']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { results: { id: string; verdict: string }[] };
    expect(doc.results.find((x) => x.id === 'migration')!.verdict).toBe('pass');
  });
});

describe('evidence from another run (a replayed bundle)', () => {
  // An old bundle of run R0, framed again under run R9, as a guest replaying old evidence would print it.
  async function replayed(dir: string): Promise<string> {
    const b = await readBundle(join(FIXTURES, '13.2-healthy-derived'));
    b.meta.run = 'R0';
    const log = join(dir, 'console.log');
    await writeFile(log, `boot noise\n${encodeConsoleFrame(await packBundle(b), 'R9', 'boot')}`);
    return log;
  }

  it('--console-log --run R9 over a bundle whose meta says R0: exit 2, no verdicts, no JUnit file', async () => {
    const dir = await tmp();
    const log = await replayed(dir);
    const junit = join(dir, 'j.xml');
    const r = await fbxen(['--json', '--quiet', 'verify', '--console-log', log, '--run', 'R9', '--junit', junit]);
    expect(r.code).toBe(2);
    expect(r.stdout).not.toContain('"results"');
    expect(r.stderr).toContain('evidence from another run');
    expect(r.stderr).toContain('was collected for run R0 (meta run), but the frame\'s run is R9, fbxen expects run R9');
    await expect(readFile(junit, 'utf8')).rejects.toThrow();
    // without --run: the newest frame is R9's, and its bundle still says R0
    const any = await fbxen(['verify', '--quiet', '--console-log', log]);
    expect(any.code).toBe(2);
    expect(any.stderr).toContain('evidence from another run');
  });

  it('--domain: the run\'s frame carries a bundle of another run: exit 2, and no report files in the run directory', async () => {
    const root = await tmp();
    const run = 'R9';
    const dir = join(root, 'fbxen-replay', run);
    await mkdir(dir, { recursive: true });
    await replayed(dir);
    await writeFile(join(dir, 'run.json'), JSON.stringify({ run, name: 'fbxen-replay', toolstack: 'xl', frameRun: run }));
    await writeFile(join(root, 'fbxen-replay', 'latest'), `${run}\n`);
    const r = await fbxen(['verify', '--quiet', '--domain', 'fbxen-replay', '--artifacts', root]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('evidence from another run');
    await expect(readFile(join(dir, 'report.json'), 'utf8')).rejects.toThrow();
  });

  it('--bundle DIR --run: the bundle\'s meta run must be that run; without --run any bundle is read', async () => {
    const fx = join(FIXTURES, '13.2-healthy-derived');
    const other = await fbxen(['verify', '--quiet', '--bundle', fx, '--run', 'R9']);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain(`evidence from another run: the bundle in bundle ${fx} was collected for run fx-13.2-healthy-derived (meta run), but fbxen expects run R9`);
    expect((await fbxen(['verify', '--quiet', '--bundle', fx, '--run', 'fx-13.2-healthy-derived'])).code).toBe(0);
    expect((await fbxen(['verify', '--quiet', '--bundle', fx])).code).toBe(0);
  });
});

describe('fbxen verify --domain: the run record says a CD drive was attached', () => {
  it('a guest without cdN fails the cdrom probe (the same bundle read on its own skips it)', async () => {
    const root = await tmp();
    const run = '20261206T081500Z-cd01';
    const dir = join(root, 'fbxen-nocd', run);
    await mkdir(dir, { recursive: true });
    const b = await readBundle(join(FIXTURES, '13.2-no-cd-derived'));
    b.meta.run = run;
    await writeFile(join(dir, 'console.log'), encodeConsoleFrame(await packBundle(b), run, 'boot'));
    await writeFile(join(dir, 'run.json'), JSON.stringify({ run, name: 'fbxen-nocd', toolstack: 'xl', frameRun: run }));
    await writeFile(join(root, 'fbxen-nocd', 'latest'), `${run}\n`);
    const r = await fbxen(['--json', '--quiet', 'verify', '--domain', 'fbxen-nocd', '--artifacts', root]);
    expect(r.code).toBe(1);
    const cd = (JSON.parse(r.stdout) as { results: { id: string; verdict: string; evidence: string[] }[] }).results.find((x) => x.id === 'cdrom')!;
    expect(cd.verdict).toBe('fail');
    expect(cd.evidence.join('\n')).toContain('fbxen boot attached a CD drive to fbxen-nocd');
  });
});

describe('fbxen verify --domain', () => {
  it('reads <artifacts>/<name>/latest and that run\'s console.log with its run id', async () => {
    const root = await tmp();
    const run = '20261123T220116Z-3fa9';
    const dir = join(root, 'fbxen-test', run);
    await mkdir(dir, { recursive: true });
    const b = await readBundle(join(FIXTURES, '14.1-apicv-native-ipi-derived'));
    b.meta.run = run;
    await writeFile(join(dir, 'console.log'), `boot noise\n${encodeConsoleFrame(await packBundle(b), run, 'boot')}`);
    await writeFile(join(dir, 'run.json'), JSON.stringify({ run, name: 'fbxen-test', toolstack: 'xl', domid: '7' }));
    await writeFile(join(root, 'fbxen-test', 'latest'), `${run}\n`);
    const r = await fbxen(['verify', '--quiet', '--domain', 'fbxen-test', '--artifacts', root]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`run ${run} (boot)`);
    expect(JSON.parse(await readFile(join(dir, 'report.json'), 'utf8'))).toMatchObject({ run, release: '14.1-RELEASE' });
    expect(await readFile(join(dir, 'report.junit.xml'), 'utf8')).toContain('<testcase classname="fbxen.verify" name="pv-ipi">');
    const wrong = await fbxen(['verify', '--quiet', '--domain', 'fbxen-test', '--artifacts', root, '--toolstack', 'xapi']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('was booted with --toolstack xl');
    const none = await fbxen(['verify', '--quiet', '--domain', 'nobody', '--artifacts', root]);
    expect(none.code).toBe(3);
    expect(none.stderr).toContain('no fbxen boot run recorded for domain nobody');
  });
});

describe('fbxen verify --domain after a boot without fbxen\'s CD', () => {
  it('takes the newest frame of any run when run.json has frameRun null (--iso / --empty-cdrom), else only the CD run\'s', async () => {
    const root = await tmp();
    const run = '20261123T230000Z-aa11';
    const dir = join(root, 'fbxen-iso', run);
    await mkdir(dir, { recursive: true });
    const b = await readBundle(join(FIXTURES, '14.1-apicv-native-ipi-derived'));
    b.meta.run = 'guest-chosen';
    await writeFile(join(dir, 'console.log'), `noise\n${encodeConsoleFrame(await packBundle(b), 'guest-chosen', 'boot')}`);
    await writeFile(join(root, 'fbxen-iso', 'latest'), `${run}\n`);
    await writeFile(join(dir, 'run.json'), JSON.stringify({ run, name: 'fbxen-iso', toolstack: 'xl', frameRun: null }));
    const any = await fbxen(['verify', '--quiet', '--domain', 'fbxen-iso', '--artifacts', root]);
    expect(any.code, any.stderr).toBe(0);
    expect(any.stdout).toContain('run guest-chosen (boot)');
    await writeFile(join(dir, 'run.json'), JSON.stringify({ run, name: 'fbxen-iso', toolstack: 'xl', frameRun: run }));
    const strict = await fbxen(['verify', '--quiet', '--domain', 'fbxen-iso', '--artifacts', root]);
    expect(strict.code).toBe(2); // a frame of another run is never taken for this one
  });
});

describe('fbxen verify --ssh (simulated ssh)', () => {
  const sshEnv = async (extra: Record<string, string> = {}) => {
    const dir = await tmp();
    const env = {
      PATH: `${FAKE_SSH}:${STANDINS}:${process.env.PATH}`,
      FBXEN_STANDIN_BUNDLE: join(FIXTURES, '13.2-healthy-derived'),
      FBXEN_STANDIN_STATE: dir,
      FBXEN_FAKE_SSH_LOG: join(dir, 'ssh-args'),
      ...extra,
    };
    return { dir, env };
  };
  const withEnv = async <T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> => {
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      return await fn();
    } finally {
      for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k];
      Object.assign(process.env, saved);
    }
  };

  it('streams the collector to sh -s with strict host key checking and analyses the tar it returns', async () => {
    const { dir, env } = await sshEnv();
    const r = await withEnv(env, () => fbxen(['--json', '--quiet', 'verify', '--ssh', 'root@192.0.2.10', '--identity', '/keys/id_ed25519', '--run', 'ssh-run-1']));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { run: string; results: { id: string; verdict: string }[] };
    expect(doc.run).toBe('ssh-run-1');
    expect(doc.results.find((x) => x.id === 'pv-timer')!.verdict).toBe('pass');
    const args = (await readFile(join(dir, 'ssh-args'), 'utf8')).trim().split('\n');
    expect(args).toEqual(['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-i', '/keys/id_ed25519', '-o', 'IdentitiesOnly=yes', '--', 'root@192.0.2.10', 'sh', '-s', '--', '--frame', '--run', 'ssh-run-1', '--phase', 'manual']);
  });

  it('a login banner on stdout before the collector output does not disturb the frame', async () => {
    const { env } = await sshEnv({ FBXEN_FAKE_SSH_BANNER: 'FreeBSD 14.1-RELEASE (GENERIC)\n\nWelcome to FreeBSD!' });
    const r = await withEnv(env, () => fbxen(['verify', '--quiet', '--ssh', 'root@192.0.2.10', '--run', 'ssh-run-2']));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('run ssh-run-2 (manual)');
  });

  it('ssh arguments for each host key mode and a port', () => {
    const base = { kind: 'ssh' as const, target: 'root@[2001:db8::1]', run: 'r1', phase: 'manual' };
    expect(sshArgs({ ...base, hostKeyChecking: 'off', port: 2222 })).toEqual(['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-p', '2222', '--', 'root@[2001:db8::1]', 'sh', '-s', '--', '--frame', '--run', 'r1', '--phase', 'manual']);
    expect(sshArgs({ ...base, hostKeyChecking: 'accept-new' })).toContain('StrictHostKeyChecking=accept-new');
    expect(() => sshArgs({ ...base, target: 'root@host;reboot', hostKeyChecking: 'strict' })).toThrow(/is not user@host/);
  });

  it('an unknown host key: exit 5 and a hint about known_hosts', async () => {
    const { env } = await sshEnv({ FBXEN_FAKE_SSH_FAIL: 'hostkey' });
    const r = await withEnv(env, () => fbxen(['verify', '--quiet', '--ssh', 'root@192.0.2.10']));
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('Host key verification failed');
    expect(r.stderr).toContain('known_hosts');
  });

  it('--dry-run prints the ssh command and runs nothing', async () => {
    const { dir, env } = await sshEnv();
    const r = await withEnv(env, () => fbxen(['verify', '--quiet', '--dry-run', '--ssh', 'admin@guest.example', '--host-key-checking', 'accept-new', '--run', 'r1']));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('run: ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -- admin@guest.example sh -s -- --frame --run r1 --phase manual <');
    await expect(readFile(join(dir, 'ssh-args'), 'utf8')).rejects.toThrow();
  });

  it('rejects a target that would be read as an ssh option', async () => {
    const r = await fbxen(['verify', '--quiet', '--ssh', '-oProxyCommand=evil']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is not user@host');
  });
});
