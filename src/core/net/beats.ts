/**
 * The network beats of migrate-test (docs/netfront-design.md §6.5): while the heartbeat runs, the guest opens
 * one short TCP connection every `--beat-every-ms` to this listener and sends its beat number (`printf
 * '%s\n' SEQ | nc -N -n -w 2 HOST PORT`, the flags the collector's round trip already uses). The host stamps
 * the first byte's arrival, so the first beat after the resume bounds the network gap far tighter than the
 * collector's round trip (which comes after its other sections). TCP, not UDP: ssh forwards only TCP (a
 * remote dom0), and nc's flags are those checked per release for the round trip (§6.1).
 *
 * Everything received is hostile: at most LINE_BOUND bytes per connection are looked at, a connection ends
 * at its first line, its bound or IDLE_MS; at most MAX_OPEN at a time (more are closed unread); anything but
 * a decimal number and a newline is counted as ignored; the last MAX_KEPT beats are kept.
 */
import { createServer, type Socket } from 'node:net';

const LINE_BOUND = 16;
const IDLE_MS = 3000;
const MAX_OPEN = 16;
const MAX_KEPT = 4096;

export interface NetBeat {
  seq: number;
  /** when its first byte arrived (ms since the epoch, this host's clock) */
  at: number;
  peer: string;
}

export interface BeatListener {
  readonly address: string;
  readonly port: number;
  /** the beats so far, oldest first */
  beats(): NetBeat[];
  /** connections that sent no beat (garbage, too long, nothing): counted, never kept */
  readonly ignored: number;
  close(): Promise<void>;
}

/** The first beat whose first byte arrived at or after `since`, and how long after it. */
export function firstBeatAfter(beats: readonly NetBeat[], since: number): { ms: number; seq: number } | null {
  const b = beats.find((x) => x.at >= since);
  return b ? { ms: b.at - since, seq: b.seq } : null;
}

/** Listens on `address` (one the round trip's listener already bound: the bridge's, or loopback), a random port unless given. */
export async function startBeatListener(o: { address: string; port?: number | undefined; now?: () => number }): Promise<BeatListener> {
  const now = o.now ?? Date.now;
  const kept: NetBeat[] = [];
  const open = new Set<Socket>();
  let ignored = 0;
  const server = createServer((s) => {
    if (open.size >= MAX_OPEN) {
      ignored++;
      return void s.destroy();
    }
    open.add(s);
    const peer = `${s.remoteAddress ?? '?'}:${s.remotePort ?? '?'}`;
    let first: number | null = null;
    let got = Buffer.alloc(0);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      open.delete(s);
      s.destroy();
      const m = /^(\d{1,9})\r?\n?$/.exec(got.toString('latin1'));
      if (m && first !== null) {
        kept.push({ seq: Number(m[1]), at: first, peer });
        if (kept.length > MAX_KEPT) kept.shift();
      } else ignored++;
    };
    s.setTimeout(IDLE_MS, finish);
    s.on('data', (chunk: Buffer) => {
      first ??= now();
      got = Buffer.concat([got, chunk.subarray(0, LINE_BOUND + 1 - got.length)]);
      if (got.includes(0x0a) || got.length > LINE_BOUND) finish();
    });
    s.on('end', finish);
    s.on('error', finish);
    s.on('close', finish);
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: o.port ?? 0, host: o.address, exclusive: true }, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : 0);
    });
  });
  return {
    address: o.address,
    port,
    beats: () => [...kept],
    get ignored() {
      return ignored;
    },
    async close() {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
