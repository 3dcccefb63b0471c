/**
 * A "dom0" for tests of fbxen's xl driver against the fake xl (fake-xl.mjs here, a SIMULATION): its state
 * directory (scenario, guest script), the environment that puts the fake first on PATH, and the config of
 * domain `name` with an existing disk file (the fake's receiving and restoring xl stat it, as libxl does);
 * `create` makes the domain (domid 1) with `xl create -q`.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { macForName, renderXlConfig, uuidForName } from '../../../src/core/toolstack/xl/xl-config.js';

export const FAKE_XL_BIN = import.meta.dirname;

export interface FakeDom0 {
  state: string;
  env: NodeJS.ProcessEnv;
  cfg: string;
  disk: string;
  /** the fake xl, run to its end */
  xl(...args: string[]): SpawnSyncReturns<string>;
}

export function fakeDom0(opts: { prefix: string; guest: string; name?: string; vcpus?: number; memoryMiB?: number; create?: boolean }): FakeDom0 {
  const state = mkdtempSync(join(tmpdir(), opts.prefix));
  writeFileSync(join(state, 'scenario.json'), '{}');
  writeFileSync(join(state, 'guest.txt'), opts.guest);
  const env = { ...process.env, PATH: `${FAKE_XL_BIN}:${process.env.PATH ?? ''}`, FAKE_XL_STATE: state };
  const name = opts.name ?? 'fbxen-g';
  const disk = join(state, 'g.raw');
  writeFileSync(disk, '');
  const cfg = join(state, 'g.cfg');
  writeFileSync(cfg, renderXlConfig({ name, uuid: uuidForName(name), mac: macForName(name), vcpus: opts.vcpus ?? 2, memoryMiB: opts.memoryMiB ?? 512, image: { path: disk, format: 'raw' }, cdrom: { kind: 'empty' }, bridge: 'xenbr0' }));
  const xl = (...args: string[]) => spawnSync('xl', args, { env, encoding: 'utf8', input: '' });
  if (opts.create ?? true) {
    const r = xl('create', '-q', cfg);
    if (r.status !== 0) throw new Error(`fake xl create failed (status ${r.status}): ${r.stderr}`);
  }
  return { state, env, cfg, disk, xl };
}
