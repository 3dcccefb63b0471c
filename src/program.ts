/** The commander root: global options and the commands. Only commands/ and this file use commander. */
import { Command, CommanderError, Option } from 'commander';
import { commands } from './commands/index.js';
import type { CommandContext, GlobalOptions } from './commands/context.js';
import { UsageError } from './core/errors.js';

export const VERSION = '0.1.0';

export function createProgram(makeContext: (globals: GlobalOptions) => CommandContext): Command {
  const program = new Command('fbxen')
    .description('Build FreeBSD images for Xen, boot them, and verify Xen PVHVM from inside the guest')
    .version(VERSION)
    .addOption(new Option('--json', 'print the result as one JSON document on stdout'))
    .addOption(new Option('-v, --verbose', 'show more progress detail on stderr'))
    .addOption(new Option('-q, --quiet', 'show no progress, only the result and errors'))
    .addOption(new Option('--debug', 'show stack traces and causes of errors'))
    .addOption(new Option('-c, --config <file>', 'config file (default: ./fbxen.yaml when present)'))
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) });

  let context: CommandContext | undefined;
  const getContext = () => {
    if (!context) {
      const o = program.opts();
      context = makeContext({ json: !!o.json, verbose: !!o.verbose, quiet: !!o.quiet, debug: !!o.debug, config: o.config });
    }
    return context;
  };
  for (const register of commands) register(program, getContext);
  for (const sub of program.commands) sub.exitOverride();
  return program;
}

/** Maps commander's own errors to UsageError; help and version exits are not errors. */
export function translateCommanderError(err: unknown): unknown {
  if (err instanceof CommanderError) {
    if (err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return null;
    return new UsageError(err.message.replace(/^error: /, ''), { hint: 'run fbxen --help', cause: err });
  }
  return err;
}
