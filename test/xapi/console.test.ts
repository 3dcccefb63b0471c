/**
 * The XAPI console listener takes a port open to the network (issue 14): only the pool's hosts may write
 * into the evidence, one connection at a time, bound to the address the pool reaches, and bounded. The
 * pool is the XAPI simulator (a test double, test/support/xapi-sim/sim.ts) on loopback, where 127.0.0.1
 * and 127.0.0.2 are its hosts and 127.0.0.9 is a stranger.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { XapiClient } from '../../src/core/toolstack/xapi/client.js';
import { openConsoleListener, parseSerialTarget, serialTarget, type ConsoleListener } from '../../src/core/toolstack/xapi/console.js';
import { ConfigError } from '../../src/core/errors.js';
import { ConsoleLogFile, limitMarker } from '../../src/core/run/console-log.js';
import { XapiSim } from '../support/xapi-sim/sim.js';

const dir = mkdtempSync(join(tmpdir(), 'fbxen-xapi-console-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const logPath = () => join(dir, `console-${++n}.log`);

const open: Array<{ close(): Promise<void> } | XapiSim> = [];
afterEach(async () => {
  while (open.length) {
    const x = open.pop()!;
    await (x instanceof XapiSim ? x.stop() : x.close());
  }
});
async function listen(o: Parameters<typeof openConsoleListener>[0]): Promise<ConsoleListener> {
  const l = await openConsoleListener(o);
  open.push(l);
  return l;
}

/** A TCP client from a chosen loopback address (as QEMU on a pool host, or a stranger). */
function connectFrom(localAddress: string, port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((ok, fail) => {
    const s = net.connect({ port, host, localAddress }, () => ok(s));
    s.once('error', fail);
  });
}
const closedBy = (s: net.Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));
const endAndWait = (s: net.Socket, text?: string) => new Promise<void>((r) => s.end(text ?? '', () => r()));

async function until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
/** The log as it is now ('' before its first byte: the file is created on the first write). */
const read = (p: string) => {
  try {
    return readFileSync(p, 'latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
};

describe('the XAPI console listener', () => {
  it("accepts the pool's hosts (from XAPI's host records) and refuses anyone else, whose bytes never reach the log", async () => {
    const s = await new XapiSim({ guestConsole: () => 'FreeBSD/amd64 (sim) (ttyu0)\r\nlogin: \n' }).start();
    open.push(s);
    const c = await XapiClient.connect({ url: s.url, user: 'root', password: 'sim-password' });
    const path = logPath();
    const remotes: string[] = [];
    const l = await listen({ logPath: path, advertiseHost: '127.0.0.1', pool: c, onConnection: (r) => remotes.push(r) });

    const stranger = await connectFrom('127.0.0.9', l.port);
    stranger.write(`FBXEN1 BEGIN r1 boot 1 ${'ab'.repeat(32)}\n`);
    await closedBy(stranger);

    // QEMU of a VM started in the simulated pool connects from its host (127.0.0.1)
    const tmpl = ((await c.call('VM.get_by_name_label', 'Other install media')) as string[])[0]!;
    const vm = String(await c.call('VM.clone', tmpl, 'console-peers'));
    await c.call('VM.provision', vm);
    const srs = (await c.call('SR.get_all_records')) as Record<string, Record<string, unknown>>;
    const [local] = Object.entries(srs).find(([, r]) => r['name_label'] === 'Local storage')!;
    const vdi = String(await c.call('VDI.create', { name_label: 'd', SR: local, virtual_size: 1048576, type: 'user', sharable: false, read_only: false, other_config: {}, xenstore_data: {}, sm_config: {}, tags: [] }));
    await c.call('VBD.create', { VM: vm, VDI: vdi, userdevice: '0', bootable: true, mode: 'RW', type: 'Disk', empty: false, unpluggable: false, other_config: {}, qos_algorithm_type: '', qos_algorithm_params: {} });
    await c.call('VM.add_to_platform', vm, 'hvm_serial', l.target);
    await c.callAsync('VM.start', [vm, false, false], 5000);
    await until('the guest console in the log', () => read(path).includes('login:'));
    await c.logout();

    expect(read(path)).toBe('FreeBSD/amd64 (sim) (ttyu0)\r\nlogin: \n');
    expect(l.refused()).toBe(1);
    expect(l.connections()).toBe(1);
    expect(remotes[0]).toMatch(/^127\.0\.0\.9:\d+ refused: not one of the pool's hosts \(.*127\.0\.0\.1.*127\.0\.0\.2.*\)/);
  });

  it('a second connection waits until the first closes: their lines never interleave', async () => {
    const path = logPath();
    const l = await listen({ logPath: path, advertiseHost: '127.0.0.1', peers: ['127.0.0.1', '127.0.0.2'] });
    const a = await connectFrom('127.0.0.1', l.port);
    a.write('A1 start of a line');
    await until('A1', () => read(path).includes('A1 start'));
    const b = await connectFrom('127.0.0.2', l.port);
    await until('the second connection', () => l.connections() === 2);
    b.write('B1 the new console\n');
    a.write(' and its end\nA2 unfinished');
    await until('A2', () => read(path).includes('A2 unfinished'));
    expect(read(path)).not.toContain('B1');
    await endAndWait(a);
    await until('B1', () => read(path).includes('B1'));
    await endAndWait(b, 'B2\n');
    await until('B2', () => read(path).includes('B2'));
    // the first console's unfinished line is ended before the second's start
    expect(read(path)).toBe('A1 start of a line and its end\nA2 unfinished\nB1 the new console\nB2\n');
  });

  it('listens on the address it advertises to the pool, not on every address', async () => {
    const l = await listen({ logPath: logPath(), advertiseHost: '127.0.0.1', peers: 'any' });
    expect(l.address).toBe('127.0.0.1');
    await expect(connectFrom('127.0.0.2', l.port, '127.0.0.2')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('keeps at most FBXEN_CONSOLE_LOG_LIMIT of what connections send, then closes them', async () => {
    const path = logPath();
    const l = await listen({ logPath: path, advertiseHost: '127.0.0.1', peers: 'any', env: { FBXEN_CONSOLE_LOG_LIMIT: '4K' } });
    const s = await connectFrom('127.0.0.1', l.port);
    s.on('error', () => undefined);
    const line = `${'w'.repeat(1023)}\n`;
    for (let i = 0; i < 1024 && !s.destroyed; i++) s.write(line); // 1 MiB offered
    await closedBy(s);
    expect(l.stopped()).toBe('wrote more than the console log limit of 4 KiB (the rest of its output is not kept)');
    await until('the marker on disk', () => read(path).endsWith(limitMarker(4096)));
    expect(statSync(path).size).toBe(4096 + Buffer.byteLength(limitMarker(4096)));
    // a later connection is refused: nothing more is kept
    const later = await connectFrom('127.0.0.1', l.port);
    await closedBy(later);
    expect(l.refused()).toBe(1);
  });

  it('FBXEN_XAPI_CONSOLE_PEERS: "any" lets anyone in, addresses replace the pool\'s, anything else is refused', async () => {
    const path = logPath();
    const l = await listen({ logPath: path, advertiseHost: '127.0.0.1', env: { FBXEN_XAPI_CONSOLE_PEERS: 'any' } });
    const s = await connectFrom('127.0.0.9', l.port);
    await endAndWait(s, 'hello\n');
    await until('hello', () => read(path) === 'hello\n');
    const only = await listen({ logPath: logPath(), advertiseHost: '127.0.0.1', env: { FBXEN_XAPI_CONSOLE_PEERS: '127.0.0.2' } });
    await closedBy(await connectFrom('127.0.0.1', only.port));
    expect(only.refused()).toBe(1);
    await expect(openConsoleListener({ logPath: logPath(), advertiseHost: '127.0.0.1', env: { FBXEN_XAPI_CONSOLE_PEERS: 'pool-host-1' } })).rejects.toThrow(ConfigError);
  });
});

describe('the XAPI console listener for migrate-test (one listener for boot and migrate)', () => {
  it('hands each chunk of the connection being read to onData, and types into that connection', async () => {
    const chunks: string[] = [];
    const l = await listen({ onData: (d) => chunks.push(d.toString('latin1')), advertiseHost: '127.0.0.1', peers: ['127.0.0.1', '127.0.0.2'] });
    expect(l.write('lost\n')).toBe(false); // nobody connected: nothing to type into
    const a = await connectFrom('127.0.0.1', l.port);
    let typed = '';
    a.on('data', (d: Buffer) => (typed += d.toString('latin1')));
    a.write('login: ');
    await until('the prompt', () => chunks.join('') === 'login: ');
    expect(l.write('root\n')).toBe(true);
    await until('what fbxen typed', () => typed === 'root\n');
    // a second console waits, unread and untyped-into, until the first closes
    const b = await connectFrom('127.0.0.2', l.port);
    let typedB = '';
    b.on('data', (d: Buffer) => (typedB += d.toString('latin1')));
    await until('the second connection', () => l.connections() === 2);
    b.write('B1\n');
    l.write('to-a\n');
    await until('to-a', () => typed.endsWith('to-a\n'));
    expect(chunks.join('')).toBe('login: ');
    await endAndWait(a);
    await until('B1', () => chunks.join('').endsWith('B1\n'));
    // the first console's unfinished line was ended before the second's start
    expect(chunks.join('')).toBe('login: \nB1\n');
    l.write('to-b\n');
    await until('to-b', () => typedB === 'to-b\n');
    b.destroy();
  });

  it('refuses a listener with nowhere to put the console', async () => {
    await expect(openConsoleListener({ advertiseHost: '127.0.0.1', peers: 'any' })).rejects.toThrow(/neither a log file nor a reader/);
  });
});

describe('platform:hvm_serial targets (properties)', () => {
  it('what the listener advertises parses back to its host and port, whatever the address', () => {
    const host = fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain());
    fc.assert(
      fc.property(host, fc.integer({ min: 1, max: 65535 }), fc.constantFrom('', ',nodelay', ',server=off'), (h, port, opts) => {
        expect(parseSerialTarget(`${serialTarget(h, port)}${opts}`)).toEqual({ host: h, port });
      }),
      { numRuns: 2000 },
    );
  });

  it('anything else is no target: never a port out of range, never a throw', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 600 }), (v) => {
        const t = parseSerialTarget(v);
        if (t) expect(t.port >= 1 && t.port <= 65535 && v.startsWith('tcp:')).toBe(true);
      }),
      { numRuns: 2000 },
    );
    for (const v of ['', 'pty', 'tcp:host', 'tcp:host:0', 'tcp:host:65536', 'tcp:host:123456', 'udp:1.2.3.4:5', 'tcp::5', 'tcp:[::1:5', `tcp:${'a'.repeat(300)}:5`]) expect(parseSerialTarget(v)).toBeUndefined();
  });
});

describe("the XAPI console listener into a flow's console log (sink)", () => {
  it('stops reading when the given ConsoleLogFile reaches its limit, and leaves the file for its owner to end', async () => {
    const path = logPath();
    const file = new ConsoleLogFile(path, 4096);
    const l = await listen({ sink: file, advertiseHost: '127.0.0.1', peers: 'any' });
    const s = await connectFrom('127.0.0.1', l.port);
    s.on('error', () => undefined);
    const line = `${'w'.repeat(1023)}\n`;
    for (let i = 0; i < 1024 && !s.destroyed; i++) s.write(line); // 1 MiB offered
    await closedBy(s);
    expect(l.stopped()).toMatch(/console log limit of 4 KiB/);
    await l.close();
    expect(file.writableEnded).toBe(false); // the flow ends its own log
    await new Promise<void>((r) => file.end(r));
    expect(statSync(path).size).toBe(4096 + Buffer.byteLength(limitMarker(4096)));
  });

  it('closes the connection once the given ConsoleLogFile reaches its limit, even when the guest then goes quiet', async () => {
    // The limit is crossed by the last bytes the guest sends: no later byte will come to notice it.
    const path = logPath();
    const file = new ConsoleLogFile(path, 4096);
    const l = await listen({ sink: file, advertiseHost: '127.0.0.1', peers: 'any' });
    const s = await connectFrom('127.0.0.1', l.port);
    s.on('error', () => undefined);
    s.write('q'.repeat(5000)); // then nothing, the connection kept open
    await until('the listener to close the connection', () => s.destroyed || s.readableEnded, 10_000);
    expect(l.stopped()).toMatch(/console log limit of 4 KiB/);
    await l.close();
    await new Promise<void>((r) => file.end(r));
    expect(statSync(path).size).toBe(4096 + Buffer.byteLength(limitMarker(4096)));
  });
});
