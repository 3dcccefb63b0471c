/**
 * The heartbeat's line grammar: what guest/fbxen-heartbeat writes (HBINFO, HB, HBDISK lines with their
 * checks) and how those lines are picked out of console text amid kernel noise. heartbeat.ts has the
 * format in full and what the beats are used for.
 */
import { z } from 'zod';
import { NAME_TOKEN } from '../util/names.js';

export const HEARTBEAT_MODULUS = 65521;
// The run token follows fbxen's one name rule (util/names.ts).
const HB_RE = new RegExp(`FBXEN1 HB (${NAME_TOKEN}) ([1-9][0-9]{0,9}) ([0-9]{1,12}) ([0-9]{1,20}) ([0-9]{1,5})\\s*$`);
const DISK_RE = new RegExp(`FBXEN1 HBDISK (${NAME_TOKEN}) ([1-9][0-9]{0,9}) (ok|bad) ([0-9]{1,5})\\s*$`);
const INFO_RE = new RegExp(`FBXEN1 HBINFO (${NAME_TOKEN}) ([A-Za-z0-9._-]{1,32}) ([1-9][0-9]{0,15}) ([1-9][0-9]{0,20}) ([1-9][0-9]{0,4}) ([0-9]{1,5})\\s*$`);
// eslint-disable-next-line no-control-regex
const NOISE_RE = /\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]/g;

export interface StampedLine {
  /** host arrival time, ms since the epoch (console capture), or undefined when unknown */
  hostMs?: number | undefined;
  text: string;
}

export interface Beat {
  seq: number;
  wall: number;
  counter: bigint;
  hostMs?: number | undefined;
}

export interface HeartbeatInfo {
  timecounter: string;
  frequency: number;
  /** counter modulus = mask + 1 */
  modulus: bigint;
  periodMs: number;
}

const BeatSchema = z.object({ seq: z.number().int().positive(), wall: z.number().int().nonnegative(), counter: z.bigint().nonnegative() });

export function beatCheck(seq: number, wall: number, counter: bigint): number {
  return Number((7n * BigInt(seq) + 3n * BigInt(wall) + counter) % BigInt(HEARTBEAT_MODULUS));
}

export function infoCheck(frequency: number, mask: bigint, periodMs: number): number {
  return Number((BigInt(frequency) + 3n * mask + 7n * BigInt(periodMs)) % BigInt(HEARTBEAT_MODULUS));
}

export function formatBeat(run: string, b: { seq: number; wall: number; counter: bigint }): string {
  return `FBXEN1 HB ${run} ${b.seq} ${b.wall} ${b.counter} ${beatCheck(b.seq, b.wall, b.counter)}`;
}

export function formatDiskRound(run: string, round: number, ok: boolean): string {
  return `FBXEN1 HBDISK ${run} ${round} ${ok ? 'ok' : 'bad'} ${(7 * round + (ok ? 1 : 2)) % HEARTBEAT_MODULUS}`;
}

export function formatInfo(run: string, i: { timecounter: string; frequency: number; mask: bigint; periodMs: number }): string {
  return `FBXEN1 HBINFO ${run} ${i.timecounter} ${i.frequency} ${i.mask} ${i.periodMs} ${infoCheck(i.frequency, i.mask, i.periodMs)}`;
}

export interface DiskRound {
  round: number;
  ok: boolean;
  hostMs?: number | undefined;
}

export interface ParsedHeartbeat {
  info: HeartbeatInfo | undefined;
  /** --load disk: write + fsync + read-back + compare rounds, in round order */
  disk: DiskRound[];
  /** one per seq (the first good copy), in seq order */
  beats: Beat[];
  /** lines that looked like heartbeat lines but failed their check or grammar */
  rejected: number;
}

/** Picks the heartbeat lines of `run` out of console text; tolerant of noise, control bytes and duplicates. */
export function parseHeartbeat(lines: readonly StampedLine[], run: string): ParsedHeartbeat {
  let info: HeartbeatInfo | undefined;
  const bySeq = new Map<number, Beat>();
  const disk = new Map<number, DiskRound>();
  let rejected = 0;
  for (const { text: raw, hostMs } of lines) {
    if (!raw.includes('FBXEN1 HB')) continue;
    let text = /[\x00-\x1f\x7f]/.test(raw) ? raw.replace(NOISE_RE, '') : raw;
    // A kernel message may land before ours on the same line; the last start is the one that can be whole.
    const at = text.lastIndexOf('FBXEN1 HB');
    text = text.slice(at);
    let m = HB_RE.exec(text);
    if (m) {
      if (m[1] !== run) continue;
      const seq = Number(m[2]);
      const wall = Number(m[3]);
      const counter = BigInt(m[4]!);
      const parsed = BeatSchema.safeParse({ seq, wall, counter });
      if (!parsed.success || beatCheck(seq, wall, counter) !== Number(m[5])) {
        rejected++;
        continue;
      }
      if (!bySeq.has(seq)) bySeq.set(seq, { seq, wall, counter, ...(hostMs !== undefined ? { hostMs } : {}) });
      continue;
    }
    m = DISK_RE.exec(text);
    if (m) {
      if (m[1] !== run) continue;
      const round = Number(m[2]);
      const ok = m[3] === 'ok';
      if ((7 * round + (ok ? 1 : 2)) % HEARTBEAT_MODULUS !== Number(m[4])) {
        rejected++;
        continue;
      }
      if (!disk.has(round)) disk.set(round, { round, ok, ...(hostMs !== undefined ? { hostMs } : {}) });
      continue;
    }
    m = INFO_RE.exec(text);
    if (m) {
      if (m[1] !== run) continue;
      const frequency = Number(m[3]);
      const mask = BigInt(m[4]!);
      const periodMs = Number(m[5]);
      if (infoCheck(frequency, mask, periodMs) !== Number(m[6]) || !Number.isSafeInteger(frequency)) {
        rejected++;
        continue;
      }
      info ??= { timecounter: m[2]!, frequency, modulus: mask + 1n, periodMs };
      continue;
    }
    rejected++;
  }
  return { info, beats: [...bySeq.values()].sort((a, b) => a.seq - b.seq), disk: [...disk.values()].sort((a, b) => a.round - b.round), rejected };
}
