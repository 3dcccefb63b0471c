/**
 * The only place that imports execa. Everything else runs subprocesses through a Runner, so tests can
 * record or replay commands and `--dry-run` can print them.
 */
import { execa, ExecaError } from 'execa';
import { accessSync, constants as fsConstants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { EnvironmentError, FbxenError, ExitCode, TimeoutError } from '../errors.js';

export interface RunOptions {
  input?: string | Uint8Array;
  timeoutMs?: number;
  env?: Record<string, string | undefined>;
  cwd?: string;
  signal?: AbortSignal;
  /** Resolve with the result instead of throwing when the command exits non-zero. */
  allowFailure?: boolean;
  /** Called with each line of stderr as it arrives (progress display). */
  onStderrLine?: (line: string) => void;
}

export interface RunResult {
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface StreamOptions {
  env?: Record<string, string | undefined>;
  signal?: AbortSignal;
  /** 'pipe' gives the caller a writable `stdin` (a console client that must not see EOF, for instance). */
  stdin?: Readable | 'ignore' | 'pipe';
}

/** A subprocess whose stdout is consumed as a stream (for instance `xz -dc`). */
export interface StreamingProcess {
  stdout: Readable;
  stdin: Writable | null;
  /** Resolves when the process exits 0; rejects with CommandFailedError otherwise. */
  done: Promise<RunResult>;
  kill(): void;
}

export interface CommandRecord {
  command: string;
  startedAt: number;
  durationMs: number;
  exitCode: number | undefined;
}

export interface Runner {
  run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
  stream(file: string, args: readonly string[], options?: StreamOptions): StreamingProcess;
}

/** A command ran and exited non-zero (or was killed). Callers rethrow it with what it means for them. */
export class CommandFailedError extends FbxenError {
  readonly exitCode = ExitCode.toolstack;
  constructor(
    readonly result: RunResult,
    hint?: string,
  ) {
    const detail = result.stderr.trim().split('\n').slice(-5).join('\n');
    super(`${result.command} exited with status ${result.exitCode}${detail ? `:\n${detail}` : ''}`, { hint });
  }
}

const PACKAGE_FOR: Record<string, string> = {
  xz: 'xz-utils',
  '7zz': '7zip',
  xorriso: 'xorriso',
  xl: 'xen-utils (run fbxen on a Xen dom0)',
  ssh: 'openssh-client',
};

/** Whether an executable of that name is on PATH (to choose between tools without running them). */
export function onPath(name: string, env: NodeJS.ProcessEnv = process.env): boolean {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), fsConstants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/** Quote one argument for display in a plan or transcript (never executed through a shell). */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function formatCommand(file: string, args: readonly string[]): string {
  return [file, ...args].map(shellQuote).join(' ');
}

function missingTool(file: string, cause: unknown): EnvironmentError {
  const pkg = PACKAGE_FOR[file.split('/').pop() ?? file];
  return new EnvironmentError(`${file} was not found on PATH`, {
    hint: pkg ? `install ${pkg}` : `install ${file} or put it on PATH`,
    cause,
  });
}

function toResult(command: string, r: { exitCode?: number | undefined; stdout?: unknown; stderr?: unknown }, durationMs: number): RunResult {
  return {
    command,
    exitCode: r.exitCode ?? -1,
    stdout: typeof r.stdout === 'string' ? r.stdout : '',
    stderr: typeof r.stderr === 'string' ? r.stderr : '',
    durationMs,
  };
}

/**
 * Variables no child process gets: the XAPI credentials and settings (FBXEN_XAPI_PASSWORD above all).
 * No tool fbxen runs needs them, and a child's environment is readable in /proc/PID/environ and may be
 * passed on to whatever that child runs in turn (ssh to a guest, a shell).
 */
const NOT_FOR_CHILDREN = /^FBXEN_XAPI_/;

/** The environment of a child: fbxen's own with the caller's additions, minus NOT_FOR_CHILDREN. */
export function childEnv(extra: Record<string, string | undefined> = {}, base: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...base, ...extra })) {
    if (v !== undefined && !NOT_FOR_CHILDREN.test(k)) out[k] = v;
  }
  return out;
}

export function createExecaRunner(options: { onCommand?: (record: CommandRecord) => void } = {}): Runner {
  const record = (command: string, startedAt: number, exitCode: number | undefined) =>
    options.onCommand?.({ command, startedAt, durationMs: Date.now() - startedAt, exitCode });

  return {
    async run(file, args, opts = {}) {
      const command = formatCommand(file, args);
      const startedAt = Date.now();
      try {
        const sub = execa(file, [...args], {
          input: opts.input,
          timeout: opts.timeoutMs,
          // extendEnv off: execa would merge process.env back in, secrets included.
          env: childEnv(opts.env),
          extendEnv: false,
          cwd: opts.cwd,
          cancelSignal: opts.signal,
          reject: false,
          stripFinalNewline: false,
          ...(opts.onStderrLine ? { stderr: ['pipe', lineSink(opts.onStderrLine)] } : {}),
        });
        const r = await sub;
        const result = toResult(command, r, Date.now() - startedAt);
        record(command, startedAt, r.exitCode);
        if (r.failed) {
          const code = (r as { code?: string }).code;
          if (code === 'ENOENT') throw missingTool(file, r);
          if (r.timedOut) throw new TimeoutError(`${command} did not finish within ${opts.timeoutMs} ms`, { hint: 'raise --timeout, or check why the command hangs' });
          if (r.isCanceled) throw Object.assign(new Error('cancelled'), { name: 'AbortError', cause: opts.signal?.reason });
          if (!opts.allowFailure) throw new CommandFailedError(result);
        }
        return result;
      } catch (err) {
        if (err instanceof ExecaError && (err as { code?: string }).code === 'ENOENT') throw missingTool(file, err);
        throw err;
      }
    },

    stream(file, args, opts = {}) {
      const command = formatCommand(file, args);
      const startedAt = Date.now();
      const sub = execa(file, [...args], {
        env: childEnv(opts.env),
        extendEnv: false,
        cancelSignal: opts.signal,
        buffer: { stdout: false, stderr: true },
        stdin: opts.stdin ?? 'ignore',
        stdout: 'pipe',
        reject: false,
        encoding: 'buffer',
      });
      const done = sub.then((r) => {
        const stderr = r.stderr instanceof Uint8Array ? Buffer.from(r.stderr).toString('utf8') : String(r.stderr ?? '');
        // A process that never ran has no stderr of its own: keep execa's account of why (spawn errors).
        const why = r.exitCode === undefined && !stderr ? (r as { shortMessage?: string }).shortMessage ?? '' : '';
        const result = { ...toResult(command, r, Date.now() - startedAt), stderr: stderr || why };
        record(command, startedAt, r.exitCode);
        if ((r as { code?: string }).code === 'ENOENT') throw missingTool(file, r);
        if (r.failed) throw new CommandFailedError(result);
        return result;
      });
      // Keep an unobserved failure from crashing the process; callers await `done`.
      done.catch(() => undefined);
      // execa drains subprocess.stdout itself when buffer is false, losing what is not read at once;
      // readable() hands over every byte, with backpressure.
      const stdout = sub.readable({ from: 'stdout', binary: true });
      return { stdout, stdin: sub.stdin, done, kill: () => sub.kill() };
    },
  };
}

function lineSink(onLine: (line: string) => void) {
  return function* (line: unknown) {
    onLine(String(line));
    yield line;
  };
}
