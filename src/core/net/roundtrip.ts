/**
 * The host side of the netfront traffic round trip (issue 18, docs/netfront-design.md §6.1).
 *
 * Two TCP listeners on one address the guest reaches through its vif (the bridge's address, or loopback
 * in tests), never a wildcard: on `up` the guest sends the host's per-run random payload and the host
 * compares it byte for byte as it arrives; on `down` the host sends a second random payload and closes,
 * and the guest reports its size and sha256 in its net-rt section. Both connections are opened by the
 * guest, so the host needs no route to it. Everything the guest sends is hostile: at most the payload's
 * length plus one chunk is looked at per connection, each connection has an idle limit, a few run at a
 * time, and the record keeps a bounded number of attempts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { ConfigError } from '../errors.js';

export const DEFAULT_PAYLOAD_BYTES = 1 << 20;
/** Over 64 KiB so the guest's sg/TSO/LRO paths are used; the CD and the guest's /var/tmp hold it twice. */
export const MAX_PAYLOAD_BYTES = 16 << 20;
const MAX_ATTEMPTS_KEPT = 256;
const MAX_OPEN_PER_PORT = 4;

export type UploadOutcome = 'complete' | 'corrupt' | 'short' | 'extra' | 'stalled' | 'error';

/** One guest → host transfer as the host saw it (times in ms since the epoch). */
export interface UploadAttempt {
  peer: string;
  connectedAt: number;
  /** when the first byte arrived, null when none did */
  firstByteAt: number | null;
  endedAt: number;
  expectedBytes: number;
  receivedBytes: number;
  /** offset of the first byte that differs from the payload, null when none did */
  firstDifference: number | null;
  outcome: UploadOutcome;
  detail: string;
}

/** One host → guest transfer: what the host wrote before the connection ended. */
export interface DownloadAttempt {
  peer: string;
  connectedAt: number;
  endedAt: number;
  sentBytes: number;
  outcome: 'sent' | 'error' | 'stalled';
  detail: string;
}

/** What the host knows of the round trip: the probe compares the guest's net-rt section with it. */
export interface HostRoundTrip {
  address: string;
  upPort: number;
  downPort: number;
  payloadBytes: number;
  upSha256: string;
  downSha256: string;
  listeningSince: number;
  uploads: UploadAttempt[];
  downloads: DownloadAttempt[];
  /** attempts dropped from the lists above (the oldest), beyond MAX_ATTEMPTS_KEPT */
  dropped: number;
  /** the listener is on this machine's loopback, reached through this ssh remote forward from the dom0's bridge (net/remote-forward.ts) */
  forwardedBy?: string | undefined;
}

/** A round trip the run could not arrange: the probe reports it inconclusive with this reason. */
export interface RoundTripNotArranged {
  arranged: false;
  reason: string;
}

export interface RoundTripOptions {
  /** the address to bind: loopback, or an address of one of this host's interfaces (the guest's bridge) */
  address: string;
  /** when given, `address` must belong to this interface (e.g. the bridge the vif is on) */
  interfaceName?: string;
  payloadBytes?: number;
  /** a connection with no progress for this long is ended and recorded as stalled */
  idleMs?: number;
  /** a connection still open after this long is ended and recorded as stalled (a guest dripping bytes) */
  connectionMs?: number;
  /** listen again where an earlier run did (migrate-test: the guest's CD names these ports); default: random free ports */
  ports?: { up: number; down: number } | undefined;
  /** the upload payload an earlier run put on the guest's CD (its length is the payload size); default: fresh random bytes */
  upPayload?: Buffer | undefined;
  /** injected for tests */
  random?: (n: number) => Buffer;
  now?: () => number;
}

export interface RoundTripListener {
  readonly address: string;
  readonly upPort: number;
  readonly downPort: number;
  readonly upPayload: Buffer;
  readonly downPayload: Buffer;
  /** The files the guest reads (the fbxen CD's /fbxen/net and /fbxen/net.bin): names and contents. */
  runFiles(): { net: string; netBin: Buffer };
  /** A snapshot of what happened so far. */
  record(): HostRoundTrip;
  /** Resolves with the record once an upload and a download that started at or after `since` have ended, or at `timeoutMs`. */
  waitForRound(opts: { since?: number; timeoutMs: number }): Promise<HostRoundTrip>;
  close(): Promise<void>;
}

/** File names on the fbxen CD (under /fbxen/), read by guest/fbxen-collect's net-rt section. */
export const RUN_FILE_NET = 'net';
export const RUN_FILE_NET_BIN = 'net.bin';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function checkAddress(address: string, interfaceName: string | undefined): void {
  const family = isIP(address);
  if (family === 0) throw new ConfigError(`round trip listener: '${address}' is not an IP address`, [], { hint: 'give the bridge address the guest reaches (e.g. 192.168.122.1) or 127.0.0.1' });
  if (/^(0\.0\.0\.0|::|0:0:0:0:0:0:0:0)$/.test(address)) {
    throw new ConfigError(`round trip listener: refusing the wildcard address ${address} (it would listen on every interface, the outside included)`, [], { hint: 'give the bridge address the guest reaches, or 127.0.0.1' });
  }
  const ifs = networkInterfaces();
  const owners = Object.entries(ifs).filter(([, addrs]) => (addrs ?? []).some((a) => a.address === address)).map(([name]) => name);
  if (owners.length === 0) throw new ConfigError(`round trip listener: ${address} is not an address of this host`, [], { hint: `use an address of the bridge the guest's vif is on (this host has: ${Object.keys(ifs).join(', ')})` });
  if (interfaceName !== undefined && !owners.includes(interfaceName)) {
    throw new ConfigError(`round trip listener: ${address} is not on ${interfaceName} (it is on ${owners.join(', ')})`, [], { hint: `give an address of ${interfaceName}` });
  }
}

function listen(server: Server, address: string, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: address, exclusive: true }, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : 0);
    });
  });
}

/** Starts both listeners on `address` (random free ports) with fresh random payloads. */
export async function startRoundTripListener(o: RoundTripOptions): Promise<RoundTripListener> {
  checkAddress(o.address, o.interfaceName);
  const bytes = o.upPayload?.length ?? o.payloadBytes ?? DEFAULT_PAYLOAD_BYTES;
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > MAX_PAYLOAD_BYTES) {
    throw new ConfigError(`round trip payload of ${bytes} bytes: must be 1 to ${MAX_PAYLOAD_BYTES}`, [], { hint: 'use the default (1 MiB)' });
  }
  const idleMs = o.idleMs ?? 15_000;
  const connectionMs = o.connectionMs ?? 120_000;
  const now = o.now ?? Date.now;
  const random = o.random ?? randomBytes;
  const upPayload = o.upPayload ?? random(bytes);
  const downPayload = random(bytes);
  const uploads: UploadAttempt[] = [];
  const downloads: DownloadAttempt[] = [];
  let dropped = 0;
  const waiters = new Set<() => void>();
  const keep = <T>(list: T[], item: T) => {
    list.push(item);
    if (list.length > MAX_ATTEMPTS_KEPT) {
      list.shift();
      dropped++;
    }
    for (const w of waiters) w();
  };
  const open = { up: new Set<Socket>(), down: new Set<Socket>() };
  const peerOf = (s: Socket) => `${s.remoteAddress ?? '?'}:${s.remotePort ?? '?'}`;
  /**
   * Tracks the connection in `openSet` until the attempt's first outcome, which closes it and keeps
   * the attempt; every later one (the close that follows the destroy) is ignored.
   */
  const settleOnce = <A extends { endedAt: number; outcome: string; detail: string }>(s: Socket, openSet: Set<Socket>, attempt: A, list: A[]) => {
    openSet.add(s);
    let done = false;
    return (outcome: A['outcome'], detail: string) => {
      if (done) return;
      done = true;
      attempt.endedAt = now();
      attempt.outcome = outcome;
      attempt.detail = detail;
      openSet.delete(s);
      s.destroy();
      keep(list, attempt);
    };
  };

  const upServer = createServer((s) => {
    if (open.up.size >= MAX_OPEN_PER_PORT) return void s.destroy();
    const a: UploadAttempt = { peer: peerOf(s), connectedAt: now(), firstByteAt: null, endedAt: 0, expectedBytes: bytes, receivedBytes: 0, firstDifference: null, outcome: 'error', detail: '' };
    const finish = settleOnce(s, open.up, a, uploads);
    s.setTimeout(idleMs, () => finish('stalled', `no byte for ${idleMs} ms after ${a.receivedBytes} of ${bytes}`));
    const limit = setTimeout(() => finish('stalled', `still open after ${connectionMs} ms with ${a.receivedBytes} of ${bytes} bytes`), connectionMs);
    s.on('close', () => clearTimeout(limit));
    s.on('data', (chunk: Buffer) => {
      if (a.firstByteAt === null) a.firstByteAt = now();
      const start = a.receivedBytes;
      a.receivedBytes += chunk.length;
      // compare what overlaps the payload; only the count of anything beyond it is kept
      if (a.firstDifference === null) {
        const n = Math.min(chunk.length, Math.max(0, bytes - start));
        for (let i = 0; i < n; i++) {
          if (chunk[i] !== upPayload[start + i]) {
            a.firstDifference = start + i;
            break;
          }
        }
      }
      if (a.receivedBytes > bytes) finish('extra', `${a.receivedBytes} bytes received, more than the ${bytes} sent`);
    });
    s.on('end', () => {
      if (a.firstDifference !== null) finish('corrupt', `byte ${a.firstDifference} differs (${a.receivedBytes} of ${bytes} bytes received)`);
      else if (a.receivedBytes < bytes) finish('short', `${a.receivedBytes} of ${bytes} bytes received before the guest closed`);
      else finish('complete', `${bytes} bytes identical`);
    });
    s.on('error', (e) => finish('error', e.message));
    s.on('close', () => finish(a.firstDifference !== null ? 'corrupt' : 'error', `connection closed after ${a.receivedBytes} of ${bytes} bytes`));
  });

  const downServer = createServer((s) => {
    if (open.down.size >= MAX_OPEN_PER_PORT) return void s.destroy();
    const d: DownloadAttempt = { peer: peerOf(s), connectedAt: now(), endedAt: 0, sentBytes: 0, outcome: 'error', detail: '' };
    const finish = settleOnce(s, open.down, d, downloads);
    s.setTimeout(idleMs, () => finish('stalled', `the guest took nothing for ${idleMs} ms`));
    const limit = setTimeout(() => finish('stalled', `still open after ${connectionMs} ms`), connectionMs);
    s.on('close', () => clearTimeout(limit));
    // anything the guest sends here is ignored, unread beyond the socket's buffer
    s.pause();
    s.on('error', (e) => finish('error', e.message));
    s.end(downPayload, () => {
      d.sentBytes = bytes;
      finish('sent', `${bytes} bytes written and the connection closed`);
    });
    s.on('close', () => finish('error', 'connection closed before the payload was written'));
  });

  const upPort = await listen(upServer, o.address, o.ports?.up);
  let downPort: number;
  try {
    downPort = await listen(downServer, o.address, o.ports?.down);
  } catch (e) {
    upServer.close();
    throw e;
  }
  const listeningSince = now();
  const upSha256 = sha256(upPayload);
  const downSha256 = sha256(downPayload);
  const record = (): HostRoundTrip => ({ address: o.address, upPort, downPort, payloadBytes: bytes, upSha256, downSha256, listeningSince, uploads: [...uploads], downloads: [...downloads], dropped });

  return {
    address: o.address,
    upPort,
    downPort,
    upPayload,
    downPayload,
    runFiles: () => ({
      net: `host=${o.address}\nup=${upPort}\ndown=${downPort}\nbytes=${bytes}\n`,
      netBin: upPayload,
    }),
    record,
    waitForRound({ since = 0, timeoutMs }) {
      return new Promise((resolve) => {
        const check = () => {
          if (uploads.some((u) => u.connectedAt >= since) && downloads.some((d) => d.connectedAt >= since)) end();
        };
        const timer = setTimeout(() => end(), timeoutMs);
        const end = () => {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(record());
        };
        waiters.add(check);
        check();
      });
    },
    async close() {
      for (const s of [...open.up, ...open.down]) s.destroy();
      await Promise.all([upServer, downServer].map((srv) => new Promise<void>((r) => srv.close(() => r()))));
    },
  };
}
