/**
 * fbxen migrate-test: preflight (skip with the reason only where migration provably does not apply) → evidence before
 * → N iterations of { heartbeat on, migrate (or save + restore), heartbeat off, evidence after, the
 * probes against the previous bundle, the downtime from the heartbeat } → report, JSON, JUnit, SVG.
 * Stops at the first failed iteration unless keepGoing. Never destroys the domain: a failed or timed out
 * migration is reported with where the domain is.
 */
import { appendFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { STANDIN_ENV, standinRequested } from '../boot/standin-guest.js';
import { CheckFailedError, EnvironmentError, EvidenceIncompleteError, FbxenError, InterruptedError, TimeoutError, ToolstackError } from '../errors.js';
import { formatHostUrl, parseHostUrl } from '../exec/ssh.js';
import { newRunId, transcribingRunner } from '../run/artifacts.js';
import type { ConsoleAttachment, DomainRef, MigrationOutcome, MigrationRoute, Toolstack } from '../toolstack/types.js';
import { writeFileAtomic } from '../util/atomic.js';
import { sleep } from '../util/sleep.js';
import { throttle } from '../util/throttle.js';
import { packBundle, runProbes, type Bundle } from '../verify/index.js';
import { ConsoleCapture } from './capture.js';
import type { ConsoleKeyboard } from './channel.js';
import { estimateDowntime, parseHeartbeat, type DowntimeEstimate } from './heartbeat.js';
import { checkRequest, heartbeatMaxSeconds, iterName, makeChannel, makeToolstack, renderMigratePlan, sinkOf } from './migrate-setup.js';
import { openMigrationNetwork, standinBootHadVif, type MigrationNetwork } from './network-check.js';
import { migrateExitCode, nameDom0, oneLine, overallStatus, renderDowntimeSvg, renderMigrateJson, renderMigrateJunit, summarize, type IterationResult, type MigrateReport } from './report.js';
import type { MigrateTestDeps, MigrateTestOutcome, MigrateTestRequest } from './request.js';
import { MigrationError, MigrationTimeoutError, describeLocation, type DomainLocation, type GuestChannel } from './types.js';

export { renderMigratePlan };
export type { MigrateTestDeps, MigrateTestOutcome, MigrateTestRequest };


/**
 * Waits for `seconds` of heartbeat (guest wall clock) among the beats that arrived at or after
 * `arrivedAfter` (host ms): after a migration only those can be from after the resume; beats written
 * before the pause may still be arriving while the migration runs. Ends early when `guestDown` says why
 * the guest can no longer beat (crashed, gone): a dead guest costs seconds, not the step timeout.
 */
async function waitForBeats(channel: GuestChannel, hbRun: string, arrivedAfter: number, seconds: number, timeoutMs: number, signal: AbortSignal, pollMs: number, guestDown?: () => Promise<string | undefined>): Promise<{ ok: boolean; lastSeq: number; down?: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const beats = parseHeartbeat(channel.heartbeatLines(), hbRun).beats.filter((b) => (b.hostMs ?? 0) >= arrivedAfter);
    const lastSeq = beats.at(-1)?.seq ?? 0;
    if (beats.length >= 3 && beats.at(-1)!.wall - beats[0]!.wall >= seconds) return { ok: true, lastSeq };
    const down = await guestDown?.();
    if (down !== undefined) return { ok: false, lastSeq, down };
    if (Date.now() >= deadline) return { ok: false, lastSeq };
    await sleep(pollMs, signal);
  }
}

/** What the toolstack says of a domain that can no longer answer, or undefined while it runs (or cannot be asked). */
function downState(where: DomainLocation | undefined): string | undefined {
  if (!where) return 'went away';
  return where.state === 'crashed' ? 'crashed' : where.state === 'halted' ? 'halted' : undefined;
}

/**
 * The guest died after the migration. Crashed (the toolstack's own state): the guest did not survive it, a
 * fail. Gone or halted: the domain is not there to say why (destroyed by its on_crash/on_reboot, or by
 * someone else), an error.
 */
function guestDied(result: IterationResult, down: string, where: DomainLocation | undefined, when: string): void {
  result.verdict = down === 'crashed' ? 'fail' : 'error';
  result.reason = `the guest ${down} after the migration, ${when} (${describeLocation(where)})`;
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
  const hbMax = heartbeatMaxSeconds(req);

  if (req.dryRun) {
    const ts = await makeToolstack(req, deps, deps.runner, run);
    const channel = makeChannel(req, deps, deps.runner, { write: () => undefined }, new ConsoleCapture(undefined));
    return { exitCode: 0, planText: await renderMigratePlan(req, run, dir, ts, channel) };
  }

  await mkdir(dir, { recursive: true });
  const runner = transcribingRunner(deps.runner, join(dir, 'transcript.log'));
  const ts = await makeToolstack(req, deps, runner, run);
  const capture = new ConsoleCapture(join(dir, 'console.log'), deps.now);
  const follower = new ConsoleFollower(ts, req.domain, capture);
  const channel = makeChannel(req, deps, runner, follower, capture);
  const { progress, signal } = deps;
  const iterations: IterationResult[] = [];
  let skipReason: string | null = null;
  // What the toolstack records of the guest (xl: c_info.type); the probes judge the guest against it.
  let bootType: { type: 'hvm' | 'pvh'; source: string } | undefined;
  const standin = standinRequested(deps.env);
  let firstError: FbxenError | undefined;
  let where: DomainLocation | undefined;
  /** the heartbeat run the guest is executing now, if any */
  let running: string | undefined;
  /** the round trip's listener, opened again where the boot's was (network-check.ts) */
  let net: MigrationNetwork | undefined;
  const forget = deps.cleanup.push('close the migrate-test console and heartbeat', async () => {
    await channel.close();
    await follower.close();
    await ts.close();
    await capture.close();
  });

  // The reports name a remote dom0 by its URL, not 'localhost' (the driver's name for the host it drives).
  const dom0 = req.host?.url ? formatHostUrl(parseHostUrl(req.host.url)) : undefined;
  const report = (): MigrateReport => nameDom0({
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
  }, dom0);

  try {
    const route = await progress.step('Preflight: toolstack, domain, destination', () => ts.migrationRoute(req.domain, req.mode, req.to));
    skipReason = route.skip ?? null;
    // TEST-ONLY (boot/standin-guest.ts): the lab's stand-in replays a recorded bundle, whose boot the domain's type says nothing about.
    if (standin) progress.warn(`${STANDIN_ENV} is set: the domain is taken for the TEST-ONLY stand-in guest; the probes judge its replayed bundle without the domain's type (docs/lab.md)`);
    if (route.guestType && !standin) bootType = { type: route.guestType, source: `${ts.name}: the domain's type is ${route.guestType}` };
    let before: Bundle | undefined;
    if (skipReason === null) {
      const attached = await progress.step('Attach the console', () => follower.follow());
      if (!attached && req.evidence === 'console') {
        throw new EnvironmentError(`the serial console of ${req.domain} cannot be read from here`, {
          hint:
            ts.capabilities.consoleAfterMigrate === 'reconnects'
              ? 'the VM needs platform:hvm_serial=tcp:<this host>:<port> (fbxen boot --toolstack xapi --keep with FBXEN_XAPI_CONSOLE_PORT fixed), or use --evidence ssh --ssh root@GUEST'
              : 'the domain is not on this host: use --evidence ssh --ssh root@GUEST',
        });
      }
      await channel.prepare();
      // A stand-in booted without a vif (its replayed bundle has no xn0) has no network to check across the migration.
      if (standin && !(await standinBootHadVif({ artifactsRoot: req.artifactsRoot, cwd: deps.cwd, domain: req.domain }))) progress.info("network: not checked (the TEST-ONLY stand-in guest's boot gave it no vif)");
      else {
        net = await openMigrationNetwork({ ts, domain: req.domain, artifactsRoot: req.artifactsRoot, cwd: deps.cwd, mode: req.mode, to: req.to });
        // The console channel runs the guest's installed heartbeat, which may predate --beat-to (it would refuse it).
        if (channel.kind !== 'ssh') await net.dropBeats(`the ${channel.kind} channel runs the guest's installed fbxen-heartbeat, which may not know --beat-to (--evidence ssh sends this fbxen's)`);
        progress.info(net.describe());
      }
      before = await progress.step('Collect evidence before (pre-migrate)', () => channel.collect(run, 'pre-migrate', stepMs));
      await writeFileAtomic(join(dir, 'pre-migrate.tar.gz'), await packBundle(before));
      const support = runProbes(before, { only: ['xen-guest', 'generic-xenhvm'], bootType });
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
        await channel.startHeartbeat(hbRun, req.load, hbMax, net?.beatTarget());
        const pre = await waitForBeats(channel, hbRun, 0, roll, stepMs, signal, pollMs);
        if (!pre.ok) progress.warn(`${name}: no heartbeat from the guest within ${req.stepTimeoutSec} s: the downtime will not be measured (is ${req.guestHeartbeat ?? '/usr/local/libexec/fbxen-heartbeat'} in the guest?)`);
      });
      const seqBefore = parseHeartbeat(channel.heartbeatLines(), hbRun).beats.at(-1)?.seq ?? 0;
      try {
        const done = await progress.step(`${name}: ${req.mode === 'live' ? 'migrate' : 'save and restore'}`, () => migrateOnce(ts, req, route, i, stepMs, capture, dir));
        result.toolstackMs = done.toolstackMs;
        where = done.where;
        result.where = done.where ?? null;
      } catch (err) {
        result.verdict = 'error';
        if (err instanceof MigrationError || err instanceof MigrationTimeoutError) {
          where = err.where;
          result.where = err.where ?? null;
        } else where = await ts.locate(req.domain).catch(() => where);
        result.reason = oneLine(err instanceof Error ? err.message : String(err));
        firstError ??= err instanceof FbxenError ? err : new ToolstackError(String(err));
        await channel.stopHeartbeat(hbRun).catch(() => undefined);
        running = undefined;
        // The loop goes on only with a domain that still runs where fbxen can reach it.
        if (req.keepGoing && where?.state === 'running' && where.name === req.domain) continue;
        break;
      }
      if (!where || where.state !== 'running') {
        if (where?.state === 'crashed') guestDied(result, 'crashed', where, 'as the migration ended');
        else {
          result.verdict = 'error';
          result.reason = `after the migration the domain is ${describeLocation(where)}`;
          firstError ??= new ToolstackError(`${name}: ${result.reason}`, { hint: 'read the console log and the toolstack log; fbxen destroyed nothing' });
        }
        break;
      }
      const migratedAt = now();
      // the listener stamps with the host's own clock (now() may be a test's virtual one)
      const resumedAt = Date.now();
      await follower.follow();
      // Asked of the toolstack at most every 2 s while fbxen waits on the guest; a failed question is no answer.
      const guestDown = throttle(2000, async () => downState(await ts.locate(req.domain).catch(() => ({ state: 'running' }) as DomainLocation)));
      const post = await progress.step(`${name}: heartbeat after the migration`, () => waitForBeats(channel, hbRun, migratedAt, roll, stepMs, signal, pollMs, guestDown));
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
      if (post.down !== undefined) {
        where = await ts.locate(req.domain).catch(() => where);
        result.where = where ?? null;
        guestDied(result, post.down, where, 'while fbxen waited for its heartbeat');
        if (result.verdict === 'error') firstError ??= new ToolstackError(`${name}: ${result.reason}`, { hint: 'read console.log in the run directory; fbxen destroyed nothing' });
        break;
      }
      let after: Bundle | undefined;
      try {
        after = await progress.step(`${name}: collect evidence after (post-migrate-${i})`, () => channel.collect(run, `post-migrate-${i}`, stepMs, guestDown));
        await writeFileAtomic(join(dir, `post-migrate-${i}.tar.gz`), await packBundle(after));
      } catch (err) {
        if (!(err instanceof TimeoutError || err instanceof EvidenceIncompleteError || err instanceof ToolstackError)) throw err;
        where = await ts.locate(req.domain).catch(() => where);
        result.where = where ?? null;
        const heartbeatWas = seqBefore > 0;
        const down = downState(where);
        if (down !== undefined && err instanceof ToolstackError) {
          guestDied(result, down, where, 'before the collector finished');
          if (result.verdict === 'error') firstError ??= err;
          break;
        }
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
      const netNow = await net?.knowledge(after, resumedAt);
      const probeReport = runProbes(after, { before, bootType, net: netNow });
      result.probes = probeReport.results;
      if (net && netNow && before) result.network = net.check(before, after, netNow, resumedAt);
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
      } else if (result.network?.verdict === 'fail') {
        result.verdict = 'fail';
        result.reason = `the network after the migration: ${result.network.reason}`;
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
    where = (await ts.locate(req.domain).catch(() => undefined)) ?? where;
    forget();
    await net?.stop();
    await channel.close().catch(() => undefined);
    await follower.close().catch(() => undefined);
    await ts.close().catch(() => undefined);
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

/** A DomainRef for where the domain is; a MigrationError when it is nowhere fbxen can act on it. */
function refAt(name: string, where: DomainLocation | undefined): DomainRef {
  if (!where || where.id === '-') throw new MigrationError(`domain ${name} is gone before the migration: ${describeLocation(where)}`, where, { hint: 'check the toolstack\'s domain list and the console log' });
  return { name, id: where.id, host: where.host };
}

/**
 * Iteration i: a live migration to the route's destination (odd) or back to its origin (even), or a save
 * and a restore. The toolstack says where the domain is after a failure (MigrationError.where).
 */
async function migrateOnce(ts: Toolstack, req: MigrateTestRequest, route: MigrationRoute, i: number, stepMs: number, capture: ConsoleCapture, dir: string): Promise<MigrationOutcome> {
  const domain = refAt(req.domain, await ts.locate(req.domain));
  if (req.mode === 'live') return ts.migrate(domain, i % 2 === 1 ? route.destination : route.origin, stepMs, sinkOf(capture.source()));
  const started = Date.now();
  const checkpoint = await ts.save(domain, dir, i, stepMs);
  await ts.restore(checkpoint, stepMs);
  const toolstackMs = Date.now() - started;
  return { toolstackMs, where: await ts.locate(req.domain) };
}

/** The serial console of the domain wherever it runs now, into the capture: attached after the preflight and after each migration; typing goes to it. */
class ConsoleFollower implements ConsoleKeyboard {
  private attachment: ConsoleAttachment | undefined;
  private readonly sink: Writable;

  constructor(
    private readonly ts: Toolstack,
    private readonly name: string,
    capture: ConsoleCapture,
  ) {
    this.sink = sinkOf((chunk) => capture.write(chunk));
  }

  /** false when the console cannot be read from here (the domain on another host, no tcp serial, gone). */
  async follow(): Promise<boolean> {
    const where = await this.ts.locate(this.name);
    const next = where && where.name === this.name && where.id !== '-' ? await this.ts.attachConsole({ name: this.name, id: where.id, host: where.host }, this.sink) : undefined;
    if (next !== this.attachment) {
      const old = this.attachment;
      this.attachment = next;
      void old?.detach();
    }
    return next !== undefined;
  }

  write(text: string): void {
    this.attachment?.write(text);
  }

  async close(): Promise<void> {
    const a = this.attachment;
    this.attachment = undefined;
    await a?.detach();
  }
}
