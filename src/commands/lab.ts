/**
 * fbxen lab up | status | ssh | down: a real Xen 4.17 under QEMU, reached over ssh on a loopback port
 * (docs/lab.md). Loaded when a lab command runs (its options are registered in ./index.ts).
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { FbxenError, type ExitCodeValue } from '../core/errors.js';
import { labDown, labSsh, labStatus, labUp, type LabDeps, type LabStatus } from '../core/lab/index.js';
import type { CommandContext } from './context.js';
import { explicitFlags, resolveRequest } from './options.js';

const dir = z.string().min(1).optional();

export const LabUpOptions = z
  .object({
    dir,
    accel: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
    port: z.coerce.number().int().min(1).max(65535).optional(),
    memory: z.coerce.number().int().min(2048).max(65536).default(3072),
    cpus: z.coerce.number().int().min(1).max(64).default(2),
    timeout: z.coerce.number().int().min(10).max(7200).default(600),
  })
  .strict();

/** Every key the lab commands read from the config file's `lab:` section. */
const LAB_KEYS = ['dir', 'accel', 'port', 'memory', 'cpus', 'timeout'];

/**
 * The `lab:` section for one lab command: the keys it takes, and any key no lab command knows (so that
 * a typo is still reported). `accel: tcg` in the file must not make `lab status` refuse to run.
 */
export function labSection(ctx: CommandContext, takes: readonly string[]): Record<string, unknown> {
  const camel = (k: string) => k.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
  return Object.fromEntries(Object.entries(ctx.configSection('lab')).filter(([k]) => takes.includes(camel(k)) || !LAB_KEYS.includes(camel(k))));
}

const deps = (ctx: CommandContext): LabDeps => ({ runner: ctx.runner, progress: ctx.progress, signal: ctx.signal, env: ctx.env, cwd: ctx.cwd });

export async function labUpAction(ctx: CommandContext, command: Command): Promise<void> {
  const o = resolveRequest(LabUpOptions, 'lab up', labSection(ctx, LAB_KEYS), explicitFlags(command), [], 'lab');
  const r = await labUp({ dir: o.dir, accel: o.accel, port: o.port, memoryMiB: o.memory, cpus: o.cpus, timeoutSec: o.timeout }, deps(ctx));
  const lines = [
    `lab up in ${r.state.dir}: Xen ${r.xl.xenVersion ?? '?'} (${r.xl.virtCaps ?? '?'}), ${r.state.accel} (${r.accelWhy})`,
    `image ${r.state.imageKey.slice(0, 16)}: ${r.imageBuilt ? `built in ${r.buildSeconds} s` : 'cached'}; QEMU start to xl info: ${r.bootSeconds} s`,
    `ssh: ${r.sshCommand}   (or: fbxen lab ssh)`,
    'stop it with: fbxen lab down',
  ];
  ctx.result(`${lines.join('\n')}\n`, { ...r.state, accelWhy: r.accelWhy, imageBuilt: r.imageBuilt, buildSeconds: r.buildSeconds, bootSeconds: r.bootSeconds, xl: r.xl, sshCommand: r.sshCommand });
}

function duration(s: number): string {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export function renderStatus(s: LabStatus): string {
  if (!s.running) return `lab: not running in ${s.dir}${s.image ? ` (image ${s.image.key.slice(0, 16)} cached)` : ''}\nstart it with: fbxen lab up\n`;
  const lines = [`lab: running in ${s.dir}, ${s.accel}, QEMU pid ${s.pid}, up ${duration(s.uptimeSeconds ?? 0)}${s.ready ? '' : ' (still coming up)'}`, `ssh: ${s.ssh!.command}   (or: fbxen lab ssh)`];
  if (s.xl) lines.push(`xen ${s.xl.xenVersion ?? '?'}: ${s.xl.nrCpus ?? '?'} CPUs, ${s.xl.freeMemoryMiB ?? '?'} of ${s.xl.totalMemoryMiB ?? '?'} MiB free, virt_caps ${s.xl.virtCaps ?? '?'}`);
  else if (s.ready) lines.push('xl info: no answer over ssh just now');
  return `${lines.join('\n')}\n`;
}

export async function labStatusAction(ctx: CommandContext, command: Command): Promise<void> {
  const o = resolveRequest(z.object({ dir }).strict(), 'lab status', labSection(ctx, ['dir']), explicitFlags(command), [], 'lab');
  const s = await labStatus({ dir: o.dir }, deps(ctx));
  ctx.result(renderStatus(s), s);
}

export async function labSshAction(ctx: CommandContext, command: Command, remote: readonly string[]): Promise<void> {
  const o = resolveRequest(z.object({ dir }).strict(), 'lab ssh', labSection(ctx, ['dir']), explicitFlags(command), [], 'lab');
  const code = await labSsh({ dir: o.dir, command: remote }, deps(ctx));
  if (code !== 0) throw new SshExit(code);
}

/** ssh's own exit status is fbxen's: the remote command's, or 255 when ssh itself failed. */
class SshExit extends FbxenError {
  readonly exitCode: ExitCodeValue;
  constructor(code: number) {
    super(code === 255 ? 'ssh to the lab failed (status 255)' : `the command in the lab exited with status ${code}`, {
      hint: code === 255 ? 'see ssh\'s message above; fbxen lab status says whether the lab runs' : undefined,
    });
    this.exitCode = code as ExitCodeValue;
  }
}

export async function labDownAction(ctx: CommandContext, command: Command): Promise<void> {
  const o = resolveRequest(z.object({ dir, purge: z.boolean().default(false) }).strict(), 'lab down', labSection(ctx, ['dir']), explicitFlags(command), [], 'lab');
  const r = await labDown({ dir: o.dir, purge: o.purge }, deps(ctx));
  ctx.result(`lab in ${r.dir}: ${r.stopped}${r.purged ? '; cached image removed' : '; cached image kept (--purge removes it)'}\n`, r);
}
