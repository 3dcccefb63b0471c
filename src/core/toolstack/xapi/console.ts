/**
 * The guest's serial console over TCP: fbxen listens, and QEMU on the pool host connects to it because
 * the VM has platform:hvm_serial = "tcp:<host>:<port>" (QEMU's -serial tcp: client mode). Every
 * connection's bytes are appended to one log file, so a console that reconnects (a new QEMU after a
 * migration, a restarted VM) keeps writing to the same log. migrate-test reopens a listener on the same
 * port (FBXEN_XAPI_CONSOLE_PORT) to keep reading a kept VM's console.
 *
 * The port is open to the network, so what reaches the log is checked (docs/xapi.md, "The console
 * listener"): only the pool's hosts may connect (their addresses from XAPI), one connection writes at a
 * time (a second one waits, unread, until the first closes: nothing interleaves), and the log is bounded
 * (its head, then a marker line; core/run/console-log.ts).
 *
 * One listener serves fbxen boot (into console.log) and migrate-test (each chunk to its console capture,
 * and typing into the guest: `write` goes to the connection being read).
 */
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { ConfigError, EnvironmentError } from '../../errors.js';
import { ConsoleLogFile, consoleLogLimit } from '../../run/console-log.js';
import type { ConsoleAttachment, DomainRef } from '../types.js';

export interface ConsoleListener {
  /** The hvm_serial value: "tcp:<host>:<port>" (IPv6 hosts in brackets). */
  target: string;
  port: number;
  /** The address the listener is bound to. */
  address: string;
  /** How many times QEMU connected (connections accepted). */
  connections(): number;
  /** Connections refused: not from a pool host, or too many waiting. */
  refused(): number;
  /** Why the log stopped growing (its limit, a write error; said of the guest), or undefined. */
  stopped(): string | undefined;
  /** Types TEXT into the connection being read; false when none is (nobody connected yet). */
  write(text: string): boolean;
  close(): Promise<void>;
}

/** What the listener needs of an XAPI session: the pool's host and PIF records, and the master's URL. */
export interface PoolView {
  call(method: string, ...params: unknown[]): Promise<unknown>;
  readonly masterUrl?: string;
}

export interface ConsoleListenerOptions {
  /** The console log (bounded); at least one of logPath, sink and onData. */
  logPath?: string | undefined;
  /** Where the bytes go instead of logPath (piped, with backpressure): a flow's ConsoleLogFile ends reading when it stops. */
  sink?: Writable | undefined;
  /** Each chunk of the connection being read, in order (migrate-test's capture keeps its own log). */
  onData?: ((chunk: Buffer) => void) | undefined;
  /** The address the pool hosts reach this host on. */
  advertiseHost: string;
  /** Default: advertiseHost when it is an address of this host, else every address. */
  listenHost?: string | undefined;
  port?: number | undefined;
  /** Each connection (and each refusal, with why) for the transcript. */
  onConnection?: ((remote: string) => void) | undefined;
  /** The XAPI session: only the pool's hosts may connect. Without it (and without peers) anyone may. */
  pool?: PoolView | undefined;
  /** The peers allowed, overriding what the pool says ('any': no check). */
  peers?: readonly string[] | 'any' | undefined;
  /** FBXEN_XAPI_CONSOLE_PEERS, FBXEN_CONSOLE_LOG_LIMIT. */
  env?: NodeJS.ProcessEnv | undefined;
  /** Bytes of log kept (default: FBXEN_CONSOLE_LOG_LIMIT or 256 MiB). */
  maxBytes?: number | undefined;
}

/** The platform:hvm_serial value that makes QEMU connect to HOST:PORT (IPv6 in brackets). */
export function serialTarget(host: string, port: number): string {
  return `tcp:${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}

/**
 * The host and port of a platform:hvm_serial value "tcp:HOST:PORT[,options]" (HOST an IPv6 address in
 * brackets), or undefined for anything else (no tcp console, a port out of range). The value is the
 * pool's: only its head is read.
 */
export function parseSerialTarget(value: string): { host: string; port: number } | undefined {
  const m = /^tcp:(\[[0-9A-Fa-f:.]{2,45}\]|[^:\[\],\s]{1,253}):(\d{1,5})(?![\d])/.exec(value.slice(0, 400));
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/** Connections from pool hosts that may wait for the one writing (a migration has one new QEMU). */
const MAX_WAITING = 4;
const LOOKUP_TIMEOUT_MS = 5000;

/** "::ffff:10.0.0.1" (an IPv4 peer on a dual-stack socket) is 10.0.0.1; IPv6 is compared in lower case. */
function normalizeAddress(a: string): string {
  const s = a.trim().replace(/^\[|\]$/g, '').replace(/\/\d+$/, '').toLowerCase();
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  return m ? m[1]! : s;
}

/** FBXEN_XAPI_CONSOLE_PEERS: "any", or addresses separated by commas or spaces. */
export function peersFromEnv(env: NodeJS.ProcessEnv | undefined): string[] | 'any' | undefined {
  const raw = env?.['FBXEN_XAPI_CONSOLE_PEERS']?.trim();
  if (!raw) return undefined;
  if (raw === 'any') return 'any';
  const list = raw.split(/[\s,]+/).filter(Boolean);
  const bad = list.filter((a) => net.isIP(normalizeAddress(a)) === 0);
  if (bad.length) {
    throw new ConfigError(`FBXEN_XAPI_CONSOLE_PEERS holds ${bad.map((b) => JSON.stringify(b)).join(', ')}, not IP addresses`, [], {
      hint: 'give the addresses the pool hosts connect from (comma separated), or "any" to accept every peer',
    });
  }
  return list.map(normalizeAddress);
}

async function resolveName(name: string): Promise<string[]> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error('timed out')), LOOKUP_TIMEOUT_MS)));
  try {
    return (await Promise.race([lookup(name, { all: true }), timeout])).map((r) => normalizeAddress(r.address));
  } catch {
    return [];
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The addresses QEMU on a pool host may connect from: each host's management `address`, the IPs of
 * every PIF (a host may route to fbxen over another interface), and the master URL's host. Names are
 * resolved; what cannot be read or resolved is left out.
 */
export async function poolPeerAddresses(pool: PoolView): Promise<string[]> {
  const names = new Set<string>();
  const records = async (cls: string) => ((await pool.call(`${cls}.get_all_records`).catch(() => ({}))) ?? {}) as Record<string, Record<string, unknown>>;
  for (const h of Object.values(await records('host'))) if (typeof h['address'] === 'string') names.add(h['address']);
  for (const p of Object.values(await records('PIF'))) {
    if (typeof p['IP'] === 'string') names.add(p['IP']);
    if (Array.isArray(p['IPv6'])) for (const a of p['IPv6']) if (typeof a === 'string') names.add(a);
  }
  if (pool.masterUrl) {
    try {
      names.add(new URL(pool.masterUrl).hostname);
    } catch {
      // not a URL: nothing to add
    }
  }
  const out = new Set<string>();
  for (const raw of names) {
    const a = normalizeAddress(raw);
    if (a === '' || a === '0.0.0.0' || a === '::') continue;
    if (net.isIP(a)) out.add(a);
    else for (const r of await resolveName(a)) out.add(r);
  }
  return [...out];
}

export async function openConsoleListener(o: ConsoleListenerOptions): Promise<ConsoleListener> {
  if (!o.logPath && !o.sink && !o.onData) throw new EnvironmentError('the XAPI console listener has neither a log file nor a reader', { hint: 'this is a bug in fbxen' });
  const maxBytes = o.maxBytes ?? consoleLogLimit(o.env ?? {});
  let allowed: Set<string> | undefined;
  const fixed = o.peers ?? peersFromEnv(o.env);
  if (fixed !== undefined) allowed = fixed === 'any' ? undefined : new Set(fixed.map(normalizeAddress));
  else if (o.pool) {
    allowed = new Set(await poolPeerAddresses(o.pool));
    if (allowed.size === 0) {
      throw new EnvironmentError("cannot tell which addresses the pool's hosts connect from: XAPI lists no host or PIF address", {
        hint: 'set FBXEN_XAPI_CONSOLE_PEERS to their addresses (comma separated), or to "any" to accept every peer',
      });
    }
  }

  const sockets = new Set<net.Socket>();
  const waiting: net.Socket[] = [];
  let active: net.Socket | undefined;
  let lastByte = 0x0a;
  let count = 0;
  let refusedCount = 0;
  const log = o.logPath
    ? new ConsoleLogFile(o.logPath, maxBytes, () => {
        // Nothing more is kept: a flood costs no more bandwidth, and no new connection is read.
        for (const s of sockets) s.destroy();
      })
    : undefined;
  const onData = o.onData;
  const given = o.sink;
  // Without a log file the reader is the sink; with both, the reader taps the connection being read.
  const sink: Writable =
    log ??
    given ??
    new Writable({
      write(chunk: Buffer, _enc, done) {
        onData!(chunk);
        done();
      },
    });
  const limited = log ?? (given instanceof ConsoleLogFile ? given : undefined);
  const stopped = () => limited?.stopped;
  // A given log that stops keeping (its limit) ends reading at once, as the listener's own log does. Checked
  // when it happens, not on the next chunk: the chunk that crosses the limit may be the guest's last.
  const stopReading = () => {
    for (const x of sockets) x.destroy();
  };
  if (!log && limited) limited.once('stop', stopReading);

  const next = () => {
    if (active || stopped() !== undefined) return;
    const s = waiting.shift();
    if (!s) return;
    active = s;
    // Two consoles never share a line: the previous one's unfinished line is ended first.
    const tap = onData !== undefined && (log !== undefined || given !== undefined);
    if (lastByte !== 0x0a) {
      sink.write('\n');
      if (tap) onData!(Buffer.from('\n'));
    }
    lastByte = 0x0a;
    s.on('data', (d: Buffer) => {
      if (d.length) lastByte = d[d.length - 1]!;
      if (tap) onData!(d);
    });
    s.pipe(sink, { end: false });
    s.resume();
  };

  const refuse = (sock: net.Socket, remote: string, why: string) => {
    refusedCount++;
    o.onConnection?.(`${remote} refused: ${why}`);
    sock.destroy();
  };

  // Paused on connect: a socket that waits or is refused is never read.
  const server = net.createServer({ pauseOnConnect: true }, (sock) => {
    const remote = `${sock.remoteAddress}:${sock.remotePort}`;
    sock.on('error', () => undefined);
    const peer = normalizeAddress(sock.remoteAddress ?? '');
    if (allowed && !allowed.has(peer)) return refuse(sock, remote, `not one of the pool's hosts (${[...allowed].join(', ')}; FBXEN_XAPI_CONSOLE_PEERS)`);
    if (stopped() !== undefined) return refuse(sock, remote, `the console log stopped: the guest ${stopped()}`);
    if (waiting.length >= MAX_WAITING) return refuse(sock, remote, `${MAX_WAITING} connections already wait for the console`);
    count++;
    sockets.add(sock);
    o.onConnection?.(active ? `${remote} (waits until the connection before it closes)` : remote);
    sock.on('close', () => {
      sockets.delete(sock);
      const i = waiting.indexOf(sock);
      if (i >= 0) waiting.splice(i, 1);
      if (active === sock) {
        sock.unpipe(sink);
        active = undefined;
        next();
      }
    });
    waiting.push(sock);
    next();
  });

  // Bound to the address the pool reaches when it is one of this host's (a NAT address is not: then all).
  const wildcard = net.isIPv6(normalizeAddress(o.advertiseHost)) ? '::' : '0.0.0.0';
  const preferred = o.listenHost ?? (net.isIP(normalizeAddress(o.advertiseHost)) ? normalizeAddress(o.advertiseHost) : wildcard);
  const listen = (host: string) =>
    new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(o.port ?? 0, host, () => {
        server.off('error', fail);
        ok();
      });
    });
  let listenHost = preferred;
  try {
    try {
      await listen(listenHost);
    } catch (err) {
      if (o.listenHost !== undefined || (err as NodeJS.ErrnoException).code !== 'EADDRNOTAVAIL') throw err;
      listenHost = wildcard;
      await listen(listenHost);
    }
  } catch (err) {
    if (!given) await new Promise<void>((r) => sink.end(r));
    throw new EnvironmentError(`cannot listen for the guest console on ${listenHost}:${o.port ?? 0}: ${(err as Error).message}`, {
      hint: 'set FBXEN_XAPI_CONSOLE_PORT to a free port the pool hosts can reach (FBXEN_XAPI_CONSOLE_LISTEN picks the address)',
    });
  }
  const port = (server.address() as AddressInfo).port;
  return {
    target: serialTarget(o.advertiseHost, port),
    port,
    address: (server.address() as AddressInfo).address,
    connections: () => count,
    refused: () => refusedCount,
    stopped,
    write: (text) => {
      if (!active || active.destroyed) return false;
      active.write(text);
      return true;
    },
    close: async () => {
      limited?.off('stop', stopReading);
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      // A sink given by the caller is the caller's to end.
      if (!given) await new Promise<void>((r) => sink.end(r));
    },
  };
}

/** A listener as the Toolstack interface hands a console out: typing into it, and detach (closing it). */
export function consoleAttachment(domain: DomainRef, listener: ConsoleListener, onDetach: () => void): ConsoleAttachment {
  let ended!: () => void;
  const done = new Promise<void>((r) => (ended = r));
  return {
    domain,
    write: (text) => void listener.write(text),
    detach: async () => {
      onDetach();
      await listener.close();
      ended();
    },
    done,
  };
}
