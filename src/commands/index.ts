/** Every command fbxen has; each registers itself on the root program. */
import type { Command } from 'commander';
import type { CommandContext } from './context.js';

export type CommandRegistrar = (program: Command, context: () => CommandContext) => void;

export const commands: CommandRegistrar[] = [];
