/** Where boot's round trip listener may listen (src/core/net/arrange.ts): the bridge's own IPv4, loopback on request, a reason otherwise. */
import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { arrangeRoundTrip, bridgeAddress, stopListener } from '../../src/core/net/arrange.js';

const loName = Object.entries(networkInterfaces()).find(([, a]) => (a ?? []).some((x) => x.address === '127.0.0.1'))?.[0];

describe('arrangeRoundTrip', () => {
  it('a remote toolstack, no bridge, a bridge without IPv4: no listener, each with its reason', async () => {
    expect(await arrangeRoundTrip({ bridge: 'xenbr0', remote: "xapi's host", env: {} })).toEqual({ arranged: false, reason: expect.stringMatching(/^the toolstack runs on xapi's host, not on this machine/) });
    expect(await arrangeRoundTrip({ bridge: undefined, remote: undefined, env: {} })).toMatchObject({ arranged: false, reason: expect.stringMatching(/names no bridge/) });
    const ifs = () => ({ xenbr0: [{ address: 'fe80::1', family: 'IPv6', internal: false, netmask: 'ffff::', mac: '00:00:00:00:00:00', cidr: null, scopeid: 2 }] }) as ReturnType<typeof networkInterfaces>;
    expect(await arrangeRoundTrip({ bridge: 'xenbr0', remote: undefined, env: {}, interfaces: ifs })).toMatchObject({ arranged: false, reason: expect.stringMatching(/^the bridge xenbr0 has no IPv4 address on this host/) });
    expect(bridgeAddress('nope', ifs())).toBeUndefined();
  });

  it.skipIf(loName === undefined)('the bridge\'s own IPv4 (loopback\'s interface playing the bridge): a listener there, checked to be on it; stopped within its bound', async () => {
    const l = await arrangeRoundTrip({ bridge: loName!, remote: undefined, env: {}, payloadBytes: 4096 });
    expect('close' in l && l.address).toBe('127.0.0.1');
    await stopListener(l, 2000);
  });

  it('FBXEN_NET_LISTEN: loopback is taken (it reaches no guest on a real host: inconclusive there, never a pass); a wildcard, a name or an address off the bridge is refused naming the variable', async () => {
    const l = await arrangeRoundTrip({ bridge: 'xenbr0', remote: undefined, env: { FBXEN_NET_LISTEN: '127.0.0.1' }, payloadBytes: 4096 });
    expect('close' in l && l.runFiles().net).toMatch(/^host=127\.0\.0\.1\nup=\d+\ndown=\d+\nbytes=4096\n$/);
    await stopListener(l);
    await expect(arrangeRoundTrip({ bridge: 'xenbr0', remote: undefined, env: { FBXEN_NET_LISTEN: 'xenbr0' } })).rejects.toThrow(/FBXEN_NET_LISTEN="xenbr0" is not an IP address/);
    await expect(arrangeRoundTrip({ bridge: 'xenbr0', remote: undefined, env: { FBXEN_NET_LISTEN: '0.0.0.0' } })).rejects.toBeInstanceOf(ConfigError);
    await expect(arrangeRoundTrip({ bridge: 'xenbr0', remote: undefined, env: { FBXEN_NET_LISTEN: '192.0.2.77' } })).rejects.toThrow(/not an address of this host/);
  });
});

describe('listening again where a boot listened (migrate-test)', () => {
  it('the same ports and upload payload; taken ports are an error; a tampered net.bin is refused with the reason', async () => {
    const { startRoundTripListener } = await import('../../src/core/net/roundtrip.js');
    const { readBootNet, RUN_NET_BIN } = await import('../../src/core/boot/network-check.js');
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const a = await startRoundTripListener({ address: '127.0.0.1', payloadBytes: 5000 });
    const again = await startRoundTripListener({ address: '127.0.0.1', ports: { up: a.upPort, down: a.downPort }, upPayload: a.upPayload }).catch((e: Error) => e);
    expect(String(again)).toMatch(/EADDRINUSE/);
    const rec = a.record();
    await a.close();
    const b = await startRoundTripListener({ address: '127.0.0.1', ports: { up: rec.upPort, down: rec.downPort }, upPayload: a.upPayload });
    expect([b.upPort, b.downPort, b.record().upSha256, b.record().payloadBytes]).toEqual([rec.upPort, rec.downPort, rec.upSha256, 5000]);
    await b.close();

    const dir = mkdtempSync(join(tmpdir(), 'fbxen-bootnet-'));
    try {
      writeFileSync(join(dir, 'net.json'), JSON.stringify({ address: '127.0.0.1', upPort: rec.upPort, downPort: rec.downPort, payloadBytes: 5000, upSha256: rec.upSha256, vifs: [{ devid: 0 }] }));
      writeFileSync(join(dir, RUN_NET_BIN), a.upPayload);
      expect(await readBootNet(dir)).toMatchObject({ record: { upPort: rec.upPort } });
      const changed = Buffer.from(a.upPayload);
      changed[10] = changed[10]! ^ 1;
      writeFileSync(join(dir, RUN_NET_BIN), changed);
      expect(await readBootNet(dir)).toEqual({ reason: expect.stringMatching(/net\.bin is missing or is not the payload net\.json names$/) });
      writeFileSync(join(dir, 'net.json'), '{"address": 1}');
      expect(await readBootNet(dir)).toEqual({ reason: expect.stringMatching(/is not a round trip record$/) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('readBootNet on any net.json (property)', () => {
  it('never throws; gives a reason, or a record whose ports are TCP ports and whose net.bin matches its sha256', async () => {
    const fc = (await import('fast-check')).default;
    const { readBootNet } = await import('../../src/core/boot/network-check.js');
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const { createHash } = await import('node:crypto');
    const dir = mkdtempSync(join(tmpdir(), 'fbxen-bootnet-prop-'));
    const bin = Buffer.from('payload');
    const sha = createHash('sha256').update(bin).digest('hex');
    writeFileSync(join(dir, 'net.bin'), bin);
    const record = fc.record({ address: fc.oneof(fc.constant('127.0.0.1'), fc.string(), fc.integer()), upPort: fc.oneof(fc.integer({ min: -1, max: 70000 }), fc.string()), downPort: fc.integer({ min: 0, max: 65536 }), payloadBytes: fc.oneof(fc.constant(bin.length), fc.integer()), upSha256: fc.oneof(fc.constant(sha), fc.string()), vifs: fc.oneof(fc.constant([]), fc.anything(), fc.array(fc.anything())) }, { requiredKeys: [] });
    try {
      await fc.assert(
        fc.asyncProperty(fc.oneof(record.map((r) => JSON.stringify(r)), fc.string(), fc.json()), async (text) => {
          writeFileSync(join(dir, 'net.json'), text);
          const got = await readBootNet(dir);
          if ('reason' in got) return;
          expect([got.record.upPort, got.record.downPort].every((p) => p > 0 && p < 65536)).toBe(true);
          expect(got.upPayload.equals(bin)).toBe(true);
          for (const v of got.record.vifs) expect(typeof v === 'object' && v !== null && (v.mac === undefined || typeof v.mac === 'string')).toBe(true);
        }),
        { numRuns: 300 },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
