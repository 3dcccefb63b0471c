/**
 * The running lab's state file (LAB/state.json): which QEMU process is the lab, how to reach its dom0,
 * and when it started. Read as hostile input: bounded in size, every field checked, and an unreadable file
 * is an error that names it and the fix, never a guess.
 */
import { open } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { InputError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic.js';

/** A real state file is under 2 KiB. */
export const STATE_MAX_BYTES = 64 * 1024;

const absPath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => isAbsolute(p) && !p.includes('\0'), 'an absolute path');

export const LabState = z
  .object({
    version: z.literal(1),
    pid: z.number().int().min(2).max(2 ** 22),
    port: z.number().int().min(1).max(65535),
    accel: z.enum(['kvm', 'tcg']),
    dir: absPath,
    imageKey: z.string().regex(/^[0-9a-f]{64}$/),
    identityFile: absPath,
    knownHostsFile: absPath,
    serialLog: absPath,
    startedAt: z.iso.datetime(),
    /** When `xl info` first answered over ssh; absent while the lab is still coming up. */
    readyAt: z.iso.datetime().optional(),
  })
  .strict();
export type LabStateT = z.infer<typeof LabState>;

export function parseLabState(text: string, path: string): LabStateT {
  const fix = `run \`fbxen lab down --dir ${JSON.stringify(path.replace(/\/state\.json$/, ''))}\` to clear it (it stops a lab it can still identify)`;
  if (Buffer.byteLength(text, 'utf8') > STATE_MAX_BYTES) throw new InputError(`the lab state file ${path} is over ${STATE_MAX_BYTES} bytes: not one fbxen wrote`, { hint: fix });
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InputError(`the lab state file ${path} is not JSON: ${(err as Error).message}`, { hint: fix });
  }
  const r = LabState.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`);
    throw new InputError(`the lab state file ${path} is not valid`, { hint: fix, issues });
  }
  return r.data;
}

/** The state, or undefined when there is no state file. A larger file is not read past the bound. */
export async function readLabState(path: string): Promise<LabStateT | undefined> {
  let text: string;
  try {
    text = (await readHead(path, STATE_MAX_BYTES + 1)).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InputError(`cannot read the lab state file ${path}: ${(err as Error).message}`, { hint: 'check its permissions' });
  }
  return parseLabState(text, path);
}

export async function writeLabState(path: string, state: LabStateT): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(LabState.parse(state), null, 2)}\n`);
}

/** At most `max` bytes from the start of a file. */
export async function readHead(path: string, max: number): Promise<Buffer> {
  const f = await open(path, 'r');
  try {
    const buf = Buffer.alloc(max);
    const { bytesRead } = await f.read(buf, 0, max, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await f.close();
  }
}

/** The last `max` bytes of a file ('' when it does not exist): the serial log's tail for an error. */
export async function readTail(path: string, max: number): Promise<string> {
  let f;
  try {
    f = await open(path, 'r');
  } catch {
    return '';
  }
  try {
    const { size } = await f.stat();
    const n = Math.min(size, max);
    const buf = Buffer.alloc(n);
    const { bytesRead } = await f.read(buf, 0, n, size - n);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await f.close();
  }
}
