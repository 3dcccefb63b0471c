/**
 * migrate-test's network check (issue 18, docs/netfront-design.md §6.5): after each iteration the network
 * still carries traffic (the round trip, byte for byte), the guest's MAC is unchanged, and the time from the
 * resume to the first byte that reached the host is reported beside the heartbeat downtime.
 *
 * The guest's files are those `fbxen boot` put on its fbxen CD, still in its drive: migrate-test listens
 * again where that boot listened (its net.json: address and ports; net.bin: the upload payload), so the
 * collector run of each iteration sends to it. xl on another dom0 (--host ssh://): the same remote forwards
 * from that dom0's bridge address and ports, to a listener here (net/remote-forward.ts). Not arranged (a
 * reason, netfront inconclusive, never a pass): XAPI, a live migration to another host (the bridge is not
 * the guest's any more), a boot that arranged none or on another host, or the ports taken.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { readBootNet, remoteLinkOf } from '../boot/network-check.js';
import { firstBeatAfter, startBeatListener, type BeatListener } from '../net/beats.js';
import { arrangeRemoteRoundTrip, type RemoteRoundTrip } from '../net/remote-forward.js';
import { stopListener } from '../net/arrange.js';
import { startRoundTripListener, type RoundTripListener, type RoundTripNotArranged } from '../net/roundtrip.js';
import type { Toolstack } from '../toolstack/types.js';
import { NAME_PATTERN } from '../util/names.js';
import { netAcrossMigration } from '../../probes/netfront-migration.js';
import type { Bundle, NetHostKnowledge } from '../../probes/types.js';
import type { IterationNetwork } from './report.js';
import type { BeatTarget } from './types.js';

/** How often the heartbeat sends a network beat (ms): 4 short-lived nc a second in the guest, and the finest resolution of the first beat. */
export const BEAT_EVERY_MS = 250;

/** How long the host waits for its side of a round trip the guest says it ran (the frame may overtake the last FIN). */
const SETTLE_MS = 5000;

export interface MigrationNetwork {
  readonly roundTrip: RoundTripListener | RoundTripNotArranged;
  /** what the probes get for a bundle collected now (waits, bounded, for the round trip the bundle says it ran since `since`) */
  knowledge(bundle: Bundle, since: number): Promise<NetHostKnowledge>;
  /** the iteration's network check: the same xn at the same node with the same MAC, the round trip after the resume */
  check(before: Bundle, after: Bundle, net: NetHostKnowledge, resumedAt: number): IterationNetwork;
  /** where the heartbeat sends its network beats (the guest reaches it as it reaches the round trip), or undefined */
  beatTarget(): BeatTarget | undefined;
  /** no beats after all (the reason goes into each iteration's evidence); closes their listener */
  dropBeats(reason: string): Promise<void>;
  /** one line for the --dry-run plan and the log */
  describe(): string;
  stop(): Promise<void>;
}

export async function openMigrationNetwork(o: { ts: Toolstack; domain: string; artifactsRoot: string; cwd: string; mode: 'live' | 'save-restore'; to: string | undefined }): Promise<MigrationNetwork> {
  const bootDir = await latestBootDir(resolve(o.cwd, o.artifactsRoot), o.domain);
  const source = bootDir ? `fbxen boot run ${bootDir} (net.json)` : `no fbxen boot run of ${o.domain} under ${o.artifactsRoot}`;
  let vifs: NetHostKnowledge['vifs'];
  const arrange = async (): Promise<RoundTripListener | RoundTripNotArranged> => {
    const no = (reason: string): RoundTripNotArranged => ({ arranged: false, reason });
    // xl on another dom0: forward again from its bridge, as the boot did over its own ssh (remote-forward.ts)
    const link = o.ts.capabilities.remote ? remoteLinkOf(o.ts) : undefined;
    if (o.ts.capabilities.remote && !link) return no(`the toolstack (${o.ts.name}) runs on another machine: fbxen has no listener on the guest's network`);
    if (o.mode === 'live' && o.to !== undefined && o.to !== 'localhost') return no(`the guest moves to ${o.to}: a listener on ${link ? `${link.label}'s` : "this host's"} bridge is not on its network there`);
    if (!bootDir) return no(`${source}: the guest's CD names no listener of fbxen`);
    const got = await readBootNet(bootDir);
    if ('reason' in got) return no(got.reason);
    vifs = got.record.vifs;
    const fw = got.record.forward;
    if (link || fw) {
      if (!link) return no(`the boot's listener was reached through ssh from ${fw!.host}'s bridge: run migrate-test with --host ${fw!.host}`);
      if (!fw) return no(`the boot's listener was on this machine (${got.record.address}), not forwarded from ${link.label}: the guest's CD names no address there`);
      if (fw.host !== link.label) return no(`the boot forwarded its listener from ${fw.host}, not from ${link.label}`);
      return arrangeRemoteRoundTrip({ link, bridge: fw.bridge, again: { address: got.record.address, upPort: got.record.upPort, downPort: got.record.downPort, upPayload: got.upPayload } });
    }
    const bridge = got.record.vifs[0]?.bridge;
    const loopback = /^127\./.test(got.record.address) || got.record.address === '::1';
    try {
      return await startRoundTripListener({ address: got.record.address, ...(bridge && !loopback ? { interfaceName: bridge } : {}), ports: { up: got.record.upPort, down: got.record.downPort }, upPayload: got.upPayload });
    } catch (err) {
      return no(`the listener of the boot (${got.record.address} ports ${got.record.upPort}/${got.record.downPort}) could not be opened again: ${(err as Error).message}`);
    }
  };
  const roundTrip = await arrange();
  const listener = 'close' in roundTrip ? roundTrip : undefined;
  // The heartbeat's network beats (net/beats.ts): on the round trip's address, forwarded like it on a remote dom0.
  let beats: BeatListener | undefined;
  let beatTo: { host: string; port: number } | undefined;
  let noBeats = listener ? '' : 'no round trip arranged';
  if (listener) {
    const remote = 'forwardMore' in listener ? (listener as RemoteRoundTrip) : undefined;
    try {
      beats = await startBeatListener({ address: remote ? '127.0.0.1' : listener.address });
      const port = remote ? await remote.forwardMore(beats.port) : beats.port;
      if (typeof port === 'number') beatTo = { host: listener.address, port };
      else noBeats = port;
    } catch (err) {
      noBeats = `the beat listener could not start on ${listener.address}: ${(err as Error).message}`;
    }
    if (!beatTo) await beats?.close();
  }
  return {
    roundTrip,
    async knowledge(bundle, since) {
      if (!listener) return { source, vifs, roundTrip: roundTrip as RoundTripNotArranged };
      if (/^config /m.test(bundle.sections.get('net-rt') ?? '')) await listener.waitForRound({ since, timeoutMs: SETTLE_MS });
      return { source, vifs, roundTrip: listener.record() };
    },
    check(before, after, net, resumedAt) {
      if (!listener) return { verdict: 'not-arranged', reason: (roundTrip as RoundTripNotArranged).reason, firstByteAfterResumeMs: null, evidence: [] };
      const c = netAcrossMigration(before, after, { net, resumedAt });
      const beat = beatTo && beats ? firstBeatAfter(beats.beats(), resumedAt) : undefined;
      const beatLine = !beatTo ? `no network beats: ${noBeats}` : beat ? `first network beat after the resume: ${beat.ms} ms (beat ${beat.seq}; the guest sends one every ${BEAT_EVERY_MS} ms, stamped on arrival here)` : `no network beat reached the host after the resume${beats!.ignored ? ` (${beats!.ignored} connections sent no beat)` : ''}`;
      return { verdict: c.verdict, reason: c.evidence[0] ?? '', firstByteAfterResumeMs: c.firstByteAfterResumeMs, ...(beatTo ? { firstBeatAfterResumeMs: beat?.ms ?? null } : {}), evidence: [...c.evidence, beatLine], ...(c.hint ? { hint: c.hint } : {}) };
    },
    beatTarget: () => (beatTo ? { ...beatTo, everyMs: BEAT_EVERY_MS } : undefined),
    async dropBeats(reason) {
      if (!beatTo) return;
      beatTo = undefined;
      noBeats = reason;
      await beats?.close().catch(() => undefined);
    },
    describe: () => (listener ? `listen again on ${listener.address} ports ${listener.upPort}/${listener.downPort} for the guest's round trip (its fbxen CD's /fbxen/net)${beatTo ? `, and on port ${beatTo.port} for the heartbeat's network beats` : `; no network beats: ${noBeats}`}` : `no network round trip: ${(roundTrip as RoundTripNotArranged).reason}`),
    stop: async () => {
      await beats?.close().catch(() => undefined);
      await stopListener(roundTrip);
    },
  };
}

/**
 * TEST-ONLY (boot/standin-guest.ts): whether the boot `latest` points at gave the stand-in guest fbxen's vif
 * (its run.json's standin.vif): only then has it a network whose round trip migrate-test can check.
 */
export async function standinBootHadVif(o: { artifactsRoot: string; cwd: string; domain: string }): Promise<boolean> {
  const dir = await latestBootDir(resolve(o.cwd, o.artifactsRoot), o.domain);
  if (!dir) return false;
  const file = join(dir, 'run.json');
  const size = (await stat(file).catch(() => undefined))?.size;
  if (size === undefined || size > 1024 * 1024) return false;
  try {
    const run = JSON.parse(await readFile(file, 'utf8')) as { standin?: { vif?: unknown } } | null;
    return run?.standin?.vif === true;
  } catch {
    return false;
  }
}

/** `<root>/<domain>/<run>` of the boot `latest` points at, or undefined. */
async function latestBootDir(root: string, domain: string): Promise<string | undefined> {
  if (!NAME_PATTERN.test(domain)) return undefined;
  const run = (await readFile(join(root, domain, 'latest'), 'utf8').catch(() => '')).slice(0, 200).trim();
  return NAME_PATTERN.test(run) ? join(root, domain, run) : undefined;
}
