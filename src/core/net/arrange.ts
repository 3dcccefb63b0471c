/**
 * Where the netfront round trip's listener may listen for a run, or why the run arranges no round trip
 * (docs/netfront-design.md §6.5-6.7). The listener binds only to an address of the bridge the guest's vif
 * is on (its own IPv4 on this host) or, when FBXEN_NET_LISTEN names one, to that address if it is on the
 * bridge or a loopback address (tests: loopback stands in for the bridge). Never a wildcard, never an
 * address that leads outside. A round trip that cannot be arranged is a reason, not an error: the netfront
 * probe reports it inconclusive and the run goes on.
 */
import { isIP } from 'node:net';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { ConfigError } from '../errors.js';
import { startRoundTripListener, type RoundTripListener, type RoundTripNotArranged } from './roundtrip.js';

/** The environment variable that picks the listener's address (the bridge's own IPv4 by default). */
export const NET_LISTEN_ENV = 'FBXEN_NET_LISTEN';

export interface ArrangeOptions {
  /** the bridge the vif is on (xl: xenbr0 by default); undefined when the toolstack names no bridge */
  bridge: string | undefined;
  /** the toolstack runs on another machine (--host ssh://, a XAPI pool): a listener here is not on its bridge */
  remote: string | undefined;
  env: NodeJS.ProcessEnv;
  payloadBytes?: number | undefined;
  /** injected for tests */
  interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
  idleMs?: number | undefined;
}

const isLoopback = (a: string) => /^127\./.test(a) || a === '::1';

/** The bridge's first IPv4 address on this host, or undefined (no such interface, or no IPv4 on it). */
export function bridgeAddress(bridge: string, ifs: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string | undefined {
  return (ifs[bridge] ?? []).find((a) => a.family === 'IPv4')?.address;
}

/** A started listener, or why none was started. Throws only for a FBXEN_NET_LISTEN value that may not be used. */
export async function arrangeRoundTrip(o: ArrangeOptions): Promise<RoundTripListener | RoundTripNotArranged> {
  const no = (reason: string): RoundTripNotArranged => ({ arranged: false, reason });
  if (o.remote !== undefined) return no(`the toolstack runs on ${o.remote}, not on this machine: a listener here is not on the guest's bridge`);
  const ifs = (o.interfaces ?? networkInterfaces)();
  const given = o.env[NET_LISTEN_ENV]?.trim();
  let address: string;
  let onBridge: string | undefined;
  if (given) {
    if (isIP(given) === 0) throw new ConfigError(`${NET_LISTEN_ENV}=${JSON.stringify(given.slice(0, 60))} is not an IP address`, [], { hint: `give an address of the bridge${o.bridge ? ` ${o.bridge}` : ''}, or unset ${NET_LISTEN_ENV} to use the bridge's own` });
    // loopback reaches no guest on a real host (the round trip then finds no upload: inconclusive, never a pass)
    onBridge = isLoopback(given) ? undefined : o.bridge;
    if (!isLoopback(given) && o.bridge === undefined) throw new ConfigError(`${NET_LISTEN_ENV}=${given}: this run names no bridge to check it against`, [], { hint: `unset ${NET_LISTEN_ENV}` });
    address = given;
  } else {
    if (o.bridge === undefined) return no('the toolstack names no bridge for the vif, so fbxen knows no address the guest reaches');
    const a = bridgeAddress(o.bridge, ifs);
    if (a === undefined) return no(`the bridge ${o.bridge} has no IPv4 address on this host: the guest reaches no listener of fbxen (give the bridge an address, or set ${NET_LISTEN_ENV} to one of it)`);
    address = a;
    onBridge = o.bridge;
  }
  try {
    return await startRoundTripListener({ address, ...(onBridge !== undefined ? { interfaceName: onBridge } : {}), ...(o.payloadBytes !== undefined ? { payloadBytes: o.payloadBytes } : {}), ...(o.idleMs !== undefined ? { idleMs: o.idleMs } : {}) });
  } catch (err) {
    // a value the user gave that the listener refuses is the user's to fix; the bridge's own failing is a reason
    if (given && err instanceof ConfigError) throw err;
    return no(`the listener could not start on ${address}: ${(err as Error).message}`);
  }
}

/** Stops a listener within `ms` (a connection that does not close in time is destroyed by close itself). */
export async function stopListener(l: RoundTripListener | RoundTripNotArranged | undefined, ms = 5000): Promise<void> {
  if (!l || !('close' in l)) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([l.close().catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}
