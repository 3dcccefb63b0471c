#!/usr/bin/env node
/** The bin entry and the only place that sets the exit code. */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createExecaRunner } from './core/exec/runner.js';
import { loadConfigFile, type ConfigSections } from './core/config-file.js';
import { InterruptedError, toExitCode } from './core/errors.js';
import { silentProgress } from './core/progress.js';
import { CleanupStack } from './core/util/cleanup.js';
import { createProgram, translateCommanderError } from './program.js';
import type { CommandContext, GlobalOptions } from './commands/context.js';
import { formatError } from './ui/print-error.js';
import { createListrProgress, detectTty } from './ui/tasks.js';

function configPathFromArgv(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if ((a === '--config' || a === '-c') && i + 1 < argv.length) return argv[i + 1];
    if (a.startsWith('--config=')) return a.slice('--config='.length);
  }
  return undefined;
}

export async function run(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const controller = new AbortController();
  const cleanup = new CleanupStack();
  let debug = argv.includes('--debug');
  let sections: ConfigSections = {};
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

  const makeContext = (globals: GlobalOptions): CommandContext => {
    debug = globals.debug;
    const progress = globals.quiet && globals.json ? silentProgress : createListrProgress({ quiet: globals.quiet, verbose: globals.verbose, tty: detectTty(env) });
    return {
      globals,
      progress,
      runner: createExecaRunner(),
      signal: controller.signal,
      cleanup,
      configSection: (command) => sections[command] ?? {},
      result: (human, json) => {
        process.stdout.write(globals.json ? `${JSON.stringify(json, null, 2)}\n` : human.endsWith('\n') || human === '' ? human : `${human}\n`);
      },
      env,
      cwd: process.cwd(),
    };
  };

  try {
    sections = await loadConfigFile(configPathFromArgv(argv), process.cwd());
    const program = createProgram(makeContext);
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (raw) {
    const err = interrupted ?? translateCommanderError(raw);
    if (err === null) return 0;
    const failures = await cleanup.unwind();
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
