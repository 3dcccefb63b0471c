/**
 * Every failure fbxen can name is an FbxenError: a message that says what went wrong, a hint that says
 * what to do, and an exit code. Rule: 1 means "the answer is no"; 2 and above mean "fbxen could not
 * produce an answer". Only src/cli.ts turns these into a process exit code.
 */
export const ExitCode = {
  ok: 0,
  /** a check said no: a probe failed, builds were not reproducible */
  checkFailed: 1,
  /** usage error, or evidence too incomplete to give any verdict */
  usage: 2,
  /** invalid configuration or input data: a config key, a corrupt archive, a checksum mismatch */
  input: 3,
  /** the environment: a missing tool, no network, not a dom0, a full disk, permissions */
  environment: 4,
  /** a toolstack or guest operation failed */
  toolstack: 5,
  /** a step timed out */
  timeout: 6,
  /** a bug in fbxen */
  internal: 70,
  /** interrupted by SIGINT (SIGTERM gives 143) */
  interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface ErrorOptions {
  hint?: string | undefined;
  cause?: unknown;
  /** One line per problem (an option, a config key); shown under the message. */
  issues?: readonly string[] | undefined;
}

export abstract class FbxenError extends Error {
  abstract readonly exitCode: ExitCodeValue;
  readonly hint: string | undefined;
  readonly issues: readonly string[];
  constructor(message: string, options: ErrorOptions = {}) {
    const issues = options.issues ?? [];
    super(issues.length ? `${message}\n${issues.map((i) => `  - ${i}`).join('\n')}` : message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
    this.issues = issues;
  }
}

export class UsageError extends FbxenError {
  readonly exitCode = ExitCode.usage;
}

/** The evidence could not be rebuilt or read: no verdict is possible (protocol: "evidence incomplete"). */
export class EvidenceIncompleteError extends FbxenError {
  readonly exitCode = ExitCode.usage;
}

export class InputError extends FbxenError {
  readonly exitCode = ExitCode.input;
}

/**
 * The config file (or a value read from it) fails validation: exit 3. A command line that does not
 * parse against the command's options is a UsageError (2) instead.
 */
export class ConfigError extends FbxenError {
  readonly exitCode = ExitCode.input;
  constructor(message: string, issues: readonly string[] = [], options: ErrorOptions = {}) {
    super(message, { ...options, issues });
  }
}

export class EnvironmentError extends FbxenError {
  readonly exitCode = ExitCode.environment;
}

export class ToolstackError extends FbxenError {
  readonly exitCode = ExitCode.toolstack;
}

export class TimeoutError extends FbxenError {
  readonly exitCode = ExitCode.timeout;
}

/** A check answered "no" (exit 1). Commands throw it after printing their report. */
export class CheckFailedError extends FbxenError {
  readonly exitCode = ExitCode.checkFailed;
}

export class InterruptedError extends FbxenError {
  readonly exitCode: ExitCodeValue;
  constructor(readonly signal: 'SIGINT' | 'SIGTERM') {
    super(`interrupted by ${signal}`);
    this.exitCode = signal === 'SIGINT' ? ExitCode.interrupted : (143 as ExitCodeValue);
  }
}

export function isFbxenError(err: unknown): err is FbxenError {
  return err instanceof FbxenError;
}

export function toExitCode(err: unknown): number {
  return isFbxenError(err) ? err.exitCode : ExitCode.internal;
}
