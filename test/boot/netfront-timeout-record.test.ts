/**
 * A boot that times out (no frame: exit 6) still keeps what the host saw of the netfront round trip in
 * its run (net-host.json): a guest whose network worked and whose console did not is then told apart
 * from one that never came up, and the real-xl lab test reads the listener's record from it. The test
 * plays the guest's side over loopback while the fake xl (a SIMULATION) hangs; FBXEN_NET_LISTEN=127.0.0.1
 * stands in for the bridge.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readHostKnowledge } from '../../src/core/net/host-record.js';
import type { HostRoundTrip } from '../../src/core/net/roundtrip.js';
import { domains, fbxen, makeHost, makeImage, until } from './harness.js';

/** The guest's upload: the payload, then FIN. */
function upload(port: number, payload: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => s.end(payload));
    s.on('error', reject);
    s.on('close', () => resolve());
  });
}

/** The guest's download: everything until the host closes. */
function download(port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const s = connect({ host: '127.0.0.1', port });
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', reject);
    s.on('end', () => resolve(Buffer.concat(parts)));
  });
}

describe('boot timeout: the round trip record is kept (fake xl: SIMULATION)', () => {
  it('net-host.json holds the upload and download the host saw although no frame came (was absent on a timeout)', async () => {
    const h = makeHost();
    h.env.FBXEN_NET_LISTEN = '127.0.0.1';
    writeFileSync(join(h.state, 'guest.txt'), 'SeaBIOS (version 1.16.2-debian-1.16.2-1)\n@hang\n');
    const dir = join(h.artifacts, 'fbxen-net-late', 'run-late');
    let down: Buffer = Buffer.alloc(0);
    // 20 s of waiting for a frame: the loopback round trip below takes well under a second of it
    const r = await fbxen(['boot', '--image', makeImage(h, 'freebsd-13.2-RELEASE-amd64.raw'), '--name', 'fbxen-net-late', '--artifacts', h.artifacts, '--run-id', 'run-late', '--timeout', '20'], h, async () => {
      await until('net.json and net.bin', () => existsSync(join(dir, 'net.json')) && existsSync(join(dir, 'net.bin')), 60_000);
      const net = JSON.parse(readFileSync(join(dir, 'net.json'), 'utf8')) as { upPort: number; downPort: number; payloadBytes: number };
      const bin = readFileSync(join(dir, 'net.bin'));
      expect(bin.length).toBe(net.payloadBytes);
      await upload(net.upPort, bin);
      down = await download(net.downPort);
    });
    expect(r.code, r.stderr).toBe(6);
    expect(domains(h)).toEqual([]);
    const known = await readHostKnowledge(dir);
    expect('reason' in known ? known.reason : '').toBe('');
    const rt = (known as { roundTrip: HostRoundTrip }).roundTrip;
    expect(rt.uploads.map((u) => u.outcome)).toEqual(['complete']);
    expect(rt.downloads.map((d) => [d.outcome, d.sentBytes])).toEqual([['sent', rt.payloadBytes]]);
    expect(createHash('sha256').update(down).digest('hex')).toBe(rt.downSha256);
  }, 120_000);
});
