/**
 * What every command receives: the global options, the ports (progress, runner, output) and the
 * run's cancellation signal and cleanup stack. Commands stay thin: flags → request → one core call.
 */
import type { Runner } from '../core/exec/runner.js';
import type { Progress } from '../core/progress.js';
import type { CleanupStack } from '../core/util/cleanup.js';

export interface GlobalOptions {
  json: boolean;
  verbose: boolean;
  quiet: boolean;
  debug: boolean;
  config?: string | undefined;
}

export interface CommandContext {
  globals: GlobalOptions;
  progress: Progress;
  runner: Runner;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
  cleanup: CleanupStack;
  /** The command's section of the config file (fbxen.yaml), or {} without one. */
  configSection(command: string): Record<string, unknown>;
  /** Writes the command's result: the JSON document with --json, else the human text. */
  result(human: string, json: unknown): void;
  env: NodeJS.ProcessEnv;
  cwd: string;
}
