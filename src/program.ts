/** The commander root: global options and the commands. Only commands/ and this file use commander. */
import { Command, CommanderError, Option } from 'commander';
import { commands } from './commands/index.js';
import type { CommandContext, GlobalOptions } from './commands/context.js';
import { UsageError } from './core/errors.js';

export const VERSION = '0.1.0';

export function createProgram(makeContext: (globals: GlobalOptions) => CommandContext | Promise<CommandContext>): Command {
  const program = new Command('fbxen')
    .description('Build FreeBSD images for Xen, boot them, and verify Xen PVHVM from inside the guest')
    .version(VERSION)
    .addOption(new Option('--json', 'print the result as one JSON document on stdout'))
    .addOption(new Option('-v, --verbose', 'show more progress detail on stderr'))
    .addOption(new Option('-q, --quiet', 'show no progress, only the result and errors'))
    .addOption(new Option('--debug', 'show stack traces and causes of errors'))
    .addOption(new Option('-c, --config <file>', 'config file (default: ./fbxen.yaml when present)'));

  let context: Promise<CommandContext> | undefined;
  const getContext = () => {
    if (!context) {
      const o = program.opts();
      context = Promise.resolve(makeContext({ json: !!o.json, verbose: !!o.verbose, quiet: !!o.quiet, debug: !!o.debug, config: o.config }));
    }
    return context;
  };
  for (const register of commands) register(program, getContext);
  // fbxen prints each error once, itself (src/cli.ts): commander only throws.
  const quiet = (cmd: Command) => {
    cmd.exitOverride().configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s), outputError: () => undefined });
    for (const sub of cmd.commands) quiet(sub);
  };
  quiet(program);
  return program;
}

/** The command names argv selects (`config xl`), for the hint: the help page of that command. */
function commandPath(program: Command, argv: readonly string[]): string[] {
  const path: string[] = [];
  let cur = program;
  for (const a of argv) {
    if (a === '--') break;
    const sub = cur.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (sub) {
      path.push(sub.name());
      cur = sub;
    }
  }
  return path;
}

/** commander's "option '--arch <arch>' argument 'x' is invalid. Allowed choices are a, b." in fbxen's words. */
function commanderMessage(err: CommanderError): string {
  const text = err.message.replace(/^error: /, '');
  const choice = /^option '(-[^' ]+)[^']*' argument '(.*)' is invalid\. Allowed choices are (.*)\.$/s.exec(text);
  if (choice) return `${choice[1]}: '${choice[2]}' is not one of ${choice[3]}`;
  const missing = /^option '(-[^' ]+)[^']*' argument missing$/.exec(text);
  if (missing) return `${missing[1]}: a value is needed`;
  return text;
}

/** Maps commander's own errors to UsageError; help and version exits are not errors. */
export function translateCommanderError(err: unknown, program?: Command, argv: readonly string[] = []): unknown {
  if (err instanceof CommanderError) {
    if (err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return null;
    const path = program ? commandPath(program, argv) : [];
    const hint = `run \`fbxen ${path.length ? `${path.join(' ')} ` : ''}--help\``;
    // A command group without its subcommand (`fbxen`, `fbxen config`): commander has shown its help.
    if (err.code === 'commander.help') return new UsageError(path.length ? `fbxen ${path.join(' ')} needs a command` : 'a command is needed', { hint, cause: err });
    return new UsageError(commanderMessage(err), { hint, cause: err });
  }
  return err;
}
