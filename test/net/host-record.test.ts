/**
 * net-host.json (src/core/net/host-record.ts): what the boot's host knew of the network, read back by
 * `verify --domain` as hostile input. A written record reads back equal; anything else in the file is a
 * reason, never a throw and never a record.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { readHostKnowledge, RUN_NET_HOST_JSON, writeHostKnowledge, type HostKnowledgeRecord } from '../../src/core/net/host-record.js';

const dir = mkdtempSync(join(tmpdir(), 'net-host-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha = 'ab'.repeat(32);
const record: HostKnowledgeRecord = {
  source: 'fbxen boot run r1',
  vifs: [{ devid: 0, mac: '00:16:3e:00:00:01' }],
  roundTrip: {
    address: '192.168.122.1',
    upPort: 40000,
    downPort: 40001,
    payloadBytes: 1048576,
    upSha256: sha,
    downSha256: sha,
    listeningSince: 1000,
    uploads: [{ peer: '192.168.122.50:1234', connectedAt: 1100, firstByteAt: 1101, endedAt: 1200, expectedBytes: 1048576, receivedBytes: 1048576, firstDifference: null, outcome: 'complete', detail: 'ok' }],
    downloads: [{ peer: '192.168.122.50:1235', connectedAt: 1300, endedAt: 1400, sentBytes: 1048576, outcome: 'sent', detail: 'ok' }],
    dropped: 0,
    forwardedBy: 'ssh://root@dom0',
  },
};

describe('net-host.json', () => {
  it('a written record reads back equal; a not-arranged one too', async () => {
    await writeHostKnowledge(dir, record);
    expect(await readHostKnowledge(dir)).toEqual(record);
    const no: HostKnowledgeRecord = { source: 's', roundTrip: { arranged: false, reason: 'no bridge address' } };
    await writeHostKnowledge(dir, no);
    expect(await readHostKnowledge(dir)).toEqual(no);
  });

  it('missing, oversized, not JSON: each a reason naming the file', async () => {
    const empty = mkdtempSync(join(dir, 'e-'));
    expect(await readHostKnowledge(empty)).toMatchObject({ reason: expect.stringMatching(/net-host\.json is missing/) });
    writeFileSync(join(empty, RUN_NET_HOST_JSON), `"${'x'.repeat(5 << 20)}"`);
    expect(await readHostKnowledge(empty)).toMatchObject({ reason: expect.stringMatching(/is over \d+ bytes/) });
    writeFileSync(join(empty, RUN_NET_HOST_JSON), '{"source":');
    expect(await readHostKnowledge(empty)).toMatchObject({ reason: expect.stringMatching(/is not JSON/) });
  });

  it('any JSON value or mutated record: a reason or a record of the right shape, never a throw', async () => {
    const sub = mkdtempSync(join(dir, 'p-'));
    const mutated = fc.record({ key: fc.constantFrom('upPort', 'uploads', 'upSha256', 'payloadBytes', 'dropped', 'address'), value: fc.jsonValue() }).map(({ key, value }) => ({ ...record, roundTrip: { ...(record.roundTrip as object), [key]: value } }));
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue(), mutated), async (v) => {
        writeFileSync(join(sub, RUN_NET_HOST_JSON), JSON.stringify(v) ?? 'null');
        const got = await readHostKnowledge(sub);
        if ('reason' in got) expect(got.reason).toContain(RUN_NET_HOST_JSON);
        else {
          expect(typeof got.source).toBe('string');
          const rt = got.roundTrip;
          if (rt && !('arranged' in rt)) expect(Number.isInteger(rt.upPort) && rt.upPort > 0 && rt.upPort < 65536 && Array.isArray(rt.uploads)).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });
});
