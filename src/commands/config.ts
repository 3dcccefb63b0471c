/** fbxen config xl: prints the xl.cfg `fbxen boot --toolstack xl` would use (same renderer), boots nothing. */
import type { Command } from 'commander';
import { z } from 'zod';
import { prepareXlBoot } from '../core/boot/xl-boot.js';
import { BootOptions, addGuestOptions, toXlBootRequest } from './boot.js';
import type { CommandContext } from './context.js';
import { explicitFlags, resolveRequest } from './options.js';

// The same keys as `boot` (and its config-file section), minus those that only steer a live run.
const ConfigXlOptions = BootOptions;

export function registerConfig(program: Command, context: () => CommandContext): void {
  const config = program.command('config').description('print generated toolstack configuration without booting');
  addGuestOptions(config.command('xl').description('print the xl.cfg for an image (what `fbxen boot --toolstack xl` writes)')).action(async (_opts, command: Command) => {
    const ctx = context();
    const o: z.infer<typeof ConfigXlOptions> = resolveRequest(ConfigXlOptions, 'boot', ctx.configSection('boot'), explicitFlags(command));
    const prepared = await prepareXlBoot(
      { ...toXlBootRequest(o), dryRun: true, verify: false, runId: o.runId ?? 'config' },
      { cwd: ctx.cwd },
    );
    ctx.result(prepared.config, { name: prepared.spec.name, uuid: prepared.spec.uuid, mac: prepared.spec.mac, image: prepared.image.path, format: prepared.image.format, config: prepared.config });
  });
}
