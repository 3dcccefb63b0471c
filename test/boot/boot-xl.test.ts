/**
 * `fbxen boot --toolstack xl` end to end through the real CLI entry and the fake xl (a SIMULATION of
 * xl 4.17, test/support/fake-xl/xl): the happy path to a report, Ctrl-C, a failing create, a timeout, a
 * crash, environment errors and hostile inputs. Each asserts what is left behind: domains, files, exit codes.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { extractBundleFromConsole } from '../../src/core/verify/index.js';
import { domains, fbxen, makeHost, makeImage, until, writeGuest, xlCalls, type Host } from './harness.js';

const hosts: Host[] = [];
function host(opts?: Parameters<typeof makeHost>[0]): Host {
  const h = makeHost(opts);
  hosts.push(h);
  return h;
}
afterEach(() => {
  hosts.length = 0;
});

const runDir = (h: Host, name: string, run: string) => join(h.artifacts, name, run);
const runJson = (h: Host, name: string, run: string) => JSON.parse(readFileSync(join(runDir(h, name, run), 'run.json'), 'utf8')) as Record<string, unknown>;

describe('happy path', () => {
  it('boots, captures the console from the first byte, collects the frame, shuts down; config xl prints the same xl.cfg', async () => {
    const h = host();
    const image = makeImage(h, 'freebsd-14.3-RELEASE-amd64.raw');
    await writeGuest(h, { run: 'run-1' });
    const r = await fbxen(['boot', '--toolstack', 'xl', '--image', image, '--name', 'fbxen-happy', '--vcpus', '2', '--memory', '1G', '--artifacts', h.artifacts, '--run-id', 'run-1', '--timeout', '30'], h);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('fbxen-happy: booted, evidence collected, shut down');
    expect(r.stdout).toContain('next:      fbxen verify --domain fbxen-happy');

    const dir = runDir(h, 'fbxen-happy', 'run-1');
    const consoleLog = readFileSync(join(dir, 'console.log'), 'utf8');
    expect(consoleLog.startsWith('SeaBIOS (version')).toBe(true); // nothing lost before the console attached
    const extracted = await extractBundleFromConsole(consoleLog, { run: 'run-1' });
    expect(extracted.status).toBe('complete');

    expect(runJson(h, 'fbxen-happy', 'run-1')).toMatchObject({ run: 'run-1', name: 'fbxen-happy', toolstack: 'xl', domid: '1', image, outcome: 'collected', frameRun: 'run-1' });
    expect(readFileSync(join(h.artifacts, 'fbxen-happy', 'latest'), 'utf8')).toBe('run-1\n');
    const transcript = readFileSync(join(dir, 'transcript.log'), 'utf8');
    for (const c of ['xl info', 'xl domid fbxen-happy', `xl create -c ${join(dir, 'xl.cfg')}`, 'xl list -l 1', 'xl shutdown -w 1', 'xorriso']) expect(transcript).toContain(c);
    expect(transcript).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z +\d+ ms exit=0 xl info$/m);

    // The fbxen CD carries the nonce; the domain is gone; the shutdown was clean (no destroy needed).
    expect(existsSync(join(dir, 'fbxen-cd.iso'))).toBe(true);
    expect(domains(h)).toEqual([]);
    expect(xlCalls(h).some((a) => a[0] === 'destroy')).toBe(false);

    const cfg = readFileSync(join(dir, 'xl.cfg'), 'utf8');
    const printed = await fbxen(['config', 'xl', '--image', image, '--name', 'fbxen-happy', '--vcpus', '2', '--memory', '1G', '--artifacts', h.artifacts, '--run-id', 'run-1'], h);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe(cfg);
    expect(cfg).toContain(`"format=raw, vdev=hdc, access=ro, devtype=cdrom, target=${join(dir, 'fbxen-cd.iso')}"`);
    expect(cfg).toContain('memory = 1024\n');

    // `fbxen boot ... && fbxen verify --domain NAME`: verify finds this run through <root>/<name>/latest.
    const verified = await fbxen(['verify', '--domain', 'fbxen-happy', '--artifacts', h.artifacts], h);
    expect(verified.stderr).not.toMatch(/error/);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/xen-guest +PASS/);
  });

  it('--verify writes report.json and report.junit.xml and prints the report; --json gives one document', async () => {
    const h = host();
    const image = makeImage(h, 'img.qcow2', 'qcow2');
    await writeGuest(h, { run: 'run-v' });
    const r = await fbxen(['--json', 'boot', '--image', image, '--name', 'fbxen-verify', '--artifacts', h.artifacts, '--run-id', 'run-v', '--verify'], h);
    const dir = runDir(h, 'fbxen-verify', 'run-v');
    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { run: string; results: { id: string; verdict: string }[] };
    expect(report.run).toBe('run-v');
    expect(report.results.find((x) => x.id === 'xen-guest')?.verdict).toBe('pass');
    expect(readFileSync(join(dir, 'report.junit.xml'), 'utf8')).toContain('<testsuites name="fbxen"');
    const doc = JSON.parse(r.stdout) as { run: string; toolstack: string; report: { results: unknown[] } };
    expect(doc).toMatchObject({ run: 'run-v', toolstack: 'xl', name: 'fbxen-verify' });
    expect(doc.report.results.length).toBeGreaterThan(0);
    expect(readFileSync(join(dir, 'xl.cfg'), 'utf8')).toContain('format=qcow2, vdev=xvda');
    expect(runJson(h, 'fbxen-verify', 'run-v').outcome).toBe('verified');
    // The sample bundle has evidence for only some probes: none fails, so the exit code is 0.
    expect(r.code).toBe(0);
    expect(domains(h)).toEqual([]);
  });

  it('--empty-cdrom: the image carries the collector; the newest frame of any run counts', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'from-the-image' });
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-nocd', '--artifacts', h.artifacts, '--run-id', 'run-e', '--empty-cdrom', '--verify'], h);
    expect(r.code).toBe(0);
    const dir = runDir(h, 'fbxen-nocd', 'run-e');
    expect(existsSync(join(dir, 'fbxen-cd.iso'))).toBe(false);
    expect(readFileSync(join(dir, 'xl.cfg'), 'utf8')).toContain('"vdev=hdc, access=ro, devtype=cdrom",');
    expect(runJson(h, 'fbxen-nocd', 'run-e')).toMatchObject({ frameRun: null, outcome: 'verified' });
    expect(JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'))).toMatchObject({ run: 'from-the-image' });
  });

  it('--verify with a probe that says no: exit 1 after the report, domain shut down', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-n', vmGuest: 'none' });
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-no', '--artifacts', h.artifacts, '--run-id', 'run-n', '--verify'], h);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/xen-guest +FAIL/);
    expect(r.stderr).toContain('verification failed');
    expect(existsSync(join(runDir(h, 'fbxen-no', 'run-n'), 'report.junit.xml'))).toBe(true);
    expect(domains(h)).toEqual([]);
  });

  it('--keep leaves the domain running and says how to reach it', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-k', tail: ['@hang'] });
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-keep', '--artifacts', h.artifacts, '--run-id', 'run-k', '--keep'], h);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('fbxen-keep: running as domain 1 (--keep)');
    expect(domains(h)).toMatchObject([{ name: 'fbxen-keep', domid: 1 }]);
    expect(runJson(h, 'fbxen-keep', 'run-k').outcome).toBe('kept');
  });

  it('a guest that ignores xl shutdown is destroyed after the grace period', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-g', tail: ['@ignore-shutdown', '@hang'] });
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-stubborn', '--artifacts', h.artifacts, '--run-id', 'run-g', '--grace', '1'], h);
    expect(r.code).toBe(0);
    expect(xlCalls(h).filter((a) => a[0] === 'destroy')).toEqual([['destroy', '1']]);
    expect(domains(h)).toEqual([]);
  });
  it('a powered-off domain still listed while its own xl create destroys it (the real xl): fbxen\'s racing destroy fails, the domain goes, exit 0', async () => {
    // found by real-xl test V (docs/lab.md): the boot ended exit 5 on the real xl's "Unable to destroy guest"
    const h = host({ scenario: { poweroffLingersMs: 2500 } });
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-l' });
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-linger', '--artifacts', h.artifacts, '--run-id', 'run-l', '--timeout', '30'], h);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('fbxen-linger: booted, evidence collected, shut down');
    const transcript = readFileSync(join(runDir(h, 'fbxen-linger', 'run-l'), 'transcript.log'), 'utf8');
    expect(transcript).toMatch(/exit=1 xl destroy 1$/m);
    expect(transcript).toContain('Unable to destroy guest');
    expect(domains(h)).toEqual([]);
  });
});

describe('failures leave no domain behind and keep the logs', () => {
  it('Ctrl-C during boot destroys the domain fbxen created, keeps config and console log, exits 130', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-c', frame: false, tail: ['@hang'] });
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-ctrlc', '--artifacts', h.artifacts, '--run-id', 'run-c', '--timeout', '60'], h, async () => {
      await until('the domain to run and print', () => domains(h).some((d) => d.state === 'r') && readFileSync(join(runDir(h, 'fbxen-ctrlc', 'run-c'), 'console.log'), 'utf8').includes('xn0'));
      process.kill(process.pid, 'SIGINT');
    });
    expect(r.code).toBe(130);
    expect(domains(h)).toEqual([]);
    expect(xlCalls(h)).toContainEqual(['destroy', '1']);
    const dir = runDir(h, 'fbxen-ctrlc', 'run-c');
    expect(readFileSync(join(dir, 'console.log'), 'utf8')).toContain('xn0: <Virtual Network Interface>');
    expect(existsSync(join(dir, 'xl.cfg'))).toBe(true);
    expect(runJson(h, 'fbxen-ctrlc', 'run-c').outcome).toBe('interrupted');
    expect(r.stderr).toContain(`kept for inspection: ${join(dir, 'xl.cfg')}`);
  });

  it('SIGTERM during the wait does the same, exit 143', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-s', frame: false, tail: ['@hang'] });
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-term', '--artifacts', h.artifacts, '--run-id', 'run-s', '--keep'], h, async () => {
      await until('the domain to run', () => domains(h).some((d) => d.state === 'r'));
      process.kill(process.pid, 'SIGTERM');
    });
    expect(r.code).toBe(143);
    expect(domains(h)).toEqual([]); // --keep keeps a finished run's domain, not an interrupted one
    expect(runJson(h, 'fbxen-term', 'run-s').outcome).toBe('interrupted');
  });

  it('a failing xl create shows its stderr, exits 5, leaves nothing running', async () => {
    const stderr =
      'libxl: error: libxl_create.c:720:libxl__domain_make: Domain 3:domain creation fail: Cannot allocate memory\n' +
      'libxl: error: libxl_create.c:1264:initiate_domain_create: Domain 3:cannot make domain: -3';
    const h = host({ scenario: { createFails: { stderr } } });
    const image = makeImage(h, 'img.raw');
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-nocreate', '--artifacts', h.artifacts, '--run-id', 'run-f'], h);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('xl create failed');
    expect(r.stderr).toContain('libxl__domain_make: Domain 3:domain creation fail: Cannot allocate memory');
    expect(domains(h)).toEqual([]);
    expect(xlCalls(h).some((a) => a[0] === 'destroy')).toBe(false); // nothing of ours existed
    expect(runJson(h, 'fbxen-nocreate', 'run-f').outcome).toBe('failed');
    expect(readFileSync(join(runDir(h, 'fbxen-nocreate', 'run-f'), 'transcript.log'), 'utf8')).toContain('Cannot allocate memory');
  });

  it('a domain of our name that another tool made during create is left alone (uuid check)', async () => {
    const h = host({ scenario: { foreignDomainAppears: true } });
    const image = makeImage(h, 'img.raw');
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-race', '--artifacts', h.artifacts, '--run-id', 'run-r'], h);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('another tool created it meanwhile; fbxen leaves it alone');
    expect(domains(h)).toMatchObject([{ name: 'fbxen-race', domid: 1 }]);
    expect(xlCalls(h).some((c) => c[0] === 'destroy' || c[0] === 'shutdown')).toBe(false);
  });

  it('a guest that never boots times out: exit 6, domain destroyed, console kept', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-t', frame: false, tail: ['@hang'] });
    const t0 = Date.now();
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-slow', '--artifacts', h.artifacts, '--run-id', 'run-t', '--timeout', '2'], h);
    expect(r.code).toBe(6);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(r.stderr).toContain('no collector frame of run run-t on the console within 2 s');
    expect(r.stderr).toContain(`config, console log and transcript: ${runDir(h, 'fbxen-slow', 'run-t')}/`);
    expect(domains(h)).toEqual([]);
    expect(xlCalls(h)).toContainEqual(['destroy', '1']);
    expect(readFileSync(join(runDir(h, 'fbxen-slow', 'run-t'), 'console.log'), 'utf8')).toContain('XEN: Hypervisor version 4.17 detected.');
    expect(runJson(h, 'fbxen-slow', 'run-t').outcome).toBe('timeout');
  });

  it('a guest that crashes is reported (exit 5) and the preserved domain destroyed', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-p', frame: false, tail: ['panic: page fault while in kernel mode', 'cpuid = 0', '@crash', '@hang'] });
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-crash', '--artifacts', h.artifacts, '--run-id', 'run-p', '--timeout', '30'], h);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/the guest crashed .* before the collector finished/);
    expect(domains(h)).toEqual([]);
    expect(readFileSync(join(runDir(h, 'fbxen-crash', 'run-p'), 'console.log'), 'utf8')).toContain('panic: page fault');
  });

  it('a frame of an older run in the log is not taken for this one', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'old-run', tail: ['@hang'] });
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-stale', '--artifacts', h.artifacts, '--run-id', 'new-run', '--timeout', '2'], h);
    expect(r.code).toBe(6);
    expect(domains(h)).toEqual([]);
  });
});

describe('environment and input errors, before anything is created', () => {
  it('not a dom0: exit 4 with the fix', async () => {
    const h = host({ scenario: { notDom0: true } });
    const image = makeImage(h, 'img.raw');
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-x', '--artifacts', h.artifacts, '--run-id', 'r'], h);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('`xl info` failed');
    expect(r.stderr).toContain('hint: run fbxen on a Xen dom0');
    expect(xlCalls(h).some((a) => a[0] === 'create')).toBe(false);
  });

  it('a missing bridge: exit 4 naming it', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    const r = await fbxen(['boot', '--image', image, '--bridge', 'eth0', '--artifacts', h.artifacts, '--run-id', 'r'], h);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('bridge eth0 does not exist on this host');
  });

  it('not enough free memory: exit 4', async () => {
    const h = host({ scenario: { freeMemoryMiB: 512 } });
    const image = makeImage(h, 'img.raw');
    const r = await fbxen(['boot', '--image', image, '--memory', '1024', '--artifacts', h.artifacts, '--run-id', 'r'], h);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('the host has 512 MiB free; the guest needs 1024 MiB');
  });

  it('little free memory is fine when xl can balloon dom0 down (autoballoon "auto", no dom0_mem)', async () => {
    const h = host({ scenario: { freeMemoryMiB: 512, xenCommandline: 'placeholder console=com1' } });
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'r-b' });
    const r = await fbxen(['--verbose', 'boot', '--image', image, '--memory', '1024', '--name', 'fbxen-balloon', '--artifacts', h.artifacts, '--run-id', 'r-b'], h);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('xl will balloon dom0 down');
  });

  it('a domain of that name already exists: fbxen does not touch it', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'b', tail: ['@hang'] });
    const keep = await fbxen(['boot', '--image', image, '--name', 'fbxen-dup', '--artifacts', h.artifacts, '--run-id', 'b', '--keep'], h);
    expect(keep.code).toBe(0);
    const again = await fbxen(['boot', '--image', image, '--name', 'fbxen-dup', '--artifacts', h.artifacts, '--run-id', 'c'], h);
    expect(again.code).toBe(5);
    expect(again.stderr).toContain('a domain named fbxen-dup already exists (domid 1); fbxen only touches domains it created');
    expect(domains(h)).toMatchObject([{ name: 'fbxen-dup', domid: 1 }]);
    expect(xlCalls(h).some((c) => c[0] === 'destroy' || c[0] === 'shutdown')).toBe(false);
  });

  it('a missing image: exit 3, nothing created', async () => {
    const h = host();
    const r = await fbxen(['boot', '--image', join(h.dir, 'out/nope.raw'), '--artifacts', h.artifacts], h);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('does not exist');
    expect(r.stderr).toContain('fbxen build');
    expect(existsSync(h.artifacts)).toBe(false);
    expect(xlCalls(h)).toEqual([]);
  });

  it('a VHD image: exit 3, pointing at raw/qcow2 or xapi', async () => {
    const h = host();
    const image = makeImage(h, 'img.vhd', 'vhd');
    const r = await fbxen(['boot', '--image', image, '--artifacts', h.artifacts], h);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('is a VHD; xl boots raw and qcow2 images');
    expect(r.stderr).toContain('qemu-img convert');
    expect(xlCalls(h)).toEqual([]);
  });

  it.each([
    ['a quote in the name', ['--name', 'a"b'], /a double quote/, 3],
    ['a comma in the name', ['--name', 'a,b'], /a comma/, 3],
    ['"=" in the name', ['--name', 'x=y'], /an equals sign/, 3],
    ['a newline in the name', ['--name', 'a\nb'], /a newline/, 3],
    ['non-ASCII in the name', ['--name', 'gäst'], /non-ASCII character "ä"/, 3],
    ['a comma in the bridge', ['--bridge', 'xenbr0,type=ioemu'], /bridge: .*a comma/, 3],
    // a flag value its option refuses is a usage error (README: exit 2)
    ['vcpus 0', ['--vcpus', '0'], /--vcpus/, 2],
    ['memory "lots"', ['--memory', 'lots'], /--memory/, 2],
  ])('%s: exit %s, nothing created', async (_what, extra, pattern, code) => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    const r = await fbxen(['boot', '--image', image, '--artifacts', h.artifacts, ...extra], h);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(pattern);
    expect(existsSync(h.artifacts)).toBe(false);
    expect(xlCalls(h)).toEqual([]);
  });

  it('an artifacts directory xl.cfg cannot hold: exit 3 naming --artifacts', async () => {
    const h = host();
    const image = makeImage(h, 'img.raw');
    const r = await fbxen(['boot', '--image', image, '--artifacts', join(h.dir, 'runs,v2')], h);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('the artifacts directory');
    expect(r.stderr).toContain('a comma');
    expect(r.stderr).toContain('hint: pass --artifacts a directory');
    expect(existsSync(join(h.dir, 'runs,v2'))).toBe(false);
  });

  it.each([
    ['a comma', 'a,b.raw'],
    ['a quote', 'a"b.raw'],
    ['"="', 'vdev=xvdb.raw'],
    ['non-ASCII', 'bild-ü.raw'],
    ['a newline', 'a\nb.raw'],
  ])('an image path with %s: exit 3 naming the character', async (_what, file) => {
    const h = host();
    const image = makeImage(h, file);
    const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-p', '--artifacts', h.artifacts], h);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('image.path');
    expect(xlCalls(h)).toEqual([]);
  });
});
