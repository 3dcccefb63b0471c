/**
 * `fbxen boot --toolstack xapi` end to end against the XAPI simulator (a test double: see
 * test/support/xapi-sim/sim.ts). The simulated guest plays the collector's part: it reads the run nonce
 * from the medium fbxen attached (CD drive, or disk 1 on an older xapi) and writes a real FBXEN1 frame
 * (made with verify's encoder) to the serial console target fbxen put in platform:hvm_serial.
 * Every file the runs leave behind, every plan and every error is scanned for the password.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { inspectImage } from '../../src/core/boot/image.js';
import { boot as bootFlow, type BootDeps, type BootRequest } from '../../src/core/boot/boot.js';
import { loadXapiCredentials } from '../../src/core/toolstack/xapi/credentials.js';
import { writeXva } from '../../src/core/formats/xva.js';
import { writeDynamicVhd } from '../../src/core/formats/vhd.js';
import { encodeConsoleFrame, packBundle } from '../../src/core/verify/index.js';
import { CleanupStack } from '../../src/core/util/cleanup.js';
import { silentProgress, type Progress } from '../../src/core/progress.js';
import { InterruptedError, TimeoutError } from '../../src/core/errors.js';
import type { Runner } from '../../src/core/exec/runner.js';
import { XapiSim } from '../support/xapi-sim/sim.js';

const PASSWORD = 'Very$ecret-xapi-pw';
const dir = mkdtempSync(join(tmpdir(), 'fbxen-xapi-boot-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;

const noRunner: Runner = {
  run: () => Promise.reject(new Error('no subprocess expected in this test')),
  stream: () => {
    throw new Error('no subprocess expected in this test');
  },
};

let xva = '';
let vhd = '';
let raw = '';
const frames = new Map<string, string>();

async function frameFor(run: string): Promise<string> {
  const payload = await packBundle({
    meta: { bundle: 'fbxen-bundle/1', run, phase: 'boot', collector: 'xapi-sim' },
    index: [{ name: 'uname', status: 0, command: 'uname -a' }],
    sections: new Map([['uname', 'FreeBSD sim 14.1-RELEASE FreeBSD 14.1-RELEASE GENERIC amd64\n']]),
  } as Parameters<typeof packBundle>[0]);
  return `Booting...\r\nFreeBSD/amd64 (sim) (ttyu0)\r\n${encodeConsoleFrame(payload, run, 'boot')}`;
}

/** The simulated collector: finds "nonce=<run>" on the medium fbxen attached, then prints that run's frame. */
function guestConsole({ record, sim }: { record: Record<string, unknown>; sim: XapiSim }): string {
  for (const vbd of record['VBDs'] as string[]) {
    const r = sim.db.VBD.get(vbd);
    if (!r || r['empty'] || !(r['type'] === 'CD' || r['userdevice'] === '1')) continue;
    const text = sim.vdiContent.get(String(r['VDI']))?.toString('latin1') ?? '';
    const m = /nonce=([A-Za-z0-9._-]+)/.exec(text);
    if (m && frames.has(m[1]!)) return frames.get(m[1]!)!;
  }
  return 'login: '; // no medium with a nonce: the collector cannot tag its run
}

/** The XAPI request as these tests write it: the pool's options beside the others. */
type XapiBootRequest = Omit<BootRequest, 'toolstack' | 'xapi'> & { network?: string; sr?: string; caFile?: string; insecure: boolean; insecureHttp?: boolean };
/** What the tests give besides BootDeps: the XAPI driver's console address and client timings, the CD maker, the poll. */
interface XapiBootInternals {
  cwd: string;
  makeCd?: BootDeps['makeCd'];
  consoleHost?: string;
  clientOptions?: NonNullable<BootDeps['xapi']>['clientOptions'];
  pollMs?: number;
}

/** `fbxen boot --toolstack xapi` as the command calls it: the one boot flow (core/boot/boot.ts) with XapiDriver. */
function runXapiBoot(r: XapiBootRequest, d: ReturnType<typeof deps>, i: XapiBootInternals) {
  const { network, sr, caFile, insecure, insecureHttp, ...rest } = r;
  return bootFlow({ ...rest, toolstack: 'xapi', xapi: { network, sr, caFile, insecure, insecureHttp } }, { ...d, cwd: i.cwd, makeCd: i.makeCd, pollMs: i.pollMs, xapi: { consoleHost: i.consoleHost, clientOptions: i.clientOptions } });
}

const makeCd: NonNullable<XapiBootInternals['makeCd']> = async ({ runId, outPath }) => {
  // Stands in for xorriso: a CD image whose bytes carry the nonce file's content.
  const iso = Buffer.alloc(64 * 1024);
  iso.write(`CD001 FBXEN nonce=${runId}\n`, 32768);
  writeFileSync(outPath, iso);
};

const sims: XapiSim[] = [];
async function startSim(opts: ConstructorParameters<typeof XapiSim>[0] = {}): Promise<XapiSim> {
  const s = await new XapiSim({ password: PASSWORD, guestConsole, ...opts }).start();
  sims.push(s);
  return s;
}
afterEach(async () => {
  while (sims.length) await sims.pop()!.stop();
});

beforeAll(async () => {
  raw = join(dir, 'disk.raw');
  const b = Buffer.alloc(4 * MiB);
  b.write('FreeBSD boot sector', 0);
  b[510] = 0x55; // what makes it a disk to fbxen: the boot signature and the GPT header at LBA 1
  b[511] = 0xaa;
  b.write('EFI PART', 512, 'latin1');
  writeFileSync(raw, b);
  xva = join(dir, 'disk.xva');
  vhd = join(dir, 'disk.vhd');
  await writeXva(raw, xva, { name: 'fbsd', vcpus: 2, memoryMiB: 512, timestamp: 1717200000, seed: 's' });
  await writeDynamicVhd(raw, vhd, { timestamp: 1717200000, seed: 's' });
});

function request(over: Partial<XapiBootRequest> = {}): XapiBootRequest {
  return {
    image: vhd,
    name: 'fbsd-xapi',
    vcpus: 2,
    memoryMiB: 512,
    emptyCdrom: false,
    keep: false,
    timeoutSec: 20,
    dryRun: false,
    verify: false,
    artifactsRoot: join(dir, 'runs'),
    insecure: false,
    // The simulator serves plain http on loopback: these runs say so, as a user would have to.
    insecureHttp: true,
    ...over,
  };
}

function deps(sim: XapiSim | undefined, over: { signal?: AbortSignal; progress?: Progress; env?: NodeJS.ProcessEnv } = {}) {
  return {
    runner: noRunner,
    progress: over.progress ?? silentProgress,
    signal: over.signal ?? new AbortController().signal,
    cleanup: new CleanupStack(),
    env: over.env ?? { FBXEN_XAPI_URL: sim?.url ?? 'https://pool.example', FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: PASSWORD },
  };
}

const internals = (over: Partial<XapiBootInternals> = {}): XapiBootInternals => ({ cwd: dir, makeCd, consoleHost: '127.0.0.1', pollMs: 20, clientOptions: { pollIntervalMs: 10 }, ...over });

async function boot(sim: XapiSim, run: string, req: Partial<XapiBootRequest> = {}, extra: Parameters<typeof deps>[1] = {}, ints: Partial<XapiBootInternals> = {}) {
  frames.set(run, await frameFor(run));
  return runXapiBoot(request({ runId: run, ...req }), deps(sim, extra), internals(ints));
}

/** What fbxen created and left in the simulated pool (the seeded pool has one template VM and no VDIs). */
function leftovers(sim: XapiSim) {
  return {
    vms: sim.find('VM', (r) => !r['is_a_template']).length,
    vdis: sim.db.VDI.size,
    vbds: sim.db.VBD.size,
    sessions: sim.db.session.size,
    tasks: sim.db.task.size,
  };
}

function scanForPassword(root: string): string[] {
  const hits: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (readFileSync(p).includes(PASSWORD)) hits.push(p);
    }
  };
  walk(root);
  return hits;
}

afterAll(() => {
  // The last word: nothing any test wrote holds the password.
  // (the credentials file of the credentials test holds it on purpose)
  expect(scanForPassword(dir).filter((p) => !p.endsWith('/creds'))).toEqual([]);
});

describe('bootWithXapi against the simulator', () => {
  it('uploads a VHD, builds the VM from the template, puts the fbxen CD in the drive, captures the frame, removes everything', async () => {
    const sim = await startSim();
    const result = await boot(sim, 'run-vhd-1');
    expect(result).toMatchObject({ run: 'run-vhd-1', name: 'fbsd-xapi', toolstack: 'xapi', domain: { kept: false } });
    expect(readFileSync(result.consoleLog, 'utf8')).toContain('FBXEN1 END run-vhd-1 boot');
    expect(leftovers(sim)).toEqual({ vms: 0, vdis: 0, vbds: 0, sessions: 0, tasks: 0 });
    const calls = sim.calls;
    for (const m of ['VDI.create', 'VM.clone', 'VM.provision', 'VM.set_HVM_boot_params', 'VM.set_platform', 'VBD.create', 'VIF.create', 'VBD.insert', 'VM.add_to_platform', 'Async.VM.start', 'Async.VM.clean_shutdown', 'VM.destroy', 'VDI.destroy', 'session.logout']) {
      expect(calls, m).toContain(m);
    }
    // The guest that sent its frame is asked to power off (as xl shutdown does), then removed; it went, so no hard stop.
    expect(calls.indexOf('Async.VM.clean_shutdown')).toBeLessThan(calls.indexOf('VM.destroy'));
    expect(calls).not.toContain('VM.hard_shutdown');
    expect(sim.wire.filter((w) => w.startsWith('PUT /import_raw_vdi')).map((w) => new URL(w.slice(4), 'http://x').searchParams.get('format'))).toEqual(['vhd', 'raw']);
    const runJson = JSON.parse(readFileSync(join(result.artifactsDir, 'run.json'), 'utf8'));
    expect(runJson).toMatchObject({
      outcome: 'collected',
      toolstack: 'xapi',
      xapi: { host: { name: 'xcp-host-1', address: '127.0.0.1' }, sr: { name: 'NFS storage', shared: true }, network: { bridge: 'xenbr0' }, nonceChannel: 'cd' },
    });
    expect(readFileSync(join(dir, 'runs', 'fbsd-xapi', 'latest'), 'utf8').trim()).toBe('run-vhd-1');
    const transcript = readFileSync(join(result.artifactsDir, 'transcript.log'), 'utf8');
    expect(transcript).toMatch(/session\.login_with_password\("root", "<password>", "1\.1", "fbxen"\)/);
    expect(transcript).not.toContain(PASSWORD);
    expect(transcript).toMatch(/PUT \/import_raw_vdi\("\?vdi=OpaqueRef:[^&]+&format=vhd&session_id=<session>&task_id=OpaqueRef:[^"]+", "2100224 bytes"\) \d+ ms ok/);
    const session = [...sim.wire].find((w) => w.startsWith('PUT '))!.match(/session_id=([^&]+)/)![1]!;
    expect(transcript).not.toContain(decodeURIComponent(session)); // the session is a bearer token
    expect(sim.wire.filter((w) => w.includes(PASSWORD))).toHaveLength(1); // only the login body carries it
  });

  it('a guest that does not power off within the grace period is stopped hard, then removed', async () => {
    const sim = await startSim();
    sim.failOn('VM.clean_shutdown', 'VM_SHUTDOWN_TIMEOUT', ['OpaqueRef:vm', '5.']);
    await boot(sim, 'run-hard-1', { graceSec: 5 });
    const calls = sim.calls.filter((m) => ['Async.VM.clean_shutdown', 'VM.hard_shutdown', 'VM.destroy'].includes(m));
    expect(calls).toEqual(['Async.VM.clean_shutdown', 'VM.hard_shutdown', 'VM.destroy']);
    expect(leftovers(sim)).toEqual({ vms: 0, vdis: 0, vbds: 0, sessions: 0, tasks: 0 });
  });

  it('imports an XVA into the chosen SR, applies --network and --keep, and reports the pool facts', async () => {
    const sim = await startSim();
    const result = await boot(sim, 'run-xva-1', { image: xva, keep: true, sr: 'Local storage', network: 'Lab network', vcpus: 1, memoryMiB: 768 });
    expect(result.domain.kept).toBe(true);
    const [[vmRef, vm]] = sim.find('VM', (r) => !r['is_a_template']) as [[string, Record<string, unknown>]];
    expect(vm).toMatchObject({ name_label: 'fbsd-xapi', power_state: 'Running', other_config: expect.objectContaining({ fbxen_run: 'run-xva-1' }) });
    // The XVA said 2 VCPUs / 512 MiB; the request wins (shrinking: VCPUs_at_startup before VCPUs_max).
    expect(vm).toMatchObject({ VCPUs_max: '1', VCPUs_at_startup: '1', memory_static_max: String(768 * MiB), memory_dynamic_min: String(768 * MiB), actions_after_crash: 'destroy' });
    expect(result.domain.id).toBe(vm['uuid']);
    expect((vm['platform'] as Record<string, string>)['hvm_serial']).toMatch(/^tcp:127\.0\.0\.1:\d+$/);
    const vif = sim.find('VIF', (r) => r['VM'] === vmRef);
    expect(vif.map(([, r]) => sim.db.network.get(String(r['network']))?.['name_label'])).toEqual(['Lab network']);
    expect(sim.find('VDI', () => true).map(([, r]) => sim.db.SR.get(String(r['SR']))?.['name_label'])).toEqual(['Local storage', 'Local storage']);
    expect(sim.db.session.size).toBe(0); // kept VM, but the session is closed
    const runJson = JSON.parse(readFileSync(join(result.artifactsDir, 'run.json'), 'utf8'));
    expect(runJson).toMatchObject({ outcome: 'kept', xapi: { sr: { name: 'Local storage', shared: false }, nonceChannel: 'cd' } });
  });

  it('removes an imported XVA with the disks the import created', async () => {
    const sim = await startSim();
    await boot(sim, 'run-xva-2', { image: xva });
    expect(leftovers(sim)).toEqual({ vms: 0, vdis: 0, vbds: 0, sessions: 0, tasks: 0 });
    expect(sim.calls.filter((m) => m === 'VDI.destroy')).toHaveLength(2); // the imported disk and the CD
  });

  it('puts a local --iso file in the CD drive, or an ISO from an ISO library by name', async () => {
    const sim = await startSim();
    const iso = join(dir, 'mine.iso');
    writeFileSync(iso, Buffer.concat([Buffer.alloc(32768), Buffer.from('CD001 nonce=run-iso-1\n'), Buffer.alloc(2048)]));
    await boot(sim, 'run-iso-1', { iso });
    expect(leftovers(sim).vdis).toBe(0);

    const isoSr = sim.find('SR', (r) => r['content_type'] === 'iso')[0]![0];
    const nfs = sim.find('SR', (r) => r['name_label'] === 'NFS storage')[0]![0];
    sim.add('VDI', { name_label: 'fbxen-tools.iso', SR: nfs, virtual_size: '4096', type: 'user', read_only: false, VBDs: [], managed: true }); // a disk with the same name, found first
    const libIso = sim.add('VDI', { name_label: 'fbxen-tools.iso', SR: isoSr, virtual_size: '4096', type: 'user', read_only: true, VBDs: [], managed: true });
    sim.vdiContent.set(libIso, Buffer.from('CD001 nonce=run-iso-2\n'));
    const result = await boot(sim, 'run-iso-2', { iso: 'fbxen-tools.iso', keep: true });
    expect(readFileSync(result.consoleLog, 'utf8')).toContain('FBXEN1 END run-iso-2 boot');
    const cd = [...sim.db.VBD.values()].find((r) => r['type'] === 'CD')!;
    expect(cd['VDI']).toBe(libIso);
    expect(JSON.parse(readFileSync(join(result.artifactsDir, 'run.json'), 'utf8')).xapi.nonceChannel).toBe('iso-sr');
    expect(sim.db.VDI.has(libIso)).toBe(true); // not ours: never destroyed
    await expect(boot(sim, 'run-iso-3', { iso: 'no-such.iso' })).rejects.toThrow(/no ISO named "no-such.iso"/);
  });

  it('falls back to a second disk when this xapi refuses a non-ISO VDI in the CD drive (VDI_IS_NOT_ISO)', async () => {
    const sim = await startSim({ strictCdIso: true });
    const warnings: string[] = [];
    const progress: Progress = { ...silentProgress, warn: (m) => warnings.push(m) };
    const result = await boot(sim, 'run-strict-1', { keep: true }, { progress });
    expect(readFileSync(result.consoleLog, 'utf8')).toContain('FBXEN1 END run-strict-1 boot');
    expect(warnings.join('\n')).toMatch(/second disk/);
    const vbds = [...sim.db.VBD.values()].map((r) => `${r['type']}:${r['userdevice']}:${r['empty'] ? 'empty' : 'full'}`).sort();
    expect(vbds).toEqual(['CD:3:empty', 'Disk:0:full', 'Disk:1:full']);
    expect(JSON.parse(readFileSync(join(result.artifactsDir, 'run.json'), 'utf8')).xapi.nonceChannel).toBe('second-disk');
  });

  it.each([
    ['VM.start', 'NO_HOSTS_AVAILABLE'],
    ['VBD.insert', 'OTHER_OPERATION_IN_PROGRESS'],
    ['VIF.create', 'HANDLE_INVALID'],
    ['/import_raw_vdi', 'VDI_IO_ERROR'],
  ])('cleans up everything it created when %s fails half-way (%s)', async (method, code) => {
    const sim = await startSim();
    sim.failOn(method, code, ['injected']);
    const err = await boot(sim, `run-fail-${code}`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code, exitCode: 5 });
    expect(String((err as Error).message)).not.toContain(PASSWORD);
    expect(leftovers(sim)).toEqual({ vms: 0, vdis: 0, vbds: 0, sessions: 0, tasks: 0 });
    const runDir = join(dir, 'runs', 'fbsd-xapi', `run-fail-${code}`);
    expect(JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')).outcome).toBe('failed');
  });

  // Issue 13: the failures users meet most, as xapi raises them (datamodel_errors.ml, storage_access),
  // reach the user with a hint made from their parameters; the run still cleans up after itself.
  it.each([
    ['/import_raw_vdi', 'VDI_IO_ERROR', ['Device I/O errors'], /qemu-img check.*SMlog|SMlog.*qemu-img check/],
    ['VDI.create', 'SR_FULL', [String(8 * 2 ** 30), String(2 ** 30)], /8\.0 GiB requested, 1\.0 GiB at most.*--sr/],
    ['VDI.create', 'SR_BACKEND_FAILURE_44', ['', 'There is insufficient space', ''], /no room.*--sr/],
    ['VM.start', 'SR_BACKEND_FAILURE_47', ['', 'The SR is not available [opterr=Device not appeared yet]', ''], /xe pbd-plug/],
  ])('%s failing with %s gives a hint made for it, and cleans up', async (method, code, params, hint) => {
    const sim = await startSim();
    sim.failOn(method, code, params);
    const err = await boot(sim, `run-hint-${code}`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code, exitCode: 5 });
    expect((err as { hint: string }).hint).toMatch(hint);
    expect((err as { hint: string }).hint).not.toMatch(/error reference/);
    if (code.startsWith('SR_BACKEND_FAILURE_')) expect((err as Error).message).toContain(`storage backend error ${code.slice(19)}: ${params[1]}`);
    expect(leftovers(sim)).toEqual({ vms: 0, vdis: 0, vbds: 0, sessions: 0, tasks: 0 });
  });

  it('without the fbxen CD (--empty-cdrom, --iso) the newest frame of any run counts, as with xl: the guest cannot know the run id', async () => {
    // The image carries the collector; it tags its frame with a run id of its own.
    const baked = await frameFor('baked-into-image');
    const sim = await startSim({ guestConsole: () => baked });
    const result = await runXapiBoot(request({ runId: 'run-empty-1', emptyCdrom: true, timeoutSec: 10 }), deps(sim), internals());
    expect(readFileSync(result.consoleLog, 'utf8')).toContain('FBXEN1 END baked-into-image boot');
    expect(JSON.parse(readFileSync(join(result.artifactsDir, 'run.json'), 'utf8'))).toMatchObject({ outcome: 'collected', frameRun: null });
    expect(leftovers(sim)).toEqual({ vms: 0, vdis: 0, vbds: 0, sessions: 0, tasks: 0 });
    // With the fbxen CD, the run's own id is what counts, and run.json says so.
    const own = await boot(await startSim(), 'run-own-1');
    expect(JSON.parse(readFileSync(join(own.artifactsDir, 'run.json'), 'utf8'))).toMatchObject({ frameRun: 'run-own-1' });
  });

  it('VM_REQUIRES_SR names the SR by its name, not only its ref', async () => {
    const sim = await startSim();
    const [localRef] = sim.find('SR', (r) => r['name_label'] === 'Local storage')[0]!;
    sim.failOn('VM.start', 'VM_REQUIRES_SR', ['OpaqueRef:vm', localRef]);
    const err = await boot(sim, 'run-hint-requires-sr').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VM_REQUIRES_SR', exitCode: 5 });
    expect((err as { hint: string }).hint).toContain(`"Local storage" (${localRef})`);
    expect((err as { hint: string }).hint).toMatch(/shared SR/);
    expect(leftovers(sim)).toEqual({ vms: 0, vdis: 0, vbds: 0, sessions: 0, tasks: 0 });
  });

  it('a wrong password: SESSION_AUTHENTICATION_FAILED names the user and the variables, never the password', async () => {
    const sim = await startSim();
    const wrong = 'Wrong-pw-for-hint-test';
    const err = await runXapiBoot(request({ runId: 'run-hint-auth' }), deps(sim, { env: { FBXEN_XAPI_URL: sim.url, FBXEN_XAPI_USER: 'ci-bot', FBXEN_XAPI_PASSWORD: wrong } }), internals()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SESSION_AUTHENTICATION_FAILED', exitCode: 5 });
    expect((err as { hint: string }).hint).toMatch(/user "ci-bot".*FBXEN_XAPI_PASSWORD/);
    expect(`${(err as Error).message}${(err as { hint: string }).hint}`).not.toContain(wrong);
  });

  it('HOST_IS_SLAVE that fbxen cannot follow (members pointing at each other): "connect to <master>"', async () => {
    const a = await startSim({ host: '127.0.0.1', slaveOf: '127.0.0.2' });
    await startSim({ host: '127.0.0.2', port: a.port, slaveOf: '127.0.0.1' });
    const err = await boot(a, 'run-hint-slave').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'HOST_IS_SLAVE', exitCode: 5 });
    expect((err as { hint: string }).hint).toMatch(/connect to 127\.0\.0\.[12], the pool master/);
  });

  it('removes the VM when the guest never writes a frame (timeout) and when interrupted (SIGINT)', async () => {
    const sim = await startSim({ guestConsole: () => 'FreeBSD hangs here\r\n' });
    const err = await boot(sim, 'run-timeout-1', { timeoutSec: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(leftovers(sim)).toEqual({ vms: 0, vdis: 0, vbds: 0, sessions: 0, tasks: 0 });
    expect(JSON.parse(readFileSync(join(dir, 'runs', 'fbsd-xapi', 'run-timeout-1', 'run.json'), 'utf8')).outcome).toBe('timeout');

    const ac = new AbortController();
    const watcher = setInterval(() => {
      if (sim.find('VM', (r) => r['power_state'] === 'Running').length) ac.abort(new InterruptedError('SIGINT'));
    }, 10);
    const err2 = await boot(sim, 'run-sigint-1', { timeoutSec: 20 }, { signal: ac.signal }).catch((e: unknown) => e);
    clearInterval(watcher);
    expect(err2).toBeInstanceOf(InterruptedError);
    expect(leftovers(sim)).toEqual({ vms: 0, vdis: 0, vbds: 0, sessions: 0, tasks: 0 });
    expect(JSON.parse(readFileSync(join(dir, 'runs', 'fbsd-xapi', 'run-sigint-1', 'run.json'), 'utf8')).outcome).toBe('interrupted');
  });

  it('stops at the next call when interrupted during setup, with the command cleanup racing the failure path', async () => {
    const sim = await startSim();
    const ac = new AbortController();
    const d = deps(sim, { signal: ac.signal });
    // Interrupt right after the VM exists, and run the command's cleanup stack at once, as the CLI does on SIGINT.
    const watcher = setInterval(() => {
      if (sim.find('VM', (r) => !r['is_a_template']).length && !ac.signal.aborted) {
        ac.abort(new InterruptedError('SIGINT'));
        void d.cleanup.unwind();
      }
    }, 1);
    frames.set('run-race-1', await frameFor('run-race-1'));
    const err = await runXapiBoot(request({ runId: 'run-race-1' }), d, internals()).catch((e: unknown) => e);
    clearInterval(watcher);
    expect(err).toBeInstanceOf(InterruptedError);
    expect(leftovers(sim)).toEqual({ vms: 0, vdis: 0, vbds: 0, sessions: 0, tasks: 0 });
    expect(sim.calls).not.toContain('Async.VM.start');
  });

  it('follows HOST_IS_SLAVE and records the master', async () => {
    const master = await startSim({ host: '127.0.0.1' });
    const member = await startSim({ host: '127.0.0.2', port: master.port, slaveOf: '127.0.0.1' });
    frames.set('run-slave-1', await frameFor('run-slave-1'));
    const result = await runXapiBoot(request({ runId: 'run-slave-1' }), deps(member), internals());
    expect(readFileSync(result.consoleLog, 'utf8')).toContain('FBXEN1 END run-slave-1');
    expect(readFileSync(join(result.artifactsDir, 'transcript.log'), 'utf8')).toContain(`redirected to the pool master ${master.url}`);
    expect(leftovers(master).vms).toBe(0);
  });

  it('follows a 302 on upload by sending the whole file again', async () => {
    const sim = await startSim({ redirectUploadsOnce: true });
    const result = await boot(sim, 'run-302-1', { keep: true });
    const puts = sim.wire.filter((w) => w.startsWith('PUT /import_raw_vdi'));
    expect(puts[0]).not.toContain('redirected=1');
    expect(puts[1]).toContain('redirected=1');
    const [[, disk]] = sim.find('VDI', (r) => String(r['name_label']).endsWith('disk0')) as [[string, Record<string, unknown>]];
    const diskRef = [...sim.db.VDI.entries()].find(([, r]) => r === disk)![0];
    expect(sim.vdiContent.get(diskRef)?.equals(readFileSync(vhd))).toBe(true);
    expect(result.domain.kept).toBe(true);
  });

  it('refuses an answer in the wrong shape with a clear error, and still cleans up', async () => {
    const sim = await startSim();
    // A "network" without a bridge: what fbxen reads is validated, not trusted.
    sim.add('network', { name_label: 'broken', VIFs: [] });
    const err = await boot(sim, 'run-shape-1').catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/network\.get_all_records answered in an unexpected shape \(OpaqueRef:[^.]+\.bridge: /);
    expect(leftovers(sim)).toEqual({ vms: 0, vdis: 0, vbds: 0, sessions: 0, tasks: 0 });
  });

  it('names the VM fbxen-<image> when --name is left out', async () => {
    const sim = await startSim();
    frames.set('run-noname-1', await frameFor('run-noname-1'));
    const result = await runXapiBoot(request({ runId: 'run-noname-1', name: '' }), deps(sim), internals());
    expect(result.name).toBe('fbxen-disk');
    expect(result.artifactsDir).toBe(join(dir, 'runs', 'fbxen-disk', 'run-noname-1'));
    expect(sim.calls).toContain('VM.clone');
  });

  it('refuses qcow2 and a missing image with a hint, before contacting XAPI', async () => {
    const q = join(dir, 'x.qcow2');
    writeFileSync(q, Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.alloc(1020)]));
    await expect(runXapiBoot(request({ image: q }), deps(undefined), internals())).rejects.toThrow(/qcow2, which XenServer does not import/);
    await expect(runXapiBoot(request({ image: join(dir, 'none.vhd') }), deps(undefined), internals())).rejects.toThrow(/does not exist/);
    expect((await inspectImage(xva, dir)).format).toBe('xva');
    expect(await inspectImage(vhd, dir)).toMatchObject({ format: 'vhd', detail: 'dynamic', virtualSize: 4 * MiB });
    expect(await inspectImage(raw, dir)).toMatchObject({ format: 'raw', detail: 'GPT', virtualSize: 4 * MiB });
  });
});

describe('--dry-run call plans (golden)', () => {
  it.each([
    ['xva', 'disk.xva', {}],
    ['vhd', 'disk.vhd', { sr: 'NFS storage', network: 'Lab network', verify: true }],
    ['vhd-empty-cdrom-keep', 'disk.vhd', { emptyCdrom: true, keep: true, insecure: true }],
  ] as const)('%s', async (label, image, over) => {
    const result = await runXapiBoot(request({ image, runId: 'run-plan-1', dryRun: true, ...over }), deps(undefined), internals());
    const plan = result.planText!.split(dir).join('<tmp>');
    expect(plan).not.toContain(PASSWORD);
    expect(plan).toContain('<password>');
    await expect(plan).toMatchFileSnapshot(`../../fixtures/golden/plans/boot-xapi-${label}.txt`);
    expect(() => statSync(join(dir, 'runs', 'fbsd-xapi', 'run-plan-1'))).toThrow(); // a plan writes nothing
  });
});

describe('--dry-run refuses what the run refuses, before anything is contacted or written', () => {
  it.each([
    ['a console port that is none', { FBXEN_XAPI_CONSOLE_PORT: 'abc' }, /FBXEN_XAPI_CONSOLE_PORT "abc" is not a TCP port/],
    ['a console port out of range', { FBXEN_XAPI_CONSOLE_PORT: '70000' }, /is not a TCP port/],
    ['missing credentials', { FBXEN_XAPI_PASSWORD: undefined }, /XAPI credentials are incomplete/],
  ])('%s', async (_what, envOver, pattern) => {
    const env = { ...deps(undefined).env, ...envOver };
    for (const dryRun of [true, false]) {
      const err = await runXapiBoot(request({ runId: 'run-refused-1', dryRun }), deps(undefined, { env }), internals()).catch((e: unknown) => e);
      expect(String((err as Error).message)).toMatch(pattern);
      expect((err as { exitCode?: number }).exitCode).toBe(3);
    }
    expect(() => statSync(join(dir, 'runs', 'fbsd-xapi', 'run-refused-1'))).toThrow();
  });

  it('a VM name that cannot name a run directory', async () => {
    for (const dryRun of [true, false]) {
      await expect(runXapiBoot(request({ runId: 'run-refused-2', name: '../escape', dryRun }), deps(undefined), internals())).rejects.toThrow(/VM name "\.\.\/escape" is not allowed/);
    }
    expect(() => statSync(join(dir, 'runs', 'escape'))).toThrow();
  });
});

describe('XAPI credentials', () => {
  it('come from the environment, never from argv; missing ones are named without values', async () => {
    await expect(loadXapiCredentials({ FBXEN_XAPI_URL: 'https://pool', FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: PASSWORD })).resolves.toMatchObject({ url: 'https://pool', user: 'root', password: PASSWORD, source: 'environment' });
    const err = await loadXapiCredentials({ FBXEN_XAPI_URL: 'ftp://x', FBXEN_XAPI_USER: 'root' }).catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/url: must be an http/);
    expect(String((err as Error).message)).toMatch(/password: missing or empty/);
    expect((err as { hint?: string }).hint).toMatch(/never taken from the command line/);
    const inUrl = await loadXapiCredentials({ FBXEN_XAPI_URL: `https://root:${PASSWORD}@pool`, FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: PASSWORD }).catch((e: unknown) => e);
    expect(String((inUrl as Error).message)).toMatch(/url: must not carry user or password/);
    expect(String((inUrl as Error).message)).not.toContain(PASSWORD);
  });

  it('come from a mode-600 file, and a group/world-readable one is refused', async () => {
    const f = join(dir, 'creds');
    writeFileSync(f, `url=https://pool.lab\nuser=root\npassword='${PASSWORD}'\n`);
    chmodSync(f, 0o644);
    const err = await loadXapiCredentials({ FBXEN_XAPI_CREDENTIALS_FILE: f }).catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/can be read by group or others \(mode 644\)/);
    expect((err as { hint?: string }).hint).toBe(`run: chmod 600 ${f}`);
    chmodSync(f, 0o600);
    await expect(loadXapiCredentials({ FBXEN_XAPI_CREDENTIALS_FILE: f })).resolves.toMatchObject({ url: 'https://pool.lab', user: 'root', password: PASSWORD, source: 'file' });
    writeFileSync(f, `url: https://other\nuser: admin\npassword: "${PASSWORD}"\n`);
    await expect(loadXapiCredentials({ FBXEN_XAPI_CREDENTIALS_FILE: f, FBXEN_XAPI_URL: 'https://override' })).resolves.toMatchObject({ url: 'https://override', user: 'admin' });
  });
});
