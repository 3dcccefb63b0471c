/**
 * fbxen config xl: prints the xl.cfg `fbxen boot --toolstack xl` would use (same renderer), boots nothing.
 * Loaded when the command runs (its options are registered in ./index.ts).
 */
import type { Command } from 'commander';
import type { z } from 'zod';
import { renderBootConfig } from '../core/boot/boot.js';
import { BOOT_EXCLUSIVE, BootOptions, toXlBootRequest } from './boot-options.js';
import type { CommandContext } from './context.js';
import { explicitFlags, resolveRequest } from './options.js';

// The same keys as `boot` (and its config-file section), minus those that only steer a live run.
const ConfigXlOptions = BootOptions;

export async function configXlAction(ctx: CommandContext, command: Command): Promise<void> {
  const o: z.infer<typeof ConfigXlOptions> = resolveRequest(ConfigXlOptions, 'config xl', ctx.configSection('boot'), explicitFlags(command), BOOT_EXCLUSIVE, 'boot');
  const { prepared, config } = await renderBootConfig(
    { ...toXlBootRequest(o), dryRun: true, verify: false, runId: o.runId ?? 'config' },
    { cwd: ctx.cwd, env: ctx.env, runner: ctx.runner, progress: ctx.progress },
  );
  ctx.result(config, { name: prepared.guest.name, uuid: prepared.guest.uuid, mac: prepared.guest.mac, image: prepared.image.path, format: prepared.image.format, config });
}
