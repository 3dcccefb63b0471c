/** Every command fbxen has; each registers itself on the root program. */
import type { Command } from 'commander';
import { registerBuild } from './build.js';
import type { CommandContext } from './context.js';
import { registerBoot } from './boot.js';
import { registerConfig } from './config.js';
import { registerVerify } from './verify.js';
import { registerMigrateTest } from './migrate-test.js';

export type CommandRegistrar = (program: Command, context: () => CommandContext) => void;

export const commands: CommandRegistrar[] = [];
commands.push(registerBuild);
commands.push(registerBoot);
commands.push(registerConfig);
commands.push(registerVerify);
commands.push(registerMigrateTest);
