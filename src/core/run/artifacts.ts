/**
 * One directory per run: `<root>/<name>/<run>/` with xl.cfg (or the VM record), console.log,
 * transcript.log, run.json and the reports; `<root>/<name>/latest` names the newest run (verify --domain
 * reads it). Shared by the boot, migrate-test and verify flows, so it sits below all of them.
 */
import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { InputError } from '../errors.js';
import { formatCommand, type CommandRecord, type Runner } from '../exec/runner.js';
import { writeFileAtomic } from '../util/atomic.js';
import { NAME_PATTERN } from '../util/names.js';

export type ToolstackName = 'xl' | 'xapi';

/** How a run ended; recorded in run.json. */
export type RunOutcome = 'running' | 'kept' | 'verified' | 'collected' | 'failed' | 'timeout' | 'interrupted' | 'dry-run';

export const RUN_ID_PATTERN = NAME_PATTERN;
export const DEFAULT_ARTIFACTS_ROOT = 'fbxen-runs';

export const RunIdSchema = z.string().regex(RUN_ID_PATTERN, 'a run id is 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit');

/** `20261123T220116Z-3fa9`: sorts by time, unique enough for one host. */
export function newRunId(now: Date = new Date(), random: () => string = () => randomBytes(2).toString('hex')): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${random()}`;
}

export interface RunRecord {
  run: string;
  name: string;
  toolstack: ToolstackName;
  domid: string | null;
  image: string;
  started: string;
  finished: string | null;
  outcome: RunOutcome;
  /** The run id the collector's frame will carry: this run's (fbxen CD nonce), or null when the CD is not fbxen's (--iso, --empty-cdrom) and any run's newest frame counts. */
  frameRun?: string | null;
  /** The guest type fbxen asked for (hvm, pvh); the probes judge the guest against it. */
  type?: 'hvm' | 'pvh' | undefined;
  /** PVH: the kernel booted (path in the run, where it came from, sha256, ident, __FreeBSD_version, cmdline). */
  kernel?: Record<string, unknown> | undefined;
  /** The host the guest ran on, as the preflight found it: a remote dom0 by its ssh URL, this dom0 by its name, XAPI's pool master. */
  host?: string;
}

export interface RunArtifacts {
  root: string;
  dir: string;
  run: string;
  name: string;
  configPath: string;
  consoleLog: string;
  transcriptLog: string;
  runJson: string;
  reportJson: string;
  reportJunit: string;
  cdPath: string;
}

/** The paths of a run, without creating anything (what --dry-run prints). */
export function runArtifactPaths(opts: { root: string; name: string; run: string; cwd: string; configFile?: string }): RunArtifacts {
  if (!RUN_ID_PATTERN.test(opts.run)) throw new InputError(`run id ${JSON.stringify(opts.run)} is not valid`, { hint: 'use 1-64 of A-Z a-z 0-9 . _ -' });
  const root = resolve(opts.cwd, opts.root);
  const dir = join(root, opts.name, opts.run);
  return {
    root,
    dir,
    run: opts.run,
    name: opts.name,
    configPath: join(dir, opts.configFile ?? 'xl.cfg'),
    consoleLog: join(dir, 'console.log'),
    transcriptLog: join(dir, 'transcript.log'),
    runJson: join(dir, 'run.json'),
    reportJson: join(dir, 'report.json'),
    reportJunit: join(dir, 'report.junit.xml'),
    cdPath: join(dir, 'fbxen-cd.iso'),
  };
}

/** Creates the run directory, an empty console.log and transcript, and points `latest` at this run. */
export async function createRunArtifacts(opts: { root: string; name: string; run: string; cwd: string; configFile?: string }): Promise<RunArtifacts> {
  const paths = runArtifactPaths(opts);
  await mkdir(paths.dir, { recursive: true });
  await appendFile(paths.consoleLog, '');
  await appendFile(paths.transcriptLog, '');
  await writeFileAtomic(join(paths.root, paths.name, 'latest'), `${paths.run}\n`);
  return paths;
}

export async function writeRunRecord(artifacts: RunArtifacts, record: RunRecord): Promise<void> {
  await writeFileAtomic(artifacts.runJson, `${JSON.stringify(record, null, 2)}\n`);
}

/** The newest run id of a domain name, from `<root>/<name>/latest`. */
export async function latestRun(root: string, name: string): Promise<string | undefined> {
  try {
    const run = (await readFile(join(root, name, 'latest'), 'utf8')).trim();
    return RUN_ID_PATTERN.test(run) ? run : undefined;
  } catch {
    return undefined;
  }
}

/** One transcript line per command: start time, duration, exit status, the command as it would be typed. */
export function formatTranscriptLine(r: CommandRecord): string {
  return `${new Date(r.startedAt).toISOString()} ${String(r.durationMs).padStart(7)} ms exit=${r.exitCode ?? '-'} ${r.command}\n`;
}

/**
 * Wraps a Runner so every command lands in transcript.log with its timing; a long-running stream is
 * logged when it starts and again when it ends.
 */
export function transcribingRunner(inner: Runner, transcriptPath: string): Runner {
  let chain = Promise.resolve();
  const log = (line: string) => {
    chain = chain.then(() => appendFile(transcriptPath, line)).catch(() => undefined);
    return chain;
  };
  return {
    async run(file, args, options) {
      const startedAt = Date.now();
      const command = formatCommand(file, args);
      try {
        const r = await inner.run(file, args, options);
        await log(formatTranscriptLine({ command: r.command, startedAt, durationMs: Date.now() - startedAt, exitCode: r.exitCode }));
        if (r.exitCode !== 0 && r.stderr.trim()) await log(indent(r.stderr));
        return r;
      } catch (err) {
        const result = (err as { result?: { command: string; exitCode: number; stderr: string } }).result;
        await log(formatTranscriptLine({ command: result?.command ?? command, startedAt, durationMs: Date.now() - startedAt, exitCode: result?.exitCode }));
        if (result?.stderr.trim()) await log(indent(result.stderr));
        else await log(indent(err instanceof Error ? err.message : String(err)));
        throw err;
      }
    },
    stream(file, args, options) {
      const startedAt = Date.now();
      const proc = inner.stream(file, args, options);
      void log(`${new Date(startedAt).toISOString()}   started    ${formatCommand(file, args)}\n`);
      proc.done.then(
        (r) => log(formatTranscriptLine({ command: r.command, startedAt, durationMs: Date.now() - startedAt, exitCode: r.exitCode })),
        (err: unknown) => {
          const result = (err as { result?: { command: string; exitCode: number; stderr: string } }).result;
          return log(formatTranscriptLine({ command: result?.command ?? formatCommand(file, args), startedAt, durationMs: Date.now() - startedAt, exitCode: result?.exitCode })).then(() =>
            result?.stderr.trim() ? log(indent(result.stderr)) : undefined,
          );
        },
      );
      return proc;
    },
  };
}

function indent(text: string): string {
  return `${text
    .trimEnd()
    .split('\n')
    .map((l) => `    | ${l}`)
    .join('\n')}\n`;
}
