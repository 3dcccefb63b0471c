/**
 * The XAPI driver's migration (the Toolstack interface migrate-test asks) against the XAPI simulator (test/support/xapi-sim, a SIMULATION): preflight
 * (shared storage, another host), VM.pool_migrate there and back with the console reconnecting,
 * VM.migrate_send with --dest-sr, a migration that fails half-way, one that hangs (the task is
 * cancelled), and the whole loop with a guest-channel double.
 */
import net, { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/core/errors.js';
import { ConsoleCapture, formatBeat, formatInfo, migrateTest, MigrationError, MigrationTimeoutError, type GuestChannel } from '../../src/core/migrate/index.js';
import { sinkOf } from '../../src/core/migrate/migrate-setup.js';
import type { DomainRef } from '../../src/core/toolstack/types.js';
import { silentProgress } from '../../src/core/progress.js';
import { XapiClient } from '../../src/core/toolstack/xapi/client.js';
import { XapiDriver } from '../../src/core/toolstack/xapi/driver.js';
import { CleanupStack } from '../../src/core/util/cleanup.js';
import { XapiSim, type SimOptions } from '../support/xapi-sim/sim.js';
import { advanced, fixturePair } from '../support/migrate/bundles.js';

const open: Array<{ close(): Promise<void> | void }> = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A pool with a running VM "fbxen-mig" whose disk is on `srName` and whose console points at a free port. */
async function pool(srName = 'NFS storage', opts: SimOptions = {}) {
  const sim = await new XapiSim({ guestConsole: ({ record }) => `FreeBSD console on ${String(record['resident_on'])}\n`, ...opts }).start();
  open.push({ close: () => sim.stop() });
  const c = await XapiClient.connect({ url: sim.url, user: 'root', password: 'sim-password', pollIntervalMs: 5 });
  open.push({ close: () => c.logout() });
  const tmpl = ((await c.call('VM.get_by_name_label', 'Other install media')) as string[])[0]!;
  const vm = String(await c.call('VM.clone', tmpl, 'fbxen-mig'));
  await c.call('VM.provision', vm);
  const srs = (await c.call('SR.get_all_records')) as Record<string, Record<string, unknown>>;
  const [sr] = Object.entries(srs).find(([, r]) => r['name_label'] === srName)!;
  const vdi = String(await c.call('VDI.create', { name_label: 'd', SR: sr, virtual_size: 1048576, type: 'user', sharable: false, read_only: false, other_config: {}, xenstore_data: {}, sm_config: {}, tags: [] }));
  await c.call('VBD.create', { VM: vm, VDI: vdi, userdevice: '0', bootable: true, mode: 'RW', type: 'Disk', empty: false, unpluggable: false, other_config: {}, qos_algorithm_type: '', qos_algorithm_params: {} });
  const port = await freePort();
  await c.call('VM.add_to_platform', vm, 'hvm_serial', `tcp:127.0.0.1:${port}`);
  return { sim, c, vm, vdi, port, start: () => c.callAsync('VM.start', [vm, false, false], 5000) };
}

/** The XAPI driver on the test's session (not logged out by close). */
function xapi(c: Pick<XapiClient, 'call' | 'callAsync'> | { call: (m: string) => Promise<unknown>; callAsync: () => Promise<unknown> }, o: { to?: string; destSr?: string; listenHost?: string } = {}) {
  const d = XapiDriver.withSession(c as Pick<XapiClient, 'call' | 'callAsync'>, { env: {}, signal: new AbortController().signal, destSr: o.destSr, listenHost: o.listenHost });
  open.push(d);
  return d;
}
const VM: DomainRef = { name: 'fbxen-mig', id: 'fbxen-mig', host: '' };
const skipOf = async (d: XapiDriver, mode: 'live' | 'save-restore', to?: string) => (await d.migrationRoute('fbxen-mig', mode, to)).skip;

async function waitFor(pred: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
}

describe('XapiDriver migration with the XAPI simulator (SIMULATION)', () => {
  it('VM.pool_migrate to the other host and back; the console listener on hvm_serial sees each new QEMU', async () => {
    const p = await pool();
    const driver = xapi(p.c, { listenHost: '127.0.0.1' });
    const capture = new ConsoleCapture(undefined);
    // Not running is not "migration does not apply": the job cannot be done, and the run says so (exit 4).
    await expect(driver.migrationRoute('fbxen-mig', 'live', undefined)).rejects.toMatchObject({ exitCode: ExitCode.environment, message: 'VM fbxen-mig is Halted, not Running' });
    await driver.attachConsole(VM, sinkOf((d) => capture.write(d)));
    await p.start();
    const route = await driver.migrationRoute('fbxen-mig', 'live', undefined);
    expect(route).toEqual({ origin: 'xcp-host-1', destination: 'xcp-host-2' });
    expect(await driver.locate('fbxen-mig')).toMatchObject({ host: 'xcp-host-1', state: 'running', name: 'fbxen-mig' });
    const one = await driver.migrate(VM, route.destination, 5000);
    expect(one.where).toMatchObject({ host: 'xcp-host-2', state: 'running' });
    const two = await driver.migrate(VM, route.origin, 5000);
    expect(two.where).toMatchObject({ host: 'xcp-host-1' });
    await waitFor(() => capture.lines.length >= 3);
    expect(capture.lines.map((l) => l.text.replace(/OpaqueRef:\S+/, 'HOST'))).toEqual(['FreeBSD console on HOST', 'FreeBSD console on HOST', 'FreeBSD console on HOST']);
    expect(p.sim.calls.filter((m) => m === 'VM.pool_migrate')).toHaveLength(2);
  });

  it('two hosts with the same name label: the route names them apart, and the migration goes to the other one', async () => {
    const p = await pool();
    await p.start();
    const hosts = (await p.c.call('host.get_all')) as string[];
    for (const h of hosts) await p.c.call('host.set_name_label', h, 'xcp');
    const driver = xapi(p.c);
    const route = await driver.migrationRoute('fbxen-mig', 'live', undefined);
    expect(route.origin).not.toBe(route.destination);
    await driver.migrate(VM, route.destination, 5000);
    expect(await p.c.call('VM.get_resident_on', p.vm)).toBe(hosts[1]);
    await driver.migrate(VM, route.origin, 5000);
    expect(await p.c.call('VM.get_resident_on', p.vm)).toBe(hosts[0]);
  });

  it('disks on a local SR: an error that asks for --dest-sr (not a skip); with --dest-sr VM.migrate_send moves them', async () => {
    const p = await pool('Local storage');
    await p.start();
    await expect(skipOf(xapi(p.c), 'live')).rejects.toMatchObject({ exitCode: ExitCode.environment, message: expect.stringMatching(/storage not shared: Local storage \(disk 0\); VM.pool_migrate needs a shared SR/) });
    const motion = xapi(p.c, { destSr: 'NFS storage' });
    const route = await motion.migrationRoute('fbxen-mig', 'live', undefined);
    expect(route.skip).toBeUndefined();
    await motion.migrate(VM, route.destination, 5000);
    expect(p.sim.calls).toContain('VM.migrate_send');
    expect(p.sim.calls).toContain('host.migrate_receive');
    const srs = (await p.c.call('SR.get_all_records')) as Record<string, Record<string, unknown>>;
    expect(srs[String(await p.c.call('VDI.get_SR', p.vdi))]!['name_label']).toBe('NFS storage');
    await expect(skipOf(xapi(p.c), 'live', 'nonesuch')).rejects.toMatchObject({ exitCode: ExitCode.environment, message: expect.stringMatching(/no other host named nonesuch/) });
    await expect(xapi(p.c).migrationRoute('ghost', 'live', undefined)).rejects.toMatchObject({ exitCode: ExitCode.environment, message: expect.stringMatching(/no VM named ghost/) });
    await expect(skipOf(xapi(p.c, { destSr: 'nonesuch' }), 'live')).rejects.toMatchObject({ exitCode: ExitCode.environment, message: expect.stringMatching(/no SR named nonesuch/) });
  });

  it('preflight stops (exit 4, not a skip) when XAPI does not allow the operation now, or the destination is in maintenance', async () => {
    const p = await pool();
    await p.start();
    await p.c.call('VM.set_allowed_operations', p.vm, ['hard_shutdown', 'clean_shutdown']);
    await expect(skipOf(xapi(p.c), 'live')).rejects.toMatchObject({ exitCode: ExitCode.environment, message: expect.stringMatching(/XAPI does not allow pool_migrate .*PV drivers/) });
    await p.c.call('VM.set_allowed_operations', p.vm, ['pool_migrate', 'suspend']);
    const hosts = (await p.c.call('host.get_all')) as string[];
    await p.c.call('host.set_enabled', hosts[1]!, false);
    await expect(skipOf(xapi(p.c), 'live')).rejects.toMatchObject({ exitCode: ExitCode.environment, message: expect.stringMatching(/xcp-host-2 is disabled/) });
    expect(await skipOf(xapi(p.c), 'save-restore')).toBeUndefined();
  });

  it('a pool of one host is the one skip of a live run: there is provably nowhere to migrate to', async () => {
    const records: Record<string, unknown> = {
      'VM.get_by_name_label': ['OpaqueRef:vm'],
      'VM.get_record': { name_label: 'fbxen-mig', power_state: 'Running', resident_on: 'OpaqueRef:h1', VBDs: [], allowed_operations: ['pool_migrate', 'suspend'] },
      'host.get_all_records': { 'OpaqueRef:h1': { name_label: 'xcp-host-1', uuid: 'u1', address: '192.0.2.1', enabled: true } },
    };
    const client = { call: async (m: string) => records[m], callAsync: async () => undefined };
    expect(await skipOf(xapi(client), 'live')).toBe('the pool has one host: nowhere to migrate to');
  });

  it('a migration that fails half-way says where the VM is (still running at the source)', async () => {
    const p = await pool();
    await p.start();
    const driver = xapi(p.c);
    const route = await driver.migrationRoute('fbxen-mig', 'live', undefined);
    p.sim.failOn('VM.pool_migrate', 'VM_INCOMPATIBLE_WITH_THIS_HOST', ['vm', 'host', 'CPU features differ']);
    const err = (await driver.migrate(VM, route.destination, 5000).catch((e: unknown) => e)) as MigrationError;
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.exitCode).toBe(ExitCode.toolstack);
    expect(err.message).toMatch(/VM_INCOMPATIBLE_WITH_THIS_HOST.*the VM is now: fbxen-mig \(OpaqueRef:\S+\) running on xcp-host-1/s);
    expect(err.where).toMatchObject({ host: 'xcp-host-1', state: 'running' });
  });

  it('a migration that hangs: the task is cancelled at the timeout, the VM is reported where it is', async () => {
    const p = await pool('NFS storage', { taskDelayMs: 1000 });
    await p.start();
    const driver = xapi(p.c);
    const route = await driver.migrationRoute('fbxen-mig', 'live', undefined);
    const err = (await driver.migrate(VM, route.destination, 200).catch((e: unknown) => e)) as MigrationTimeoutError;
    expect(err).toBeInstanceOf(MigrationTimeoutError);
    expect(err.exitCode).toBe(ExitCode.timeout);
    expect(p.sim.calls).toContain('task.cancel');
    expect(err.where).toMatchObject({ state: 'running' });
  });
});

/** SIMULATION: a guest channel double: bundles from the fixtures, a steady heartbeat with one pause per migration. */
function channelDouble(): GuestChannel & { migrating: () => void } {
  let lines: { hostMs: number; text: string }[] = [];
  let t = 0;
  let seq = 0;
  const beats = (run: string, n: number, gapMs = 0) => {
    // Host arrival times: the beats of a "migrating" call arrive after the migration returned.
    t = Math.max(t, Date.now() - 10 * n);
    t += gapMs;
    for (let i = 0; i < n; i++) {
      t += 10;
      seq++;
      lines.push({ hostMs: t, text: formatBeat(run, { seq, wall: 1_800_000_000 + Math.floor(t / 1000), counter: BigInt(t * 1_000_000) }) });
    }
  };
  let current = '';
  return {
    kind: 'ssh',
    async prepare() {},
    async startHeartbeat(run) {
      current = run;
      lines = [{ hostMs: t, text: formatInfo(run, { timecounter: 'XENTIMER', frequency: 1e9, mask: 4294967295n, periodMs: 10 }) }];
      seq = 0;
      beats(run, 250);
    },
    async stopHeartbeat() {},
    migrating() {
      beats(current, 250, 400);
    },
    heartbeatLines() {
      return lines;
    },
    async collect(_run, phase) {
      const { before, after } = await fixturePair('migration-14.1-ok-derived');
      const m = /post-migrate-(\d+)/.exec(phase);
      return m ? advanced(after, Number(m[1])) : before;
    },
    async close() {},
    planCollect: () => 'collect',
    planHeartbeat: () => ['heartbeat'],
  };
}

describe('migrate-test over XAPI (simulator + guest channel double)', () => {
  it('two pool migrations pass; a third that fails leaves the VM running where the report says', async () => {
    const p = await pool();
    await p.start();
    const channel = channelDouble();
    const toolstack = XapiDriver.withSession(p.c, { env: {}, signal: new AbortController().signal, listenHost: '127.0.0.1' });
    const migrate = toolstack.migrate.bind(toolstack);
    toolstack.migrate = async (...a) => {
      const r = await migrate(...a);
      channel.migrating();
      return r;
    };
    p.sim.failOn('VM.pool_migrate', 'INTERNAL_ERROR', ['xenopsd: migration aborted'], 3);
    const out = await migrateTest(
      { toolstack: 'xapi', domain: 'fbxen-mig', iterations: 4, mode: 'live', load: 'none', keepGoing: false, evidence: 'ssh', ssh: { target: 'root@guest', hostKeyChecking: 'strict' }, stepTimeoutSec: 5, artifactsRoot: mkdtempSync(join(tmpdir(), 'fbxen-mx-')), runId: 'x1', dryRun: false, rollSeconds: 1 },
      { runner: { run: () => Promise.reject(new Error('no commands')), stream: () => { throw new Error('no commands'); } }, progress: silentProgress, signal: new AbortController().signal, cleanup: new CleanupStack(), env: {}, cwd: '/', toolstack, channel: () => channel, pollMs: 5 },
    );
    const r = out.report!;
    expect(r.iterations.map((i) => i.verdict)).toEqual(['pass', 'pass', 'error']);
    expect(r.iterations.map((i) => i.where?.host)).toEqual(['xcp-host-2', 'xcp-host-1', 'xcp-host-1']);
    expect(Math.abs(r.iterations[0]!.downtimeMs! - 400)).toBeLessThanOrEqual(20);
    expect(out.error?.exitCode).toBe(ExitCode.toolstack);
    expect(r.where).toMatchObject({ host: 'xcp-host-1', state: 'running' });
    // The toolstack's reason, whole: XAPI's error code and its parameters, and where the VM is.
    expect(r.iterations[2]!.reason).toMatch(/INTERNAL_ERROR/);
    expect(r.iterations[2]!.reason).toContain('xenopsd: migration aborted');
    expect(r.iterations[2]!.reason).toMatch(/the VM is now: fbxen-mig \(OpaqueRef:[^)]+\) running on xcp-host-1/);
    // netfront runs in every iteration; XAPI gives fbxen no listener on the pool's network: not arranged, said, never a pass
    for (const it of r.iterations.slice(0, 2)) {
      expect(it.network).toMatchObject({ verdict: 'not-arranged', reason: "the toolstack (xapi) runs on another machine: fbxen has no listener on the guest's network" });
      expect(it.probes.find((p) => p.id === 'netfront')?.verdict).toBe('inconclusive');
    }
  });
});

describe('XAPI console that fbxen cannot read', () => {
  it('a VM without a tcp: serial target: --evidence console stops with the fix, nothing migrated', async () => {
    const p = await pool();
    await p.c.call('VM.remove_from_platform', p.vm, 'hvm_serial');
    await p.start();
    expect(await xapi(p.c).attachConsole(VM, sinkOf(() => undefined))).toBeUndefined();
    const toolstack = XapiDriver.withSession(p.c, { env: {}, signal: new AbortController().signal });
    const out = await migrateTest(
      { toolstack: 'xapi', domain: 'fbxen-mig', iterations: 1, mode: 'live', load: 'none', keepGoing: false, evidence: 'console', stepTimeoutSec: 5, artifactsRoot: mkdtempSync(join(tmpdir(), 'fbxen-mx-')), runId: 'x2', dryRun: false },
      { runner: { run: () => Promise.reject(new Error('no commands')), stream: () => { throw new Error('no commands'); } }, progress: silentProgress, signal: new AbortController().signal, cleanup: new CleanupStack(), env: {}, cwd: '/', toolstack, pollMs: 5 },
    );
    expect(out.error?.exitCode).toBe(ExitCode.environment);
    expect(out.error?.hint).toMatch(/hvm_serial=tcp/);
    expect(p.sim.calls).not.toContain('VM.pool_migrate');
    expect(out.report!.where).toMatchObject({ state: 'running', host: 'xcp-host-1' });
  });
});

describe('the console listener of migrate-test over XAPI', () => {
  it("takes only the pool's hosts: a stranger's bytes never reach the capture (it took any peer, bound to 0.0.0.0)", async () => {
    const p = await pool();
    const capture = new ConsoleCapture(undefined);
    expect(await xapi(p.c).attachConsole(VM, sinkOf((d) => capture.write(d)))).toBeDefined();
    const stranger = net.connect({ port: p.port, host: '127.0.0.1', localAddress: '127.0.0.9' });
    stranger.on('error', () => undefined);
    stranger.write('FBXEN1 BEGIN forged\n');
    // refused at once (closed unread), or read into the capture as before
    await waitFor(() => stranger.destroyed || capture.allText().includes('forged'));
    await p.start();
    await waitFor(() => capture.lines.length >= 1);
    expect(capture.allText()).not.toContain('forged');
    expect(capture.lines.map((l) => l.text.replace(/OpaqueRef:\S+/, 'HOST'))).toEqual(['FreeBSD console on HOST']);
    stranger.destroy();
  });
});

describe('XAPI save-restore (simulator: VM.suspend, VM.resume)', () => {
  it('suspends and resumes the VM; the console reconnects', async () => {
    const p = await pool();
    const driver = xapi(p.c, { listenHost: '127.0.0.1' });
    const capture = new ConsoleCapture(undefined);
    await driver.attachConsole(VM, sinkOf((d) => capture.write(d)));
    await p.start();
    expect(await skipOf(driver, 'save-restore')).toBeUndefined();
    const saved = await driver.save(VM, '', 1, 5000);
    expect(await driver.locate('fbxen-mig')).toMatchObject({ state: 'suspended' });
    expect(await driver.restore(saved, 5000)).toMatchObject({ name: 'fbxen-mig', host: 'xcp-host-1' });
    expect(await driver.locate('fbxen-mig')).toMatchObject({ state: 'running', host: 'xcp-host-1' });
    expect(p.sim.calls).toEqual(expect.arrayContaining(['VM.suspend', 'VM.resume']));
    await waitFor(() => capture.lines.length >= 2);
    expect(capture.lines).toHaveLength(2);
  });
});
