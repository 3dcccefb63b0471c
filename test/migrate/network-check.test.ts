/**
 * openMigrationNetwork's choice of where to listen again (src/core/migrate/network-check.ts), from a boot
 * run's net.json/net.bin on disk and a stand-in toolstack: on this machine, or forwarded from the remote
 * dom0 the boot forwarded from, and never across the two (each a reason: netfront inconclusive, never a pass).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { RunResult, Runner } from '../../src/core/exec/runner.js';
import { openMigrationNetwork } from '../../src/core/migrate/network-check.js';
import type { ForwardLink } from '../../src/core/net/remote-forward.js';
import type { Toolstack } from '../../src/core/toolstack/types.js';

const root = mkdtempSync(join(tmpdir(), 'mig-net-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A boot run of `domain` whose net.json names address and ports (and `forward`, when given). */
function bootRun(domain: string, address: string, forward?: { host: string; bridge: string }): void {
  const dir = join(root, domain, 'boot-1');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(root, domain, 'latest'), 'boot-1\n');
  const bin = randomBytes(100);
  writeFileSync(join(dir, 'net.bin'), bin);
  writeFileSync(join(dir, 'net.json'), JSON.stringify({ address, upPort: 41234, downPort: 41235, payloadBytes: 100, upSha256: createHash('sha256').update(bin).digest('hex'), vifs: [{ devid: 0 }], ...(forward ? { forward } : {}) }));
}

function dom0Link(label: string, calls: string[]): ForwardLink {
  const runner = {
    run: async (file: string, args: readonly string[]): Promise<RunResult> => {
      calls.push([file, ...args].join(' '));
      const port = /:(\d+)$/.exec(args.join(' '))?.[1];
      return { command: '', exitCode: 0, stdout: file === 'ip' ? '7: xenbr0    inet 192.168.122.1/24 scope global xenbr0\n' : `LISTEN 0 128 192.168.122.1:${port} 0.0.0.0:*\n`, stderr: '' } as RunResult;
    },
  } as unknown as Runner;
  let next = 42000;
  return { label, open: async () => undefined, runner: () => runner, forwardRemote: async (bind, port, local, cancel) => (calls.push(`${cancel ? 'cancel' : 'forward'} ${bind}:${port}:${local}`), { port: port || next++ }) };
}

const ts = (link?: ForwardLink) => ({ name: 'xl', capabilities: { remote: link !== undefined }, ...(link ? { remoteLink: link } : {}) }) as unknown as Toolstack;
const open = (t: Toolstack, domain: string) => openMigrationNetwork({ ts: t, domain, artifactsRoot: root, cwd: root, mode: 'live', to: undefined });

describe('openMigrationNetwork: here or over the boot\'s ssh forward', () => {
  it('a boot forwarded from ssh://root@dom0: forwarded again from the same address and ports, plus the beats\' port', async () => {
    bootRun('g-fw', '192.168.122.1', { host: 'ssh://root@dom0', bridge: 'xenbr0' });
    const calls: string[] = [];
    const n = await open(ts(dom0Link('ssh://root@dom0', calls)), 'g-fw');
    try {
      expect(n.describe()).toMatch(/^listen again on 192\.168\.122\.1 ports 41234\/41235 .*, and on port 42000 for the heartbeat's network beats$/);
      expect(calls.filter((c) => c.startsWith('forward')).map((c) => c.replace(/:\d+$/, ''))).toEqual(['forward 192.168.122.1:41234', 'forward 192.168.122.1:41235', 'forward 192.168.122.1:0']);
      expect(n.beatTarget()).toEqual({ host: '192.168.122.1', port: 42000, everyMs: 250 });
      // the console channel's guest heartbeat may predate --beat-to: migrate-test drops the beats, saying why
      await n.dropBeats('the console channel runs the guest\'s installed fbxen-heartbeat');
      expect(n.beatTarget()).toBeUndefined();
      expect(n.describe()).toMatch(/; no network beats: the console channel runs the guest's installed fbxen-heartbeat$/);
    } finally {
      await n.stop();
    }
    expect(calls.filter((c) => c.startsWith('cancel'))).toHaveLength(3);
  });

  it('across machines or dom0s: a reason naming both, no listener', async () => {
    bootRun('g-fw2', '192.168.122.1', { host: 'ssh://root@dom0', bridge: 'xenbr0' });
    bootRun('g-here', '127.0.0.1');
    const cases: [Toolstack, string, RegExp][] = [
      [ts(), 'g-fw2', /reached through ssh from ssh:\/\/root@dom0's bridge: run migrate-test with --host ssh:\/\/root@dom0/],
      [ts(dom0Link('ssh://root@other', [])), 'g-fw2', /the boot forwarded its listener from ssh:\/\/root@dom0, not from ssh:\/\/root@other/],
      [ts(dom0Link('ssh://root@dom0', [])), 'g-here', /the boot's listener was on this machine \(127\.0\.0\.1\), not forwarded from ssh:\/\/root@dom0/],
    ];
    for (const [t, domain, why] of cases) {
      const n = await open(t, domain);
      expect(n.roundTrip).toMatchObject({ arranged: false, reason: expect.stringMatching(why) });
      expect(n.beatTarget()).toBeUndefined();
      await n.stop();
    }
  });
});
