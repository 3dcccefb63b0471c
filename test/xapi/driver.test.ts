/**
 * The XAPI driver through the Toolstack interface (src/core/toolstack/types.ts), against the XAPI
 * simulator (a test double: test/support/xapi-sim/sim.ts): what the toolstack-agnostic flows ask of it.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { GuestSpec } from '../../src/core/toolstack/types.js';
import { CreatedObjects } from '../../src/core/toolstack/xapi/created.js';
import { XapiDriver } from '../../src/core/toolstack/xapi/driver.js';
import { XapiError } from '../../src/core/toolstack/xapi/errors.js';
import { XapiSim } from '../support/xapi-sim/sim.js';

const dir = mkdtempSync(join(tmpdir(), 'fbxen-xapi-driver-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;
const raw = join(dir, 'disk.raw');
writeFileSync(raw, Buffer.alloc(4 * MiB));

const closeAfter: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (closeAfter.length) await closeAfter.pop()!();
});

async function start(guestConsole = 'FreeBSD/amd64 (sim) (ttyu0)\nlogin: \n') {
  const sim = await new XapiSim({ password: 'pw', guestConsole: () => guestConsole }).start();
  closeAfter.push(() => sim.stop());
  const driver = new XapiDriver({
    env: { FBXEN_XAPI_URL: sim.url, FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: 'pw' },
    signal: new AbortController().signal,
    insecureHttp: true, // the simulator serves plain http on loopback
    consoleHost: '127.0.0.1',
    clientOptions: { pollIntervalMs: 10 },
    timeoutMs: 10_000,
  });
  closeAfter.push(() => driver.close());
  return { sim, driver };
}

const guest = (over: Partial<GuestSpec> = {}): GuestSpec => ({
  name: 'fbsd-drv',
  type: 'hvm',
  vcpus: 1,
  memoryMiB: 256,
  image: { path: raw, format: 'raw', size: 4 * MiB, virtualSize: 4 * MiB },
  cdrom: { kind: 'empty' },
  ...over,
});

function collector(): Writable & { text: () => string } {
  const chunks: Buffer[] = [];
  const w = new Writable({
    write(c: Buffer, _e, done) {
      chunks.push(c);
      done();
    },
  });
  return Object.assign(w, { text: () => Buffer.concat(chunks).toString('latin1') });
}

async function until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const ourVms = (sim: XapiSim) => sim.find('VM', (r) => !r['is_a_template']);

describe('XapiDriver as a Toolstack (simulator)', () => {
  it('declares what XAPI can do, and refuses PVH and qcow2 before contacting anything', () => {
    const d = new XapiDriver({ env: {}, signal: new AbortController().signal });
    expect(d.capabilities).toMatchObject({ saveRestore: true, liveMigrate: true, pvh: false, remote: true, consoleAfterMigrate: 'reconnects', checkpoint: 'toolstack' });
    expect(() => d.prepare(guest({ type: 'pvh' }))).toThrow(/HVM only: a PVH VM needs .*domain_type 'pvh'.*\/var\/lib\/xcp\/guest\//);
    expect(() => d.prepare(guest({ image: { path: 'x.qcow2', format: 'qcow2', size: 1, virtualSize: 1 } }))).toThrow(/qcow2, which XenServer does not import/);
    expect(() => d.prepare(guest({ name: '../x' }))).toThrow(/VM name "\.\.\/x" is not allowed/);
  });

  it('create tags the VM with the run id stage was given, captures the console into the sink from the first byte, and destroy removes the VM and its disk', async () => {
    const { sim, driver } = await start();
    await driver.preflight(guest());
    await driver.stage({ image: raw }, 'run-drv-1');
    mkdirSync(join(dir, 'runs', 'fbsd-drv', 'run-drv-1'), { recursive: true }); // the flow makes the run directory
    const sink = collector();
    let reported: string | undefined;
    const created = await driver.create(guest(), { runDir: join(dir, 'runs', 'fbsd-drv', 'run-drv-1'), console: sink, signal: new AbortController().signal, onDomain: (d) => (reported = d.id) });
    expect(reported).toBe(created.domain.id);
    expect(created.domain).toMatchObject({ name: 'fbsd-drv', host: 'xcp-host-1' });
    const [[, vm]] = ourVms(sim) as [[string, Record<string, unknown>]];
    expect(vm['other_config']).toMatchObject({ fbxen_run: 'run-drv-1' });
    expect(vm['uuid']).toBe(created.domain.id);
    await until('the console in the sink', () => sink.text().includes('login:'));
    // the VM record, as xl writes its xl.cfg into the run
    expect(JSON.parse(readFileSync(join(dir, 'runs', 'fbsd-drv', 'run-drv-1', 'vm-record.json'), 'utf8'))).toMatchObject({ host: { name: 'xcp-host-1' }, vm: { uuid: created.domain.id }, nonceChannel: 'none' });
    expect(await driver.state(created.domain)).toBe('running');
    expect(await driver.attachConsole(created.domain, collector())).toBe(created.console); // one listener per VM
    expect(await driver.find('fbsd-drv', created.domain.id)).toMatchObject({ id: created.domain.id });
    expect(await driver.find('fbsd-drv', 'another-uuid')).toBeUndefined();
    await driver.destroy(created.domain);
    expect(ourVms(sim)).toHaveLength(0);
    expect(sim.db.VDI.size).toBe(0);
    expect(await driver.state(created.domain)).toBeUndefined();
    expect(await driver.state({ name: 'never-there', id: 'never-there', host: '' })).toBeUndefined(); // by name: no such VM
    await driver.destroy(created.domain); // gone already: destroyed
  });

  it('shutdown asks the guest (VM.clean_shutdown) and says whether it went', async () => {
    const { sim, driver } = await start();
    await driver.stage({ image: raw }, 'run-drv-2');
    mkdirSync(join(dir, 'run-drv-2'), { recursive: true });
    const created = await driver.create(guest(), { runDir: join(dir, 'run-drv-2'), console: collector(), signal: new AbortController().signal });
    expect(await driver.shutdown(created.domain, 5000)).toBe(true);
    expect(await driver.state(created.domain)).toBe('halted');
    expect(sim.calls).toContain('Async.VM.clean_shutdown');
    await driver.destroy(created.domain);
  });

  it('destroy refuses a VM of the same name that this run did not create', async () => {
    const { sim, driver } = await start();
    const tmpl = sim.find('VM', (r) => r['name_label'] === 'Other install media')[0]![0];
    sim.add('VM', { ...sim.db.VM.get(tmpl)!, name_label: 'fbsd-drv', is_a_template: false, uuid: 'someone-elses', other_config: {}, VBDs: [], VIFs: [], power_state: 'Halted' });
    await driver.stage({ image: raw }, 'run-drv-3');
    const theirs = await driver.find('fbsd-drv');
    expect(theirs).toMatchObject({ uuid: 'someone-elses' });
    await expect(driver.destroy(theirs!)).rejects.toThrow(/was not created by this fbxen run.*not destroyed/);
    expect(ourVms(sim)).toHaveLength(1);
  });

  it('a --dry-run plan checks the settings, contacts nothing, and tags with the run directory\'s name', async () => {
    const d = new XapiDriver({ env: { FBXEN_XAPI_URL: 'https://pool.example', FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: 'pw' }, signal: new AbortController().signal, timeoutMs: 20_000 });
    const lines = [...(await d.plan({ step: 'preflight', guest: guest() })), ...(await d.plan({ step: 'create', guest: guest(), runDir: '/r/fbsd-drv/run-plan-9', consoleLog: '/r/c.log' }))];
    expect(lines[0]).toBe('session.login_with_password("root", <password>, "1.1", "fbxen")  # follows HOST_IS_SLAVE to the master');
    expect(lines.join('\n')).toContain('"fbxen boot disk (run run-plan-9)"');
    expect(lines.join("\n")).toMatch(/VM.add_to_platform\(<session>, <VM#\d+>, "hvm_serial", "tcp:<this host>:<port>"\)/);
    const none = new XapiDriver({ env: {}, signal: new AbortController().signal });
    await expect(none.plan({ step: 'preflight', guest: guest() })).rejects.toThrow(/XAPI credentials are incomplete/);
  });
});

describe('XapiDriver cleanup after Ctrl-C (simulator)', () => {
  it('destroy of the VM a create has not yet returned removes its disks too, even once the run is interrupted', async () => {
    const sim = await new XapiSim({ password: 'pw', guestConsole: () => 'login: \n' }).start();
    closeAfter.push(() => sim.stop());
    const ac = new AbortController();
    // create is held at its start step: the VM and its uploaded disk exist, create has not returned
    let parked!: () => void;
    const atStart = new Promise<void>((r) => (parked = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const step = async <T,>(title: string, fn: () => Promise<T>): Promise<T> => {
      if (title.startsWith('Start ')) {
        parked();
        await released;
      }
      return fn();
    };
    const driver = new XapiDriver({ env: { FBXEN_XAPI_URL: sim.url, FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: 'pw' }, signal: ac.signal, insecureHttp: true, consoleHost: '127.0.0.1', clientOptions: { pollIntervalMs: 10 }, timeoutMs: 10_000, step });
    closeAfter.push(() => driver.close());
    await driver.stage({ image: raw }, 'run-drv-int');
    mkdirSync(join(dir, 'run-drv-int'), { recursive: true });
    const creating = driver.create(guest(), { runDir: join(dir, 'run-drv-int'), console: collector(), signal: ac.signal }).catch((e: unknown) => e);
    await atStart;
    ac.abort(new Error('SIGINT'));
    const found = await driver.find('fbsd-drv');
    expect(found).toBeDefined();
    await driver.destroy(found!);
    expect(ourVms(sim)).toHaveLength(0);
    expect(sim.db.VDI.size).toBe(0); // the uploaded disk went with the VM, before close()
    release();
    expect(String(await creating)).toMatch(/SIGINT/); // create stops at its next call, and its own cleanup finds nothing left
    expect(sim.calls).not.toContain('Async.VM.start');
  });
});

describe("XapiDriver.attachConsole (migrate-test's console)", () => {
  it('binds where FBXEN_XAPI_CONSOLE_LISTEN says, as boot does, on the port of the VM\'s hvm_serial', async () => {
    const sim = await new XapiSim({ password: 'pw' }).start();
    closeAfter.push(() => sim.stop());
    const tmpl = sim.find('VM', (r) => r['name_label'] === 'Other install media')[0]![0];
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    sim.add('VM', { ...sim.db.VM.get(tmpl)!, name_label: 'fbsd-con', is_a_template: false, uuid: 'u-con', platform: { hvm_serial: `tcp:127.0.0.2:${port}` }, VBDs: [], VIFs: [] });
    const driver = new XapiDriver({ env: { FBXEN_XAPI_URL: sim.url, FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: 'pw', FBXEN_XAPI_CONSOLE_LISTEN: '127.0.0.1', FBXEN_XAPI_CONSOLE_PEERS: 'any' }, signal: new AbortController().signal, insecureHttp: true });
    closeAfter.push(() => driver.close());
    const sink = collector();
    expect(await driver.attachConsole({ name: 'fbsd-con', id: 'u-con', host: '', uuid: 'u-con' }, sink)).toBeDefined();
    const s = net.connect({ port, host: '127.0.0.1' });
    await new Promise<void>((ok, fail) => (s.once('connect', ok), s.once('error', fail)));
    s.end('hello\n');
    await until('hello', () => sink.text() === 'hello\n');
  });
});

describe('CreatedObjects (what a run made)', () => {
  it('a VM another cleanup already removed counts as removed, and stays known as this run\'s', async () => {
    const calls: string[] = [];
    const api = {
      call: async (method: string) => {
        calls.push(method);
        if (method === 'VM.get_power_state') throw new XapiError('HANDLE_INVALID', ['VM', 'OpaqueRef:vm'], method);
        return '';
      },
    };
    const c = new CreatedObjects();
    c.vm = 'OpaqueRef:vm';
    c.vdis.push('OpaqueRef:disk');
    expect(await c.remove(api)).toEqual([]);
    expect(calls).toEqual(['VM.get_power_state', 'VDI.destroy']);
    expect(c.owns('OpaqueRef:vm')).toBe(true);
    expect(c.owns('OpaqueRef:other')).toBe(false);
  });
});
