/**
 * The XAPI client against the XAPI simulator (a test double, see test/support/xapi-sim/sim.ts) over both
 * transports, and against independent peers: CPython's xmlrpc.server (peer_xapi.py) for our XML-RPC
 * requests and CPython's xmlrpc.client (py_client_check.py) for the simulator's (our codec's) answers.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { XapiClient, isIdempotent, redirectUrl, type XapiCallRecord } from '../../src/core/toolstack/xapi/client.js';
import { XapiError } from '../../src/core/toolstack/xapi/errors.js';
import { openConsoleListener } from '../../src/core/toolstack/xapi/console.js';
import { migrateSend, poolMigrate } from '../../src/core/toolstack/xapi/migrate.js';
import { decodeMethodCall, decodeMethodResponse, encodeMethodCall, encodeMethodResponse, XmlRpcDouble, type XapiValue } from '../../src/core/toolstack/xapi/xmlrpc.js';
import { TimeoutError } from '../../src/core/errors.js';
import { XapiSim } from '../support/xapi-sim/sim.js';

const here = dirname(fileURLToPath(import.meta.url));
const PASSWORD = 'sim-password';

const sims: XapiSim[] = [];
async function sim(opts: ConstructorParameters<typeof XapiSim>[0] = {}): Promise<XapiSim> {
  const s = await new XapiSim(opts).start();
  sims.push(s);
  return s;
}
afterEach(async () => {
  while (sims.length) await sims.pop()!.stop();
});

function runAsync(cmd: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

function connect(s: XapiSim, extra: Partial<Parameters<typeof XapiClient.connect>[0]> = {}, log: XapiCallRecord[] = []) {
  return XapiClient.connect({ url: s.url, user: 'root', password: PASSWORD, onCall: (r) => log.push(r), ...extra });
}

describe('XML-RPC codec', () => {
  const value: fc.Arbitrary<XapiValue> = fc.letrec<{ v: XapiValue }>((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.string({ unit: 'grapheme' }).filter((s) => !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/.test(s) && !/\r/.test(s)),
      fc.boolean(),
      fc.array(tie('v'), { maxLength: 4 }),
      fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !/[\u0000-\u001f]/.test(k) && k.trim() === k && k !== '__proto__'), tie('v'), { maxKeys: 4 }),
    ),
  })).v;

  it('property: a method call and a response decode to what was encoded', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(value, { maxLength: 4 }), async (params) => {
        const call = await decodeMethodCall(encodeMethodCall('VM.do_thing', params));
        expect(call).toEqual({ method: 'VM.do_thing', params });
        expect(await decodeMethodResponse(encodeMethodResponse({ Status: 'Success', Value: params }))).toEqual({ Status: 'Success', Value: params });
      }),
      { numRuns: 150 },
    );
  });

  it('sends ints as strings and doubles as <double>, reads typed and untyped strings alike', async () => {
    const xml = encodeMethodCall('event.from', ['s', ['task'], '', new XmlRpcDouble(30), 2 ** 40]);
    expect(xml).toContain('<value><double>30.0</double></value>');
    expect(xml).toContain('<value>1099511627776</value>');
    expect(xml).not.toMatch(/<i4>|<int>/);
    const typed = '<?xml version="1.0"?>\n<methodResponse>\n <params>\n  <param>\n   <value><struct><member><name>a</name><value><string>x</string></value></member>\n<member><name>b</name><value>y</value></member><member><name>c</name><value><int>5</int></value></member></struct></value>\n  </param>\n </params>\n</methodResponse>\n';
    expect(await decodeMethodResponse(typed)).toEqual({ a: 'x', b: 'y', c: 5 });
  });

  it('rejects what is not XML-RPC with an InputError naming the problem', async () => {
    await expect(decodeMethodResponse('<html>nope</html>')).rejects.toThrow(/malformed XML-RPC/);
    await expect(decodeMethodResponse('<methodResponse><params><param><value><boolean>7</boolean></value></param></params></methodResponse>')).rejects.toThrow(/boolean/);
  });
});

describe.each(['jsonrpc', 'xmlrpc'] as const)('XapiClient over %s against the simulator', (transport) => {
  it('logs in with originator fbxen, calls, and logs out', async () => {
    const s = await sim();
    const log: XapiCallRecord[] = [];
    const c = await connect(s, { transport }, log);
    const pools = (await c.call('pool.get_all')) as string[];
    expect(pools).toHaveLength(1);
    const sr = await c.call('pool.get_default_SR', pools[0]!);
    expect(await c.call('SR.get_name_label', sr)).toBe('NFS storage');
    expect([...s.db.session.values()][0]!['originator']).toBe('fbxen');
    await c.logout();
    expect(s.db.session.size).toBe(0);
    expect(log.map((r) => r.method)).toEqual(['session.login_with_password', 'pool.get_all', 'pool.get_default_SR', 'SR.get_name_label', 'session.logout']);
    expect(JSON.stringify(log)).not.toContain(PASSWORD);
    expect(log[0]!.params[1]).toBe('<password>');
    expect(log[1]!.params[0]).toBe('<session>');
  });

  it('maps failures to XapiError(code, params) with a hint', async () => {
    const s = await sim();
    const c = await connect(s, { transport });
    const tmpl = ((await c.call('VM.get_by_name_label', 'Other install media')) as string[])[0]!;
    const vm = String(await c.call('VM.clone', tmpl, 'x'));
    const err = await c.call('VM.hard_shutdown', vm).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XapiError);
    expect(err).toMatchObject({ code: 'VM_BAD_POWER_STATE', params: [vm, 'running', 'halted'], exitCode: 5 });
    expect((err as XapiError).hint).toMatch(/power state/);
    await c.logout();
  });

  it('refuses a wrong password without echoing it', async () => {
    const s = await sim();
    const err = await XapiClient.connect({ url: s.url, user: 'root', password: 'wrong-pw-123', transport }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SESSION_AUTHENTICATION_FAILED' });
    expect(String((err as Error).message)).not.toContain('wrong-pw-123');
    expect((err as XapiError).hint).toMatch(/FBXEN_XAPI_PASSWORD/);
  });

  it('re-logs in once on SESSION_INVALID and retries the call', async () => {
    const s = await sim();
    const log: XapiCallRecord[] = [];
    const c = await connect(s, { transport }, log);
    s.invalidateSessions();
    expect(await c.call('pool.get_all')).toHaveLength(1);
    expect(log.map((r) => `${r.method}:${r.outcome}`)).toEqual(['session.login_with_password:ok', 'pool.get_all:SESSION_INVALID', 'session.login_with_password:ok', 'pool.get_all:ok']);
    // A second invalidation right after the re-login is not retried forever.
    s.failOn('pool.get_all', 'SESSION_INVALID', ['x'], 1);
    s.failOn('pool.get_all', 'SESSION_INVALID', ['x'], 1);
    await expect(c.call('pool.get_all')).rejects.toMatchObject({ code: 'SESSION_INVALID' });
    await c.logout();
  });

  it('runs Async calls through a task and destroys the task', async () => {
    const s = await sim({ taskDelayMs: 30 });
    const c = await connect(s, { transport, pollIntervalMs: 10 });
    const tmpl = ((await c.call('VM.get_by_name_label', 'Other install media')) as string[])[0]!;
    const vm = String(await c.callAsync('VM.clone', [tmpl, 'async-vm'], 5000));
    expect(vm).toMatch(/^OpaqueRef:/);
    expect(s.db.VM.get(vm)?.['name_label']).toBe('async-vm');
    const err = await c.callAsync('VM.start', [tmpl, false, false], 5000).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VM_IS_TEMPLATE' });
    expect([...s.db.task.values()]).toHaveLength(0);
    expect(s.calls).toContain('event.from');
    await c.logout();
  });
});

describe('XapiClient: redirects, timeouts, retries', () => {
  it('follows HOST_IS_SLAVE to the master on the same scheme and port', async () => {
    const master = await sim({ host: '127.0.0.1' });
    const member = await sim({ host: '127.0.0.2', port: master.port, slaveOf: '127.0.0.1' });
    const c = await XapiClient.connect({ url: member.url, user: 'root', password: PASSWORD });
    expect(c.masterUrl).toBe(master.url);
    expect(member.calls).toEqual(['session.login_with_password']);
    expect(await c.call('pool.get_all')).toHaveLength(1);
    await c.logout();
  });

  it('gives up after two redirects (a loop of members)', async () => {
    const a = await sim({ host: '127.0.0.1', slaveOf: '127.0.0.2' });
    await sim({ host: '127.0.0.2', port: a.port, slaveOf: '127.0.0.1' });
    await expect(XapiClient.connect({ url: a.url, user: 'root', password: PASSWORD })).rejects.toMatchObject({ code: 'HOST_IS_SLAVE' });
  });

  it('builds redirect URLs for names, IPv4 and IPv6 masters', () => {
    expect(redirectUrl('https://member.lab:8443', '10.0.0.1')).toBe('https://10.0.0.1:8443');
    expect(redirectUrl('https://10.0.0.2', 'fe80::1')).toBe('https://[fe80::1]');
  });

  it('times out a call the server never answers, and retries only reads', async () => {
    let requests = 0;
    const server = http.createServer(() => void requests++); // never answers
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const started = Date.now();
    await expect(XapiClient.connect({ url, user: 'u', password: 'p', callTimeoutMs: 200 })).rejects.toBeInstanceOf(TimeoutError);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(requests).toBe(1); // login is not idempotent: no retry
    server.close();
    expect(isIdempotent('VM.get_record')).toBe(true);
    expect(isIdempotent('SR.get_all_records')).toBe(true);
    expect(isIdempotent('event.from')).toBe(true);
    expect(isIdempotent('VM.clone')).toBe(false);
    expect(isIdempotent('VM.start')).toBe(false);
    expect(isIdempotent('VDI.create')).toBe(false);
  });

  it('names a refused connection and the fix', async () => {
    const err = await XapiClient.connect({ url: 'http://127.0.0.1:9', user: 'u', password: 'p', callTimeoutMs: 2000 }).catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/cannot reach XAPI at http:\/\/127\.0\.0\.1:9: ECONNREFUSED/);
    expect((err as { hint?: string }).hint).toMatch(/FBXEN_XAPI_URL/);
  });

  it('verifies TLS by default; --ca-file pins the pool certificate; --insecure only when asked', async () => {
    const tlsDir = mkdtempSync(join(tmpdir(), 'fbxen-tls-'));
    try {
      const key = join(tlsDir, 'key.pem');
      const cert = join(tlsDir, 'cert.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
      const s = await sim({ tls: { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') } });
      expect(s.url).toMatch(/^https:/);
      const err = await XapiClient.connect({ url: s.url, user: 'root', password: PASSWORD }).catch((e: unknown) => e);
      expect(String((err as Error).message)).toMatch(/TLS verification of https:\/\/127\.0\.0\.1:\d+ failed/);
      expect((err as { hint?: string }).hint).toMatch(/--ca-file .*--insecure/);
      expect(s.db.session.size).toBe(0); // the password never went out over the unverified connection
      const pinned = await XapiClient.connect({ url: s.url, user: 'root', password: PASSWORD, caFile: cert });
      expect(await pinned.call('pool.get_all')).toHaveLength(1);
      await pinned.logout();
      const insecure = await XapiClient.connect({ url: s.url, user: 'root', password: PASSWORD, insecure: true });
      await insecure.logout();
    } finally {
      rmSync(tlsDir, { recursive: true, force: true });
    }
  });

  it('never follows an upload redirect from https to plain http (the query holds the session)', async () => {
    const tlsDir = mkdtempSync(join(tmpdir(), 'fbxen-tls-'));
    try {
      const key = join(tlsDir, 'key.pem');
      const cert = join(tlsDir, 'cert.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
      const plain = await sim({ host: '127.0.0.2' });
      const s = await sim({ tls: { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') }, redirectUploadsOnce: true, redirectUploadsTo: plain.url });
      const c = await XapiClient.connect({ url: s.url, user: 'root', password: PASSWORD, caFile: cert });
      const file = join(tlsDir, 'disk.raw');
      writeFileSync(file, Buffer.alloc(4096));
      const err = await c.putFile('/import_raw_vdi', { vdi: 'OpaqueRef:x', format: 'raw' }, file, 'upload', 10_000).catch((e: unknown) => e);
      expect(String((err as Error).message)).toMatch(/redirected the upload from https:\/\/127\.0\.0\.1:\d+ to http:\/\/127\.0\.0\.2:\d+: refused/);
      expect(plain.wire).toEqual([]); // nothing, the session least of all, went to the http host
      await c.logout();
    } finally {
      rmSync(tlsDir, { recursive: true, force: true });
    }
  });

  it('names an unreadable CA file', async () => {
    const err = await XapiClient.connect({ url: 'https://127.0.0.1:9', user: 'u', password: 'p', caFile: '/nonexistent.pem' }).catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/CA file \/nonexistent\.pem cannot be read/);
  });
});

describe('simulator: shape for migrate-test', () => {
  it('VM.pool_migrate moves the VM and its console reconnects, as a new QEMU would', async () => {
    const s = await sim({ guestConsole: ({ record }) => `console of ${String(record['name_label'])} on ${String(record['resident_on'])}\n` });
    const received: string[] = [];
    const server = net.createServer((sock) => sock.on('data', (d) => received.push(d.toString())));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const c = await connect(s);
    const tmpl = ((await c.call('VM.get_by_name_label', 'Other install media')) as string[])[0]!;
    const vm = String(await c.call('VM.clone', tmpl, 'mig'));
    await c.call('VM.provision', vm);
    const sr = String(await c.call('pool.get_default_SR', ((await c.call('pool.get_all')) as string[])[0]!));
    const vdi = String(await c.call('VDI.create', { name_label: 'd', SR: sr, virtual_size: 1048576, type: 'user', sharable: false, read_only: false, other_config: {}, xenstore_data: {}, sm_config: {}, tags: [] }));
    await c.call('VBD.create', { VM: vm, VDI: vdi, userdevice: '0', bootable: true, mode: 'RW', type: 'Disk', empty: false, unpluggable: false, other_config: {}, qos_algorithm_type: '', qos_algorithm_params: {} });
    await c.call('VM.add_to_platform', vm, 'hvm_serial', `tcp:127.0.0.1:${(server.address() as AddressInfo).port}`);
    await expect(c.call('VM.pool_migrate', vm, 'OpaqueRef:x', { live: 'true' })).rejects.toMatchObject({ code: 'VM_BAD_POWER_STATE' });
    await c.callAsync('VM.start', [vm, false, false], 5000);
    const hosts = (await c.call('host.get_all')) as string[];
    await c.call('VM.pool_migrate', vm, hosts[1]!, { live: 'true' });
    expect(await c.call('VM.get_resident_on', vm)).toBe(hosts[1]);
    for (let i = 0; i < 100 && received.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(received).toEqual([`console of mig on ${hosts[0]}\n`, `console of mig on ${hosts[1]}\n`]);
    expect(s.consoleConnections).toBe(2);
    await c.logout();
    server.close();
  });

  it('the migrate helpers drive pool_migrate and migrate_send; one console listener sees every reconnect', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'fbxen-mig-'));
    const s = await sim({ guestConsole: ({ record }) => `on ${String(record['resident_on'])}\n` });
    const listener = await openConsoleListener({ logPath: join(tmp, 'console.log'), advertiseHost: '127.0.0.1', listenHost: '127.0.0.1' });
    expect(listener.target).toBe(`tcp:127.0.0.1:${listener.port}`);
    const c = await connect(s, { pollIntervalMs: 5 });
    const tmpl = ((await c.call('VM.get_by_name_label', 'Other install media')) as string[])[0]!;
    const vm = String(await c.call('VM.clone', tmpl, 'mig2'));
    await c.call('VM.provision', vm);
    const srs = (await c.call('SR.get_all_records')) as Record<string, Record<string, unknown>>;
    const [local] = Object.entries(srs).find(([, r]) => r['name_label'] === 'Local storage')!;
    const [nfs] = Object.entries(srs).find(([, r]) => r['name_label'] === 'NFS storage')!;
    const vdi = String(await c.call('VDI.create', { name_label: 'd', SR: local, virtual_size: 1048576, type: 'user', sharable: false, read_only: false, other_config: {}, xenstore_data: {}, sm_config: {}, tags: [] }));
    await c.call('VBD.create', { VM: vm, VDI: vdi, userdevice: '0', bootable: true, mode: 'RW', type: 'Disk', empty: false, unpluggable: false, other_config: {}, qos_algorithm_type: '', qos_algorithm_params: {} });
    await c.call('VM.add_to_platform', vm, 'hvm_serial', listener.target);
    await c.callAsync('VM.start', [vm, false, false], 5000);
    const hosts = (await c.call('host.get_all')) as string[];
    const net0 = ((await c.call('network.get_all')) as string[])[0]!;
    await poolMigrate(c, vm, hosts[1]!, 5000);
    expect(await migrateSend(c, c, vm, { destHost: hosts[0]!, destNetwork: net0, vdiMap: { [vdi]: nfs }, vifMap: {} }, 5000)).toBe(vm);
    expect(await c.call('VDI.get_SR', vdi)).toBe(nfs);
    for (let i = 0; i < 100 && listener.connections() < 3; i++) await new Promise((r) => setTimeout(r, 10));
    await listener.close();
    expect(listener.connections()).toBe(3);
    expect(readFileSync(join(tmp, 'console.log'), 'utf8').split('\n').filter(Boolean).sort()).toEqual([`on ${hosts[0]}`, `on ${hosts[0]}`, `on ${hosts[1]}`].sort());
    await c.logout();
    rmSync(tmp, { recursive: true, force: true });
  });
});

describe('independent peers (CPython stdlib)', () => {
  let peer: ChildProcess | undefined;
  let peerUrl = '';
  let slave: ChildProcess | undefined;
  let slaveUrl = '';

  function startPeer(args: string[]): Promise<[ChildProcess, number]> {
    return new Promise((resolve, reject) => {
      const p = spawn('python3', [join(here, 'peer_xapi.py'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
      p.stdout!.once('data', (d: Buffer) => {
        const m = /READY (\d+)/.exec(d.toString());
        if (m) resolve([p, Number(m[1])]);
        else reject(new Error(d.toString()));
      });
      p.once('error', reject);
    });
  }

  beforeAll(async () => {
    const [p, port] = await startPeer(['127.0.0.1', '0']);
    peer = p;
    peerUrl = `http://127.0.0.1:${port}`;
    const [s] = await startPeer(['127.0.0.2', String(port), '--slave-of', '127.0.0.1']);
    slave = s;
    slaveUrl = `http://127.0.0.2:${port}`;
  });
  afterAll(() => {
    peer?.kill();
    slave?.kill();
  });

  it("our XML-RPC requests are read by Python's xmlrpc.server, its pretty answers by us", async () => {
    // No /jsonrpc on the peer (404): the client falls back to XML-RPC by itself.
    const c = await XapiClient.connect({ url: slaveUrl, user: 'root', password: 'peer-secret' });
    expect(c.masterUrl).toBe(peerUrl);
    const sent: XapiValue[] = ['a<b>&"c\'', 'ünïcødé ☃', true, false, ['x', ['y']], { k: 'v', n: { m: '' } }, '', String(2 ** 40)];
    expect(await c.call('echo', ...sent)).toEqual(sent);
    expect(await c.call('big')).toBe('1099511627776');
    await expect(c.call('nope')).rejects.toMatchObject({ code: 'MESSAGE_METHOD_UNKNOWN', params: ['nope'] });
    await c.logout();
    await expect(c.call('echo')).rejects.toThrow(/not logged in/);
  });

  it("the simulator's answers are read by Python's xmlrpc.client", async () => {
    const s = await sim();
    // Asynchronous on purpose: the simulator answers from this process's event loop.
    const r = await runAsync('python3', [join(here, 'py_client_check.py'), s.url, 'root', PASSWORD]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({
      login: 'Success',
      bad_login: { Status: 'Failure', ErrorDescription: ['SESSION_AUTHENTICATION_FAILED', 'root', 'Authentication failure'] },
      default_sr_name: 'NFS storage',
      mem: '2147483648', // int64 as a string of digits, like XAPI
      start_template: { Status: 'Failure', ErrorDescription: ['VM_IS_TEMPLATE', expect.stringMatching(/^OpaqueRef:/), 'start'] },
      hard_shutdown_halted: { Status: 'Failure', ErrorDescription: ['VM_BAD_POWER_STATE', expect.any(String), 'running', 'halted'] },
      logout: 'Success',
      after_logout: { Status: 'Failure', ErrorDescription: ['SESSION_INVALID', expect.any(String)] },
    });
    expect(out.sr_shared).toEqual([
      ['ISO library', true],
      ['Local storage', false],
      ['NFS storage', true],
    ]);
  });
});
