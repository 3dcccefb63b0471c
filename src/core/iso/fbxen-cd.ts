/**
 * The fbxen CD: a small ISO9660 + Rock Ridge image (volume id FBXEN) the guest sees as its emulated IDE
 * CD. It carries the run nonce (so a frame from an earlier boot is never taken for this one), the phase,
 * and the collector for images that lack it. Built with xorriso, byte-for-byte reproducible: fixed
 * uid/gid, every date set to `timestamp`, no Joliet (the guest mounts it with cd9660 + Rock Ridge).
 */
import { chmod, copyFile, mkdir, mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../errors.js';
import { NAME_PATTERN } from '../util/names.js';
import type { Runner } from '../exec/runner.js';
import { withAtomicOutput } from '../util/atomic.js';

export interface FbxenCdOptions {
  runId: string;
  phase?: string;
  collectorPath: string;
  outPath: string;
  /** Seconds since the epoch for every date on the disc. */
  timestamp: number;
  /** More files under /fbxen/ (the round trip's `net` and `net.bin`: docs/probe-protocol.md) */
  extraFiles?: { name: string; content: string | Buffer }[] | undefined;
}

export const FBXEN_CD_VOLUME_ID = 'FBXEN';

/** Where the collector lives in the package (guest/fbxen-collect), from src/core/iso or dist/core/iso. */
export function defaultCollectorPath(): string {
  return fileURLToPath(new URL('../../../guest/fbxen-collect', import.meta.url));
}

/** The xorriso argv that turns `stagingDir` into `outPath` (also what --dry-run prints). */
export function xorrisoArgs(stagingDir: string, outPath: string, timestamp: number): string[] {
  const at = `=${timestamp}`; // a bare number is misparsed as a date by xorriso; "=" makes it epoch seconds
  return [
    '-report_about', 'SORRY',
    '-outdev', outPath,
    '-volid', FBXEN_CD_VOLUME_ID,
    '-joliet', 'off',
    '-rockridge', 'on',
    '-volume_date', 'all_file_dates', at,
    '-volume_date', 'c', at,
    '-volume_date', 'm', at,
    '-volume_date', 'x', 'default',
    '-volume_date', 'f', 'default',
    '-volume_date', 'uuid', isoUuid(timestamp),
    '-map', stagingDir, '/',
    '-chown_r', '0', '/', '--',
    '-chgrp_r', '0', '/', '--',
    '-alter_date_r', 'm', at, '/', '--',
    '-alter_date_r', 'a', at, '/', '--',
    '-alter_date_r', 'c', at, '/', '--',
    '-commit',
  ];
}

/** The 16-digit volume "uuid" (a timestamp string in ISO 9660), derived from the fixed timestamp. */
function isoUuid(timestamp: number): string {
  const d = new Date(timestamp * 1000).toISOString(); // 2026-11-23T22:01:16.000Z
  return `${d.slice(0, 4)}${d.slice(5, 7)}${d.slice(8, 10)}${d.slice(11, 13)}${d.slice(14, 16)}${d.slice(17, 19)}00`;
}

export function xorrisoEnv(timestamp: number): Record<string, string> {
  return { SOURCE_DATE_EPOCH: String(timestamp) };
}

export async function makeFbxenCd(opts: FbxenCdOptions, runner: Runner): Promise<void> {
  const phase = opts.phase ?? 'boot';
  if (!NAME_PATTERN.test(opts.runId)) throw new InputError(`run id ${JSON.stringify(opts.runId)} cannot go on the fbxen CD`, { hint: 'use 1-64 of A-Z a-z 0-9 . _ -' });
  if (!/^[a-z0-9][a-z0-9.-]{0,63}$/.test(phase)) throw new InputError(`phase ${JSON.stringify(phase)} cannot go on the fbxen CD`, { hint: 'use lower-case letters, digits, . and -' });
  if (!Number.isSafeInteger(opts.timestamp) || opts.timestamp < 0) throw new InputError(`timestamp ${opts.timestamp} is not epoch seconds`);
  const extra = opts.extraFiles ?? [];
  for (const f of extra) {
    if (!/^[a-z][a-z0-9.-]{0,30}$/.test(f.name) || ['run', 'phase', 'collect'].includes(f.name)) throw new InputError(`${JSON.stringify(f.name)} cannot be a file of the fbxen CD`, { hint: 'use lower-case letters, digits, . and -, and not run, phase or collect' });
  }
  const collector = await stat(opts.collectorPath).catch(() => undefined);
  if (!collector?.isFile()) {
    throw new InputError(`the collector ${opts.collectorPath} is missing`, { hint: 'reinstall fbxen (guest/fbxen-collect ships with it), or pass --empty-cdrom / --iso for an image that has the collector' });
  }

  const staging = await mkdtemp(join(tmpdir(), 'fbxen-cd-'));
  try {
    const dir = join(staging, 'fbxen');
    await mkdir(dir);
    await writeFile(join(dir, 'run'), `${opts.runId}\n`);
    await writeFile(join(dir, 'phase'), `${phase}\n`);
    await copyFile(opts.collectorPath, join(dir, 'collect'));
    for (const f of extra) {
      await writeFile(join(dir, f.name), f.content);
      await chmod(join(dir, f.name), 0o444);
      await utimes(join(dir, f.name), opts.timestamp, opts.timestamp);
    }
    // Rock Ridge records the staging modes: make them fixed so the disc is reproducible.
    await chmod(join(dir, 'run'), 0o444);
    await chmod(join(dir, 'phase'), 0o444);
    await chmod(join(dir, 'collect'), 0o555);
    await chmod(dir, 0o555);
    await chmod(staging, 0o555);
    for (const p of [join(dir, 'run'), join(dir, 'phase'), join(dir, 'collect'), dir, staging]) await utimes(p, opts.timestamp, opts.timestamp);

    await mkdir(dirname(opts.outPath), { recursive: true });
    await withAtomicOutput(opts.outPath, async (tmp) => {
      await runner.run('xorriso', xorrisoArgs(staging, tmp, opts.timestamp), { env: xorrisoEnv(opts.timestamp) });
    });
  } finally {
    await chmod(staging, 0o755).catch(() => undefined);
    await chmod(join(staging, 'fbxen'), 0o755).catch(() => undefined);
    await rm(staging, { recursive: true, force: true });
  }
}
