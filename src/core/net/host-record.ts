/**
 * What the host knew of a boot's network (the vifs, the round trip listener's record or why there was none),
 * kept in the boot's run directory as `net-host.json` so that a later `fbxen verify --domain NAME` (after
 * `fbxen boot --keep`) judges the netfront round trip on the same record `boot --verify` would have used.
 * The file is read back as hostile input: bounded in size, checked field by field, never trusted as typed.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../util/atomic.js';
import type { HostRoundTrip, RoundTripNotArranged } from './roundtrip.js';

export const RUN_NET_HOST_JSON = 'net-host.json';

/** The probes' NetHostKnowledge (probes/types.ts), as this layer may name it. */
export interface HostKnowledgeRecord {
  source: string;
  vifs?: { mac?: string | undefined; devid?: number | undefined; bridge?: string | undefined }[] | undefined;
  roundTrip?: HostRoundTrip | RoundTripNotArranged | undefined;
}
/** 256 attempts each way of a few hundred bytes: far below this. */
const MAX_BYTES = 4 << 20;

const int = z.number().int();
const time = z.number().finite();
const Upload = z.object({
  peer: z.string().max(200),
  connectedAt: time,
  firstByteAt: time.nullable(),
  endedAt: time,
  expectedBytes: int.nonnegative(),
  receivedBytes: int.nonnegative(),
  firstDifference: int.nonnegative().nullable(),
  outcome: z.enum(['complete', 'corrupt', 'short', 'extra', 'stalled', 'error']),
  detail: z.string().max(1000),
});
const Download = z.object({ peer: z.string().max(200), connectedAt: time, endedAt: time, sentBytes: int.nonnegative(), outcome: z.enum(['sent', 'error', 'stalled']), detail: z.string().max(1000) });
const port = int.min(1).max(65535);
const RoundTrip = z.union([
  z.object({
    address: z.string().max(100),
    upPort: port,
    downPort: port,
    payloadBytes: int.positive(),
    upSha256: z.string().regex(/^[0-9a-f]{64}$/),
    downSha256: z.string().regex(/^[0-9a-f]{64}$/),
    listeningSince: time,
    uploads: z.array(Upload).max(1024),
    downloads: z.array(Download).max(1024),
    dropped: int.nonnegative(),
    forwardedBy: z.string().max(300).optional(),
  }),
  z.object({ arranged: z.literal(false), reason: z.string().max(2000) }),
]);
const Knowledge = z.object({
  source: z.string().max(1000),
  vifs: z.array(z.object({ mac: z.string().max(40).optional(), devid: int.nonnegative().optional(), bridge: z.string().max(40).optional() })).max(64).optional(),
  roundTrip: RoundTrip.optional(),
});

/** Writes the record (atomically) into the run directory. */
export async function writeHostKnowledge(dir: string, k: HostKnowledgeRecord): Promise<void> {
  await writeFileAtomic(join(dir, RUN_NET_HOST_JSON), `${JSON.stringify(k, null, 1)}\n`);
}

/** The record of a run directory, or the reason it cannot be used (missing, too large, not JSON, not a record). */
export async function readHostKnowledge(dir: string): Promise<HostKnowledgeRecord | { reason: string }> {
  const path = join(dir, RUN_NET_HOST_JSON);
  const size = (await stat(path).catch(() => undefined))?.size;
  if (size === undefined) return { reason: `${path} is missing (a boot before fbxen kept it, or one that stopped before it arranged the round trip)` };
  if (size > MAX_BYTES) return { reason: `${path} is over ${MAX_BYTES} bytes: not a record fbxen wrote` };
  let value: unknown;
  try {
    value = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return { reason: `${path} is not JSON` };
  }
  const parsed = Knowledge.safeParse(value);
  if (!parsed.success) return { reason: `${path} is not a network record (${parsed.error.issues[0]?.path.join('.') || 'top'}: ${parsed.error.issues[0]?.message ?? '?'})` };
  return parsed.data as HostKnowledgeRecord;
}
