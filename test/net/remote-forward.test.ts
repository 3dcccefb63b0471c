/**
 * The remote round trip's decisions (src/core/net/remote-forward.ts) against a scripted link: what `ip` and
 * `ss` print on the dom0 and how ssh answers -O forward are canned here; the real sshd path is in
 * test/boot/netfront-remote.test.ts. The local listener is real (127.0.0.1).
 */
import { spawnSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RunResult, Runner } from '../../src/core/exec/runner.js';
import { arrangeRemoteRoundTrip, parseIpAddr, parseSsListen, type ForwardLink } from '../../src/core/net/remote-forward.js';

type Canned = { ip?: RunResult | undefined; ss?: (port: number) => RunResult; forward?: (bind: string, port: number) => { port: number } | { error: string } };
const hasSs = spawnSync('ss', ['-V']).status === 0;
const ok = (stdout: string): RunResult => ({ command: '', exitCode: 0, stdout, stderr: '' }) as RunResult;

function link(c: Canned) {
  const calls: string[] = [];
  const runner = {
    run: async (file: string, args: readonly string[]) => {
      calls.push([file, ...args].join(' '));
      if (file === 'ip') return c.ip ?? ok('7: xenbr0    inet 192.168.122.1/24 brd 192.168.122.255 scope global xenbr0\\       valid_lft forever preferred_lft forever\n');
      const port = Number(/:(\d+)$/.exec(args.join(' '))?.[1]);
      return c.ss ? c.ss(port) : ok(`LISTEN 0      128    192.168.122.1:${port} 0.0.0.0:*\n`);
    },
    stream: () => {
      throw new Error('not used');
    },
  } as unknown as Runner;
  let next = 40000;
  const l: ForwardLink = {
    label: 'ssh://root@dom0',
    open: async () => undefined,
    runner: () => runner,
    forwardRemote: async (bind, port, local, cancel) => {
      calls.push(`${cancel ? 'cancel' : 'forward'} ${bind}:${port}:127.0.0.1:${local}`);
      if (cancel) return { port };
      return c.forward ? c.forward(bind, port) : { port: port || next++ };
    },
  };
  return { l, calls };
}

describe('arrangeRemoteRoundTrip', () => {
  it('forwards both ports from the bridge address and names them on the CD; close cancels both forwards', async () => {
    const { l, calls } = link({});
    const rt = await arrangeRemoteRoundTrip({ link: l, bridge: 'xenbr0', payloadBytes: 1000 });
    if (!('close' in rt)) throw new Error(rt.reason);
    expect(rt.runFiles().net).toBe('host=192.168.122.1\nup=40000\ndown=40001\nbytes=1000\n');
    expect(rt.record()).toMatchObject({ address: '192.168.122.1', upPort: 40000, downPort: 40001, forwardedBy: expect.stringContaining('ssh://root@dom0') });
    await rt.close();
    expect(calls.filter((c) => c.startsWith('cancel')).map((c) => c.replace(/127\.0\.0\.1:\d+$/, 'L'))).toEqual(['cancel 192.168.122.1:0:L', 'cancel 192.168.122.1:0:L']);
  });

  it('GatewayPorts yes (sshd bound every interface): cancelled, not arranged, the outside named and the fix given', async () => {
    const { l, calls } = link({ ss: (p) => ok(`LISTEN 0 128 0.0.0.0:${p} 0.0.0.0:*\nLISTEN 0 128 [::]:${p} [::]:*\n`) });
    const rt = await arrangeRemoteRoundTrip({ link: l, bridge: 'xenbr0', payloadBytes: 1000 });
    expect(rt).toMatchObject({ arranged: false });
    expect((rt as { reason: string }).reason).toMatch(/bound the forward to 0\.0\.0\.0 and :: port 40000, not to the bridge's 192\.168\.122\.1 \(every interface: the outside included\): add "GatewayPorts clientspecified"/);
    expect(calls).toContain('cancel 192.168.122.1:0:127.0.0.1:' + calls.find((c) => c.startsWith('forward'))!.split(':').pop());
  });

  it('a refused forward, a bridge without IPv4, a failing ip, no ss: each a reason, never a throw', async () => {
    const refused = await arrangeRemoteRoundTrip({ link: link({ forward: () => ({ error: 'remote port forwarding failed for listen port 0' }) }).l, bridge: 'xenbr0', payloadBytes: 10 });
    expect((refused as { reason: string }).reason).toMatch(/refused the forward of 192\.168\.122\.1:\(any port\).*remote port forwarding failed.*GatewayPorts clientspecified/);
    const noAddr = await arrangeRemoteRoundTrip({ link: link({ ip: ok('') }).l, bridge: 'xenbr0', payloadBytes: 10 });
    expect((noAddr as { reason: string }).reason).toMatch(/the bridge xenbr0 has no IPv4 address on ssh:\/\/root@dom0/);
    const ipFails = await arrangeRemoteRoundTrip({ link: link({ ip: { command: '', exitCode: 1, stdout: '', stderr: 'Device "xenbr0" does not exist.\n' } as RunResult }).l, bridge: 'xenbr0', payloadBytes: 10 });
    expect((ipFails as { reason: string }).reason).toMatch(/ip -4 -o addr show dev xenbr0 failed on ssh:\/\/root@dom0 \(exit 1: Device "xenbr0" does not exist\.\)/);
    const noSs = await arrangeRemoteRoundTrip({ link: link({ ss: () => ({ command: '', exitCode: 127, stdout: '', stderr: 'sh: ss: not found' }) as RunResult }).l, bridge: 'xenbr0', payloadBytes: 10 });
    expect((noSs as { reason: string }).reason).toMatch(/ss -ltn on ssh:\/\/root@dom0 failed \(exit 127: sh: ss: not found\)/);
    expect(await arrangeRemoteRoundTrip({ link: link({}).l, bridge: undefined })).toMatchObject({ arranged: false });
    expect(await arrangeRemoteRoundTrip({ link: link({}).l, bridge: 'xenbr0;rm' })).toMatchObject({ arranged: false });
  });

  it('again (migrate-test): the same remote address and ports; an address the bridge lost is a reason', async () => {
    const payload = Buffer.alloc(64, 7);
    const { l, calls } = link({});
    const rt = await arrangeRemoteRoundTrip({ link: l, bridge: 'xenbr0', again: { address: '192.168.122.1', upPort: 41000, downPort: 41001, upPayload: payload } });
    if (!('close' in rt)) throw new Error(rt.reason);
    expect(rt.record()).toMatchObject({ upPort: 41000, downPort: 41001, payloadBytes: 64 });
    expect(calls.filter((c) => c.startsWith('forward')).map((c) => c.replace(/:\d+$/, ''))).toEqual(['forward 192.168.122.1:41000:127.0.0.1', 'forward 192.168.122.1:41001:127.0.0.1']);
    await rt.close();
    const lost = await arrangeRemoteRoundTrip({ link: link({}).l, bridge: 'xenbr0', again: { address: '10.0.0.1', upPort: 41000, downPort: 41001, upPayload: payload } });
    expect((lost as { reason: string }).reason).toMatch(/10\.0\.0\.1, where the boot's round trip listened, is no longer an address of xenbr0/);
  });
});

describe('parseIpAddr / parseSsListen', () => {
  it('reads the addresses back from the lines ip and ss print, whatever they are', () => {
    const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((t) => t.join('.'));
    fc.assert(
      fc.property(fc.array(fc.tuple(ipv4, fc.integer({ min: 0, max: 32 })), { maxLength: 5 }), fc.integer({ min: 1, max: 65535 }), (addrs, port) => {
        const ip = addrs.map(([a, n], i) => `${i + 2}: xenbr0    inet ${a}/${n} scope global xenbr0\\       valid_lft forever`).join('\n');
        expect(parseIpAddr(ip)).toEqual(addrs.map(([a]) => a));
        const ss = addrs.map(([a]) => `LISTEN 0      128    ${a}:${port} 0.0.0.0:*`).join('\n');
        expect(parseSsListen(ss, port)).toEqual(addrs.map(([a]) => a));
        expect(parseSsListen(ss, port === 1 ? 2 : port - 1)).toEqual([]);
      }),
    );
    expect(parseSsListen('State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\nLISTEN 0 128 [::1]:5 [::]:*\nLISTEN 0 128 127.0.0.2%lo:5 0.0.0.0:*\n', 5)).toEqual(['::1', '127.0.0.2']);
  });

  it.skipIf(!hasSs)(`reads the real ss's output for a port listening on 127.0.0.2${hasSs ? '' : ' (skipped: no ss here)'}`, async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen({ host: '127.0.0.2', port: 0 }, () => r()));
    const port = (srv.address() as AddressInfo).port;
    try {
      const out = spawnSync('ss', ['-ltn', 'sport', '=', `:${port}`], { encoding: 'utf8' }).stdout;
      expect(parseSsListen(out, port)).toEqual(['127.0.0.2']);
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });

  it('never throws and stays bounded on any input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 2000 }), fc.integer({ min: 0, max: 70000 }), (s, p) => {
        expect(parseIpAddr(s).length).toBeLessThanOrEqual(256);
        expect(parseSsListen(s, p).length).toBeLessThanOrEqual(256);
      }),
    );
    expect(parseIpAddr('x'.repeat(1 << 20))).toEqual([]);
  });
});
