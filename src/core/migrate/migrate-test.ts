/**
 * fbxen migrate-test: preflight (skip with the reason only where migration provably does not apply) → evidence before
 * → N iterations of { heartbeat on, migrate (or save + restore), heartbeat off, evidence after, the
 * probes against the previous bundle, the downtime from the heartbeat } → report, JSON, JUnit, SVG.
 * Stops at the first failed iteration unless keepGoing. Never destroys the domain: a failed or timed out
 * migration is reported with where the domain is.
 */
import { constants } from 'node:fs';
import { access, appendFile, mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { newRunId, transcribingRunner } from '../run/artifacts.js';
import { CheckFailedError, EnvironmentError, EvidenceIncompleteError, FbxenError, InterruptedError, TimeoutError, ToolstackError, UsageError } from '../errors.js';
import type { Runner } from '../exec/runner.js';
import type { Progress } from '../progress.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { CleanupStack } from '../util/cleanup.js';
import { packBundle, runProbes, type Bundle } from '../verify/index.js';
import type { XapiClient } from '../toolstack/xapi/client.js';
import { ConsoleCapture } from './capture.js';
import { consoleChannel, sshChannel, type SshTarget } from './channel.js';
import { estimateDowntime, parseHeartbeat, type DowntimeEstimate } from './heartbeat.js';
import { migrateExitCode, oneLine, overallStatus, renderDowntimeSvg, renderMigrateJson, renderMigrateJunit, summarize, type IterationResult, type MigrateReport } from './report.js';
import { MigrationError, MigrationTimeoutError, describeLocation, type DomainLocation, type GuestChannel, type GuestLoad, type MigrateMode, type MigrationDriver } from './types.js';
import { XapiMigrationDriver } from './xapi-driver.js';
import { XlMigrationDriver } from './xl-driver.js';
import type { CoreDeps } from '../deps.js';
import { sleep } from '../util/sleep.js';

export interface MigrateTestRequest {
  toolstack: 'xl' | 'xapi';
  domain: string;
  /** xl: 'localhost' or a host; xapi: a pool host (default: another one) */
  to?: string | undefined;
  iterations: number;
  mode: MigrateMode;
  load: GuestLoad;
  keepGoing: boolean;
  evidence: 'console' | 'ssh';
  ssh?: SshTarget | undefined;
  /** seconds each migration, collection and heartbeat wait may take */
  stepTimeoutSec: number;
  artifactsRoot: string;
  runId?: string | undefined;
  junit?: string | undefined;
  dryRun: boolean;
  guestCollector?: string | undefined;
  guestHeartbeat?: string | undefined;
  destSr?: string | undefined;
  backTo?: string | undefined;
  /** seconds of heartbeat before and after each migration (default 2) */
  rollSeconds?: number | undefined;
  /** --toolstack xapi: how to trust the pool (the URL and credentials come from FBXEN_XAPI_*) */
  xapi?: { caFile?: string | undefined; insecure: boolean; insecureHttp: boolean } | undefined;
}

export interface MigrateTestDeps extends CoreDeps {
  now?: () => number;
  pollMs?: number;
  /** test seams: a driver or channel double, the XAPI connection */
  driver?: MigrationDriver;
  channel?: (driver: MigrationDriver, capture: ConsoleCapture) => GuestChannel;
  connectXapi?: () => Promise<XapiClient>;
  /** console settle time before typing (ms) */
  settleMs?: number;
}

export interface MigrateTestOutcome {
  report?: MigrateReport;
  exitCode: 0 | 1 | 2;
  /** thrown by the command after it printed the report (exit code 1, 2, 5, 6...) */
  error?: FbxenError;
  planText?: string;
}

const HOST_COLLECTOR = fileURLToPath(new URL('../../../guest/fbxen-collect', import.meta.url));
const HOST_HEARTBEAT = fileURLToPath(new URL('../../../guest/fbxen-heartbeat', import.meta.url));


/** Throws a request that cannot work, before anything runs. */
function checkRequest(req: MigrateTestRequest): void {
  if (req.evidence === 'ssh' && !req.ssh) throw new UsageError('--evidence ssh needs --ssh user@host', { hint: 'give --ssh root@GUEST, or --evidence console' });
  if (req.toolstack === 'xl' && req.mode === 'live' && (req.to ?? 'localhost') !== 'localhost' && req.evidence === 'console') {
    throw new UsageError(`--to ${req.to}: the console of a domain on another host cannot be read from here`, { hint: 'add --evidence ssh --ssh root@GUEST' });
  }
  if (req.toolstack === 'xapi' && req.mode === 'save-restore' && req.to) throw new UsageError('--to has no meaning with --mode save-restore', { hint: 'drop --to' });
}

async function makeDriver(req: MigrateTestRequest, deps: MigrateTestDeps, runner: Runner, dir: string, dry: boolean): Promise<MigrationDriver> {
  if (deps.driver) return deps.driver;
  if (req.toolstack === 'xl') {
    return new XlMigrationDriver({ runner, domain: req.domain, to: req.to ?? 'localhost', backTo: req.backTo ?? hostname(), checkpointDir: dir, env: deps.env });
  }
  const planOnly = { call: async () => Promise.reject(new Error('dry run')), callAsync: async () => Promise.reject(new Error('dry run')) } as unknown as XapiClient;
  // A plan never promises what the run refuses: the credentials, the http rule and the CA file are checked for it too.
  if (dry) await xapiCredentials(req, deps);
  const client = dry ? planOnly : await (deps.connectXapi ?? (() => connectXapi(req, deps)))();
  return new XapiMigrationDriver({ client, domain: req.domain, to: req.to, destSr: req.destSr });
}

/** The credentials from FBXEN_XAPI_*, as the run and its --dry-run plan both check them. Loaded only for --toolstack xapi. */
async function xapiCredentials(req: MigrateTestRequest, deps: MigrateTestDeps): Promise<{ url: string; user: string; password: string }> {
  const { isPlainHttp, loadXapiCredentials, plainHttpWarning } = await import('../toolstack/xapi/credentials.js');
  const creds = await loadXapiCredentials(deps.env, { insecureHttp: req.xapi?.insecureHttp ?? false });
  if (isPlainHttp(creds.url)) deps.progress.warn(plainHttpWarning(creds.url));
  else if (req.xapi?.caFile) {
    await access(resolve(deps.cwd, req.xapi.caFile), constants.R_OK).catch(() => {
      throw new EnvironmentError(`the CA file ${req.xapi!.caFile} cannot be read`, { hint: 'pass a PEM file with the pool certificate or its CA with --ca-file' });
    });
  }
  return creds;
}

/** A logged-in XAPI session from FBXEN_XAPI_*, logged out at cleanup. The client is loaded only for --toolstack xapi. */
async function connectXapi(req: MigrateTestRequest, deps: MigrateTestDeps): Promise<XapiClient> {
  const { XapiClient } = await import('../toolstack/xapi/client.js');
  const creds = await xapiCredentials(req, deps);
  const client = await XapiClient.connect({ url: creds.url, user: creds.user, password: creds.password, caFile: req.xapi?.caFile, insecure: req.xapi?.insecure ?? false, signal: deps.signal });
  deps.cleanup.push('log out of XAPI', () => client.logout());
  return client;
}

function makeChannel(req: MigrateTestRequest, deps: MigrateTestDeps, runner: Runner, driver: MigrationDriver, capture: ConsoleCapture): GuestChannel {
  if (deps.channel) return deps.channel(driver, capture);
  if (req.evidence === 'ssh') {
    return sshChannel({ ssh: req.ssh!, runner, progress: deps.progress, cwd: deps.cwd, signal: deps.signal, collectorScript: req.guestCollector ?? HOST_COLLECTOR, heartbeatScript: req.guestHeartbeat ?? HOST_HEARTBEAT, ...(deps.now ? { now: deps.now } : {}) });
  }
  return consoleChannel({ driver, capture, collectorPath: req.guestCollector, heartbeatPath: req.guestHeartbeat, signal: deps.signal, pollMs: deps.pollMs, settleMs: deps.settleMs });
}

const iterName = (i: number) => `migrate/${i}`;

export function renderMigratePlan(req: MigrateTestRequest, run: string, dir: string, driver: MigrationDriver, channel: GuestChannel): string {
  const roll = req.rollSeconds ?? 2;
  const hbMax = req.stepTimeoutSec * 3 + roll * 2 + 60;
  const lines = [
    `# fbxen migrate-test --dry-run: nothing was contacted or run`,
    `run        ${run}`,
    `domain     ${req.domain} (${req.toolstack})`,
    `mode       ${req.mode}${req.mode === 'live' ? `, to ${req.to ?? (req.toolstack === 'xl' ? 'localhost' : 'another pool host')}` : ''}`,
    `iterations ${req.iterations}${req.keepGoing ? ' (--keep-going)' : ' (stop at the first failure)'}`,
    `load       ${req.load}`,
    `evidence   ${req.evidence}`,
    `timeouts   ${req.stepTimeoutSec} s per migration, collection and heartbeat wait`,
    `safety     fbxen never destroys the domain; after a failure or timeout it reports where the domain is`,
    `artifacts  ${dir}/`,
    '',
    '## preflight (a skip, exit 0, only where migration provably does not apply; anything else that stops here is an error)',
    ...driver.planPreflight(req.mode).map((s) => `- ${s}`),
    `- attach the serial console → ${join(dir, 'console.log')} (every line stamped on arrival)`,
    `- ${channel.planCollect(run, 'pre-migrate')}`,
    '- the guest runs on Xen (probes xen-guest, generic-xenhvm on the pre-migrate bundle): a probe that fails skips; one that cannot tell stops (exit 2)',
    '',
  ];
  for (let i = 1; i <= req.iterations; i++) {
    const hbRun = `${run}-hb${i}`;
    lines.push(`## ${iterName(i)}`);
    lines.push(...channel.planHeartbeat(hbRun, req.load, hbMax).slice(0, 1).map((s) => `- ${s}`));
    lines.push(`- wait up to ${req.stepTimeoutSec} s for ${roll} s of heartbeat`);
    lines.push(...driver.planIteration(i, req.mode).map((s) => `- ${s}`));
    if (driver.toolstack === 'xl') lines.push(`- reattach the serial console to the new domid${(req.to ?? 'localhost') !== 'localhost' && req.mode === 'live' ? ' (when the domain is on this host)' : ''}`);
    lines.push(`- wait up to ${req.stepTimeoutSec} s for ${roll} s of heartbeat after the gap`);
    lines.push(...channel.planHeartbeat(hbRun, req.load, hbMax).slice(1).map((s) => `- ${s}`));
    lines.push(`- ${channel.planCollect(run, `post-migrate-${i}`)}`);
    lines.push(`- probes on post-migrate-${i} against ${i === 1 ? 'pre-migrate' : `post-migrate-${i - 1}`}; downtime = largest heartbeat gap → ${join(dir, `heartbeat-${i}.log`)}`);
    lines.push('');
  }
  lines.push('## report', `- ${join(dir, 'report.json')}, ${join(dir, 'report.junit.xml')}${req.junit ? `, ${req.junit}` : ''}, ${join(dir, 'downtime.svg')}`, '');
  return lines.join('\n');
}

/**
 * Waits for `seconds` of heartbeat (guest wall clock) among the beats that arrived at or after
 * `arrivedAfter` (host ms): after a migration only those can be from after the resume; beats written
 * before the pause may still be arriving while the migration runs.
 */
async function waitForBeats(channel: GuestChannel, hbRun: string, arrivedAfter: number, seconds: number, timeoutMs: number, signal: AbortSignal, pollMs: number): Promise<{ ok: boolean; lastSeq: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const beats = parseHeartbeat(channel.heartbeatLines(), hbRun).beats.filter((b) => (b.hostMs ?? 0) >= arrivedAfter);
    const lastSeq = beats.at(-1)?.seq ?? 0;
    if (beats.length >= 3 && beats.at(-1)!.wall - beats[0]!.wall >= seconds) return { ok: true, lastSeq };
    if (Date.now() >= deadline) return { ok: false, lastSeq };
    await sleep(pollMs, signal);
  }
}

export async function migrateTest(req: MigrateTestRequest, deps: MigrateTestDeps): Promise<MigrateTestOutcome> {
  checkRequest(req);
  const run = req.runId ?? newRunId(new Date(deps.now?.() ?? Date.now()));
  const dir = resolve(deps.cwd, req.artifactsRoot, req.domain, `migrate-${run}`);
  const roll = req.rollSeconds ?? 2;
  const stepMs = req.stepTimeoutSec * 1000;
  const pollMs = deps.pollMs ?? 100;
  // The clock the console capture stamps lines with.
  const now = deps.now ?? Date.now;
  // The heartbeat stops by itself if fbxen never tells it to (fbxen killed, host gone).
  const hbMax = req.stepTimeoutSec * 3 + roll * 2 + 60;

  if (req.dryRun) {
    const capture = new ConsoleCapture(undefined);
    const driver = await makeDriver(req, deps, deps.runner, dir, true);
    const channel = makeChannel(req, deps, deps.runner, driver, capture);
    return { exitCode: 0, planText: renderMigratePlan(req, run, dir, driver, channel) };
  }

  await mkdir(dir, { recursive: true });
  const runner = transcribingRunner(deps.runner, join(dir, 'transcript.log'));
  const driver = await makeDriver(req, deps, runner, dir, false);
  const capture = new ConsoleCapture(join(dir, 'console.log'), deps.now);
  const channel = makeChannel(req, deps, runner, driver, capture);
  const { progress, signal } = deps;
  const iterations: IterationResult[] = [];
  let skipReason: string | null = null;
  let firstError: FbxenError | undefined;
  let where: DomainLocation | undefined;
  /** the heartbeat run the guest is executing now, if any */
  let running: string | undefined;
  const forget = deps.cleanup.push('close the migrate-test console and heartbeat', async () => {
    await channel.close();
    await driver.close();
    await capture.close();
  });

  const report = (): MigrateReport => ({
    run,
    toolstack: req.toolstack,
    domain: req.domain,
    mode: req.mode,
    to: req.mode === 'live' ? (req.to ?? (req.toolstack === 'xl' ? 'localhost' : 'another pool host')) : '-',
    load: req.load,
    status: skipReason !== null ? 'skip' : iterations.length === 0 && firstError ? (firstError instanceof EvidenceIncompleteError ? 'inconclusive' : 'error') : overallStatus(iterations),
    skipReason,
    // What stopped the run before its first iteration (the preflight, the console, the first bundle).
    stopReason: iterations.length === 0 && firstError ? oneLine(firstError.message) : null,
    iterations,
    summary: summarize(iterations),
    where: where ?? null,
    artifactsDir: dir,
  });

  try {
    skipReason = (await progress.step('Preflight: toolstack, domain, destination', () => driver.preflight(req.mode))) ?? null;
    let before: Bundle | undefined;
    if (skipReason === null) {
      const attached = await progress.step('Attach the console', () => driver.attachConsole(capture));
      if (!attached && req.evidence === 'console') {
        throw new EnvironmentError(`the serial console of ${req.domain} cannot be read from here`, {
          hint:
            req.toolstack === 'xapi'
              ? 'the VM needs platform:hvm_serial=tcp:<this host>:<port> (fbxen boot --toolstack xapi --keep with FBXEN_XAPI_CONSOLE_PORT fixed), or use --evidence ssh --ssh root@GUEST'
              : 'the domain is not on this host: use --evidence ssh --ssh root@GUEST',
        });
      }
      await channel.prepare();
      before = await progress.step('Collect evidence before (pre-migrate)', () => channel.collect(run, 'pre-migrate', stepMs));
      await writeFileAtomic(join(dir, 'pre-migrate.tar.gz'), await packBundle(before));
      const support = runProbes(before, { only: ['xen-guest', 'generic-xenhvm'] });
      // A skip needs proof (a probe that fails on the guest's own evidence); a bundle that cannot tell is
      // no answer, and the run says so (exit 2) rather than passing for "does not apply".
      const no = support.results.find((r) => r.verdict === 'fail');
      const unsure = support.results.find((r) => r.verdict !== 'pass' && r.verdict !== 'fail');
      if (no) skipReason = `the guest cannot migrate as a Xen PVHVM guest: ${no.id} is ${no.verdict} (${no.evidence[0] ?? ''})`;
      else if (unsure) {
        throw new EvidenceIncompleteError(`the pre-migrate bundle cannot tell whether the guest is a Xen PVHVM guest: ${unsure.id} is ${unsure.verdict} (${unsure.evidence[0] ?? 'no evidence'})`, {
          hint: `read ${join(dir, 'pre-migrate.tar.gz')} (fbxen verify --bundle): the collector's sections for ${unsure.id} are missing or unreadable`,
        });
      }
    }
    if (skipReason !== null) progress.warn(`skipped: ${skipReason}`);

    for (let i = 1; skipReason === null && i <= req.iterations; i++) {
      signal.throwIfAborted();
      const name = iterName(i);
      const hbRun = `${run}-hb${i}`;
      const result: IterationResult = { name, verdict: 'pass', reason: '', downtimeMs: null, downtime: null, toolstackMs: null, clockOffsetMs: { before: null, after: null }, probes: [], where: null, disk: null };
      iterations.push(result);
      await progress.step(`${name}: heartbeat`, async () => {
        running = hbRun;
        await channel.startHeartbeat(hbRun, req.load, hbMax);
        const pre = await waitForBeats(channel, hbRun, 0, roll, stepMs, signal, pollMs);
        if (!pre.ok) progress.warn(`${name}: no heartbeat from the guest within ${req.stepTimeoutSec} s: the downtime will not be measured (is ${req.guestHeartbeat ?? '/usr/local/libexec/fbxen-heartbeat'} in the guest?)`);
      });
      const seqBefore = parseHeartbeat(channel.heartbeatLines(), hbRun).beats.at(-1)?.seq ?? 0;
      try {
        const done = await progress.step(`${name}: ${req.mode === 'live' ? 'migrate' : 'save and restore'}`, () => driver.migrate(i, req.mode, stepMs));
        result.toolstackMs = done.toolstackMs;
        where = done.where;
        result.where = done.where ?? null;
      } catch (err) {
        result.verdict = 'error';
        if (err instanceof MigrationError || err instanceof MigrationTimeoutError) {
          where = err.where;
          result.where = err.where ?? null;
        } else where = await driver.locate().catch(() => where);
        result.reason = oneLine(err instanceof Error ? err.message : String(err));
        firstError ??= err instanceof FbxenError ? err : new ToolstackError(String(err));
        await channel.stopHeartbeat(hbRun).catch(() => undefined);
        running = undefined;
        // The loop goes on only with a domain that still runs where fbxen can reach it.
        if (req.keepGoing && where?.state === 'running' && where.name === req.domain) continue;
        break;
      }
      if (!where || where.state !== 'running') {
        result.verdict = 'error';
        result.reason = `after the migration the domain is ${describeLocation(where)}`;
        firstError ??= new ToolstackError(`${name}: ${result.reason}`, { hint: 'read the console log and the toolstack log; fbxen destroyed nothing' });
        break;
      }
      const migratedAt = now();
      await driver.attachConsole(capture);
      const post = await progress.step(`${name}: heartbeat after the migration`, () => waitForBeats(channel, hbRun, migratedAt, roll, stepMs, signal, pollMs));
      await channel.stopHeartbeat(hbRun).catch(() => undefined);
      running = undefined;
      const lines = channel.heartbeatLines();
      await writeFileAtomic(join(dir, `heartbeat-${i}.log`), lines.filter((l) => l.text.includes(hbRun)).map((l) => `${l.hostMs ?? '-'} ${l.text}\n`).join(''));
      const parsed = parseHeartbeat(lines, hbRun);
      // Without a beat from after the resume the largest gap would be some gap before the migration.
      const estimate: DowntimeEstimate | undefined = post.ok ? estimateDowntime(parsed) : undefined;
      if (!post.ok && seqBefore > 0) progress.warn(`${name}: less than ${roll} s of heartbeat after the migration: the downtime is not measured`);
      if (req.load === 'disk' || req.load === 'all') result.disk = { rounds: parsed.disk.length, bad: parsed.disk.filter((d) => !d.ok).length };
      if (estimate) {
        result.downtime = estimate;
        result.downtimeMs = estimate.downtimeMs;
        result.clockOffsetMs = estimate.clockOffsetMs;
      }
      let after: Bundle | undefined;
      try {
        after = await progress.step(`${name}: collect evidence after (post-migrate-${i})`, () => channel.collect(run, `post-migrate-${i}`, stepMs));
        await writeFileAtomic(join(dir, `post-migrate-${i}.tar.gz`), await packBundle(after));
      } catch (err) {
        if (!(err instanceof TimeoutError || err instanceof EvidenceIncompleteError || err instanceof ToolstackError)) throw err;
        where = await driver.locate().catch(() => where);
        result.where = where ?? null;
        const heartbeatWas = seqBefore > 0;
        if (heartbeatWas && !post.ok && err instanceof TimeoutError && where?.state === 'running') {
          result.verdict = 'fail';
          result.reason = 'the guest did not come back: no heartbeat and no collector frame after the migration, though the toolstack says it runs';
        } else {
          result.verdict = err instanceof EvidenceIncompleteError ? 'inconclusive' : 'error';
          result.reason = oneLine((err as Error).message);
          firstError ??= err as FbxenError;
        }
        if (!req.keepGoing || result.verdict === 'fail' || where?.state !== 'running') break;
        continue;
      }
      const probeReport = runProbes(after, { before });
      result.probes = probeReport.results;
      before = after;
      const failed = probeReport.results.filter((r) => r.verdict === 'fail');
      const mig = probeReport.results.find((r) => r.id === 'migration');
      const badDisk = parsed.disk.find((d) => !d.ok);
      if (badDisk) {
        result.verdict = 'fail';
        result.reason = `disk read-back differed from what was written (round ${badDisk.round} of the write + fsync + compare loop): data lost across the migration`;
      } else if (failed.length) {
        result.verdict = 'fail';
        result.reason = `probe ${failed.map((r) => r.id).join(', ')} failed: ${failed[0]!.evidence[0] ?? ''}`;
      } else if (mig && mig.verdict !== 'pass') {
        result.verdict = 'inconclusive';
        result.reason = `migration probe ${mig.verdict}: ${mig.evidence[0] ?? ''}`;
      } else {
        result.reason = `all ${probeReport.results.filter((r) => r.verdict === 'pass').length} probes that apply passed${estimate ? `; downtime by ${estimate.method}` : '; downtime not measured'}`;
      }
      if (result.verdict !== 'pass' && !req.keepGoing) break;
    }
  } catch (err) {
    const interrupted = signal.aborted && signal.reason instanceof InterruptedError;
    if (!interrupted && !(err instanceof FbxenError)) throw err;
    firstError ??= interrupted ? (signal.reason as InterruptedError) : (err as FbxenError);
    const last = iterations.at(-1);
    if (last && last.verdict === 'pass' && last.probes.length === 0) {
      last.verdict = 'error';
      last.reason = oneLine(firstError.message);
    }
  } finally {
    // A heartbeat left running (Ctrl-C, an error) is told to stop; it also stops by itself (--max-seconds).
    const hb = running;
    if (hb) await Promise.race([channel.stopHeartbeat(hb).catch(() => undefined), sleep(5000)]);
    where = (await driver.locate().catch(() => undefined)) ?? where;
    forget();
    await channel.close().catch(() => undefined);
    await driver.close().catch(() => undefined);
    await capture.close();
  }

  const r = report();
  await writeFileAtomic(join(dir, 'report.json'), `${JSON.stringify(renderMigrateJson(r), null, 2)}\n`);
  const junit = renderMigrateJunit(r);
  await writeFileAtomic(join(dir, 'report.junit.xml'), junit);
  if (req.junit) await writeFileAtomic(resolve(deps.cwd, req.junit), junit);
  await writeFileAtomic(join(dir, 'downtime.svg'), renderDowntimeSvg(r));
  await appendFile(join(dir, 'transcript.log'), `# the domain at the end: ${describeLocation(where)}\n`).catch(() => undefined);

  const exitCode = migrateExitCode(r);
  let error: FbxenError | undefined;
  if (firstError instanceof InterruptedError) error = firstError;
  else if (r.status === 'fail') {
    const bad = r.iterations.filter((i) => i.verdict === 'fail').map((i) => i.name);
    error = new CheckFailedError(`migrate-test failed: ${bad.join(', ')}`, { hint: `see the reasons above, and ${dir}/ (console.log, bundles, report)` });
  } else if (r.status === 'error') error = firstError ?? new ToolstackError('a migration failed');
  else if (r.status === 'inconclusive') error = firstError ?? new EvidenceIncompleteError('the evidence after the migration allowed no verdict', { hint: `read ${dir}/console.log` });
  return { report: r, exitCode: error instanceof InterruptedError ? 2 : exitCode, ...(error ? { error } : {}) };
}
