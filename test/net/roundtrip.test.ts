/**
 * The host side of the netfront round trip against real TCP clients on 127.0.0.1: it binds only to the
 * address it is given, checks the upload byte for byte as it arrives (the first differing offset, a
 * short or an overlong upload, a stall), sends its own payload down, and bounds what a guest can make
 * it hold. No test waits on a clock tighter than the listener's own idle limit.
 */
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { startRoundTripListener, type RoundTripListener } from '../../src/core/net/roundtrip.js';

const open: RoundTripListener[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((l) => l.close()));
});
const start = async (o: Partial<Parameters<typeof startRoundTripListener>[0]> = {}) => {
  const l = await startRoundTripListener({ address: '127.0.0.1', payloadBytes: 200_000, ...o });
  open.push(l);
  return l;
};

/** Connects, writes `data` (then ends when asked), and collects what comes back until the server closes. */
function client(port: number, data: Buffer | null, end = true): Promise<{ got: Buffer; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const s = connect({ host: '127.0.0.1', port }, () => {
      if (data) s.write(data);
      if (end) s.end();
    });
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' || (e as NodeJS.ErrnoException).code === 'EPIPE' ? resolve({ got: Buffer.concat(parts), socket: s }) : reject(e)));
    s.on('close', () => resolve({ got: Buffer.concat(parts), socket: s }));
  });
}

describe('round trip listener: where it listens', () => {
  it('refuses the wildcard addresses, a name, and an address this host does not have', async () => {
    await expect(startRoundTripListener({ address: '0.0.0.0' })).rejects.toThrow(/refusing the wildcard address 0\.0\.0\.0/);
    await expect(startRoundTripListener({ address: '::' })).rejects.toThrow(/refusing the wildcard address ::/);
    await expect(startRoundTripListener({ address: 'localhost' })).rejects.toThrow(/'localhost' is not an IP address/);
    await expect(startRoundTripListener({ address: '192.0.2.77' })).rejects.toThrow(/192\.0\.2\.77 is not an address of this host/);
  });

  it('with an interface named, the address must be on it', async () => {
    await expect(startRoundTripListener({ address: '127.0.0.1', interfaceName: 'fbxen-no-such-br0' })).rejects.toThrow(/127\.0\.0\.1 is not on fbxen-no-such-br0 \(it is on lo/);
  });

  it('refuses a payload of 0 bytes or over 16 MiB', async () => {
    await expect(startRoundTripListener({ address: '127.0.0.1', payloadBytes: 0 })).rejects.toThrow(/must be 1 to 16777216/);
    await expect(startRoundTripListener({ address: '127.0.0.1', payloadBytes: (16 << 20) + 1 })).rejects.toThrow(/must be 1 to 16777216/);
  });

  it('listens on the given address only, on two random ports, with fresh random payloads per run', async () => {
    const a = await start();
    const b = await start();
    expect(a.upPort).not.toBe(a.downPort);
    expect(a.upPayload.equals(b.upPayload)).toBe(false);
    expect(a.upPayload.equals(a.downPayload)).toBe(false);
    const files = a.runFiles();
    expect(files.net).toBe(`host=127.0.0.1\nup=${a.upPort}\ndown=${a.downPort}\nbytes=200000\n`);
    expect(files.netBin.equals(a.upPayload)).toBe(true);
  });
});

describe('round trip listener: the bytes', () => {
  it('an exact upload is complete; the download is the host payload; waitForRound resolves with both and the time to the first byte', async () => {
    const l = await start();
    const since = Date.now();
    const round = l.waitForRound({ since, timeoutMs: 60_000 });
    await client(l.upPort, l.upPayload);
    const down = await client(l.downPort, null, false);
    const r = await round;
    expect(r.uploads).toHaveLength(1);
    expect(r.uploads[0]).toMatchObject({ outcome: 'complete', receivedBytes: 200_000, firstDifference: null });
    expect(r.uploads[0]!.firstByteAt).toBeGreaterThanOrEqual(r.uploads[0]!.connectedAt);
    expect(r.uploads[0]!.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(down.got.equals(l.downPayload)).toBe(true);
    expect(createHash('sha256').update(down.got).digest('hex')).toBe(r.downSha256);
    expect(r.downloads[0]).toMatchObject({ outcome: 'sent', sentBytes: 200_000 });
  });

  it('any single changed byte is found at its offset; any cut gives short with the count (property, real sockets)', async () => {
    const l = await start({ payloadBytes: 70_000 });
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 69_999 }), fc.boolean(), async (k, cut) => {
        const data = Buffer.from(l.upPayload);
        if (cut) {
          await client(l.upPort, data.subarray(0, k));
        } else {
          data[k] = data[k]! ^ 0x5a;
          await client(l.upPort, data);
        }
        const u = (await l.waitForRound({ timeoutMs: 0 })).uploads.at(-1)!;
        if (cut) expect(u).toMatchObject({ outcome: 'short', receivedBytes: k, firstDifference: null });
        else expect(u).toMatchObject({ outcome: 'corrupt', receivedBytes: 70_000, firstDifference: k });
      }),
      { numRuns: 25 },
    );
  });

  it('an upload longer than the payload is ended at the first chunk beyond it (extra), not read to its end', async () => {
    const l = await start({ payloadBytes: 1000 });
    const flood = Buffer.concat([l.upPayload, Buffer.alloc(8 << 20, 7)]);
    await client(l.upPort, flood);
    const u = (await l.waitForRound({ timeoutMs: 0 })).uploads.at(-1)!;
    expect(u.outcome).toBe('extra');
    expect(u.firstDifference).toBeNull();
    // what is looked at is bounded by the chunks that arrived before the socket was destroyed, far below 8 MiB
    expect(u.receivedBytes).toBeGreaterThan(1000);
    expect(u.receivedBytes).toBeLessThan(4 << 20);
  });

  it('an upload that stops sending is recorded as stalled after the idle limit, with the bytes it sent', async () => {
    const l = await start({ payloadBytes: 1000, idleMs: 300 });
    const { socket } = await new Promise<{ socket: Socket }>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: l.upPort }, () => {
        s.write(l.upPayload.subarray(0, 400));
        resolve({ socket: s });
      });
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => socket.on('close', () => r()));
    const u = (await l.waitForRound({ timeoutMs: 0 })).uploads.at(-1)!;
    expect(u).toMatchObject({ outcome: 'stalled', receivedBytes: 400 });
    expect(u.detail).toBe('no byte for 300 ms after 400 of 1000');
  });

  it('a guest that drips bytes slower than the payload needs is ended at the connection limit, not held open', async () => {
    const l = await start({ payloadBytes: 1000, idleMs: 60_000, connectionMs: 500 });
    const s = connect({ host: '127.0.0.1', port: l.upPort });
    s.on('error', () => undefined);
    let i = 0;
    const drip = setInterval(() => {
      if (!s.destroyed && i < 1000) s.write(Buffer.from([l.upPayload[i++]!]));
    }, 20);
    await new Promise<void>((r) => s.on('close', () => r()));
    clearInterval(drip);
    const u = (await l.waitForRound({ timeoutMs: 0 })).uploads.at(-1)!;
    expect(u.outcome).toBe('stalled');
    expect(u.detail).toMatch(/^still open after 500 ms with \d+ of 1000 bytes$/);
    expect(u.firstDifference).toBeNull();
  });

  it('at most 4 connections per port at a time: a fifth is closed at once, unrecorded', async () => {
    // on the down port the server writes at once, so a first byte proves it holds that connection
    const l = await start({ payloadBytes: 8 << 20, idleMs: 60_000 });
    const held: Socket[] = [];
    for (let i = 0; i < 4; i++) {
      held.push(
        await new Promise<Socket>((resolve) => {
          const s = connect({ host: '127.0.0.1', port: l.downPort });
          s.once('data', () => {
            s.pause();
            resolve(s);
          });
          s.on('error', () => undefined);
        }),
      );
    }
    const fifth = await client(l.downPort, null, false);
    expect(fifth.got.length).toBe(0);
    expect(l.record().downloads).toHaveLength(0);
    for (const s of held) s.destroy();
  });

  it('waitForRound gives what it has at its timeout, and only counts attempts since `since`', async () => {
    const l = await start({ payloadBytes: 1000 });
    await client(l.upPort, l.upPayload);
    const r = await l.waitForRound({ since: Date.now() + 60_000, timeoutMs: 50 });
    expect(r.uploads).toHaveLength(1);
    expect(r.downloads).toHaveLength(0);
  });
});
