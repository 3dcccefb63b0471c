/**
 * The network part of `fbxen boot` (issue 18, docs/netfront-design.md §6.7): the vif is on the bridge
 * already (the toolstack's config); this opens the round trip's listener on an address of that bridge,
 * hands the guest its two files on the fbxen CD, tells verify what the host knows (the vifs with their
 * MACs, the listener's record, or why no round trip was arranged), keeps `net.json` and `net.bin` in the
 * run directory for migrate-test, and stops the listener, bounded, whatever happens.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { arrangeRoundTrip, NET_LISTEN_ENV, stopListener } from '../net/arrange.js';
import { arrangeRemoteRoundTrip, type ForwardLink, type RemoteRoundTrip } from '../net/remote-forward.js';
import { MAX_PAYLOAD_BYTES, RUN_FILE_NET, RUN_FILE_NET_BIN, type RoundTripListener, type RoundTripNotArranged } from '../net/roundtrip.js';
import type { GuestSpec, Toolstack } from '../toolstack/types.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { NetHostKnowledge } from '../../probes/types.js';

/** In the run directory: what migrate-test needs to listen again for the files on the guest's CD. */
export const RUN_NET_JSON = 'net.json';
export const RUN_NET_BIN = 'net.bin';

/** How long verify waits for the host's side of a round trip the guest says it ran (its frame may overtake the last FIN). */
const SETTLE_MS = 5000;

export interface BootNetwork {
  /** files for the fbxen CD's /fbxen/ (none when the round trip is not arranged) */
  cdFiles: { name: string; content: string | Buffer }[];
  /** the listener, or why there is none */
  readonly roundTrip: RoundTripListener | RoundTripNotArranged;
  /** what verify passes to the probes; waits (bounded) for the listener to finish a round trip the bundle says was run */
  knowledge(guestRan: boolean): Promise<NetHostKnowledge>;
  /** writes net.json and net.bin into the run directory (only with a listener) */
  keep(dir: string): Promise<void>;
  stop(): Promise<void>;
}

/** The round trip for a boot: never throws for a host that cannot arrange it (that is a reason), only for a FBXEN_NET_LISTEN that may not be used. */
export async function arrangeBootNetwork(ts: Toolstack, guest: GuestSpec, o: { fbxenCd: boolean; env: NodeJS.ProcessEnv; source: string; payloadBytes?: number | undefined }): Promise<BootNetwork> {
  if (ts.name === 'xapi') {
    // A pool network is no bridge of this machine (see xapiNetKnowledge): no listener, the reason instead.
    const known = xapiNetKnowledge(guest.network, o.source);
    const roundTrip = known.roundTrip as RoundTripNotArranged;
    return { roundTrip, cdFiles: [], knowledge: async () => known, keep: async () => undefined, stop: async () => undefined };
  }
  // The xl config gives one vif (devid 0) with the guest's MAC on its bridge; XAPI makes one VIF on the network, MAC chosen by xapi.
  const vifs = [{ devid: 0, ...(guest.mac !== undefined ? { mac: guest.mac } : {}), ...(guest.network !== undefined && !ts.capabilities.remote ? { bridge: guest.network } : {}) }];
  // xl on another dom0: the listener here, forwarded from that dom0's bridge over the run's ssh (remote-forward.ts)
  const link = ts.capabilities.remote ? remoteLinkOf(ts) : undefined;
  const roundTrip: RoundTripListener | RoundTripNotArranged = !o.fbxenCd
    ? { arranged: false, reason: 'no fbxen CD in this run (--iso or --empty-cdrom): the guest has no /fbxen/net' }
    : link
      ? await arrangeRemoteRoundTrip({ link, bridge: guest.network, payloadBytes: o.payloadBytes })
      : await arrangeRoundTrip({ bridge: guest.network, remote: ts.capabilities.remote ? `${ts.name}'s host` : undefined, env: o.env, payloadBytes: o.payloadBytes });
  const listener = 'close' in roundTrip ? roundTrip : undefined;
  const files = listener?.runFiles();
  return {
    roundTrip,
    cdFiles: files ? [{ name: RUN_FILE_NET, content: files.net }, { name: RUN_FILE_NET_BIN, content: files.netBin }] : [],
    async knowledge(guestRan) {
      if (!listener) return { source: o.source, vifs, roundTrip: roundTrip as RoundTripNotArranged };
      if (guestRan) await listener.waitForRound({ since: listener.record().listeningSince, timeoutMs: SETTLE_MS });
      return { source: o.source, vifs, roundTrip: listener.record() };
    },
    async keep(dir) {
      if (!listener) return;
      const r = listener.record();
      const net = { address: r.address, upPort: r.upPort, downPort: r.downPort, payloadBytes: r.payloadBytes, upSha256: r.upSha256, vifs, ...('forward' in listener ? { forward: (listener as RemoteRoundTrip).forward } : {}) };
      await writeFileAtomic(join(dir, RUN_NET_BIN), listener.upPayload);
      await writeFileAtomic(join(dir, RUN_NET_JSON), `${JSON.stringify(net, null, 2)}\n`);
    },
    stop: () => stopListener(roundTrip),
  };
}

/**
 * The round trip as --dry-run shows it: what arrangeBootNetwork would do, without looking at anything
 * (the bridge's address and the ports are only known when it runs).
 */
export function planBootNetwork(ts: Toolstack, guest: GuestSpec, o: { fbxenCd: boolean; env: NodeJS.ProcessEnv }): string {
  const what = 'netfront round trip';
  if (ts.name === 'xapi') return `${what}: not arranged (${(xapiNetKnowledge(guest.network, 'plan').roundTrip as RoundTripNotArranged).reason})`;
  if (!o.fbxenCd) return `${what}: not arranged (no fbxen CD in this run: the guest has no /fbxen/net)`;
  const bridge = guest.network;
  if (ts.capabilities.remote) {
    if (bridge === undefined) return `${what}: not arranged (the toolstack names no bridge for the vif)`;
    return (
      `${what}: listen on 127.0.0.1 here (two TCP ports); read ${bridge}'s IPv4 on the dom0 (\`ip -4 -o addr show dev ${bridge}\`), ` +
      `forward two ports of it to the listener over the ssh master (\`ssh -O forward -R ADDR:0:127.0.0.1:PORT\`; sshd needs GatewayPorts clientspecified), ` +
      `check where sshd bound (\`ss -ltn\`), write the address and ports to the CD's fbxen/net; cancel the forwards at the end`
    );
  }
  const given = o.env[NET_LISTEN_ENV]?.trim();
  if (given) return `${what}: listen on ${given} (${NET_LISTEN_ENV}), two TCP ports; write them to the CD's fbxen/net`;
  if (bridge === undefined) return `${what}: not arranged (the toolstack names no bridge for the vif)`;
  return `${what}: listen on ${bridge}'s own IPv4 here, two TCP ports; write them to the CD's fbxen/net (no IPv4 on ${bridge}: not arranged, with the reason)`;
}

/** Whether the guest's bundle says it ran the round trip (its net-rt section has the `config` line). */
export function guestRanRoundTrip(sections: Map<string, string>): boolean {
  return /^config /m.test(sections.get('net-rt') ?? '');
}

/** `forward`: the boot's listener was reached through an ssh remote forward from this dom0's bridge (remote-forward.ts). */
export type BootNetRecord = { address: string; upPort: number; downPort: number; payloadBytes: number; upSha256: string; vifs: NonNullable<NetHostKnowledge['vifs']>; forward?: { host: string; bridge: string } | undefined };

/** The ssh connection of an xl driver on another dom0 that can forward a port, or undefined. */
export function remoteLinkOf(ts: Toolstack): ForwardLink | undefined {
  const link = (ts as Toolstack & { remoteLink?: ForwardLink }).remoteLink;
  return link && typeof link.forwardRemote === 'function' ? link : undefined;
}

const isVif = (v: unknown): boolean => {
  if (typeof v !== 'object' || v === null) return false;
  const x = v as Record<string, unknown>;
  return (x.mac === undefined || typeof x.mac === 'string') && (x.devid === undefined || Number.isInteger(x.devid)) && (x.bridge === undefined || typeof x.bridge === 'string');
};

/** Reads a run's net.json and net.bin back (migrate-test); undefined with the reason when they are not usable. */
export async function readBootNet(dir: string): Promise<{ record: BootNetRecord; upPayload: Buffer } | { reason: string }> {
  const jsonSize = (await stat(join(dir, RUN_NET_JSON)).catch(() => undefined))?.size;
  const text = jsonSize !== undefined && jsonSize <= 64 * 1024 ? await readFile(join(dir, RUN_NET_JSON), 'utf8').catch(() => undefined) : undefined;
  if (text === undefined) return { reason: `${join(dir, RUN_NET_JSON)} is missing or over 64 KiB (the boot arranged no round trip, or was not run by fbxen boot)` };
  let record: BootNetRecord;
  try {
    record = JSON.parse(text) as BootNetRecord;
  } catch {
    return { reason: `${join(dir, RUN_NET_JSON)} is not JSON` };
  }
  // any JSON may be there (null, a number, an array): only an object with every field is a record
  const ok = typeof record === 'object' && record !== null && typeof record.address === 'string' && [record.upPort, record.downPort].every((p) => Number.isInteger(p) && p > 0 && p < 65536) && Number.isInteger(record.payloadBytes) && typeof record.upSha256 === 'string' && Array.isArray(record.vifs) && record.vifs.every(isVif);
  const fw = record?.forward as unknown;
  const fwOk = fw === undefined || (typeof fw === 'object' && fw !== null && typeof (fw as Record<string, unknown>).host === 'string' && typeof (fw as Record<string, unknown>).bridge === 'string');
  if (!ok || !fwOk) return { reason: `${join(dir, RUN_NET_JSON)} is not a round trip record` };
  const size = (await stat(join(dir, RUN_NET_BIN)).catch(() => undefined))?.size;
  const bin = size !== undefined && size <= MAX_PAYLOAD_BYTES ? await readFile(join(dir, RUN_NET_BIN)).catch(() => undefined) : undefined;
  if (!bin || bin.length !== record.payloadBytes || createHash('sha256').update(bin).digest('hex') !== record.upSha256) return { reason: `${join(dir, RUN_NET_BIN)} is missing or is not the payload net.json names` };
  return { record, upPayload: bin };
}

/**
 * XAPI: the VM's one VIF is on the chosen pool network (MAC chosen by xapi, so not known here). fbxen runs
 * outside the pool and has no address on that network a pool guest is known to reach, so no listener is
 * opened: netfront is inconclusive with this reason, never a pass (docs/netfront-design.md §6.7).
 */
export function xapiNetKnowledge(network: string | undefined, source: string): NetHostKnowledge {
  return {
    source,
    vifs: [{ devid: 0 }],
    roundTrip: { arranged: false, reason: `XAPI: the VIF is on the pool network ${network ?? '(the pool default)'}, and fbxen, outside the pool, has no address there the guest is known to reach (check the network from the lab, or with fbxen verify --ssh and --net-dir)` },
  };
}
