#!/usr/bin/env node
/**
 * The bin entry and the only place that sets the exit code. Start-up is kept cheap: this file and the
 * command registry load commander only; the config file's parser, the subprocess runner, the progress
 * renderer and each command's flow are imported when a command runs.
 */
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InterruptedError, isFbxenError, toExitCode, ExitCode } from './core/errors.js';
import { silentProgress } from './core/progress.js';
import { CleanupStack } from './core/util/cleanup.js';
import { createProgram, translateCommanderError } from './program.js';
import type { CommandContext, GlobalOptions } from './commands/context.js';
import { formatError } from './ui/print-error.js';

function configPathFromArgv(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if ((a === '--config' || a === '-c') && i + 1 < argv.length) return argv[i + 1];
    if (a.startsWith('--config=')) return a.slice('--config='.length);
  }
  return undefined;
}

const flagInArgv = (argv: readonly string[], flag: string) => {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes(flag);
};

/** The --json document for a failure: what went wrong, what to do, and the exit code it gives. */
export function errorDocument(err: unknown): { error: { class: string; message: string; hint: string | null; issues?: readonly string[]; exitCode: number } } {
  if (isFbxenError(err)) {
    const message = err.issues.length ? err.message.split('\n')[0]! : err.message;
    return { error: { class: err.name, message, hint: err.hint ?? null, ...(err.issues.length ? { issues: err.issues } : {}), exitCode: err.exitCode } };
  }
  const e = err instanceof Error ? err : new Error(String(err));
  return { error: { class: 'InternalError', message: e.message, hint: 'a bug in fbxen: please report it with the command you ran and the output of --debug', exitCode: ExitCode.internal } };
}

/** Lets the event loop deliver a signal that arrived while the command ran (its handler runs in a poll phase). */
const signalsDelivered = () => new Promise<void>((done) => setImmediate(() => setImmediate(done)));

export async function run(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const controller = new AbortController();
  const cleanup = new CleanupStack();
  let debug = flagInArgv(argv, '--debug');
  let json = flagInArgv(argv, '--json');
  let interrupted: InterruptedError | undefined;
  const onSignal = (signal: 'SIGINT' | 'SIGTERM') => {
    if (interrupted) return; // a second Ctrl-C waits for the cleanup already running
    interrupted = new InterruptedError(signal);
    process.stderr.write(`\nfbxen: ${signal} received, cleaning up (what fbxen created is removed, logs are kept)...\n`);
    controller.abort(interrupted);
  };
  const sigint = () => onSignal('SIGINT');
  const sigterm = () => onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);

  // The result is written once the command is over, so that an interrupt can still withhold it.
  let result: { human: string; json: unknown } | undefined;
  const writeResult = () => {
    if (!result) return;
    const r = result;
    result = undefined;
    process.stdout.write(json ? `${JSON.stringify(r.json, null, 2)}\n` : r.human.endsWith('\n') || r.human === '' ? r.human : `${r.human}\n`);
  };

  const makeContext = async (globals: GlobalOptions): Promise<CommandContext> => {
    debug = globals.debug;
    json = globals.json;
    const configPath = configPathFromArgv(argv);
    const defaultPath = join(process.cwd(), 'fbxen.yaml');
    // The YAML parser is loaded only when there is a config file to read.
    const sections = configPath !== undefined || existsSync(defaultPath) ? await (await import('./core/config-file.js')).loadConfigFile(configPath, process.cwd()) : {};
    const { createExecaRunner } = await import('./core/exec/runner.js');
    const ui = await import('./ui/tasks.js');
    const progress = globals.quiet && globals.json ? silentProgress : ui.createListrProgress({ quiet: globals.quiet, verbose: globals.verbose, tty: ui.detectTty(env) });
    return {
      globals,
      progress,
      runner: createExecaRunner(),
      signal: controller.signal,
      cleanup,
      configSection: (command) => sections[command] ?? {},
      result: (human, doc) => {
        result = { human, json: doc };
      },
      env,
      cwd: process.cwd(),
    };
  };

  const program = createProgram(makeContext);
  try {
    try {
      await program.parseAsync([...argv], { from: 'user' });
    } finally {
      await signalsDelivered();
    }
    // Whatever the command did after an interrupt, the interrupt wins: never exit 0 once signalled.
    if (interrupted) throw interrupted;
    writeResult();
    return 0;
  } catch (raw) {
    const err = interrupted ?? translateCommanderError(raw, program, argv);
    if (err === null) return 0;
    const failures = await cleanup.unwind();
    if (interrupted) result = undefined;
    // With --json, stdout holds one document: the command's own (a report that says no), or the error.
    if (json && !result) process.stdout.write(`${JSON.stringify(errorDocument(err), null, 2)}\n`);
    writeResult();
    process.stderr.write(formatError(err, debug));
    for (const f of failures) process.stderr.write(`fbxen: cleanup failed: ${f}\n`);
    return toExitCode(err);
  } finally {
    await cleanup.unwind();
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
  }
}

/** True when this file is the process entry, also through npm's bin symlink. */
function isEntryPoint(): boolean {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

const isMain = isEntryPoint();
if (isMain) {
  run(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(formatError(err, true));
      process.exitCode = 70;
    },
  );
}
