/**
 * `--host lab` for the commands that take --host (boot, config xl, migrate-test): the running lab as an
 * ssh host (core/lab/host.ts), in the lab directory the config file's `lab: dir:` names (else the
 * default), with one line on stderr saying which lab and port the run uses.
 */
import { resolve } from 'node:path';
import { configLabDir, resolveHostOption, type HostOption } from '../core/lab/host.js';
import type { CommandContext } from './context.js';

export async function labHost(ctx: CommandContext, host: HostOption | undefined, flags?: { knownHosts: string; identity: string }): Promise<HostOption | undefined> {
  const dir = configLabDir(ctx.configSection('lab'));
  const r = await resolveHostOption(host, { labDir: dir === undefined ? undefined : resolve(ctx.cwd, dir), env: ctx.env, ...(flags ? { flags } : {}) });
  if (r === undefined || !('labDir' in r)) return r;
  ctx.progress.info(`--host lab: ${r.url} (the lab in ${r.labDir})`);
  const { labDir: _dir, ...hostOption } = r;
  return hostOption;
}
