/**
 * fbxen verify: get the evidence from one source (a bundle, a console log, ssh, or the latest boot run of
 * a domain), run the probes, and hand back the report with its exit code. Reading evidence that is
 * incomplete is an EvidenceIncompleteError (exit 2), never a verdict.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { latestRun } from '../run/artifacts.js';
import { readHostKnowledge } from '../net/host-record.js';
import type { NetHostKnowledge } from '../../probes/types.js';
import { EnvironmentError, EvidenceIncompleteError, InputError, ToolstackError, UsageError } from '../errors.js';
import { formatCommand, type Runner } from '../exec/runner.js';
import type { Progress } from '../progress.js';
import { writeFileAtomic } from '../util/atomic.js';
import { readBundle, RUN_ID, type Bundle } from './bundle.js';
import { extractBundleFromConsole, extractBundleFromConsoleFile } from './console-frame.js';
import { renderJunit, renderReportJson, reportExitCode, runProbes, type Report } from './report.js';

export type HostKeyChecking = 'strict' | 'accept-new' | 'off';

export type EvidenceSource =
  | { kind: 'bundle'; path: string; run?: string | undefined }
  | { kind: 'console'; path: string; run?: string | undefined; phase?: string | undefined }
  | { kind: 'ssh'; target: string; identity?: string | undefined; port?: number | undefined; hostKeyChecking: HostKeyChecking; run: string; phase: string }
  | { kind: 'domain'; name: string; artifactsRoot: string; toolstack?: 'xl' | 'xapi' | undefined; phase?: string | undefined };

export interface VerifyRequest {
  source: EvidenceSource;
  /** a bundle (directory/tar) taken before a migration, or a phase of the same console log */
  before?: { path: string } | { phase: string } | undefined;
  only?: readonly string[] | undefined;
  junit?: string | undefined;
  dryRun?: boolean | undefined;
}

export interface VerifyDeps {
  runner: Runner;
  progress: Progress;
  signal?: AbortSignal | undefined;
  cwd: string;
  /** the collector streamed over ssh (default: guest/fbxen-collect of this package) */
  collectorPath?: string | undefined;
}

export interface VerifyOutcome {
  report?: Report;
  /** 0 nothing failed, 1 a probe failed, 2 no verdict at all */
  exitCode: 0 | 1 | 2;
  /** where the evidence came from, for the human output */
  from: string;
  /** with --dry-run: what would be done */
  plan?: string[];
  /** with --domain: the run directory that now also holds report.json and report.junit.xml */
  reportDir?: string;
}

export const DEFAULT_COLLECTOR = fileURLToPath(new URL('../../../guest/fbxen-collect', import.meta.url));
const SSH_TIMEOUT_MS = 10 * 60 * 1000;
const SSH_TARGET = /^(?:[A-Za-z0-9._][A-Za-z0-9._-]*@)?(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])$/;

export function newManualRunId(now = new Date()): string {
  return `manual-${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(2).toString('hex')}`;
}

/** The ssh command line; the collector goes on stdin, its framed bundle comes back on stdout. */
export function sshArgs(s: Extract<EvidenceSource, { kind: 'ssh' }>): string[] {
  if (!SSH_TARGET.test(s.target)) throw new UsageError(`--ssh ${JSON.stringify(s.target)} is not user@host`, { hint: 'give --ssh root@192.0.2.10 (a user name and a host name or address)' });
  if (!RUN_ID.test(s.run) || !RUN_ID.test(s.phase)) throw new UsageError('--run and --phase must be 1-64 of A-Z a-z 0-9 . _ -', { hint: 'they appear in the collector\'s frame lines' });
  const checking = { strict: ['-o', 'StrictHostKeyChecking=yes'], 'accept-new': ['-o', 'StrictHostKeyChecking=accept-new'], off: ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'] }[s.hostKeyChecking];
  return [
    '-o', 'BatchMode=yes',
    ...checking,
    ...(s.identity ? ['-i', s.identity, '-o', 'IdentitiesOnly=yes'] : []),
    ...(s.port ? ['-p', String(s.port)] : []),
    '--', s.target,
    'sh', '-s', '--', '--frame', '--run', s.run, '--phase', s.phase,
  ];
}

const REJECTED_HINT = 'the guest sent a frame fbxen-collect never writes (limits: docs/probe-protocol.md §5): collect the evidence again from a guest you trust';

/**
 * The run id inside the bundle (meta `run`) must be the run the evidence arrived under (the frame's) and
 * the run fbxen expects: an old bundle framed again under a new run id is evidence from another run,
 * never a verdict for this one.
 */
export function checkBundleRun(bundle: Bundle, where: { frameRun?: string | undefined; expected?: string | undefined; what: string }): void {
  const inside = bundle.meta.run;
  const claims = [where.frameRun !== undefined && `the frame's run is ${where.frameRun}`, where.expected !== undefined && `fbxen expects run ${where.expected}`].filter(Boolean).join(', ');
  if (!claims) return;
  const hint = 'collect the evidence again for this run (boot with the fbxen CD, or fbxen verify --ssh); an older bundle can be verified on its own with --bundle and without --run';
  if (inside === undefined || inside === '' || inside === '-') {
    throw new EvidenceIncompleteError(`evidence from another run: the bundle in ${where.what} does not say which run it belongs to (meta has no run id), but ${claims}`, { hint });
  }
  if ([where.frameRun, where.expected].some((r) => r !== undefined && r !== inside)) {
    throw new EvidenceIncompleteError(`evidence from another run: the bundle in ${where.what} was collected for run ${inside} (meta run), but ${claims}`, { hint });
  }
}

/** Rebuilds the bundle of `run`/`phase` from a console log, or says how much is missing. */
export async function bundleFromConsoleLog(path: string, run: string | undefined, phase: string | undefined): Promise<Bundle> {
  const got = await extractBundleFromConsoleFile(path, { run, phase });
  const which = `${run ? `run ${run}` : 'any run'}${phase ? `, phase ${phase}` : ''}`;
  if (got.status === 'absent') {
    throw new EvidenceIncompleteError(`evidence incomplete: no fbxen frame (FBXEN1 BEGIN ...) for ${which} in ${path}`, {
      hint: 'the collector did not run or its output never reached this log: check that the rc.d script is enabled (fbxen_enable="YES") and the fbxen CD was attached, or collect with --ssh',
    });
  }
  if (got.status === 'incomplete') {
    throw new EvidenceIncompleteError(`evidence incomplete: ${got.missingLines} of ${got.totalLines} frame lines missing or damaged for run ${got.run}, phase ${got.phase} in ${path}`, {
      hint: 'both copies of those lines were lost on the console: run the collector again (reboot with the fbxen CD, or fbxen verify --ssh), or raise the serial speed / reduce kernel noise',
    });
  }
  if (got.status === 'rejected') throw new InputError(`${got.reason} (in ${path})`, { hint: REJECTED_HINT });
  checkBundleRun(got.bundle, { frameRun: got.run, expected: run, what: `the console frame of run ${got.run} (${got.phase}) in ${path}` });
  return got.bundle;
}

const RunJsonSchema = z
  .object({ run: z.string(), name: z.string(), toolstack: z.enum(['xl', 'xapi']), frameRun: z.string().nullable().optional(), type: z.enum(['hvm', 'pvh']).optional() })
  .loose();

/** `--domain NAME`: the latest boot run's console.log, read with that run's id (the CD nonce). */
export async function verifyDomainEvidence(s: Extract<EvidenceSource, { kind: 'domain' }>, cwd: string): Promise<{ bundle: Bundle; consoleLog: string; run: string; cdAttached: string | undefined; bootType?: { type: 'hvm' | 'pvh'; source: string } | undefined; net?: NetHostKnowledge | undefined }> {
  const root = resolve(cwd, s.artifactsRoot);
  const run = await latestRun(root, s.name);
  if (!run) {
    throw new InputError(`no fbxen boot run recorded for domain ${s.name} under ${root}`, {
      hint: `boot it first (fbxen boot --name ${s.name} ...), or point --artifacts at the directory fbxen boot used`,
    });
  }
  const dir = join(root, s.name, run);
  // The frame carries the run id that was on fbxen's CD; a boot with --iso or --empty-cdrom had none of
  // ours (frameRun null), so the newest complete frame of any run in that run's console log counts.
  let frameRun: string | undefined = run;
  let bootType: { type: 'hvm' | 'pvh'; source: string } | undefined;
  const runJsonText = await readFile(join(dir, 'run.json'), 'utf8').catch(() => undefined);
  if (runJsonText !== undefined) {
    let parsed;
    try {
      parsed = RunJsonSchema.safeParse(JSON.parse(runJsonText));
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success) throw new InputError(`${join(dir, 'run.json')} is not a run record`, { hint: 'it was damaged: boot the domain again' });
    if (s.toolstack && parsed.data.toolstack !== s.toolstack) {
      throw new UsageError(`the latest run of ${s.name} (${run}) was booted with --toolstack ${parsed.data.toolstack}, not ${s.toolstack}`, { hint: `drop --toolstack, or give --toolstack ${parsed.data.toolstack}` });
    }
    if (parsed.data.frameRun !== undefined) frameRun = parsed.data.frameRun ?? undefined;
    if (parsed.data.type) bootType = { type: parsed.data.type, source: `run.json: fbxen boot --type ${parsed.data.type}` };
  }
  const consoleLog = join(dir, 'console.log');
  // fbxen boot attaches a CD drive to every domain it starts (the fbxen CD, --iso, or --empty-cdrom).
  const cdAttached = runJsonText !== undefined ? `fbxen boot attached a CD drive to ${s.name} (run record ${join(dir, 'run.json')})` : undefined;
  return { bundle: await bundleFromConsoleLog(consoleLog, frameRun, s.phase), consoleLog, run, cdAttached, bootType, net: await bootNetKnowledge(dir) };
}

/** The boot run's network record (its vifs, the round trip's listener) for netfront; a missing or bad one is the reason, never a pass. */
async function bootNetKnowledge(dir: string): Promise<NetHostKnowledge> {
  const got = await readHostKnowledge(dir);
  return 'reason' in got ? { source: `fbxen boot run ${dir}`, roundTrip: { arranged: false, reason: `the boot's network record cannot be used: ${got.reason}` } } : got;
}

async function collectOverSsh(s: Extract<EvidenceSource, { kind: 'ssh' }>, deps: VerifyDeps): Promise<Bundle> {
  const args = sshArgs(s);
  const script = await readFile(deps.collectorPath ?? DEFAULT_COLLECTOR).catch((err: unknown) => {
    throw new EnvironmentError(`the guest collector ${deps.collectorPath ?? DEFAULT_COLLECTOR} is missing`, { hint: 'reinstall fbxen (the package ships guest/fbxen-collect)', cause: err });
  });
  return deps.progress.step(`collect evidence over ssh from ${s.target}`, async () => {
    // The collector comes back framed (text with per-line checks), not as a raw tar: the Runner hands
    // stdout back as text, and the frame also survives a login banner or MOTD noise on stdout.
    const result = await deps.runner.run('ssh', args, { input: script, signal: deps.signal, allowFailure: true, timeoutMs: SSH_TIMEOUT_MS });
    if (result.exitCode !== 0) {
      const hostKey = /host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/i.test(result.stderr);
      const connect = result.exitCode === 255;
      throw new ToolstackError(`ssh ${s.target} failed (exit ${result.exitCode}): ${result.stderr.trim().split('\n').slice(-2).join(' ') || 'no message'}`, {
        hint: hostKey
          ? `the host key of ${s.target} is unknown or changed: check it and add it to ~/.ssh/known_hosts, or pass --host-key-checking accept-new for a first contact`
          : connect
            ? 'ssh could not connect or log in (BatchMode: no password prompts): check the address, --identity and that sshd runs in the guest'
            : 'the collector failed in the guest: run it by hand (sh fbxen-collect --out /tmp/b) to see why',
      });
    }
    const got = await extractBundleFromConsole(result.stdout, { run: s.run, phase: s.phase });
    if (got.status === 'rejected') throw new InputError(`${got.reason} (over ssh from ${s.target})`, { hint: REJECTED_HINT });
    if (got.status !== 'complete') {
      throw new EvidenceIncompleteError(`evidence incomplete: the collector's output over ssh from ${s.target} holds no complete frame for run ${s.run}`, {
        hint: 'run the collector by hand in the guest (sh fbxen-collect --frame) and look at its stderr',
      });
    }
    checkBundleRun(got.bundle, { frameRun: got.run, expected: s.run, what: `the collector's frame over ssh from ${s.target}` });
    return got.bundle;
  });
}

export function describeSource(s: EvidenceSource): string {
  switch (s.kind) {
    case 'bundle':
      return `bundle ${s.path}${s.run ? ` (run ${s.run})` : ''}`;
    case 'console':
      return `console log ${s.path}${s.run ? ` (run ${s.run})` : ''}`;
    case 'ssh':
      return `ssh ${s.target} (run ${s.run})`;
    case 'domain':
      return `latest boot run of ${s.name} under ${s.artifactsRoot}`;
  }
}

export async function loadEvidence(s: EvidenceSource, deps: VerifyDeps): Promise<Bundle> {
  switch (s.kind) {
    case 'bundle': {
      const bundle = await readBundle(resolve(deps.cwd, s.path));
      checkBundleRun(bundle, { expected: s.run, what: `bundle ${s.path}` });
      return bundle;
    }
    case 'console':
      return bundleFromConsoleLog(resolve(deps.cwd, s.path), s.run, s.phase);
    case 'ssh':
      return collectOverSsh(s, deps);
    case 'domain':
      return (await verifyDomainEvidence(s, deps.cwd)).bundle;
  }
}

export async function verify(req: VerifyRequest, deps: VerifyDeps): Promise<VerifyOutcome> {
  const from = describeSource(req.source);
  if (req.dryRun) {
    const plan = [`read evidence: ${from}`];
    if (req.source.kind === 'ssh') plan.push(`run: ${formatCommand('ssh', sshArgs(req.source))} < ${deps.collectorPath ?? DEFAULT_COLLECTOR}`);
    if (req.before) plan.push(`read the before bundle: ${'path' in req.before ? req.before.path : `phase ${req.before.phase} of the same console log`}`);
    plan.push(`run probes: ${req.only?.join(', ') ?? 'all'}`);
    if (req.junit) plan.push(`write JUnit XML: ${req.junit}`);
    return { exitCode: 0, from, plan };
  }
  let runDir: string | undefined;
  let cdAttached: string | undefined;
  let bootType: { type: 'hvm' | 'pvh'; source: string } | undefined;
  let net: NetHostKnowledge | undefined;
  const bundle = await deps.progress.step(`read evidence: ${from}`, async () => {
    if (req.source.kind !== 'domain') return loadEvidence(req.source, deps);
    const got = await verifyDomainEvidence(req.source, deps.cwd);
    runDir = dirname(got.consoleLog);
    cdAttached = got.cdAttached;
    bootType = got.bootType;
    net = got.net;
    return got.bundle;
  });
  let before: Bundle | undefined;
  if (req.before && 'path' in req.before) before = await readBundle(resolve(deps.cwd, req.before.path));
  if (req.before && 'phase' in req.before) {
    if (req.source.kind !== 'console') throw new UsageError('--before-phase needs --console-log', { hint: 'give --before PATH with the other sources' });
    before = await bundleFromConsoleLog(resolve(deps.cwd, req.source.path), req.source.run ?? bundle.meta.run, req.before.phase);
  }
  const report = runProbes(bundle, { before, only: req.only, cdAttached, bootType, net });
  // An interrupt during the reading or the probes leaves no report that looks like an answer (two turns
  // of the event loop let a signal that came during the work reach its handler).
  await new Promise<void>((r) => setImmediate(() => setImmediate(r)));
  deps.signal?.throwIfAborted();
  if (req.junit) await writeFileAtomic(resolve(deps.cwd, req.junit), renderJunit(report));
  // Beside the run's console.log, like `fbxen boot --verify` writes them.
  if (runDir) {
    await writeFileAtomic(join(runDir, 'report.json'), `${JSON.stringify(renderReportJson(report), null, 2)}\n`);
    await writeFileAtomic(join(runDir, 'report.junit.xml'), renderJunit(report));
  }
  return { report, exitCode: reportExitCode(report), from, ...(runDir ? { reportDir: runDir } : {}) };
}

/** Verifies the latest boot run of a domain (what `fbxen verify --domain NAME` does). */
export async function verifyDomain(opts: {
  name: string;
  artifactsRoot?: string | undefined;
  toolstack?: 'xl' | 'xapi' | undefined;
  phase?: string | undefined;
  cwd?: string | undefined;
}): Promise<{ report: Report; run: string; consoleLog: string; exitCode: 0 | 1 | 2 }> {
  const got = await verifyDomainEvidence(
    { kind: 'domain', name: opts.name, artifactsRoot: opts.artifactsRoot ?? 'fbxen-runs', toolstack: opts.toolstack, phase: opts.phase },
    opts.cwd ?? process.cwd(),
  );
  const report = runProbes(got.bundle, { cdAttached: got.cdAttached, bootType: got.bootType, net: got.net });
  return { report, run: got.run, consoleLog: got.consoleLog, exitCode: reportExitCode(report) };
}
