/**
 * The netfront round trip for xl on another dom0 (`--host ssh://...`, docs/netfront-design.md §6.7, docs/remote.md):
 * the listener runs here on 127.0.0.1 and the run's ssh master forwards two ports of the remote bridge's
 * own IPv4 to it (`ssh -O forward -R BRIDGEADDR:0:127.0.0.1:LPORT`), so nothing leaves the two hosts.
 *
 * sshd binds a forward to the address asked for only with `GatewayPorts clientspecified`; with `no` (its
 * default) it binds loopback, with `yes` every interface. Both are seen on the dom0 (`ss -ltn`): the
 * forward is then cancelled and the round trip is not arranged, with the fix, never a pass, never an
 * error that stops the boot. The guest's CD names the remote address and the ports sshd allocated;
 * first-byte times are stamped here, on arrival through ssh, so they include ssh's latency.
 */
import { isIPv4 } from 'node:net';
import type { Runner } from '../exec/runner.js';
import { startRoundTripListener, type HostRoundTrip, type RoundTripListener, type RoundTripNotArranged } from './roundtrip.js';

/** What the round trip needs of the run's ssh connection (SshSession gives it). */
export interface ForwardLink {
  readonly label: string;
  open(): Promise<void>;
  /** commands on the dom0 */
  runner(): Runner;
  forwardRemote?(bind: string, port: number, localPort: number, cancel?: boolean): Promise<{ port: number } | { error: string }>;
}

/** A listener reached through remote forwards: its address and ports are the dom0's. */
export interface RemoteRoundTrip extends RoundTripListener {
  readonly forward: { host: string; bridge: string };
  /** one more forward from the same address (a port sshd picks) to `localPort` here, checked the same way: its port, or why not; cancelled by close() */
  forwardMore(localPort: number): Promise<number | string>;
}

export interface RemoteArrangeOptions {
  link: ForwardLink;
  bridge: string | undefined;
  payloadBytes?: number | undefined;
  idleMs?: number | undefined;
  /** migrate-test: forward again the address and ports the boot's CD names, with its payload */
  again?: { address: string; upPort: number; downPort: number; upPayload: Buffer } | undefined;
}

const FIX = 'add "GatewayPorts clientspecified" to /etc/ssh/sshd_config on the dom0 and reload sshd (systemctl reload ssh): sshd then binds a forward to the address fbxen asks for, the bridge\'s, and to no other';
const IFNAME = /^[A-Za-z0-9_.:-]{1,15}$/;
/** Output read from ip/ss on the dom0: enough for any bridge and port, bounded against a runaway host. */
const OUTPUT_BOUND = 64 * 1024;
const COMMAND_MS = 30_000;

/** The IPv4 addresses of `ip -4 -o addr show dev BRIDGE` output (`N: xenbr0    inet 192.168.122.1/24 ...`). */
export function parseIpAddr(out: string): string[] {
  const found: string[] = [];
  for (const line of out.slice(0, OUTPUT_BOUND).split('\n').slice(0, 256)) {
    const m = /\binet (\d{1,3}(?:\.\d{1,3}){3})\/\d{1,2}\b/.exec(line);
    if (m && isIPv4(m[1]!)) found.push(m[1]!);
  }
  return found;
}

/** The local addresses of `ss -ltn` lines (`LISTEN 0 128 192.168.122.1:40001 0.0.0.0:*`; the header and other lines match nothing; no -H, which iproute2 before 4.15 lacks), `[::1]` as `::1`, `%dev` dropped. */
export function parseSsListen(out: string, port: number): string[] {
  const found: string[] = [];
  for (const line of out.slice(0, OUTPUT_BOUND).split('\n').slice(0, 256)) {
    const local = line.trim().split(/\s+/)[3];
    const m = local ? /^(\[[^\]]*\]|[^\s\[\]]*?)(?:%[^:\s]+)?:(\d+)$/.exec(local) : null;
    if (m && Number(m[2]) === port) found.push(m[1]!.replace(/^\[(.*)\]$/, '$1'));
  }
  return found;
}

/** The listener here, forwarded from the dom0's bridge address; or why not (a reason, never a throw for the host's state). */
export async function arrangeRemoteRoundTrip(o: RemoteArrangeOptions): Promise<RemoteRoundTrip | RoundTripNotArranged> {
  const host = o.link.label;
  const no = (reason: string): RoundTripNotArranged => ({ arranged: false, reason });
  if (o.bridge === undefined) return no('the toolstack names no bridge for the vif, so fbxen knows no address the guest reaches');
  if (!IFNAME.test(o.bridge)) return no(`the bridge name ${JSON.stringify(o.bridge.slice(0, 40))} is no interface name`);
  const forwardRemote = o.link.forwardRemote?.bind(o.link);
  if (!forwardRemote) return no(`the connection to ${host} cannot forward a port`);
  await o.link.open();
  const dom0 = o.link.runner();
  const run = async (file: string, args: string[]) => {
    try {
      return await dom0.run(file, args, { allowFailure: true, timeoutMs: COMMAND_MS });
    } catch (err) {
      return { exitCode: -1, stdout: '', stderr: (err as Error).message };
    }
  };
  const firstLine = (s: string) => s.trim().split('\n')[0]?.slice(0, 200) ?? '';

  const ip = await run('ip', ['-4', '-o', 'addr', 'show', 'dev', o.bridge]);
  if (ip.exitCode !== 0) return no(`ip -4 -o addr show dev ${o.bridge} failed on ${host} (exit ${ip.exitCode}${ip.stderr.trim() ? `: ${firstLine(ip.stderr)}` : ''}): no bridge address to forward from`);
  const addrs = parseIpAddr(ip.stdout);
  const address = o.again?.address ?? addrs[0];
  if (address === undefined) return no(`the bridge ${o.bridge} has no IPv4 address on ${host}: the guest reaches no listener of fbxen (give it one, e.g. ip addr add 192.168.122.1/24 dev ${o.bridge})`);
  if (!addrs.includes(address)) return no(`${address}, where the boot's round trip listened, is no longer an address of ${o.bridge} on ${host} (it has ${addrs.join(', ') || 'none'})`);

  let listener: RoundTripListener;
  try {
    listener = await startRoundTripListener({ address: '127.0.0.1', ...(o.payloadBytes !== undefined ? { payloadBytes: o.payloadBytes } : {}), ...(o.idleMs !== undefined ? { idleMs: o.idleMs } : {}), ...(o.again ? { upPayload: o.again.upPayload } : {}) });
  } catch (err) {
    return no(`the listener could not start on 127.0.0.1: ${(err as Error).message}`);
  }
  // each forward as requested (a cancel must repeat the request's port, 0 included)
  const made: { asked: number; local: number }[] = [];
  const cancelAll = async () => {
    for (const f of made.splice(0)) await forwardRemote(address, f.asked, f.local, true).catch(() => undefined);
  };
  const forward = async (asked: number, local: number): Promise<number | string> => {
    const r = await forwardRemote(address, asked, local).catch((err: unknown) => ({ error: (err as Error).message }));
    if ('error' in r) return `ssh on ${host} refused the forward of ${address}:${asked || '(any port)'} to this machine: ${r.error}${asked === 0 ? ` (sshd's GatewayPorts may be "no" or the address not bindable; ${FIX})` : ` (the port may be taken on ${host})`}`;
    made.push({ asked, local });
    const ss = await run('ss', ['-ltn', 'sport', '=', `:${r.port}`]);
    if (ss.exitCode !== 0) return `ss -ltn on ${host} failed (exit ${ss.exitCode}${ss.stderr.trim() ? `: ${firstLine(ss.stderr)}` : ''}): where sshd bound the forward cannot be checked (install iproute2 there)`;
    const bound = parseSsListen(ss.stdout, r.port);
    if (!bound.includes(address)) {
      return `sshd on ${host} bound the forward to ${bound.join(' and ') || 'no address ss shows'} port ${r.port}, not to the bridge's ${address}${bound.some((b) => /^(0\.0\.0\.0|::|\*)$/.test(b)) ? ' (every interface: the outside included)' : ''}: ${FIX}`;
    }
    return r.port;
  };
  const up = await forward(o.again?.upPort ?? 0, listener.upPort);
  const down = typeof up === 'number' ? await forward(o.again?.downPort ?? 0, listener.downPort) : up;
  if (typeof up !== 'number' || typeof down !== 'number') {
    await cancelAll();
    await listener.close().catch(() => undefined);
    return no(typeof up === 'string' ? up : (down as string));
  }
  const forwardedBy = `${host} (ssh forward: first-byte times include ssh's latency)`;
  const view = (r: HostRoundTrip): HostRoundTrip => ({ ...r, address, upPort: up, downPort: down, forwardedBy });
  return {
    address,
    upPort: up,
    downPort: down,
    upPayload: listener.upPayload,
    downPayload: listener.downPayload,
    forward: { host, bridge: o.bridge },
    runFiles: () => ({ net: `host=${address}\nup=${up}\ndown=${down}\nbytes=${listener.upPayload.length}\n`, netBin: listener.upPayload }),
    record: () => view(listener.record()),
    waitForRound: async (w) => view(await listener.waitForRound(w)),
    forwardMore: (localPort) => forward(0, localPort),
    async close() {
      await cancelAll();
      await listener.close();
    },
  };
}
